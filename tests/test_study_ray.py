"""Studies on a real local Ray cluster (a head started by the test with `ray start --head`): a
3-fold study completes, a run whose worker is killed is failed while the others go on, a cancel
stops the study, and a cluster whose workers cannot see the artifacts folder is refused before
anything is created."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from cnmc_core.cli.main import main
from conftest import make_kaggle_tree

ray = pytest.importorskip("ray", reason="Ray is not installed (requirements.txt has it)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray(*args, prefix=()) -> subprocess.CompletedProcess:
    return subprocess.run([*prefix, shutil.which("ray") or "ray", *args], capture_output=True,
                          text=True, timeout=180)


@pytest.fixture(scope="module")
def head():
    port = _free_port()
    out = _ray("start", "--head", "--num-cpus", "2", "--port", str(port),
               "--include-dashboard=false", "--disable-usage-stats")
    if out.returncode != 0:
        pytest.fail(f"ray start failed: {out.stderr[-2000:]}")
    yield f"127.0.0.1:{port}"
    _ray("stop", "--force")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_kaggle_tree(tmp_path_factory.mktemp("ray-data"), n_all=4, n_hem=3,
                            per_subject=3) / "C-NMC_Leukemia"


def _study_args(data, art, head, *extra):
    return ["study", "--presets", "demo_scratch", "--data", str(data), "--folds", "3",
            "--seeds", "1", "--image-size", "64", "--backend", "ray", "--address", head,
            "--artifacts", str(art), *extra]


def _wait(predicate, timeout, what):
    end = time.time() + timeout
    while time.time() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def _states(folder):
    from cnmc_core.study.runner import run_states
    from cnmc_core.study.store import study_runs

    return run_states(study_runs(folder))


def test_a_study_completes_on_the_cluster(head, data, tmp_path, capsys):
    art = tmp_path / "art"
    assert main(_study_args(data, art, head, "--epochs", "1")) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    folder = next((art / "studies").iterdir())
    assert lines[0] == lines[-1] == str(folder)
    study = json.loads((folder / "study.json").read_text())
    assert study["backend"] == "ray" and study["address"] == head
    assert study["resources"] == {"num_cpus": 1.0, "num_gpus": 0.0}
    assert set(_states(folder).values()) == {"completed"}
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["presets"]["demo_scratch"]["n_subjects"] == 10


def test_a_killed_worker_fails_its_run_and_the_others_go_on(head, data, tmp_path, capsys):
    from cnmc_core.workspace.status import read_status

    art = tmp_path / "art"
    assert main(_study_args(data, art, head, "--epochs", "4", "--detach")) == 0
    folder = next((art / "studies").iterdir())
    run = _wait(lambda: next((p for p, s in _states(folder).items() if s == "running"
                              and read_status(p).get("epoch")), None), 240, "a run training")
    os.kill(int(read_status(run)["pid"]), signal.SIGKILL)
    _wait(lambda: _states(folder)[run] == "failed", 30, "the killed run to read failed")
    status = _wait(lambda: (s := json.loads((folder / "status.json").read_text()))["state"]
                   not in ("queued", "running") and s, 600, "the study to end")
    states = _states(folder)
    assert states[run] == "failed"
    assert sorted(v for p, v in states.items() if p != run) == ["completed", "completed"]
    assert status["state"] == "failed" and "1 of 3 runs did not complete" in status["error"]


def test_cancel_stops_a_study_on_the_cluster(head, data, tmp_path):
    art = tmp_path / "art"
    assert main(_study_args(data, art, head, "--epochs", "30", "--detach")) == 0
    folder = next((art / "studies").iterdir())
    _wait(lambda: "running" in _states(folder).values(), 240, "a run training")
    assert main(["cancel", folder.name, "--artifacts", str(art)]) == 0
    status = _wait(lambda: (s := json.loads((folder / "status.json").read_text()))["state"]
                   not in ("queued", "running") and s, 180, "the study to end")
    assert status["state"] == "cancelled"
    assert set(_states(folder).values()) <= {"cancelled", "completed"}
    assert "cancelled" in _states(folder).values()


def test_workers_that_cannot_see_the_artifacts_folder_are_refused(data, tmp_path, capsys):
    """A head whose workers run in another mount namespace, where the artifacts folder is an
    empty tmpfs: what a cluster without a shared file system looks like."""
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    port = _free_port()
    if shutil.which("unshare") is None:
        pytest.skip("util-linux unshare is not installed")
    script = (f"mount -t tmpfs tmpfs {hidden} && exec {shutil.which('ray')} start --head "
              f"--num-cpus 1 --port {port} --include-dashboard=false --disable-usage-stats "
              f"--temp-dir /tmp/ray-ns-{port}")
    out = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                         capture_output=True, text=True, timeout=180)
    if out.returncode != 0:
        pytest.skip(f"cannot start a Ray head in a private mount namespace here: {out.stderr[-300:]}")
    try:
        art = hidden / "art"
        rc = main(["study", "--presets", "demo_scratch", "--data", str(data), "--folds", "3",
                   "--backend", "ray", "--address", f"127.0.0.1:{port}", "--artifacts", str(art)])
        assert rc == 2
        err = capsys.readouterr().err
        assert "cannot see (or write) the artifacts folder" in err and str(art) in err
        assert not (art / "studies").exists() and not (art / "runs").exists()
        assert not list(art.glob(".ray-probe-*"))
    finally:
        subprocess.run([sys.executable, "-c", "import ray; ray.init(address='127.0.0.1:%d'); "
                        "[ray.kill(a) for a in []]" % port], capture_output=True, timeout=60)
        _ray("stop", "--force")


def test_an_unreachable_cluster_is_refused(data, tmp_path, capsys):
    port = _free_port()
    rc = main(["study", "--presets", "demo_scratch", "--data", str(data), "--folds", "3",
               "--backend", "ray", "--address", f"127.0.0.1:{port}",
               "--artifacts", str(tmp_path / "art")])
    assert rc == 2 and "nothing answers at 127.0.0.1" in capsys.readouterr().err
    assert not (tmp_path / "art").exists()
