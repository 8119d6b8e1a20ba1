"""The workspace listed once: every run and ensemble in one table, its views, and one signature.

- :func:`list_experiments` is the one listing: a row per folder of every kind in
  :data:`~cnmc_core.workspace.summary.KINDS` (runs, ensembles) with :data:`EXPERIMENT_COLUMNS`.
  A finished folder is read from its ``summary.json`` (rebuilt from the folder when missing or
  stale, and kept for the next listing); a queued or running job from its ``status.json`` with
  liveness applied, at every listing; a folder that cannot be read is ``damaged`` with the
  reason, never hidden and never a traceback.
- :func:`list_members` is its view for the analysis pages: the completed members and the
  folders that cannot be used, with the reason. :func:`workspace_counts` is its view for Home.
- :func:`workspace_signature` is a cheap cache key (a few ``stat`` calls per folder): it changes
  when a job starts, ends, fails, is killed, deleted or damaged, and not at every heartbeat or
  epoch; pages that show live progress read it apart (:mod:`cnmc_core.workspace.progress`).

Summaries are also kept in memory per process, and every final one in the workspace's summary
index (:data:`SUMMARY_INDEX`, one file rewritten when one of them changes), each checked against
its folder's stamps before use: a dashboard lists an unchanged workspace without reading any
run's files, and a fresh process reads one file instead of one per folder.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Iterator, Sequence

import pandas as pd

from cnmc_core.contracts import ACTIVE_STATES, CONFIG, DAMAGED, FINAL_STATES
from cnmc_core.ensemble.members import MAX_NESTING, leaf_runs
from cnmc_core.exceptions import CnmcError, ConfigError
from cnmc_core.workspace.fileio import atomic_write_text, json_safe, read_json
from cnmc_core.workspace.paths import artifacts_root

# re-exported: the listing's callers show progress beside it (one implementation, in progress)
from cnmc_core.workspace.progress import (
    STATE_ICONS,
    experiment_status,
    progress_text,
    run_progress,
)
from cnmc_core.workspace.status import apply_liveness, read_status
from cnmc_core.workspace.summary import (
    KINDS,
    SUMMARY_VERSION,
    build_summary,
    folder_stamps,
    is_fresh,
    read_summary,
    save_summary,
)

__all__ = [
    "EXPERIMENT_COLUMNS",
    "MEMBER_COLUMNS",
    "SKIPPED_COLUMNS",
    "list_experiments",
    "list_members",
    "workspace_signature",
    "SUMMARY_INDEX",
    "read_summary_index",
    "forget_summaries",
    "workspace_counts",
    "display_name",
    "short_labels",
    "STATE_ICONS",
    "run_progress",
    "experiment_status",
]

EXPERIMENT_COLUMNS = [
    "run_id", "kind", "state", "preset", "model", "protocol", "seed", "image_size", "created",
    "epoch", "epochs", "val_weighted_f1", "val_f1_low", "val_f1_high", "val_auc",
    "test_weighted_f1", "test_f1_low", "test_f1_high", "test_auc", "error", "path", "created_ts",
    "message", "progress", "dataset", "group", "n_val", "n_test", "has_model",
]
MEMBER_COLUMNS = ["member_id", "kind", "label", "model", "protocol", "dataset", "group",
                  "n_val", "n_test", "val_weighted_f1", "test_weighted_f1", "has_model",
                  "created", "path"]
SKIPPED_COLUMNS = ["member_id", "kind", "state", "reason", "path"]

#: The summary index: every final summary of the workspace in one file, so that a fresh process
#: lists thousands of folders with one read (each entry checked like its summary.json).
SUMMARY_INDEX = "summaries.json"


class _Store:
    """What one process knows of one workspace: fresh summaries in memory (``known``) and the
    entries of its summary index, read once (``indexed``, folder path -> summary)."""

    def __init__(self, root: Path):
        self.root = root
        self.known: dict[str, _Known] = {}
        self.indexed: dict[str, dict] | None = None

    def index(self) -> dict[str, dict]:
        if self.indexed is None:
            self.indexed = {}
            data = read_summary_index(self.root)
            for rel, summary in data.items():
                kind, _, name = rel.partition("/")
                if kind in KINDS and name and isinstance(summary, dict):
                    self.indexed[os.path.join(self.root, KINDS[kind].subdir, name)] = summary
        return self.indexed

    def save_index(self) -> None:
        """Rewrite the index if the final summaries known differ from it (a read-only workspace
        keeps them in memory only)."""
        final = {path: k.summary for path, k in self.known.items()
                 if k.summary.get("state") in FINAL_STATES}
        indexed = self.index()
        if final.keys() == indexed.keys() and all(final[p] is indexed[p] for p in final):
            return
        folders = {f"{s['kind']}/{os.path.basename(p)}": s for p, s in final.items()}
        try:
            atomic_write_text(self.root / SUMMARY_INDEX, json.dumps(
                {"version": SUMMARY_VERSION, "folders": json_safe(folders)},
                separators=(",", ":"), allow_nan=False))
        except (OSError, ValueError):
            return  # a cache: the summaries stay in memory and in each folder
        self.indexed = final


_STORES: dict[str, _Store] = {}


def _store(root: Path) -> _Store:
    return _STORES.setdefault(str(root), _Store(root))


def read_summary_index(root: str | os.PathLike) -> dict[str, dict]:
    """The summary index of a workspace, ``{"<kind>/<folder>": summary}``: empty when it is
    missing, damaged or of another version (it is a cache; each entry is still checked against
    its folder's files before it is used)."""
    try:
        data = read_json(Path(root) / SUMMARY_INDEX, expect=dict)
    except (OSError, CnmcError):
        return {}
    folders = data.get("folders")
    return folders if data.get("version") == SUMMARY_VERSION and isinstance(folders, dict) else {}


def forget_summaries() -> None:
    """Drop what this process knows of every workspace (the next listing reads the summary
    index and the ``summary.json`` files again, as a fresh process does)."""
    _STORES.clear()


def _folders(root: Path) -> Iterator[tuple[str, str, str | None]]:
    """``(kind, folder, problem)`` of every folder of every kind, by name; ``problem`` says why
    a folder must not be read (a symlink pointing out of the workspace). Hidden entries
    (temporary folders, the queue's locks) are not folders of the workspace."""
    real_root = None
    for kind, spec in KINDS.items():
        base = os.path.join(root, spec.subdir)
        try:
            entries = sorted(os.scandir(base), key=lambda e: e.name)
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as exc:
            raise ConfigError(f"Cannot list {base}: {exc.strerror or exc}; make it readable.") from None
        for entry in entries:
            if entry.name.startswith("."):
                continue
            problem = None
            if entry.is_symlink():
                real_root = real_root or root.resolve()
                target = Path(os.path.realpath(entry.path))
                if real_root not in target.parents:
                    problem = (f"{entry.path} is a symlink to {target}, outside the workspace "
                               f"{real_root}: it is not read. Remove the link, or move the "
                               "folder into the workspace.")
                elif not target.is_dir():
                    problem = f"{entry.path} is a symlink to {target}, which is not a folder."
            elif not entry.is_dir():
                continue
            yield kind, entry.path, problem


class _Known:
    """A folder's summary kept in memory, with what the listing and the signature make of it
    (made once, the row when first listed: an unchanged workspace is listed with no per-folder
    work but ``stat``)."""

    __slots__ = ("kind", "path", "summary", "token", "_row")

    def __init__(self, kind: str, path: str, summary: dict):
        self.kind, self.path, self.summary = kind, path, summary
        self.token = f"known {summary.get('sources')}"
        self._row: dict | None = None

    @property
    def row(self) -> dict:
        if self._row is None:
            self._row = _row(self.kind, self.path, self.summary)
        return self._row


def _fresh(summary: dict | None, stamps: dict, kind: str) -> bool:
    """A summary usable as is: a final one computed from these files, or (in memory only) a
    damaged one whose files have not changed since."""
    return summary is not None and summary.get("sources") == stamps and (
        is_fresh(summary, stamps, kind)
        or (summary.get("state") == DAMAGED and summary.get("version") == SUMMARY_VERSION))


def _known(store: _Store, path: str, kind: str, stamps: dict) -> _Known | None:
    """The folder's summary if one is fresh: in memory, else in the summary index, else in its
    ``summary.json``."""
    known = store.known.get(path)
    if known is not None and _fresh(known.summary, stamps, kind):
        return known
    stored = store.index().get(path)
    if not is_fresh(stored, stamps, kind):
        stored = read_summary(path)
    if is_fresh(stored, stamps, kind):
        store.known[path] = _Known(kind, path, stored)
        return store.known[path]
    return None


def _listed(store: _Store, kind: str, path: str, problem: str | None) -> dict:
    """A folder's row: from memory, from ``summary.json``, or built from its files (and kept
    when final or damaged); an active job's with liveness and progress from its status."""
    if problem:
        return _row(kind, path, {"id": os.path.basename(path), "state": DAMAGED, "error": problem})
    stamps = folder_stamps(path, kind)
    known = _known(store, path, kind, stamps)
    if known is not None:
        return dict(known.row)
    summary = build_summary(path, kind, stamps)
    if summary["state"] in (*FINAL_STATES, DAMAGED):
        store.known[path] = _Known(kind, path, summary)
        save_summary(path, summary)  # final ones only; a read-only workspace keeps it in memory
        return dict(store.known[path].row)
    try:  # queued or running: what it does now, never kept
        status = apply_liveness(read_status(path))
    except CnmcError as exc:
        return _row(kind, path, {**summary, "state": DAMAGED, "error": str(exc)})
    return _row(kind, path, {**summary, "state": status["state"], "error": status.get("error"),
                             "message": status.get("message"), "epoch": status.get("epoch"),
                             "epochs": status.get("epochs"), "progress": progress_text(status)})


def _iso(ts) -> str:
    try:
        return _dt.datetime.fromtimestamp(float(ts)).isoformat(timespec="seconds")
    except (TypeError, ValueError, OverflowError, OSError):
        return ""


def _row(kind: str, path: str, s: dict) -> dict:
    created = s.get("created")
    row = {column: s.get(column) for column in EXPERIMENT_COLUMNS}
    row.update(run_id=s.get("id") or os.path.basename(path), kind=kind, path=path,
               created=_iso(created), created_ts=float(created) if created is not None else None,
               progress=s.get("progress") or "", has_model=bool(s.get("has_model")),
               _members=s.get("members") or [], _member_paths=s.get("member_paths") or [],
               _weights_ok=bool(s.get("weights_ok")))
    return row


def _ensemble_models(rows: list[dict], root: Path) -> None:
    """``has_model`` of each ensemble: completed, with fitted weights, and every member (found
    in this listing by its recorded folder, else by id: runs first) has one, down through
    nested ensembles, as :func:`cnmc_core.ensemble.members.leaf_runs` walks them."""
    ensembles = [r for r in rows if r["kind"] == "ensemble"]
    if not ensembles:
        return
    real_root, prefix = os.path.realpath(root), len(str(root))
    # a row's folder as its members' recorded paths name it once resolved (rows are root/...)
    by_path = {real_root + r["path"][prefix:]: r for r in rows}
    by_id: dict[str, dict] = {}
    for r in rows:
        by_id.setdefault(r["run_id"], r)  # runs come first: a run wins over an ensemble's id

    def usable(row: dict, depth: int) -> bool:
        if row["kind"] != "ensemble":
            return row["has_model"]
        if row["state"] != "completed" or not row["_weights_ok"] or not row["_members"] \
                or depth > MAX_NESTING:
            return False
        for i, name in enumerate(row["_members"]):
            recorded = row["_member_paths"][i] if i < len(row["_member_paths"]) else None
            member = by_path.get(os.path.realpath(recorded)) if recorded else None
            if member is None and recorded and os.path.isdir(recorded):
                # a member folder that this listing does not hold: ask leaf_runs itself
                try:
                    return bool(leaf_runs(row["path"]))
                except CnmcError:
                    return False
            member = member or by_id.get(name)
            if member is None or member is row or not usable(member, depth + 1):
                return False
        return True

    for row in ensembles:
        row["has_model"] = usable(row, 0)


def list_experiments(root: str | os.PathLike | None = None,
                     kinds: Sequence[str] = ("run", "ensemble")) -> pd.DataFrame:
    """Every run and ensemble of the workspace in one frame, newest first.

    Args:
        root: the artifacts folder (default ``$CNMC_ARTIFACTS`` or ``./artifacts``); it is only
            read (a read-only or missing workspace lists fine).
        kinds: the kinds to return (keys of :data:`~cnmc_core.workspace.summary.KINDS`).

    Returns:
        :data:`EXPERIMENT_COLUMNS`: ``run_id`` (as alignment names members), ``kind``, ``state``
        (liveness applied; ``damaged`` when a file cannot be read, with ``error`` naming it),
        ``preset`` (an ensemble's reads ``ensemble (<method>)``), ``model``, ``protocol``,
        ``seed``, ``image_size``, ``created`` (local time to the second) and ``created_ts``
        (epoch seconds), ``epoch``/``epochs``, val/test weighted F1 with its CI and AUC (None
        until completed), ``error``, ``message``, ``progress`` (what an active job does now),
        ``dataset``, ``group``, ``n_val``/``n_test`` (completed ones), ``has_model`` and
        ``path`` (absolute).

    Raises:
        ConfigError: the artifacts folder is a file, or a subfolder cannot be listed.
    """
    base = Path(os.path.abspath(artifacts_root(root)))
    store = _store(base)
    old, store.known = store.known, {}  # folders gone since the last listing are forgotten
    rows = []
    for kind, path, problem in _folders(base):
        if path in old:
            store.known[path] = old[path]
        rows.append(_listed(store, kind, path, problem))
    store.save_index()
    _ensemble_models(rows, base)
    frame = pd.DataFrame.from_records(rows, columns=EXPERIMENT_COLUMNS)
    frame = frame[frame["kind"].isin(list(kinds))]
    return frame.sort_values(["created_ts", "run_id"], ascending=False, na_position="last",
                             kind="stable").reset_index(drop=True)


def workspace_signature(root: str | os.PathLike | None = None) -> str:
    """A cheap key of the workspace's state, for caches of the listing and of what is computed
    from it (alignments, fits).

    Per folder: its name and its files' stamps (size, modification time); an active job
    contributes its state with liveness applied instead, so the key changes when a job is
    queued, starts, ends, fails, is killed, is deleted or damaged, but not at its heartbeats
    and epochs. Reads no file of a finished folder whose summary is known.
    """
    base = Path(os.path.abspath(artifacts_root(root)))
    store = _store(base)
    parts = []
    for kind, path, problem in _folders(base):
        if problem:
            token = f"problem {problem}"
        else:
            stamps = folder_stamps(path, kind)
            known = _known(store, path, kind, stamps)
            if known is not None:
                token = known.token
            else:
                try:
                    state = apply_liveness(read_status(path))["state"]
                except CnmcError:
                    state = DAMAGED
                # an active job's status changes at every beat: only its state counts
                token = (f"{state} {stamps.get(CONFIG)}" if state in ACTIVE_STATES
                         else f"{state} {stamps}")
        parts.append(f"{kind}/{os.path.basename(path)}={token}\n")
    return hashlib.sha1("".join(parts).encode()).hexdigest()[:20]


def list_members(root: str | os.PathLike | None = None,
                 experiments: pd.DataFrame | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The completed runs and ensembles usable for analysis, and the folders that are not.

    A view of :func:`list_experiments` (pass its frame as ``experiments`` to reuse it).

    Returns:
        ``(members, skipped)``. ``members`` has :data:`MEMBER_COLUMNS`: ``member_id`` (the run or
        ensemble id, as :func:`~cnmc_core.ensemble.align_runs` names members), ``kind``, ``label``
        (short and unique, for charts), ``model``, ``protocol``, ``dataset`` (fingerprint),
        ``group`` (same group: same images, alignable), ``n_val``, ``n_test``, the weighted F1
        of each split (None if absent), ``has_model`` (a run with ``model.keras``, or an
        ensemble whose runs all have one), ``created`` (epoch seconds) and ``path``; newest
        first. ``skipped`` has :data:`SKIPPED_COLUMNS`, one row per run or ensemble that is not
        completed or cannot be read, with the reason.
    """
    frame = list_experiments(root) if experiments is None else experiments
    frame = frame[frame["kind"].isin(["run", "ensemble"])]
    done = frame[frame["state"] == "completed"]
    members = pd.DataFrame({
        "member_id": done["run_id"].astype(str), "kind": done["kind"], "label": "",
        "model": done["model"].fillna("").astype(str), "protocol": done["protocol"].astype(str),
        "dataset": done["dataset"].astype(str), "group": done["group"].astype(str),
        "n_val": done["n_val"].astype(int), "n_test": done["n_test"].astype(int),
        "val_weighted_f1": done["val_weighted_f1"], "test_weighted_f1": done["test_weighted_f1"],
        "has_model": done["has_model"].astype(bool),
        "created": pd.to_numeric(done["created_ts"]).fillna(0.0).astype(float),
        "path": done["path"],
    }, columns=MEMBER_COLUMNS)
    names = done["preset"].fillna("").astype(str)
    if len(members):
        order = members.assign(_name=names).sort_values(
            ["created", "member_id"], ascending=[False, False], kind="stable")
        members = order.drop(columns="_name").reset_index(drop=True)
        members["label"] = short_labels(members["member_id"].tolist(), order["_name"].tolist(),
                                        members["kind"].tolist())
    rest = frame[frame["state"] != "completed"]
    reasons = [e if isinstance(e, str) and e else (m if isinstance(m, str) and m else
                                                   f"the {k} is {s}")
               for e, m, k, s in zip(rest["error"], rest["message"], rest["kind"], rest["state"])]
    skipped = pd.DataFrame({"member_id": rest["run_id"].astype(str), "kind": rest["kind"],
                            "state": rest["state"].astype(str), "reason": reasons,
                            "path": rest["path"]}, columns=SKIPPED_COLUMNS)
    return members, skipped.reset_index(drop=True)


def workspace_counts(experiments: pd.DataFrame) -> dict[str, int]:
    """How many runs are completed, active (queued or running), failed, cancelled or damaged,
    and how many ensembles there are."""
    runs = experiments[experiments["kind"] == "run"]
    states = runs["state"].value_counts().to_dict()
    return {
        "runs": int(len(runs)),
        "completed": int(states.get("completed", 0)),
        "active": int(sum(states.get(s, 0) for s in ACTIVE_STATES)),
        "running": int(states.get("running", 0)),
        "queued": int(states.get("queued", 0)),
        "failed": int(states.get("failed", 0)),
        "cancelled": int(states.get("cancelled", 0)),
        "damaged": int(states.get(DAMAGED, 0)),
        "ensembles": int((experiments["kind"] == "ensemble").sum()),
    }


_RUN_ID_RE = re.compile(r"^\d{8}-\d{6}-(?P<rest>.+)$")
_ENS_ID_RE = re.compile(r"^ens-(?P<method>[^-]+)-\d{8}-\d{6}-(?P<tag>.+)$")


def display_name(run_id: str) -> str:
    """A short label for charts: the run id without its creation time
    (``20261126-005214-demo_scratch-7700`` -> ``demo_scratch-7700``;
    ``ens-ga-20261126-010203-abc123`` -> ``ens-ga-abc123``)."""
    text = str(run_id)
    m = _ENS_ID_RE.match(text)
    if m:
        return f"ens-{m['method']}-{m['tag']}"
    m = _RUN_ID_RE.match(text)
    return m["rest"] if m else text


def short_labels(ids: list[str], names: list[str] | None = None,
                 kinds: list[str] | None = None) -> list[str]:
    """Short unique display names: a run's preset name plus the last 4 characters of its id
    (``fixture_scratch_dd256-f0e6``), an ensemble's method plus its id's hash (``ens-ga-abc123``);
    the full id wherever that would not be unique."""
    names = names or [""] * len(ids)
    kinds = kinds or ["run"] * len(ids)
    out = []
    for mid, name, kind in zip(ids, names, kinds):
        if kind == "ensemble":
            parts = mid.split("-")
            label = f"{parts[0]}-{parts[1]}-{parts[-1]}" if mid.startswith("ens-") and \
                len(parts) >= 4 else mid
        else:
            label = f"{name}-{mid[-4:]}" if name and len(mid) > 4 else mid
        out.append(label)
    counts: dict[str, int] = {}
    for label in out:
        counts[label] = counts.get(label, 0) + 1
    return [mid if counts[lab] > 1 else lab for lab, mid in zip(out, ids)]
