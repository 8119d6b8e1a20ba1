"""The run store: run folders, their status, launching runs as detached processes, the queue.

A run is ``artifacts/runs/<run_id>/`` holding the files named in :data:`RUN_FILES`.
``status.json`` is replaced atomically. ``history.jsonl`` is appended in whole lines, each append
flushed and ``fsync``-ed (:func:`append_history`): a training run writes one line per epoch, as
the epoch ends; an ensemble search writes its GA generations in batches (at the end of each
restart and at least every second, see :mod:`cnmc_core.ensemble_job`). A reader ignores an
unterminated last line. A run whose process is gone, or whose
heartbeat is older than :data:`STALE_SECONDS`, is reported ``failed`` (its files are kept).
An ensemble search (``artifacts/ensembles/<id>/``) is tracked the same way: :class:`Heartbeat`
keeps its ``status.json`` fresh and :func:`effective_status` applies to it too.

The queue: a run's worker process takes one of ``max_parallel`` slot locks (``fcntl.flock`` on
``runs/.queue/slot-K.lock``) before training and holds it until it exits. The kernel releases
the lock when the process dies, even by SIGKILL, so a dead run never blocks the queue. Waiting
workers take slots in the order their runs were created.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import json
import os
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import pandas as pd

from .exceptions import CnmcError, RunError
from .fileio import _json_safe, atomic_write_json, check_name, read_json
from .workspace import runs_dir

__all__ = [
    "RUN_FILES",
    "STATES",
    "ACTIVE_STATES",
    "STALE_SECONDS",
    "HEARTBEAT_SECONDS",
    "create_run",
    "run_path",
    "read_status",
    "write_status",
    "effective_status",
    "read_history",
    "append_history",
    "Heartbeat",
    "error_text",
    "check_completed",
    "process_alive",
    "list_runs",
    "launch_run",
    "cancel_run",
    "cancel_requested",
    "queue_slot",
    "delete_run",
]

CONFIG, STATUS, HISTORY, PREDICTIONS, METRICS, MODEL, LOG = (
    "config.json", "status.json", "history.jsonl", "predictions.csv", "metrics.json", "model.keras", "log.txt")
RUN_FILES = (CONFIG, STATUS, HISTORY, PREDICTIONS, METRICS, MODEL, LOG)
CANCEL_FLAG = "cancel.request"
STATES = ("queued", "running", "completed", "failed", "cancelled")
ACTIVE_STATES = ("queued", "running")
STALE_SECONDS = 20.0
HEARTBEAT_SECONDS = 2.0
QUEUE_DIR = ".queue"


def _now() -> float:
    return time.time()


def _iso(ts: float | None) -> str:
    return _dt.datetime.fromtimestamp(ts).isoformat(timespec="seconds") if ts else ""


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


def _make_unique_folder(base: str | os.PathLike, name: str | Callable[[], str], what: str) -> Path:
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
    path = _make_unique_folder(
        base, lambda: f"{_dt.datetime.now(_dt.timezone.utc):%Y%m%d-%H%M%S}-{stem}-{secrets.token_hex(2)}",
        "run")
    run_id = path.name
    created = _now()
    atomic_write_json(path / CONFIG, {"run_id": run_id, "kind": kind, "created": created, **config})
    write_status(path, state="queued", created=created, pid=None, heartbeat=created,
                 epoch=0, epochs=sum(s.get("epochs", 0) for s in config.get("stages", [])),
                 stage=None, batch=0, batches=0, error=None, message="waiting in the queue")
    return path


def read_status(run_dir: str | os.PathLike) -> dict:
    """The raw ``status.json`` of a run (as written, without liveness checks)."""
    path = Path(run_dir) / STATUS
    if not path.is_file():
        raise RunError(f"{path} is missing; the folder is not a run or was damaged.")
    return read_json(path)


def write_status(run_dir: str | os.PathLike, **fields: Any) -> dict:
    """Merge ``fields`` into ``status.json`` and replace it atomically; returns the new status."""
    path = Path(run_dir) / STATUS
    status = read_json(path) if path.is_file() else {}
    status.update(fields)
    status["updated"] = _now()
    atomic_write_json(path, status)
    return status


def _proc_start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (guards against a reused pid), None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read().decode(errors="replace")
    except OSError:
        return None
    fields = data[data.rfind(")") + 2:].split()
    if fields and fields[0] == "Z":  # a zombie has exited
        return None
    return fields[19] if len(fields) > 19 else None


def process_alive(pid: int | None, start: str | None = None) -> bool:
    """Whether ``pid`` runs and, when ``start`` is given, is the same process as recorded."""
    if not pid:
        return False
    now_start = _proc_start_time(int(pid))
    if now_start is None:
        return False
    return start is None or now_start == start


def effective_status(run_dir: str | os.PathLike, stale_seconds: float = STALE_SECONDS) -> dict:
    """``status.json`` with liveness applied: an active run whose process is gone, or whose
    heartbeat is older than ``stale_seconds``, is reported ``failed`` with the reason."""
    status = read_status(run_dir)
    if status.get("state") in ACTIVE_STATES:
        pid, start = status.get("pid"), status.get("pid_start")
        age = _now() - float(status.get("heartbeat") or 0)
        what = "ensemble search" if status.get("kind") == "ensemble" else "run"
        if pid and not process_alive(pid, start):
            status.update(state="failed", error=status.get("error") or
                          f"the {what}'s process (pid {pid}) is gone: it was killed or crashed")
        elif age > stale_seconds and (pid or status.get("state") == "running"):
            status.update(state="failed",
                          error=f"no heartbeat for {age:.0f} s: the {what}'s process hangs or died")
        elif not pid and status.get("state") == "queued" and age > max(stale_seconds, 3600):
            status.update(state="failed", error="queued but never started")
    return status


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


def error_text(exc: BaseException) -> str:
    """The text a job's ``status.json`` records for an exception: a library error's message as
    it is, anything else prefixed with its type (``MemoryError: ...``, ``KeyboardInterrupt``)."""
    if isinstance(exc, CnmcError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class Heartbeat:
    """Writes a job's ``status.json`` and refreshes its ``heartbeat`` from a daemon thread.

    :meth:`update` merges fields into the status and writes it at once (state changes);
    :meth:`note` only merges them, and the next beat (every ``interval`` seconds) writes them, so a
    hot loop can report progress for the cost of a dict update. Every write carries all fields
    given so far. Used as a context manager, the thread runs inside the ``with`` block.
    :meth:`finish` stops the thread and writes the job's last state.

    The thread never dies of a bad write: any error is swallowed and the next beat tries again,
    and the first one is recorded in the status as ``heartbeat_error`` (written as soon as a
    write succeeds). A field that is not JSON is written as its text by the thread (an
    :meth:`update` with it raises). A ``status.json`` that is not a JSON object (damaged) is
    rewritten from the job's own fields, by the thread and by :meth:`update`.

    Args:
        run_dir: the run or ensemble folder.
        interval: seconds between beats (default :data:`HEARTBEAT_SECONDS`, well under
            :data:`STALE_SECONDS`).
    """

    def __init__(self, run_dir: str | os.PathLike, interval: float = HEARTBEAT_SECONDS):
        self.run_dir = Path(run_dir)
        self.interval = interval
        self.lock = threading.Lock()
        self.fields: dict = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _record_error(self, text: str) -> None:
        """Keep the first error in the fields (the lock is held)."""
        self.fields.setdefault("heartbeat_error", f"{time.strftime('%H:%M:%S')} {text}")

    def _write(self, lenient: bool = False) -> dict:
        """Merge the fields (and a fresh heartbeat) into ``status.json`` (the lock is held)."""
        path = self.run_dir / STATUS
        try:
            old = read_json(path) if path.is_file() else {}
            if not isinstance(old, dict):
                raise RunError(f"{path} holds {type(old).__name__}, not a JSON object")
        except ValueError as exc:  # CnmcError (not JSON), UnicodeDecodeError, not an object
            self._record_error(f"{STATUS} was damaged and was rewritten from the job's own "
                               f"fields ({exc})")
            old = {}
        now = _now()
        status = {**old, **self.fields, "heartbeat": now, "updated": now}
        try:
            atomic_write_json(path, status)
        except (TypeError, ValueError) as exc:  # a field that is not JSON
            if not lenient:
                raise
            self._record_error(f"a status field is not JSON ({type(exc).__name__}: {exc}); "
                               "it is written as text")
            self.fields = json.loads(json.dumps(_json_safe(self.fields), default=str))
            status = {**old, **self.fields, "heartbeat": now, "updated": now}
            atomic_write_json(path, status)
        return status

    def update(self, **fields: Any) -> dict:
        """Merge ``fields`` and write ``status.json`` now (with a fresh heartbeat)."""
        with self.lock:
            self.fields.update(fields)
            return self._write()

    def note(self, **fields: Any) -> None:
        """Merge ``fields``; the next beat writes them."""
        with self.lock:
            self.fields.update(fields)

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            with self.lock:
                try:
                    self._write(lenient=True)
                except Exception as exc:  # a full or read-only disk...: keep beating
                    self._record_error(f"could not write {STATUS}: {error_text(exc)}")

    def start(self) -> "Heartbeat":
        """Start the beating thread (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._beat, name=f"heartbeat {self.run_dir.name}",
                                            daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread; later writes come only from :meth:`update`."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def finish(self, exc: BaseException | None = None, *,
               cancelled: type[BaseException] | tuple[type[BaseException], ...] = KeyboardInterrupt,
               cancel_message: str = "interrupted", cancel_error: bool = True,
               on_write_error: Callable[[BaseException], Any] | None = None) -> dict | None:
        """Stop the thread and write the job's last state; returns the status written.

        - ``exc`` None: ``completed`` (message ``done``); a failed write raises.
        - ``exc`` an instance of ``cancelled``: ``cancelled`` with ``cancel_message``, and the
          exception's text (:func:`error_text`) as ``error`` unless ``cancel_error`` is False.
        - any other ``exc``: ``failed`` with :func:`error_text` as ``error`` (message ``failed``).

        Every state gets ``finished`` (epoch seconds). When recording a cancellation or failure
        cannot be written (a full disk...), the write's error goes to ``on_write_error`` (if
        given) and None is returned: the caller re-raises ``exc``, not the write's error; the
        heartbeat then goes stale and readers report the job ``failed``.
        """
        self.stop()
        if exc is None:
            return self.update(state="completed", finished=time.time(), message="done")
        if isinstance(exc, cancelled):
            fields = {"state": "cancelled", "message": cancel_message}
            if cancel_error:
                fields["error"] = error_text(exc)
        else:
            fields = {"state": "failed", "error": error_text(exc), "message": "failed"}
        try:
            with self.lock:
                self.fields.update(fields, finished=time.time())
                return self._write(lenient=True)
        except Exception as write_error:  # noqa: BLE001 - the job's own error matters more
            if on_write_error is not None:
                on_write_error(write_error)
            return None

    def __enter__(self) -> "Heartbeat":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def check_completed(path: str | os.PathLike, use: str = "used") -> dict:
    """The effective status of a run or ensemble folder that must be ``completed`` to be
    ``use``-d (``explained``, ``scored``...): an unfinished one (queued, running, failed,
    cancelled, or killed: liveness applies) raises with its state, its error or progress, and
    what to do.

    Raises:
        RunError: not completed, or an unreadable ``status.json``.
    """
    path = Path(path)
    try:
        config = read_json(path / CONFIG)
        kind = config.get("kind") if isinstance(config, dict) else None
    except (OSError, ValueError):
        kind = None
    try:
        status = effective_status(path)
        state = status.get("state")
    except (ValueError, AttributeError, TypeError) as exc:  # CnmcError included
        raise RunError(f"{path.name} cannot be {use}: its {STATUS} cannot be read ({exc}).") from None
    if state == "completed":
        return status
    what = "ensemble search" if (kind or status.get("kind")) == "ensemble" else "run"
    detail = status.get("error") if state not in ACTIVE_STATES else status.get("message")
    text = f"The {what} {path.name} is {state}" + (f" ({detail})" if detail else "")
    text += f", not completed: it cannot be {use}. "
    if state in ACTIVE_STATES:
        text += (f"Wait for the {what} to finish (`python -m cnmc_core runs` shows its progress) "
                 "and try again.")
    else:
        again = "run the search again (`python -m cnmc_core ensemble ...`)" if what != "run" \
            else "train it again"
        text += f"Pick a completed {'ensemble' if what != 'run' else 'run'} or {again}."
    raise RunError(text)


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


