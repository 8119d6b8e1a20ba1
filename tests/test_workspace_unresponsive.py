"""Runs whose process lives but does not beat (SIGSTOP): shown unresponsive, not failed; cancel
ends them and frees their slot; a final state is never rewritten by a resumed worker; the queue
ends a slot holder unresponsive past its limit (issue 12 item 20).

Real processes throughout: the ``worker`` verb waiting in the queue behind an earlier queued run
(so it never imports TensorFlow), and a small script that holds a queue slot as a worker does.
A stopped process cannot write, so the tests age its heartbeat by rewriting it instead of
waiting 20 s."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from run_fixtures import wait_until

from cnmc_core.contracts import UNRESPONSIVE
from cnmc_core.workspace.layout import create_run
from cnmc_core.workspace.listing import list_experiments
from cnmc_core.workspace.queue import cancel_run, launch_run
from cnmc_core.workspace.status import (
    effective_status,
    proc_start_time,
    process_alive,
    read_status,
    write_status,
)

REPO = Path(__file__).resolve().parent.parent


def _config():
    return {"name": "t", "model": "scratch_dd256", "stages": [{"name": "train", "epochs": 3}]}



def _live_in_group(pgid: int) -> list[int]:
    """The pids of the live (not zombie) processes of process group ``pgid``."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text[text.rfind(")") + 2:].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            out.append(int(stat.parent.name))
    return out


def _age_heartbeat(run: Path, seconds: float) -> None:
    write_status(run, heartbeat=time.time() - seconds)


@pytest.fixture
def waiting_worker(tmp_path):
    """A real worker (``python -m cnmc_core worker``) waiting in the queue behind an earlier
    queued run held by this test process; yields (run folder, worker pid); ends it after."""
    art = tmp_path / "art"
    blocker = create_run(_config(), art)
    write_status(blocker, pid=os.getpid(), pid_start=proc_start_time(os.getpid()))
    time.sleep(0.01)
    run = create_run(_config(), art)
    pid = launch_run(run, env={"CNMC_ARTIFACTS": str(art), "PYTHONPATH": str(REPO)})
    wait_until(lambda: read_status(run).get("pid_start") == proc_start_time(pid), 60, "the worker to start")
    first = read_status(run)["heartbeat"]
    wait_until(lambda: read_status(run)["heartbeat"] > first, 30, "the worker's heartbeat thread")
    yield run, pid
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def test_a_stopped_worker_is_unresponsive_and_cancel_ends_its_process_group(waiting_worker):
    run, pid = waiting_worker
    os.kill(pid, signal.SIGSTOP)
    _age_heartbeat(run, 100)
    status = effective_status(run)
    assert status["state"] == UNRESPONSIVE, status
    assert f"pid {pid}" in status["error"] and "stopped or hangs" in status["error"]
    assert read_status(run)["state"] == "queued"  # derived, never written
    assert list_experiments(run.parent.parent).set_index("run_id").loc[run.name, "state"] == UNRESPONSIVE

    status = cancel_run(run)
    assert status["state"] == "cancelled" and "its process was ended" in status["error"]
    assert not process_alive(pid)
    assert _live_in_group(pid) == []  # the whole group is gone (zombies wait for init)
    time.sleep(1.0)
    assert effective_status(run)["state"] == "cancelled"


def test_a_resumed_worker_never_rewrites_a_final_state(waiting_worker):
    """Marked failed while stopped (and not killed), the worker, once resumed, sees the final
    state before its next write, writes nothing and exits."""
    run, pid = waiting_worker
    os.kill(pid, signal.SIGSTOP)
    write_status(run, state="failed", error="marked failed while it was stopped")
    before = (run / "status.json").read_bytes()
    os.kill(pid, signal.SIGCONT)
    wait_until(lambda: not process_alive(pid), 30, "the resumed worker to exit")
    assert (run / "status.json").read_bytes() == before
    assert effective_status(run)["error"] == "marked failed while it was stopped"


# holds a queue slot as the worker does (heartbeat, then the slot, then running), until killed
_HOLDER = """
import os, sys, time
from cnmc_core.workspace.queue import queue_slot
from cnmc_core.workspace.status import Heartbeat, proc_start_time
beat = Heartbeat(sys.argv[1], interval=0.3)
beat.update(pid=os.getpid(), pid_start=proc_start_time(os.getpid()))
beat.start()
with queue_slot(sys.argv[1], max_parallel=1):
    beat.update(state="running", message="holding the slot")
    while True:
        time.sleep(0.1)
"""


def _holder(run: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _HOLDER, str(run)], start_new_session=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO)


def test_the_queue_ends_a_slot_holder_unresponsive_past_its_limit(tmp_path, monkeypatch):
    monkeypatch.delenv("CNMC_UNRESPONSIVE_LIMIT", raising=False)  # the documented 300 s
    first, second = create_run(_config(), tmp_path), create_run(_config(), tmp_path)
    holder = _holder(first)
    waiter = None
    try:
        wait_until(lambda: read_status(first)["state"] == "running", 60, "the first run to take the slot")
        holder.send_signal(signal.SIGSTOP)
        _age_heartbeat(first, 100)  # unresponsive, but under the limit: it keeps its slot
        waiter = _holder(second)
        wait_until(lambda: read_status(second).get("pid") == waiter.pid, 60, "the second run to wait")
        time.sleep(3.0)
        assert read_status(second)["state"] == "queued"
        assert effective_status(first)["state"] == UNRESPONSIVE and holder.poll() is None

        _age_heartbeat(first, 1000)  # past the limit: the waiting run ends it and takes the slot
        wait_until(lambda: read_status(second)["state"] == "running", 30, "the second run to get the slot")
        status = effective_status(first)
        assert status["state"] == "failed" and "over the queue's limit of 300 s" in status["error"]
        assert second.name in status["error"]
        assert holder.wait(10) == -signal.SIGKILL
    finally:
        for proc in (holder, waiter):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(10)


def _remote_run(tmp_path, heartbeat_age: float, pid: int):
    """A running run whose process is recorded on another host (a Ray node), as a worker there
    writes it: a pid that means nothing on this machine."""
    run = create_run(_config(), tmp_path / "runs")
    write_status(run, state="running", pid=pid, pid_start="1", host="ray-node-7",
                 heartbeat=time.time() - heartbeat_age)
    return run


@pytest.mark.parametrize("pid", [os.getpid(), 4_000_000], ids=["pid-alive-here", "pid-absent-here"])
def test_a_run_on_another_host_is_judged_by_its_heartbeat_alone(tmp_path, pid):
    run = _remote_run(tmp_path, heartbeat_age=2, pid=pid)
    assert effective_status(run)["state"] == "running"  # neither gone nor unresponsive here
    write_status(run, heartbeat=time.time() - 120)
    status = effective_status(run)
    assert status["state"] == "failed" and "from host ray-node-7" in status["error"]


def test_cancel_of_a_run_on_another_host_only_asks(tmp_path):
    run = _remote_run(tmp_path, heartbeat_age=1, pid=os.getpid())  # never signals this pid
    status = cancel_run(run)
    assert status["state"] == "running" and (run / "cancel.request").is_file()
    assert process_alive(os.getpid())


def test_a_worker_records_its_host(tmp_path):
    import socket

    from cnmc_core.workspace.status import process_fields

    fields = process_fields(os.getpid())
    assert fields == {"pid": os.getpid(), "pid_start": proc_start_time(os.getpid()),
                      "host": socket.gethostname()}
