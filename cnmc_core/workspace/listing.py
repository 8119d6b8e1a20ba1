"""The workspace listed once: every run and ensemble in one table, its views, and one signature.

- :func:`list_experiments` is the one listing: a row per folder of every kind in
  :data:`~cnmc_core.workspace.summary.KINDS` (runs, ensembles) with :data:`EXPERIMENT_COLUMNS`.
  A finished folder is read from its ``summary.json`` (rebuilt from the folder when missing or
  stale, and kept for the next listing); a queued or running job from its ``status.json`` with
  liveness applied, at every listing; a folder that cannot be read is ``damaged`` with the
  reason, never hidden and never a traceback.
- :mod:`cnmc_core.workspace.views` holds its views: the members the analysis pages use and the
  folders they cannot (with the reason), the counts Home shows.
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
from cnmc_core.ensemble.members import MAX_NESTING
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
    "list_experiments",
    "workspace_signature",
    "SUMMARY_INDEX",
    "read_summary_index",
    "forget_summaries",
    "display_name",
    "STATE_ICONS",
    "run_progress",
    "experiment_status",
]

EXPERIMENT_COLUMNS = [
    "run_id", "kind", "state", "preset", "model", "protocol", "seed", "image_size", "created",
    "epoch", "epochs", "val_weighted_f1", "val_f1_low", "val_f1_high", "val_auc",
    "test_weighted_f1", "test_f1_low", "test_f1_high", "test_auc", "error", "path", "created_ts",
    "message", "progress", "dataset", "group", "n_val", "n_test", "has_model", "data_kind",
]

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
    # the folder's name, also for a copy whose summary.json came with it from its source
    row.update(run_id=os.path.basename(path), kind=kind, path=path,
               created=_iso(created), created_ts=float(created) if created is not None else None,
               progress=s.get("progress") or "", has_model=bool(s.get("has_model")),
               _member_places=s.get("member_places") or [], _weights_ok=bool(s.get("weights_ok")))
    return row


def _ensemble_models(rows: list[dict]) -> None:
    """``has_model`` of each ensemble: completed, with fitted weights, and every member (at its
    place in the workspace, :func:`cnmc_core.ensemble.members.member_places`) in this listing
    with one, down through nested ensembles, as :func:`cnmc_core.ensemble.members.leaf_runs`
    walks them."""
    ensembles = [r for r in rows if r["kind"] == "ensemble"]
    if not ensembles:
        return
    # (subfolder, folder name) -> row: rows are <root>/<subfolder>/<name>
    by_place = {(os.path.basename(os.path.dirname(r["path"])), os.path.basename(r["path"])): r
                for r in rows}

    def usable(row: dict, depth: int) -> bool:
        if row["kind"] != "ensemble":
            return row["has_model"]
        places = row["_member_places"]
        if row["state"] != "completed" or not row["_weights_ok"] or not places \
                or depth > MAX_NESTING:
            return False
        for where in places:
            member = next((by_place[(sub, mid)] for sub, mid in where if (sub, mid) in by_place),
                          None)
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
    _ensemble_models(rows)
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