def _iter_run_dirs(root: str | os.PathLike | None) -> Iterator[Path]:
    base = runs_dir(root)
    for path in sorted(base.iterdir()):
        if path.is_dir() and not path.name.startswith(".") and (path / CONFIG).is_file():
            yield path


def list_runs(root: str | os.PathLike | None = None) -> pd.DataFrame:
    """One row per run: id, state, preset, model, protocol, progress, key metrics with CIs.

    A damaged run folder is listed with state ``failed`` and the reason, never skipped silently.
    """
    rows = []
    for path in _iter_run_dirs(root):
        row: dict[str, Any] = {"run_id": path.name, "path": str(path)}
        try:
            config = read_json(path / CONFIG)
            status = effective_status(path)
        except Exception as exc:  # a damaged folder is shown as such
            row.update(state="failed", error=str(exc))
            rows.append(row)
            continue
        row.update(
            state=status.get("state"), preset=config.get("name"), model=config.get("model"),
            protocol=config.get("split_protocol"), seed=config.get("seed"),
            image_size=config.get("image_size"), created=_iso(config.get("created")),
            epoch=status.get("epoch"), epochs=status.get("epochs"), error=status.get("error"),
        )
        metrics_path = path / METRICS
        if metrics_path.is_file():
            try:
                metrics = read_json(metrics_path)
            except Exception:
                metrics = {}
            for split in ("val", "test"):
                report = metrics.get(split) or {}
                row[f"{split}_weighted_f1"] = report.get("weighted_f1")
                ci = (report.get("ci") or {}).get("weighted_f1") or {}
                row[f"{split}_f1_low"], row[f"{split}_f1_high"] = ci.get("low"), ci.get("high")
                row[f"{split}_auc"] = report.get("roc_auc")
        rows.append(row)
    columns = ["run_id", "state", "preset", "model", "protocol", "seed", "image_size", "created",
               "epoch", "epochs", "val_weighted_f1", "val_f1_low", "val_f1_high", "val_auc",
               "test_weighted_f1", "test_f1_low", "test_f1_high", "test_auc", "error", "path"]
    frame = pd.DataFrame(rows)
    for column in columns:
        if column not in frame.columns:
            frame[column] = None
    return frame[columns]


