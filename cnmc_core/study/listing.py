"""The studies of a workspace, listed: one row per folder of ``artifacts/studies/``.

A study's row comes from its ``study.json`` (presets, folds, seeds, protocol, backend, its runs)
and its ``status.json`` with liveness applied (the coordinator's pid and heartbeat: a killed
coordinator reads ``failed``), whose ``done``/``total`` the coordinator keeps live. A folder
that cannot be read is listed ``damaged`` with the reason (which file, what is wrong), never
hidden and never a traceback. Studies are few (each holds many runs), so they are read at every
listing; the runs themselves are in :func:`cnmc_core.workspace.listing.list_experiments`.

- :func:`list_studies`: the frame (:data:`STUDY_COLUMNS`), newest first;
- :func:`study_of_runs`: run id -> study id, to group a runs table by study;
- :func:`completed_studies`: the completed ones with a label, for the Ensemble and Errors pages;
- :func:`study_progress`: a progress fraction and a line, for the bars of Home and Compare;
- :func:`format_studies`: the lines ``python -m cnmc_core runs`` prints.
"""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path

import pandas as pd

from cnmc_core.contracts import ACTIVE_STATES, DAMAGED, protocol_label
from cnmc_core.exceptions import CnmcError
from cnmc_core.workspace.paths import artifacts_root

__all__ = ["STUDY_COLUMNS", "format_studies", "list_studies", "study_of_runs", "study_progress"]

STUDY_COLUMNS = ["study_id", "state", "presets", "folds", "seeds", "runs_total", "runs_done",
                 "runs_failed", "runs_running", "protocol", "protocol_label", "backend", "message",
                 "error", "created", "created_ts", "run_ids", "path"]


def _count(value) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return 0
    return max(number, 0)


def _study_row(path: Path) -> dict:
    from cnmc_core.study.store import read_study
    from cnmc_core.workspace.status import effective_status

    row = {column: None for column in STUDY_COLUMNS}
    row.update(study_id=path.name, path=str(path), presets=[], run_ids=[], runs_total=0,
               runs_done=0, runs_failed=0, runs_running=0)
    try:
        study = read_study(path)
        status = effective_status(path)
    except CnmcError as exc:
        return {**row, "state": DAMAGED, "error": str(exc)}
    runs = [e for e in study.get("runs") or [] if isinstance(e, dict)]
    seeds = study.get("seeds")
    created = study.get("created")
    row.update(state=str(status.get("state")), presets=[str(p) for p in study.get("presets") or []],
               folds=study.get("folds"), seeds=len(seeds) if isinstance(seeds, list) else None,
               runs_total=_count(status.get("total")) or len(runs),
               runs_done=_count(status.get("done")), runs_failed=_count(status.get("failed")),
               runs_running=_count(status.get("running")), protocol=study.get("protocol"),
               protocol_label=protocol_label(study.get("protocol")),
               backend=study.get("backend"), message=status.get("message"),
               error=status.get("error"), run_ids=[str(e.get("id")) for e in runs],
               created_ts=float(created) if isinstance(created, (int, float)) else None)
    if row["state"] == "completed":
        row["runs_done"] = row["runs_total"]
    if row["created_ts"] is not None:
        row["created"] = _dt.datetime.fromtimestamp(row["created_ts"]).isoformat(timespec="seconds")
    return row


def list_studies(root: str | os.PathLike | None = None) -> pd.DataFrame:
    """Every study of the workspace, newest first (:data:`STUDY_COLUMNS`).

    Columns: ``study_id``, ``state`` (liveness applied; ``damaged`` with ``error`` naming the
    file), ``presets`` (a list), ``folds``, ``seeds`` (how many), ``runs_total``, ``runs_done``,
    ``runs_failed``, ``runs_running`` (as the coordinator last counted them), ``protocol`` and
    ``protocol_label`` (``leaky`` for ``image-kfold``), ``backend``, ``message`` (what the
    coordinator does now), ``error``, ``created``/``created_ts``, ``run_ids`` and ``path``.

    Raises:
        ConfigError: the artifacts folder is a file.
    """
    base = Path(os.path.abspath(artifacts_root(root))) / "studies"
    try:
        entries = [e for e in os.scandir(base) if not e.name.startswith(".") and e.is_dir()]
    except (FileNotFoundError, NotADirectoryError):
        entries = []
    except OSError as exc:
        from cnmc_core.exceptions import ConfigError

        raise ConfigError(f"Cannot list {base}: {exc.strerror or exc}; make it readable.") from None
    rows = [_study_row(Path(e.path)) for e in sorted(entries, key=lambda e: e.name)]
    frame = pd.DataFrame.from_records(rows, columns=STUDY_COLUMNS)
    for column in ("folds", "seeds"):  # whole numbers, missing for a damaged study
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("Int64")
    return frame.sort_values(["created_ts", "study_id"], ascending=False, na_position="last",
                             kind="stable").reset_index(drop=True)


def study_of_runs(studies: pd.DataFrame) -> dict[str, str]:
    """Each study run's id -> its study's id."""
    return {run_id: row.study_id for row in studies.itertuples() for run_id in row.run_ids}


def completed_studies(root: str | os.PathLike | None = None) -> dict[str, str]:
    """The workspace's completed studies, newest first: folder -> a label (``study-...: presets,
    K folds x S seeds, protocol``), what the Ensemble and Errors pages offer to analyse pooled
    out of fold. Studies still running, failed, cancelled or damaged are left out. A view of
    :func:`list_studies`.

    Raises:
        ConfigError: the artifacts folder cannot be used (it is a file...).
    """
    studies = list_studies(root)
    done = studies[studies["state"] == "completed"]
    return {row.path: f"{row.study_id}: {', '.join(row.presets)}, {row.folds} folds x "
                      f"{row.seeds} seed(s), {row.protocol_label}" for row in done.itertuples()}


def study_progress(row) -> tuple[float, str]:
    """A progress fraction in [0, 1] and a line for a study row of :func:`list_studies`
    (``running - 5 of 20 runs done, 1 training``; ``completed - 20 runs``; ``failed - ...``)."""
    get = row.get if isinstance(row, dict) else (lambda k: getattr(row, k, None))
    total, done = _count(get("runs_total")), _count(get("runs_done"))
    fraction = min(1.0, done / total) if total else 0.0
    state = get("state") or "unknown"
    if state in ACTIVE_STATES:
        message = get("message") or f"{done} of {total} runs done"
        return fraction, f"{state} - {message}"
    if state == "completed":
        return 1.0, f"completed - {total} runs"
    error = get("error") or get("message") or ""
    return fraction, f"{state}" + (f" - {error}" if error else "")


def format_studies(studies: pd.DataFrame) -> list[str]:
    """One line per study: id, state, presets, folds x seeds, runs done of total, protocol (a
    damaged one: why)."""
    lines = []
    for row in studies.sort_values(["created_ts", "study_id"], na_position="last",
                                   kind="stable").itertuples():
        if row.state == DAMAGED:
            lines.append(f"{row.study_id}  {DAMAGED:<9} error: {row.error}")
            continue
        shape = f"{row.folds} folds x {row.seeds} seed(s)"
        runs = f"runs {row.runs_done}/{row.runs_total} done" + \
            (f", {row.runs_failed} failed or cancelled" if row.runs_failed else "")
        problem = f"  error: {row.error}" if row.state == "failed" and row.error else ""
        lines.append(f"{row.study_id}  {row.state:<9} {' '.join(row.presets)}  {shape}  {runs}  "
                     f"{row.protocol_label}, {row.backend}{problem}")
    return lines
