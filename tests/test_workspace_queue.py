"""The run store: ids, status, history, the queue, cancel, and killed runs detected as failed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from run_fixtures import wait_until
from conftest import make_kaggle_tree

from cnmc_core.exceptions import RunError
from cnmc_core.training.config import resolve_config
from cnmc_core.workspace.fileio import check_name
from cnmc_core.workspace.layout import (
    append_history,
    create_run,
    read_history,
    run_path,
)
from cnmc_core.workspace.listing import list_experiments
from cnmc_core.workspace.queue import cancel_run, launch_run
from cnmc_core.workspace.status import effective_status, read_status, write_status


def _config(**extra):
    return {"name": "t", "model": "scratch_dd256", "stages": [{"name": "train", "epochs": 3}], **extra}


def test_concurrent_creates_get_distinct_folders(tmp_path):
    made = []
    threads = [threading.Thread(target=lambda: made.append(create_run(_config(), tmp_path))) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(made)) == 16 and all((p / "config.json").is_file() for p in made)
    assert all(read_status(p)["state"] == "queued" for p in made)


def test_history_ignores_an_unterminated_last_line(tmp_path):
    run = create_run(_config(), tmp_path)
    append_history(run, {"epoch": 1, "loss": 0.5})
    append_history(run, {"epoch": 2, "loss": 0.4})
    with open(run / "history.jsonl", "a") as fh:
        fh.write('{"epoch": 3, "lo')
    history = read_history(run)
    assert list(history["epoch"]) == [1, 2]


def test_dead_process_is_failed_and_a_stale_live_one_unresponsive(tmp_path):
    run = create_run(_config(), tmp_path)
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    write_status(run, state="running", pid=proc.pid, heartbeat=time.time())
    status = effective_status(run)
    assert status["state"] == "failed" and "is gone" in status["error"]
    write_status(run, state="running", pid=os.getpid(), pid_start=None, heartbeat=time.time() - 100)
    status = effective_status(run)  # a live process without a heartbeat is not failed
    assert status["state"] == "unresponsive" and "no heartbeat for 100 s" in status["error"]
    write_status(run, state="running", pid=None, heartbeat=time.time() - 100)
    status = effective_status(run)
    assert status["state"] == "failed" and "no heartbeat for 100 s" in status["error"]
    assert read_status(run)["state"] == "running"  # the file itself is left as the run wrote it
    assert list_experiments(tmp_path).loc[0, "state"] == "failed"


@pytest.mark.parametrize("bad", ["..", "../x", "/etc", "a/b", "", ".hidden", "x" * 200, "a b", "a\x00b"])
def test_run_ids_cannot_escape(tmp_path, bad):
    with pytest.raises(RunError, match="Invalid run id|No run at"):
        run_path(bad, tmp_path) if "/" not in bad else check_name(bad, "run id", RunError)


def test_damaged_run_folder_is_listed_as_damaged(tmp_path):
    run = create_run(_config(), tmp_path)
    (run / "status.json").write_text("{not json")
    frame = list_experiments(tmp_path)
    assert frame.loc[0, "state"] == "damaged" and "not valid JSON" in frame.loc[0, "error"]



def test_queue_cancel_and_kill(tmp_path):
    """One run trains; a second waits in the queue (limit 1) and is cancelled there; the first is
    killed with SIGKILL and shows failed with its history; a third run then gets the slot."""
    data = tmp_path / "data"
    make_kaggle_tree(data, n_all=6, n_hem=6, per_subject=6)
    art = tmp_path / "art"
    # many epochs: the run is still training when it is killed
    config = resolve_config("demo_scratch", data=str(data), epochs=200, sets=["batch_size=4", "patience=500"])
    env = {"CNMC_ARTIFACTS": str(art), "CNMC_MAX_PARALLEL_RUNS": "1"}
    first = create_run(config, art)
    second = create_run(config, art)
    launch_run(first, env=env)
    launch_run(second, env=env)
    wait_until(lambda: read_history(first).shape[0] >= 1, 120, "the first run's first epoch")
    assert effective_status(first)["state"] == "running"
    assert effective_status(second)["state"] == "queued"  # the queue runs one at a time

    cancel_run(second)
    wait_until(lambda: read_status(second)["state"] == "cancelled", 30, "the queued run to be cancelled")

    pid = read_status(first)["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: effective_status(first)["state"] == "failed", 30, "the killed run to show failed")
    assert "gone" in effective_status(first)["error"]
    assert read_history(first).shape[0] >= 1  # the history up to the last finished epoch is kept

    third = create_run(config, art)
    launch_run(third, env=env)
    wait_until(lambda: read_status(third)["state"] == "running", 90, "a new run to start after the kill")
    cancel_run(third)
    wait_until(lambda: read_status(third)["state"] == "cancelled", 60, "the running run to be cancelled")
    assert "cancelled" in (third / "log.txt").read_text()
    with pytest.raises(RunError, match="only queued, running or unresponsive runs can be cancelled"):
        cancel_run(third)


_SLOT_SCRIPT = """
import sys, time
from cnmc_core.workspace.queue import queue_slot
run_dir, log = sys.argv[1], sys.argv[2]
with queue_slot(run_dir, max_parallel=2):
    with open(log, "a") as fh:
        fh.write(f"enter {time.time()}\\n")
    time.sleep(1.0)
    with open(log, "a") as fh:
        fh.write(f"exit {time.time()}\\n")
