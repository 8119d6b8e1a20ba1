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
from cnmc_core.workspace.paths import artifacts_root, ensembles_dir, runs_dir
from cnmc_core.workspace.status import effective_status, wall_time, write_status

__all__ = [
    "inside_workspace",
    "run_path",
    "make_unique_folder",
    "create_run",
    "append_history",
    "history_text",
    "read_history",
    "delete_run",
    "resolve_member",
]


def _is_path(ref: str | os.PathLike) -> bool:
    """Whether a run reference is a path to a folder (it has a separator, or is absolute, and
    is a folder) rather than an id; anything else is checked as an id (so ``../x`` that is not
    a folder is an invalid id, and a folder named like an id in the current directory is not
    taken for the run of that id)."""
    text = os.fspath(ref)
    return (os.path.isabs(text) or os.sep in text) and os.path.isdir(text)


def inside_workspace(path: str | os.PathLike, root: str | os.PathLike | None = None,
                     what: str = "run") -> Path:
    """``path`` if it resolves (symlinks followed) inside the artifacts folder ``root``.

    Args:
        path: a folder a user or a file named.
        root: the artifacts folder (:func:`~cnmc_core.workspace.paths.artifacts_root`).
        what: what the folder is, for the message (``run``, ``run or ensemble``).

    Returns:
        ``path`` as given.

    Raises:
        RunError: it resolves outside the workspace (``..``, an absolute path elsewhere, a
            symlink pointing out); the message names both folders and the fix.
    """
    base = artifacts_root(root).resolve()
    real = Path(path).resolve()
    if real != base and base not in real.parents:
        hint = (f" (this one is in {real.parent.parent})"
                if real.parent.name in ("runs", "ensembles") else "")
        raise RunError(
            f"The {what} folder {path} resolves to {real}, outside the workspace {base}: only "
            "folders inside the workspace are used. Point --artifacts (or $CNMC_ARTIFACTS) at the "
            f"artifacts folder that holds it{hint}, or give the {what}'s id.")
    return Path(path)


def run_path(run_id_or_dir: str | os.PathLike, root: str | os.PathLike | None = None) -> Path:
    """The folder of a run given its id, or its path inside the workspace.

    Args:
        run_id_or_dir: a run id (a safe name, looked up in ``<root>/runs/``) or a path to the
            run folder (with a separator), which must resolve inside ``root``.
        root: the artifacts folder (default ``$CNMC_ARTIFACTS`` or ``./artifacts``).

    Raises:
        RunError: an unsafe id, a path outside the workspace, or no run there.
    """
    if _is_path(run_id_or_dir):
        path = inside_workspace(run_id_or_dir, root)
    else:
        name = check_name(os.fspath(run_id_or_dir), "run id", RunError)
        path = inside_workspace(runs_dir(root, create=False) / name, root)
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

    Raises:
        ConfigError: the artifacts folder is a file; RunError: the run folder cannot be created
            (a read-only workspace: the message says to make it writable or point elsewhere).
    """
    # created by make_unique_folder, whose error says the workspace must be writable
    base = runs_dir(root, create=False)
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


def history_text(run_dir: str | os.PathLike) -> str:
    """The finished lines of ``history.jsonl`` as text ("" when there is no file). The part
    after the last newline is being written (it may end inside a multi-byte character) and is
    left out.

    Raises:
        RunError: the finished lines are not UTF-8 text (a damaged file), naming it.
    """
    path = Path(run_dir) / HISTORY
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return ""
    done = data[:data.rfind(b"\n") + 1]
    try:
        return done.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RunError(f"{path} is not UTF-8 text (byte 0x{done[exc.start]:02x} at offset "
                       f"{exc.start}); the history is damaged: restore or delete the file.") from None


def read_history(run_dir: str | os.PathLike) -> pd.DataFrame:
    """``history.jsonl`` as a frame (:func:`history_text`); an unterminated last line (being
    written) and malformed lines are ignored, a missing file is an empty frame.

    Raises:
        RunError: the file is not UTF-8 text, naming it.
    """
    records = []
    for line in history_text(run_dir).split("\n"):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return pd.DataFrame.from_records(records)


def delete_run(run_dir: str | os.PathLike, *, actor=None) -> None:
    """Delete a finished run's folder; an active run must be cancelled first. ``actor`` (None:
    the local OS user) must be a trainer who launched the run, or an admin.

    Raises:
        AccessError: the actor may not delete this run. RunError: the run is still active.
    """
    import shutil

    from cnmc_core.auth.roles import owner_of, require

    run_dir = Path(run_dir)
    require(actor, "delete", owner=owner_of(run_dir), what=f"run {run_dir.name}")
    status = effective_status(run_dir)
    if status["state"] in ACTIVE_STATES:
        raise RunError(f"Run {run_dir.name} is {status['state']}; cancel it before deleting it.")
    shutil.rmtree(run_dir)


def resolve_member(ref: str | os.PathLike, runs_root: str | os.PathLike | None = None) -> Path:
    """The folder of a member given as a path, a run id or an ensemble id.

    A path (with a separator, or absolute) to a folder must resolve inside the workspace
    (symlinks followed); anything else must be a safe id found under ``<runs_root>/runs/`` or
    ``<runs_root>/ensembles/``, or directly under a given ``runs_root`` that is itself a runs
    folder (a folder with ``config.json``), and resolve inside the workspace too (a symlink
    there that points out is refused).

    Args:
        ref: the path or id.
        runs_root: the artifacts folder (default ``$CNMC_ARTIFACTS`` or ``./artifacts``).

    Raises:
        RunError: a path outside the workspace or not a folder, an unknown id.
        CnmcError: an unsafe id.
    """
    what = "run or ensemble"
    if _is_path(ref):
        return inside_workspace(ref, runs_root, what)
    name = check_name(os.fspath(ref), "run id")
    candidates = [runs_dir(runs_root, create=False) / name,
                  ensembles_dir(runs_root, create=False) / name]
    if runs_root is not None:  # a runs (or ensembles) folder given as the folder to look in
        candidates.append(artifacts_root(runs_root) / name)
    for cand in candidates:
        if cand.is_dir() and (cand.parent.name in ("runs", "ensembles") or (cand / CONFIG).is_file()):
            return inside_workspace(cand, runs_root, what)
    raise RunError(
        f"Run {os.fspath(ref)!r} not found: no run or ensemble of that id exists in "
        f"{', '.join(str(c.parent) for c in candidates)}."
    )