def launch_run(run_dir: str | os.PathLike, env: dict | None = None) -> int:
    """Start the run's worker as a detached process (own session: it outlives the caller).

    The worker waits for a queue slot, trains and writes the run folder. Its output goes to
    ``log.txt``. Returns the pid.
    """
    run_dir = Path(run_dir)
    log = open(run_dir / LOG, "ab")
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cnmc_core", "worker", str(run_dir.resolve())],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, cwd=os.getcwd(),
            # the worker's caches live in the artifacts folder that holds this run
            env={**os.environ, "CNMC_ARTIFACTS": str(run_dir.resolve().parent.parent), **(env or {})},
        )
    finally:
        log.close()
    status = read_status(run_dir)
    if status.get("pid") is None:  # the worker may already have written its own
        write_status(run_dir, pid=proc.pid, pid_start=_proc_start_time(proc.pid), heartbeat=_now())
    return proc.pid


def cancel_run(run_dir: str | os.PathLike) -> dict:
    """Ask a run to stop: it finishes its current batch and is marked ``cancelled``.

    A run whose process is already gone is marked ``cancelled`` (if it had not finished) at once.
    Returns the status after the request.
    """
    run_dir = Path(run_dir)
    status = effective_status(run_dir)
    if status["state"] not in ACTIVE_STATES:
        raise RunError(f"Run {run_dir.name} is {status['state']}; only queued or running runs can be cancelled.")
    (run_dir / CANCEL_FLAG).write_text(str(_now()))
    if not process_alive(status.get("pid"), status.get("pid_start")):
        return write_status(run_dir, state="cancelled", message="cancelled before it started")
    return read_status(run_dir)


