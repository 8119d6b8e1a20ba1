"""Run and ensemble folders: creating them under unique names, resolving ids and paths to
folders, their per-epoch ``history.jsonl``, deleting a finished run.

A run is ``artifacts/runs/<run_id>/`` holding the files named in
:data:`cnmc_core.contracts.RUN_FILES`; an ensemble is ``artifacts/ensembles/<id>/`` with the same
files. ``history.jsonl`` is appended in whole lines, each append flushed and ``fsync``-ed
(:func:`append_history`); a reader ignores an unterminated last line.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import secrets
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd

from cnmc_core.contracts import ACTIVE_STATES, CONFIG, HISTORY
from cnmc_core.exceptions import RunError
from cnmc_core.workspace.fileio import atomic_write_json, check_name
from cnmc_core.workspace.paths import artifacts_root, runs_dir
from cnmc_core.workspace.status import effective_status, wall_time, write_status

__all__ = [
    "run_path",
    "make_unique_folder",
    "create_run",
    "append_history",
    "read_history",
    "delete_run",
    "resolve_member",
]


def run_path(run_id_or_dir: str | os.PathLike, root: str | os.PathLike | None = None) -> Path:
    """The folder of a run given its id (checked: no path escapes the runs folder) or its path.

    Raises:
        RunError: an unsafe id, or no such run.
    """
    text = str(run_id_or_dir)
    candidate = Path(text)
    if os.sep in text or candidate.is_dir():
        path = candidate
    else:
        check_name(text, "run id", RunError)
        path = runs_dir(root) / text
    if not (path / CONFIG).is_file():
        raise RunError(f"No run at {path} (no {CONFIG}); list runs with `python -m cnmc_core runs`.")
    return path


def make_unique_folder(base: str | os.PathLike, name: str | Callable[[], str], what: str) -> Path:
    """Create ``base/<name>`` with ``mkdir`` (which fails if it exists) and return it.

    ``name`` is a callable that draws a fresh name (a generated id: on a collision another is
    drawn, up to 100 times) or a fixed string (a name the user chose: an existing folder is
    refused). ``base`` is created if missing. ``what`` (``run``, ``ensemble``) names the folder
    in the messages.

    Raises:
        RunError: the folder cannot be created (read-only or full disk: says what to do), a fixed
            name exists, or 100 generated names collided.
    """
    base = Path(base)
    article = "an" if what[:1].lower() in "aeiou" else "a"

    def refused(exc: OSError) -> RunError:
        return RunError(f"Cannot create {article} {what} folder in {base}: {exc.strerror}; make "
                        "the artifacts folder writable or point $CNMC_ARTIFACTS elsewhere.")

    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise refused(exc) from exc
    for _ in range(100):
        path = base / (name if isinstance(name, str) else name())
        try:
            path.mkdir()
            return path
        except FileExistsError:
            if isinstance(name, str):
                raise RunError(f"{path} already exists; choose another {what} id.") from None
        except OSError as exc:
            raise refused(exc) from exc
    raise RunError(f"Could not create a unique {what} folder under {base}.")  # pragma: no cover


def create_run(config: dict, root: str | os.PathLike | None = None, kind: str = "run") -> Path:
    """Create a run folder with ``config.json`` and ``status.json`` (state ``queued``).

    The id is ``<UTC time>-<preset>-<random>``; the folder is created with ``mkdir`` (which fails
    if it exists), so two runs created at the same moment get distinct folders.
    """
    try:
        base = runs_dir(root)
    except OSError as exc:
        raise RunError(f"Cannot create a run folder in {root or 'artifacts'}: {exc.strerror}; make the "
                       "artifacts folder writable or point $CNMC_ARTIFACTS elsewhere.") from exc
    stem = str(config.get("name") or config.get("model") or "run")
    stem = "".join(c if c.isalnum() or c in "-_" else "-" for c in stem)[:40] or "run"
    path = make_unique_folder(
        base, lambda: f"{_dt.datetime.now(_dt.timezone.utc):%Y%m%d-%H%M%S}-{stem}-{secrets.token_hex(2)}",
        "run")
    run_id = path.name
    created = wall_time()
    atomic_write_json(path / CONFIG, {"run_id": run_id, "kind": kind, "created": created, **config})
    write_status(path, state="queued", created=created, pid=None, heartbeat=created,
                 epoch=0, epochs=sum(s.get("epochs", 0) for s in config.get("stages", [])),
                 stage=None, batch=0, batches=0, error=None, message="waiting in the queue")
    return path


def append_history(run_dir: str | os.PathLike, record: dict | Sequence[dict]) -> None:
    """Append one JSON line per record to ``history.jsonl`` and flush it to disk.

    ``record`` is one dict or a list of them; a list is written with one write and one
    ``fsync`` (a loop that logs hundreds of lines a second batches them: an ``fsync`` per line
    costs 0.3 to 3 ms here).
    """
    records = [record] if isinstance(record, dict) else list(record)
    if not records:
        return
    text = "".join(json.dumps(r, allow_nan=False, default=float) + "\n" for r in records)
    with open(Path(run_dir) / HISTORY, "a", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def read_history(run_dir: str | os.PathLike) -> pd.DataFrame:
    """``history.jsonl`` as a frame; an unterminated or malformed last line is ignored."""
    path = Path(run_dir) / HISTORY
    if not path.is_file():
        return pd.DataFrame()
    text = path.read_text(encoding="utf-8")
    records = []
    lines = text.split("\n")
    for i, line in enumerate(lines[:-1]):  # the part after the last newline is unfinished
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return pd.DataFrame.from_records(records)


def delete_run(run_dir: str | os.PathLike) -> None:
    """Delete a finished run's folder; an active run must be cancelled first."""
    import shutil

    run_dir = Path(run_dir)
    status = effective_status(run_dir)
    if status["state"] in ACTIVE_STATES:
        raise RunError(f"Run {run_dir.name} is {status['state']}; cancel it before deleting it.")
    shutil.rmtree(run_dir)


def resolve_member(ref: str | os.PathLike, runs_root: str | os.PathLike | None = None) -> Path:
    """The folder of a member given as a path, a run id or an ensemble id.

    A reference that is an existing folder is used as is; otherwise it must be a safe id found
    under ``<runs_root>/runs/`` or ``<runs_root>/ensembles/`` (``runs_root`` is the artifacts
    folder; default ``$CNMC_ARTIFACTS`` or ``./artifacts``), or directly under ``runs_root``.
    """
    path = Path(ref)
    if path.is_dir():
        return path
    name = check_name(str(ref), "run id")
    root = artifacts_root(runs_root)
    candidates = [root / "runs" / name, root / "ensembles" / name]
    if runs_root is not None:
        candidates.insert(0, Path(runs_root) / name)
    for cand in candidates:
        if cand.is_dir():
            return cand
    raise RunError(
        f"Run {str(ref)!r} not found: it is not a folder, and no run or ensemble of that id exists "
        f"in {', '.join(str(c.parent) for c in candidates)}."
    )
