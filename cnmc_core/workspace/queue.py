"""The queue: launching runs as detached worker processes, queue slots, cancelling.

A run's worker process takes one of ``max_parallel`` slot locks (``fcntl.flock`` on
``runs/.queue/slot-K.lock``, which names the run holding it) before training and holds it until it
exits. The kernel releases the lock when the process dies, even by SIGKILL, so a dead run never
blocks the queue. Waiting workers take slots in the order their runs were created.

A run whose process lives but does not beat (stopped by SIGSTOP, or hung) is ``unresponsive``;
it keeps its slot, so while every slot is busy a waiting worker ends a slot holder that has been
unresponsive for more than :data:`UNRESPONSIVE_LIMIT` seconds (its process group is killed, it
is marked ``failed`` with the reason) and takes the slot. ``cancel`` ends an unresponsive run at
once. Workers run in a session (and process group) of their own, so ending one ends its children.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from cnmc_core.contracts import ACTIVE_STATES, CANCEL_FLAG, CONFIG, LOG, STATUS, UNRESPONSIVE
from cnmc_core.exceptions import RunError
from cnmc_core.workspace.fileio import read_json
from cnmc_core.workspace.status import (
    effective_status,
    on_this_host,
    process_alive,
    process_fields,
    read_status,
    wall_time,
    write_status,
)

__all__ = ["QUEUE_DIR", "WORKER_ENV", "UNRESPONSIVE_LIMIT", "unresponsive_limit", "CancelledError",
           "spawn_detached", "launch_run", "end_process", "cancel_run", "cancel_requested",
           "queue_slot"]

QUEUE_DIR = ".queue"
#: Seconds a slot holder may be unresponsive (no heartbeat, live process) before a run waiting
#: for its slot ends it; ``$CNMC_UNRESPONSIVE_LIMIT`` overrides it. Well above the 20 s after
#: which a run shows unresponsive, so that a machine that stalls for a minute ends nothing.
UNRESPONSIVE_LIMIT = 300.0


def unresponsive_limit() -> float:
    """:data:`UNRESPONSIVE_LIMIT`, or ``$CNMC_UNRESPONSIVE_LIMIT`` where set to a number > 0."""
    try:
        value = float(os.environ.get("CNMC_UNRESPONSIVE_LIMIT", UNRESPONSIVE_LIMIT))
    except ValueError:
        return UNRESPONSIVE_LIMIT
    return value if value > 0 and value == value else UNRESPONSIVE_LIMIT
#: Set in every worker's environment. TF_CPP_MIN_LOG_LEVEL=3 keeps TensorFlow's C++ errors that
#: are not ours out of log.txt (``E0000 ... NodeDef mentions attribute use_unbounded_threadpool``
#: at the first training step, still printed at level 2); its start-up lines, printed before
#: any level applies, are filtered where TensorFlow is imported (training.loop).
WORKER_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3"}


class CancelledError(Exception):
    """A queued or running job was cancelled by the user (raised where it stops)."""


# Run by a short-lived intermediate process: it starts the job in a session of its own and exits,
# so the job is re-parented to init, which reaps it. Started directly, a finished job stays a
# <defunct> zombie under its parent (the Streamlit server) until the parent exits.
_SPAWN = """
import json, subprocess, sys
argv, log, cwd = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
with open(log, "ab") as fh:
    proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True, cwd=cwd)