def cancel_requested(run_dir: str | os.PathLike) -> bool:
    """Whether :func:`cancel_run` was called for this run."""
    return (Path(run_dir) / CANCEL_FLAG).exists()


def delete_run(run_dir: str | os.PathLike) -> None:
    """Delete a finished run's folder; an active run must be cancelled first."""
    import shutil

    run_dir = Path(run_dir)
    status = effective_status(run_dir)
    if status["state"] in ACTIVE_STATES:
        raise RunError(f"Run {run_dir.name} is {status['state']}; cancel it before deleting it.")
    shutil.rmtree(run_dir)


class queue_slot:
    """Context manager that waits for one of ``max_parallel`` run slots, in creation order.

    While waiting it calls ``on_wait()`` about once a second (the worker refreshes its heartbeat
    there and raises to give up, e.g. when cancelled), and ``on_next()`` once, when this run is
    the next in line but every slot is still busy (the worker imports TensorFlow there, so that
    the import overlaps the running run instead of following it; runs further back in the queue
    stay light).
    """

    def __init__(self, run_dir: str | os.PathLike, max_parallel: int | None = None, on_wait=None,
                 on_next=None):
        self.run_dir = Path(run_dir)
        self.base = self.run_dir.parent / QUEUE_DIR
        self.max_parallel = max_parallel or int(os.environ.get("CNMC_MAX_PARALLEL_RUNS", "1"))
        self.on_wait = on_wait
        self.on_next = on_next
        self._fh = None

    def _my_turn(self) -> bool:
        """No live queued run was created before this one."""
        me = read_json(self.run_dir / CONFIG).get("created", 0)
        for path in self.run_dir.parent.iterdir():
            if path == self.run_dir or not (path / STATUS).is_file():
                continue
            try:
                status = read_status(path)
                created = read_json(path / CONFIG).get("created", 0)
            except Exception:
                continue
            if (status.get("state") == "queued" and (created, path.name) < (me, self.run_dir.name)
                    and process_alive(status.get("pid"), status.get("pid_start"))
                    and not cancel_requested(path)):
                return False
        return True

    def __enter__(self) -> "queue_slot":
        self.base.mkdir(exist_ok=True)
        while True:
            if self._my_turn():
                for k in range(self.max_parallel):
                    fh = open(self.base / f"slot-{k}.lock", "a+")
                    try:
                        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        fh.close()
                        continue
                    self._fh = fh
                    return self
                if self.on_next is not None:
                    on_next, self.on_next = self.on_next, None
                    on_next()
            if self.on_wait is not None:
                self.on_wait()
            time.sleep(1.0)

    def __exit__(self, *exc) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None

