"""A job's ``status.json`` (runs and ensemble searches alike): reading and writing it, liveness,
the heartbeat thread, and the check that a folder is completed before it is used.

``status.json`` is replaced atomically. A run whose process is gone is reported ``failed`` (its
files are kept) by :func:`effective_status`, one whose process lives but whose heartbeat is older
than :data:`STALE_SECONDS` ``unresponsive``; :class:`Heartbeat` keeps the status of a live job
fresh, and never writes over a final state (a job ended by ``cancel`` or the queue stays ended).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any, Callable

from cnmc_core.contracts import ACTIVE_STATES, CONFIG, FINAL_STATES, STATES, STATUS, UNRESPONSIVE
from cnmc_core.exceptions import CnmcError, RunError
from cnmc_core.workspace.fileio import (
    atomic_write_json,
    json_kind,
    json_safe,
    read_json,
)

__all__ = [
    "STALE_SECONDS",
    "HEARTBEAT_SECONDS",
    "wall_time",
    "NUMERIC_STATUS_FIELDS",
    "check_status",
    "read_status",
    "write_status",
    "proc_start_time",
    "process_fields",
    "on_this_host",
    "process_alive",
    "apply_liveness",
    "effective_status",
    "error_text",
    "JobEnded",
    "Heartbeat",
    "check_completed",
]

STALE_SECONDS = 20.0
HEARTBEAT_SECONDS = 2.0


def wall_time() -> float:
    return time.time()


#: Fields of ``status.json`` that must be numbers (or null) for liveness and progress to work.
NUMERIC_STATUS_FIELDS = ("heartbeat", "created", "updated", "pid", "epoch", "epochs")


def check_status(status: Any, path: str | os.PathLike) -> dict:
    """``status`` (the parsed ``status.json`` at ``path``) if it has the shape every reader relies
    on: a JSON object whose ``state`` is one of :data:`~cnmc_core.contracts.STATES` and whose
    :data:`NUMERIC_STATUS_FIELDS` are numbers or null.

    Raises:
        RunError: naming the file, the field, what it holds and what to do.
    """
    fix = "the file is damaged: restore it, or delete the folder"
    if not isinstance(status, dict):
        raise RunError(f"{path} holds {json_kind(status)}, not a JSON object; {fix}.")
    if status.get("state") not in STATES:
        raise RunError(f"{path}: state must be one of {list(STATES)}; got "
                       f"{status.get('state')!r}; {fix}.")
    for key in NUMERIC_STATUS_FIELDS:
        value = status.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise RunError(f"{path}: {key} must be a number or null; got {value!r}; {fix}.")
    return status


def read_status(run_dir: str | os.PathLike) -> dict:
    """The raw ``status.json`` of a run or ensemble search (as written, without liveness
    checks), checked by :func:`check_status`.

    Raises:
        RunError: the file is missing, not UTF-8, not JSON, or not a valid status.
    """
    path = Path(run_dir) / STATUS
    try:
        status = read_json(path, expect=dict, error=RunError)
    except FileNotFoundError:
        raise RunError(f"{path} is missing; the folder is not a run or was damaged.") from None
    except OSError as exc:
        raise RunError(f"{path} cannot be read ({exc.strerror or exc}).") from None
    return check_status(status, path)


def write_status(run_dir: str | os.PathLike, **fields: Any) -> dict:
    """Merge ``fields`` into ``status.json`` and replace it atomically; returns the new status."""
    path = Path(run_dir) / STATUS
    status = read_json(path) if path.is_file() else {}
    status.update(fields)
    status["updated"] = wall_time()
    atomic_write_json(path, status)
    return status


def proc_start_time(pid: int) -> str | None:
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


def process_fields(pid: int) -> dict:
    """What ``status.json`` records of the process that runs a job: ``pid``, its kernel start
    time ``pid_start`` and the ``host`` it runs on (a study on a Ray cluster runs jobs on other
    machines, whose processes cannot be checked from this one)."""
    return {"pid": pid, "pid_start": proc_start_time(pid), "host": socket.gethostname()}


def on_this_host(status: dict) -> bool:
    """Whether the job's process runs on this machine (also when no host was recorded: jobs
    from before hosts were recorded ran where they were launched)."""
    host = status.get("host")
    return host is None or host == socket.gethostname()


def process_alive(pid: int | None, start: str | None = None) -> bool:
    """Whether ``pid`` runs and, when ``start`` is given, is the same process as recorded."""
    if not pid:
        return False
    now_start = proc_start_time(int(pid))
    if now_start is None:
        return False
    return start is None or now_start == start


def apply_liveness(status: dict, stale_seconds: float = STALE_SECONDS) -> dict:
    """A checked status (:func:`read_status`) with liveness applied, in place; returns it.

    A queued or running job whose process is gone becomes ``failed`` (it cannot come back). One
    whose process lives but whose heartbeat is older than ``stale_seconds`` becomes
    :data:`~cnmc_core.contracts.UNRESPONSIVE` (stopped or hung: not failed, it may resume; cancel
    ends it), with ``heartbeat_age`` in seconds. A running job without a process id and a stale
    heartbeat is ``failed``; a queued one that never started within an hour too. A job whose
    process runs on another host (:func:`on_this_host`: a Ray node) is judged by its heartbeat
    alone: ``failed`` once it is older than ``stale_seconds``."""
    if status.get("state") in ("queued", "running"):
        pid, start = status.get("pid"), status.get("pid_start")
        age = wall_time() - float(status.get("heartbeat") or 0)
        what = "ensemble search" if status.get("kind") == "ensemble" else "run"
        if pid and not on_this_host(status):
            # another machine's process (a Ray node): only its heartbeat tells
            if age > stale_seconds:
                status.update(state="failed", error=f"no heartbeat for {age:.0f} s from host "
                              f"{status['host']}: its node or process died or hangs (its process "
                              "cannot be checked from here)")
        elif pid and not process_alive(pid, start):
            status.update(state="failed", error=status.get("error") or
                          f"the {what}'s process (pid {pid}) is gone: it was killed or crashed")
        elif age > stale_seconds and pid:
            end = "cancel it to end it" if what == "run" else f"end it with `kill -9 {pid}`"
            status.update(state=UNRESPONSIVE, heartbeat_age=age, was=status.get("state"),
                          error=f"no heartbeat for {age:.0f} s, but the {what}'s process (pid "
                                f"{pid}) lives: it is stopped or hangs; {end}")
        elif age > stale_seconds and status.get("state") == "running":
            status.update(state="failed",
                          error=f"no heartbeat for {age:.0f} s: the {what}'s process hangs or died")
        elif not pid and status.get("state") == "queued" and age > max(stale_seconds, 3600):
            status.update(state="failed", error="queued but never started")
    return status


def effective_status(run_dir: str | os.PathLike, stale_seconds: float = STALE_SECONDS) -> dict:
    """``status.json`` with liveness applied (:func:`apply_liveness`): an active run whose
    process is gone is reported ``failed`` with the reason, one whose process lives but whose
    heartbeat is older than ``stale_seconds`` ``unresponsive``.

    Raises:
        RunError: ``status.json`` is missing or damaged (:func:`read_status`), e.g. a heartbeat
            that is not a number.
    """
    return apply_liveness(read_status(run_dir), stale_seconds)


def error_text(exc: BaseException) -> str:
    """The text a job's ``status.json`` records for an exception: a library error's message as
    it is, anything else prefixed with its type (``MemoryError: ...``, ``KeyboardInterrupt``)."""
    if isinstance(exc, CnmcError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class JobEnded(RunError):
    """The job's ``status.json`` already holds a final state written by someone else (``cancel``
    or the queue ended it while it was stopped): the job must stop without writing."""


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

    Before every write the file is read: when it already holds a final state (``completed``,
    ``failed``, ``cancelled``: the job was ended while it was stopped, e.g. by ``cancel``), nothing
    is written, the thread stops, :meth:`update` raises :class:`JobEnded` and :meth:`finish`
    returns that state as it is. A job shown failed or cancelled never comes back.

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
        #: the final status found on disk (the job was ended by someone else), else None
        self.ended: dict | None = None

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
        if old.get("state") in FINAL_STATES:
            self.ended = old
            self._stop.set()
            raise JobEnded(f"{path} already reads {old['state']} ({old.get('error') or old.get('message') or 'no reason given'}): "
                           "the job was ended by someone else and stops without writing")
        now = wall_time()
        status = {**old, **self.fields, "heartbeat": now, "updated": now}
        try:
            atomic_write_json(path, status)
        except (TypeError, ValueError) as exc:  # a field that is not JSON
            if not lenient:
                raise
            self._record_error(f"a status field is not JSON ({type(exc).__name__}: {exc}); "
                               "it is written as text")
            self.fields = json.loads(json.dumps(json_safe(self.fields), default=str))
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
                except JobEnded:
                    return
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
        heartbeat then goes stale and readers report the job ``failed``. A final state already in
        the file (the job was ended by ``cancel`` or the queue) is returned as it is, unwritten.
        """
        self.stop()
        if self.ended is not None or isinstance(exc, JobEnded):
            return self.ended
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
        except JobEnded:
            return self.ended
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
    detail = status.get("error") if state not in ("queued", "running") else status.get("message")
    text = f"The {what} {path.name} is {state}" + (f" ({detail})" if detail else "")
    text += f", not completed: it cannot be {use}. "
    if state == UNRESPONSIVE:
        text += (f"Cancel it (`python -m cnmc_core cancel {path.name}` ends its process) and "
                 "train it again, or resume its process if you stopped it.")
    elif state in ACTIVE_STATES:
        text += (f"Wait for the {what} to finish (`python -m cnmc_core runs` shows its progress) "
                 "and try again.")
    else:
        again = "run the search again (`python -m cnmc_core ensemble ...`)" if what != "run" \
            else "train it again"
        text += f"Pick a completed {'ensemble' if what != 'run' else 'run'} or {again}."
    raise RunError(text)