print(proc.pid)
"""


def spawn_detached(argv: list[str], log: str | os.PathLike, env: dict | None = None) -> int:
    """Start ``argv`` as a detached process: its own session (it outlives the caller, closing a
    terminal or a browser does not stop it), output appended to ``log``, and no zombie left
    under the caller when it ends (it is started through an intermediate that exits at once).

    Returns:
        The pid of the detached process.

    Raises:
        RunError: the process could not be started (the intermediate's error is given).
    """
    out = subprocess.run([sys.executable, "-c", _SPAWN, json.dumps([str(a) for a in argv]),
                          str(log), os.getcwd()], capture_output=True, text=True,
                         env={**os.environ, **(env or {})}, timeout=60)
    if out.returncode != 0 or not out.stdout.strip().isdigit():
        raise RunError(f"Could not start {argv[:4]}...: {out.stderr.strip()[-500:]}")
    return int(out.stdout.strip())


def launch_run(run_dir: str | os.PathLike, env: dict | None = None) -> int:
    """Start the run's worker as a detached process (own session: it outlives the caller).

    The worker waits for a queue slot, trains and writes the run folder. Its output goes to
    ``log.txt``. Returns the pid.
    """
    run_dir = Path(run_dir)
    # the worker's caches live in the artifacts folder that holds this run
    pid = spawn_detached([sys.executable, "-m", "cnmc_core", "worker", str(run_dir.resolve())],
                         run_dir / LOG, env={**WORKER_ENV,
                                             "CNMC_ARTIFACTS": str(run_dir.resolve().parent.parent),
                                             **(env or {})})
    status = read_status(run_dir)
    if status.get("pid") is None:  # the worker may already have written its own
        write_status(run_dir, **process_fields(pid), heartbeat=wall_time())
    return pid


def end_process(pid: int, start: str | None = None, timeout: float = 10.0) -> bool:
    """End a job's process with SIGKILL (also when stopped), with its whole process group when
    it leads one (a detached worker does: its children go too; a job started in a terminal
    does not, and only it is killed). Waits up to ``timeout`` s for it to be gone.

    Returns:
        Whether the process is gone.

    Raises:
        RunError: the process belongs to another user (permission denied).
    """
    if not process_alive(pid, start):
        return True
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return True
    except PermissionError:
        raise RunError(f"The process {pid} cannot be ended: it belongs to another user. End it as "
                       "that user (kill -9).") from None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process_alive(pid, start):
            return True
        time.sleep(0.05)
    return False


def _end_unresponsive(run_dir: Path, status: dict, state: str, reason: str) -> dict:
    """Kill an unresponsive job's process, then record ``state`` with ``reason``: the kill comes
    first, so that the job cannot write after its final state (it also checks before writing)."""
    if not end_process(status.get("pid"), status.get("pid_start")):
        raise RunError(f"Run {run_dir.name}: its process {status.get('pid')} did not end after "
                       "SIGKILL; try again, or end it by hand (kill -9).")
    return write_status(run_dir, state=state, message=state, error=reason, finished=wall_time())


def cancel_run(run_dir: str | os.PathLike, *, actor=None) -> dict:
    """Ask a run to stop: it finishes its current batch and is marked ``cancelled``.

    A run whose process runs on another host (a Ray node) gets only the request, which it reads
    at its next batch. A run whose process is already gone is marked ``cancelled`` (if it had not finished) at once.
    An ``unresponsive`` one (live process, no heartbeat: stopped or hung) cannot react to the
    request: its process group is killed, which frees its queue slot, and it is marked
    ``cancelled``. ``actor`` (None: the local OS user) must be a trainer who launched the run,
    or an admin. Returns the status after the request.

    Raises:
        AccessError: the actor may not cancel this run (nothing is changed). RunError: the run
        is not queued, running or unresponsive.
    """
    from cnmc_core.auth.roles import owner_of, require

    run_dir = Path(run_dir)
    require(actor, "cancel", owner=owner_of(run_dir), what=f"run {run_dir.name}")
    status = effective_status(run_dir)
    if status["state"] not in ACTIVE_STATES:
        raise RunError(f"Run {run_dir.name} is {status['state']}; only queued, running or "
                       "unresponsive runs can be cancelled.")
    (run_dir / CANCEL_FLAG).write_text(str(wall_time()))
    if not on_this_host(status):  # a Ray node's process: the flag (and the study's ray.cancel)
        return read_status(run_dir)
    if status["state"] == UNRESPONSIVE:
        return _end_unresponsive(
            run_dir, status, "cancelled", f"cancelled by the user while unresponsive (no "
            f"heartbeat for {status.get('heartbeat_age', 0):.0f} s): its process was ended")
    if not process_alive(status.get("pid"), status.get("pid_start")):
        return write_status(run_dir, state="cancelled", message="cancelled before it started")
    return read_status(run_dir)


def cancel_requested(run_dir: str | os.PathLike) -> bool:
    """Whether :func:`cancel_run` was called for this run."""
    return (Path(run_dir) / CANCEL_FLAG).exists()


class queue_slot:
    """Context manager that waits for one of ``max_parallel`` run slots, in creation order.

    While waiting it calls ``on_wait()`` about once a second (the worker refreshes its heartbeat
    there and raises to give up, e.g. when cancelled), and ``on_next()`` once, when this run is
    the next in line but every slot is still busy (the worker imports TensorFlow there, so that
    the import overlaps the running run instead of following it; runs further back in the queue
    stay light). While every slot is busy it ends a slot holder that is unresponsive past
    :func:`unresponsive_limit` (see the module's docstring).
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

    def _slot_holders(self) -> list[Path]:
        """The run folders named in the slot lock files (what holds each slot, or held it)."""
        out = []
        for k in range(self.max_parallel):
            try:
                name = json.loads((self.base / f"slot-{k}.lock").read_text() or "{}").get("run")
            except (OSError, ValueError, AttributeError):
                continue
            if isinstance(name, str) and name and "/" not in name and name not in (".", ".."):
                out.append(self.run_dir.parent / name)
        return out

    def _end_unresponsive_holders(self) -> None:
        """End each slot holder unresponsive for more than :func:`unresponsive_limit` s: its
        process group is killed (the kernel frees its slot) and it is marked ``failed``."""
        limit = unresponsive_limit()
        for holder in self._slot_holders():
            if holder == self.run_dir:
                continue
            try:
                status = effective_status(holder)
            except (OSError, ValueError):  # a damaged holder: its lock says whether it lives
                continue
            if status.get("state") == UNRESPONSIVE and status.get("heartbeat_age", 0) > limit:
                try:
                    _end_unresponsive(holder, status, "failed", (
                        f"unresponsive for {status['heartbeat_age']:.0f} s (no heartbeat, the "
                        f"process lived: stopped or hung), over the queue's limit of {limit:.0f} s; "
                        f"ended to free its queue slot for {self.run_dir.name}"))
                except RunError:
                    continue

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
                    fh.truncate(0)  # name the holder (append mode: the write lands at 0)
                    fh.write(json.dumps({"run": self.run_dir.name, "pid": os.getpid()}))
                    fh.flush()
                    self._fh = fh
                    return self
                self._end_unresponsive_holders()
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
