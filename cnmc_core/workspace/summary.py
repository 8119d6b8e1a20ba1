"""``summary.json``: what the listing shows of a run or ensemble folder, in one small file.

The listing (:mod:`cnmc_core.workspace.listing`) reads this file instead of each folder's
config, status, metrics and predictions. It holds the state, kind, preset, model, protocol,
seed, image size, creation time, dataset fingerprint, the val/test image counts and the
alignment ``group`` key (members of one group were scored on the same images), val/test weighted
F1 with its CI and AUC, whether a run has its model, the kind of data it records it was trained
on (``data_kind``: synthetic, real, or unknown for a run trained before it was kept), and
``sources``: the size and modification
time (ns) of every file it was computed from.

- It is written atomically when a job ends (the training loop, the ensemble store and search:
  :func:`write_summary`), and rebuilt from the folder whenever it is missing or stale: a summary
  whose ``sources`` differ from the files now on disk (:func:`folder_stamps`) is never used.
- Only finished folders (completed, failed, cancelled) are kept on disk; a queued or running
  job is summarised from its status at every listing and liveness is applied there, and a
  folder that cannot be read is ``damaged`` with the reason (which file, what is wrong).
- A folder kind is a :class:`FolderKind` in :data:`KINDS` (runs and ensembles); a new kind
  (studies under ``artifacts/studies/``) is a new entry with its files and its summariser.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from cnmc_core.contracts import (
    CONFIG,
    DAMAGED,
    FINAL_STATES,
    HISTORY,
    METRICS,
    MODEL,
    PREDICTIONS,
    SCORED_SPLITS,
    STATUS,
    SUMMARY,
)
from cnmc_core.data.provenance import recorded_kind
from cnmc_core.exceptions import CnmcError, RunError
from cnmc_core.workspace.fileio import atomic_write_json, json_kind, read_json
from cnmc_core.workspace.layout import history_text
from cnmc_core.workspace.status import error_text, read_status

__all__ = [
    "SUMMARY_VERSION",
    "SUMMARY_FIELDS",
    "FolderKind",
    "KINDS",
    "folder_stamps",
    "group_key",
    "read_config",
    "build_summary",
    "read_summary",
    "is_fresh",
    "save_summary",
    "write_summary",
]

#: Bumped when the fields change: a summary of another version is stale.
SUMMARY_VERSION = 4
_METRIC_FIELDS = [f"{s}_{m}" for s in SCORED_SPLITS
                  for m in ("weighted_f1", "f1_low", "f1_high", "auc")]
#: The fields of a summary besides ``version``, ``kind`` and ``sources``.
SUMMARY_FIELDS = ["id", "state", "error", "message", "preset", "model", "protocol", "seed",
                  "image_size", "created", "dataset", "epoch", "epochs", "n_val", "n_test",
                  "group", *_METRIC_FIELDS, "has_model", "weights_ok", "members",
                  "member_places", "data_kind"]
_FIX = "restore the file, or delete the folder"


@dataclass(frozen=True)
class FolderKind:
    """A kind of folder the workspace lists.

    Attributes:
        name: ``run``, ``ensemble``.
        subdir: the workspace subfolder that holds them (``runs``, ``ensembles``).
        sources: the files a summary is computed from (their stamps make it fresh or stale).
        completed: adds the fields of a completed folder to a summary (scores, counts, group,
            model); raises :class:`CnmcError` when the folder is damaged.
    """

    name: str
    subdir: str
    sources: tuple[str, ...]
    completed: Callable[[Path, dict, dict], None]


def folder_stamps(path: str | os.PathLike, kind: str) -> dict[str, list[int] | None]:
    """``{file: [size, mtime_ns]}`` (None when missing) of the files a summary of a ``kind``
    folder is computed from: a few ``stat`` calls, no reads."""
    out: dict[str, list[int] | None] = {}
    prefix = os.fspath(path) + os.sep
    for name in KINDS[kind].sources:
        try:
            st = os.stat(prefix + name)
        except OSError:
            out[name] = None
        else:
            out[name] = [st.st_size, st.st_mtime_ns]
    return out


def group_key(protocol: Any, fingerprint: Any, frame) -> str:
    """The alignment group of a member: a hash of its split protocol, dataset fingerprint and
    the sorted ``(split, image_id)`` pairs of its predictions. Members with the same key were
    scored on the same images and can be combined (:func:`cnmc_core.ensemble.align_runs`)."""
    pairs = sorted(zip(frame["split"].astype(str), frame["image_id"].astype(str)))
    digest = hashlib.sha1()
    digest.update(f"{protocol}|{fingerprint}|".encode())
    for split, image_id in pairs:
        digest.update(f"{split}/{image_id}\n".encode())
    return digest.hexdigest()[:12]


def read_config(path: str | os.PathLike) -> dict:
    """A folder's ``config.json``, which must exist and hold a JSON object in UTF-8.

    Raises:
        RunError: missing, unreadable, not UTF-8, not JSON, or not an object; naming the file.
    """
    file = Path(path) / CONFIG
    try:
        return read_json(file, expect=dict, error=RunError)
    except FileNotFoundError:
        raise RunError(f"{file} is missing: the folder is damaged; {_FIX}.") from None
    except OSError as exc:
        raise RunError(f"{file} cannot be read ({exc.strerror or exc}).") from None


_TYPES = {"a string": (str,), "an integer": (int,), "a number": (int, float)}


def _typed(source: dict, key: str, want: str, where: Path) -> Any:
    """``source[key]`` if it is ``want`` (a key of ``_TYPES``) or null, else a RunError."""
    value = source.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, _TYPES[want])):
        raise RunError(f"{where}: {key!r} must be {want} or null; got {value!r}; {_FIX}.")
    return value


def _config_fields(path: Path, config: dict, kind: str) -> dict:
    where = path / CONFIG
    text, number = "a string", "a number"
    # The id is the folder's name (set by build_summary), by which every verb and page finds it:
    # a copied folder keeps its source's id in config.json and must not list as its source. The
    # recorded id is only checked.
    _typed(config, "ensemble_id" if kind == "ensemble" else "run_id", text, where)
    fields = {
        "model": _typed(config, "model", text, where),
        "protocol": _typed(config, "split_protocol", text, where),
        "seed": _typed(config, "seed", "an integer", where),
        "image_size": _typed(config, "image_size", "an integer", where),
        "created": _typed(config, "created", number, where),
        "dataset": _typed(config, "dataset_fingerprint", text, where),
        "data_kind": recorded_kind(config),
    }
    if kind == "ensemble":
        method = _typed(config, "method", text, where)
        members = config.get("members") or []
        if not isinstance(members, list) or not all(isinstance(v, str) for v in members):
            raise RunError(f"{where}: 'members' must be a list of strings; got {members!r}; {_FIX}.")
        fields.update(preset=f"ensemble ({method or '?'})", image_size=None, members=members)
    else:
        fields["preset"] = _typed(config, "name", text, where)
    return fields


def _metric_fields(path: Path) -> dict:
    """Weighted F1 with its CI and AUC of each scored split, from ``metrics.json`` (None where
    absent: a file without a split is not damage)."""
    file = path / METRICS
    if not file.is_file():
        return {}
    metrics = read_json(file, expect=dict, error=RunError)
    out = {}
    for split in SCORED_SPLITS:
        report = metrics.get(split) or {}
        if not isinstance(report, dict):
            raise RunError(f"{file}: {split!r} must be a JSON object (the {split} report); got "
                           f"{json_kind(report)}; {_FIX}.")
        ci = report.get("ci") or {}
        f1_ci = (ci.get("weighted_f1") or {}) if isinstance(ci, dict) else None
        if not isinstance(f1_ci, dict):
            raise RunError(f"{file}: {split}.ci must map metrics to {{low, high}}; {_FIX}.")
        number = "a number"
        out.update({
            f"{split}_weighted_f1": _typed(report, "weighted_f1", number, file),
            f"{split}_f1_low": _typed(f1_ci, "low", number, file),
            f"{split}_f1_high": _typed(f1_ci, "high", number, file),
            f"{split}_auc": _typed(report, "roc_auc", number, file),
        })
    return out


def _scored(path: Path, summary: dict) -> None:
    """What every completed folder adds: scores, then its predictions (checked as alignment
    checks them), their counts and group."""
    # the one check of predictions.csv, the one alignment pages and the CLI use
    from cnmc_core.ensemble.align import load_predictions

    summary.update(_metric_fields(path))
    frame = load_predictions(path).frame
    summary.update(n_val=int((frame["split"] == "val").sum()),
                   n_test=int((frame["split"] == "test").sum()),
                   group=group_key(summary["protocol"], summary["dataset"], frame))


def _completed_run(path: Path, config: dict, summary: dict) -> None:
    _scored(path, summary)
    summary["has_model"] = (path / MODEL).is_file()


def _completed_ensemble(path: Path, config: dict, summary: dict) -> None:
    # the one check of weights and the one reading of member references
    from cnmc_core.ensemble.members import ensemble_weights, member_places

    _scored(path, summary)
    try:
        ensemble_weights(path, config)
        summary["member_places"] = [[list(p) for p in where]
                                    for where in member_places(path, config)]
        summary["weights_ok"] = True
    except RunError:  # predictions usable, but nothing to explain or score new images with
        summary["weights_ok"] = False


#: The folder kinds the workspace lists, in listing order.
KINDS: dict[str, FolderKind] = {
    "run": FolderKind("run", "runs", (CONFIG, STATUS, METRICS, PREDICTIONS, HISTORY, MODEL),
                      _completed_run),
    "ensemble": FolderKind("ensemble", "ensembles", (CONFIG, STATUS, METRICS, PREDICTIONS, HISTORY),
                           _completed_ensemble),
}


def build_summary(path: str | os.PathLike, kind: str = "run",
                  sources: dict | None = None) -> dict:
    """The summary of a folder, computed from its files; never raises for a damaged folder.

    Args:
        path: the run or ensemble folder.
        kind: a key of :data:`KINDS`.
        sources: :func:`folder_stamps` taken before reading (taken here when None): stamps
            taken first make a summary stale if a file changes while it is computed.

    Returns:
        A dict with ``version``, ``kind``, ``sources`` and :data:`SUMMARY_FIELDS`. ``state`` is
        the state written in ``status.json`` (no liveness: the listing applies it to active
        jobs), or ``damaged`` with ``error`` naming the file and what is wrong (any error while
        reading: a reader of a damaged folder never raises).
    """
    path = Path(path)
    spec = KINDS[kind]
    summary: dict[str, Any] = {"version": SUMMARY_VERSION, "kind": kind,
                               **dict.fromkeys(SUMMARY_FIELDS),
                               "sources": folder_stamps(path, kind) if sources is None else sources}
    summary["id"] = path.name
    try:
        config = read_config(path)
        summary.update(_config_fields(path, config, kind))
        status = read_status(path)
        summary.update(state=status["state"], error=status.get("error"),
                       message=status.get("message"), epoch=status.get("epoch"),
                       epochs=status.get("epochs"))
        if status["state"] in FINAL_STATES:
            history_text(path)  # a damaged history is damage too (only its encoding is read)
        if status["state"] == "completed":
            spec.completed(path, config, summary)
    except Exception as exc:  # noqa: BLE001 - whatever is wrong, the folder is listed with it
        summary.update(state=DAMAGED, error=error_text(exc))
    return summary


def read_summary(path: str | os.PathLike) -> dict | None:
    """The stored ``summary.json`` of a folder, or None when it is missing or unreadable (it is
    a cache: a damaged one is rebuilt from the folder's own files)."""
    try:
        return read_json(Path(path) / SUMMARY, expect=dict)
    except (OSError, CnmcError):
        return None


def is_fresh(summary: dict | None, sources: dict, kind: str) -> bool:
    """Whether ``summary`` can be used: same version and kind, a finished state, and computed
    from the files now on disk (``sources``, from :func:`folder_stamps`)."""
    return (isinstance(summary, dict) and summary.get("version") == SUMMARY_VERSION
            and summary.get("kind") == kind and summary.get("state") in FINAL_STATES
            and summary.get("sources") == sources)


def save_summary(path: str | os.PathLike, summary: dict) -> bool:
    """Write ``summary`` as the folder's ``summary.json`` (atomically) if it is final; returns
    whether it was written. A folder that cannot be written (a read-only workspace, a full disk)
    is not an error: the summary is a cache that the listing rebuilds from the folder."""
    if summary.get("state") not in FINAL_STATES:
        return False
    try:
        atomic_write_json(Path(path) / SUMMARY, summary)
    except OSError:
        return False
    return True


def write_summary(path: str | os.PathLike, kind: str = "run") -> dict:
    """Summarise a folder whose job just ended and store it (:func:`save_summary`); returns the
    summary. Called at the end of a run, an ensemble save and an ensemble search."""
    summary = build_summary(path, kind)
    save_summary(path, summary)
    return summary