"""


def test_queue_never_runs_more_than_its_limit(tmp_path):
    log = tmp_path / "slots.log"
    runs = [create_run(_config(), tmp_path) for _ in range(5)]
    procs = [subprocess.Popen([sys.executable, "-c", _SLOT_SCRIPT, str(r), str(log)]) for r in runs]
    for p in procs:
        assert p.wait(timeout=60) == 0
    events = sorted((float(t), kind) for kind, t in (line.split() for line in log.read_text().splitlines()))
    active, most = 0, 0
    for _, kind in sorted(events, key=lambda e: (e[0], e[1] == "enter")):  # exits first on ties
        active += 1 if kind == "enter" else -1
        most = max(most, active)
    assert most == 2 and len(events) == 10


def test_queue_calls_on_next_once_for_the_next_run_only(tmp_path):
    """The run next in line is told once (the worker imports TensorFlow then); runs further
    back are not, until they are next."""
    from cnmc_core.workspace.queue import queue_slot
    from cnmc_core.workspace.status import proc_start_time, write_status

    runs = []
    for _ in range(3):
        run = create_run(_config(), tmp_path)
        write_status(run, pid=os.getpid(), pid_start=proc_start_time(os.getpid()))
        runs.append(run)
        time.sleep(0.01)  # distinct creation times: the queue order is a, b, c
    calls: list[str] = []
    entered: dict[str, threading.Event] = {r.name: threading.Event() for r in runs}
    release: dict[str, threading.Event] = {r.name: threading.Event() for r in runs}

    def worker(run):
        with queue_slot(run, max_parallel=1, on_next=lambda: calls.append(run.name)):
            write_status(run, state="running")
            entered[run.name].set()
            release[run.name].wait(20)
        write_status(run, state="completed")

    threads = [threading.Thread(target=worker, args=(r,), daemon=True) for r in runs]
    for t in threads:
        t.start()
    a, b, c = (r.name for r in runs)

    def settle(n):  # wait for n calls, then a while longer: no extra call may come
        deadline = time.time() + 30
        while len(calls) < n and time.time() < deadline:
            time.sleep(0.1)
        time.sleep(1.5)  # the waiting runs poll about once a second

    assert entered[a].wait(30)
    settle(1)
    assert calls == [b]
    release[a].set()
    assert entered[b].wait(30)
    settle(2)
    assert calls == [b, c]
    release[b].set()
    assert entered[c].wait(10)
    release[c].set()
    for t in threads:
        t.join(10)
    assert calls == [b, c]


def _zombie_children() -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text[text.rfind(")") + 2:].split()
        if fields[0] == "Z" and int(fields[1]) == os.getpid():
            out.append(int(stat.parent.name))
    return out


def test_a_finished_detached_job_leaves_no_zombie(tmp_path):
    """A worker started by the dashboard must not stay <defunct> under the server once done."""
    import sys

    from cnmc_core.workspace.queue import spawn_detached
    from cnmc_core.workspace.status import process_alive

    log = tmp_path / "log.txt"
    pid = spawn_detached([sys.executable, "-c", "print('job done')"], log)
    wait_until(lambda: not process_alive(pid), 30, "the detached job to end")
    time.sleep(0.5)
    assert pid not in _zombie_children() and not _zombie_children()
    assert "job done" in log.read_text()
