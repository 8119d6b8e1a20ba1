"""An ensemble search is tracked like a run (issue 7): killed with SIGKILL at any moment, it
leaves a readable folder that shows ``failed`` at once, with the GA's history so far, is skipped
as a member, and a new search runs; one that raises says why; a finished one logs its GA.

Members are run folders written by hand (tests/test_ensemble.py's helpers): no training, except
for the page test, which uses the session's fixture workspace.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from run_fixtures import make_truth, model_probs, write_run

from cnmc_core import ensemble as E
from cnmc_core.cli.main import main
from cnmc_core.ensemble import search as ensemble_job
from cnmc_core.exceptions import RunError
from cnmc_core.workspace import status as R
from cnmc_core.workspace.layout import read_history
from cnmc_core.workspace.listing import (
    experiment_status,
    list_experiments,
    workspace_signature,
)
from cnmc_core.workspace.status import effective_status, read_status, write_status
from cnmc_core.workspace.views import list_members

REPO = Path(__file__).resolve().parents[1]
HISTORY_KEYS = {"stage", "restart", "generation", "best_fitness", "generation_best",
                "mean_fitness", "time"}


@pytest.fixture
def art(tmp_path, monkeypatch):
    """An artifacts folder (also $CNMC_ARTIFACTS) with three completed runs A, B, C scored on
    the same images."""
    truth = make_truth()
    root = tmp_path / "artifacts"
    monkeypatch.setenv("CNMC_ARTIFACTS", str(root))
    for k, (name, skill) in enumerate([("A", 0.5), ("B", 0.4), ("C", 0.3)]):
        write_run(root / "runs", name, truth, model_probs(truth, skill, k))
    return root


def _wait(predicate, timeout: float, what: str) -> float:
    start = time.time()
    while time.time() - start < timeout:
        if predicate():
            return time.time() - start
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def _members(root: Path) -> tuple[set, dict]:
    members, skipped = list_members(root)
    return set(members["member_id"]), dict(zip(skipped["member_id"], skipped["state"]))


def _dead_pid() -> tuple[int, str]:
    """The pid and start time of a process that has exited."""
    proc = subprocess.Popen(["sleep", "30"])
    start = R.proc_start_time(proc.pid)
    proc.kill()
    proc.wait()
    return proc.pid, start


def _search_folder(root: Path, name: str, **status) -> Path:
    """An ensemble folder as a search leaves it before it finishes: config and status only."""
    folder = root / "ensembles" / name
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({
        "kind": "ensemble", "ensemble_id": name, "run_id": name, "model": "ensemble:ga",
        "members": ["A", "B"], "method": "ga", "split_protocol": "subject",
        "dataset_fingerprint": "fp-1", "seed": 0, "created": time.time()}))
    write_status(folder, kind="ensemble", created=time.time(), **status)
    return folder


# --------------------------------------------------------------------------- killed
def test_killed_search_shows_failed_keeps_history_and_a_new_search_runs(art, capsys):
    folder = art / "ensembles" / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "cnmc_core", "ensemble", "A", "B", "C", "--runs-dir", str(art),
         "--method", "ga", "--report", "chosen", "--n-boot", "0", "--name", "killed",
         "--ga-generations", "1000000", "--ga-restarts", "5"],  # minutes: killed long before
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def logging_and_beating() -> bool:
        assert proc.poll() is None, f"the search ended early: {proc.communicate()}"
        return ((folder / "status.json").is_file() and len(read_history(folder)) > 0
                and "generation" in read_status(folder))

    try:
        _wait(logging_and_beating, 60, "the search to log generations and beat with its progress")
        status = effective_status(folder)
        assert status["state"] == "running" and status["pid"] == proc.pid
        assert status["fitting"] == "ga" and status["restarts"] == 5
        assert status["message"].startswith("ga: restart 1 of 5, generation ")
        assert _members(art) == ({"A", "B", "C"}, {"killed": "running"})
        assert not (folder / "predictions.csv").exists()
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    waited = _wait(lambda: effective_status(folder)["state"] == "failed", 5,
                   "the killed search to show failed")
    assert waited < 5
    status = effective_status(folder)
    assert f"the ensemble search's process (pid {proc.pid}) is gone" in status["error"]
    assert experiment_status(folder)["state"] == "failed"
    history = read_history(folder)  # what was logged before the kill is kept and readable
    assert len(history) >= 1 and set(history.columns) == HISTORY_KEYS
    assert (history["stage"] == "ga").all() and history["generation"].is_monotonic_increasing
    assert history["best_fitness"].is_monotonic_increasing
    out = proc.stdout.read()
    assert out.splitlines()[0] == f"ensemble folder: {folder}"
    # every reader: skipped as a member, failed in the listings, the CLI's `runs` lists it
    assert _members(art) == ({"A", "B", "C"}, {"killed": "failed"})
    row = list_experiments(art).set_index("run_id").loc["killed"]
    assert row["kind"] == "ensemble" and row["state"] == "failed" and "gone" in row["error"]
    assert main(["runs", "--runs-dir", str(art), "--json"]) == 0
    listed = {r["run_id"]: r for r in json.loads(capsys.readouterr().out)}
    assert listed["killed"]["kind"] == "ensemble" and listed["killed"]["state"] == "failed"
    assert main(["runs", "--runs-dir", str(art)]) == 0
    assert "killed  failed" in capsys.readouterr().out
    # a new search on the same members completes and becomes a member
    assert main(["ensemble", "A", "B", "C", "--runs-dir", str(art), "--method", "ga",
                 "--report", "chosen", "--n-boot", "0", "--ga-generations", "20",
                 "--ga-restarts", "2", "--name", "again"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == f"ensemble folder: {art / 'ensembles' / 'again'}"
    assert lines[-1] == str(art / "ensembles" / "again")
    assert _members(art) == ({"A", "B", "C", "again"}, {"killed": "failed"})


# --------------------------------------------------------------------------- finished, failing
def test_finished_search_logs_the_ga_and_writes_completed_last(art, monkeypatch):
    writes = []

    def recording(module, name):
        original = getattr(module, name)

        def write(path, obj):
            state = obj.get("state") if isinstance(obj, dict) else None
            writes.append((Path(path).name, state))
            return original(path, obj)
        monkeypatch.setattr(module, name, write)

    recording(ensemble_job, "atomic_write_json")
    recording(ensemble_job, "atomic_write_csv")
    recording(R, "atomic_write_json")  # status.json
    seen = {}

    def peek(info):  # during the search the folder is there, running, without results
        if not seen:
            seen.update(status=effective_status(folder), files=sorted(p.name for p in folder.iterdir()))

    folder = art / "ensembles" / "done"
    path, rows = E.run_search(
        [art / "runs" / n for n in "ABC"], method="ga", methods=("mean", "ga"), n_boot=0,
        out_dir=art / "ensembles", ensemble_id="done", params={"ga": {"generations": 20, "restarts": 3, "callback": peek}})
    assert path == folder and [r["method"] for r in rows][-2:] == ["mean", "ga"]
    assert seen["status"]["state"] == "running" and seen["status"]["pid"] == os.getpid()
    assert seen["status"]["pid_start"] == R.proc_start_time(os.getpid())
    assert {"config.json", "status.json"} <= set(seen["files"])
    assert not {"predictions.csv", "metrics.json"} & set(seen["files"])
    history = read_history(folder)
    assert len(history) == 3 * 20 and set(history.columns) == HISTORY_KEYS
    assert history.groupby("restart")["generation"].apply(list).tolist() == [list(range(1, 21))] * 3
    status = read_status(folder)
    assert status["state"] == "completed" and status["error"] is None
    assert (status["restart"], status["restarts"], status["generation"]) == (3, 3, 20)
    # results first, the completed status last
    assert writes[0] == ("status.json", "running") and writes[-1] == ("status.json", "completed")
    results = [w[0] for w in writes if w[0] != "status.json"]
    assert results == ["config.json", "predictions.csv", "metrics.json", "config.json"]
    config = json.loads((folder / "config.json").read_text())
    for key in ("kind", "ensemble_id", "run_id", "model", "members", "member_paths",
                "member_kinds", "method", "weights", "threshold", "threshold_rule",
                "split_protocol", "dataset_fingerprint", "seed", "params", "fitted_on",
                "created", "versions"):
        assert key in config, key
    assert config["params"]["generations"] == 20 and "callback" not in config["params"]
    member = E.load_predictions(folder)
    assert member.kind == "ensemble" and _members(art)[0] == {"A", "B", "C", "done"}


@pytest.mark.parametrize("error, state, text", [
    (RuntimeError("disk on fire"), "failed", "RuntimeError: disk on fire"),
    (KeyboardInterrupt(), "cancelled", "KeyboardInterrupt"),
])
def test_failing_search_says_failed_with_the_message(art, error, state, text):
    def boom(info):
        if info["generation"] == 5:
            raise error

    folder = art / "ensembles" / "boom"
    with pytest.raises(type(error)):
        E.run_search([art / "runs" / n for n in "ABC"], method="ga", methods=("mean",),
                         n_boot=0, out_dir=art / "ensembles", ensemble_id="boom",
                         params={"ga": {"generations": 50, "callback": boom}})
    status = effective_status(folder)
    assert status["state"] == state and status["error"] == text
    assert read_history(folder)["generation"].tolist() == [1, 2, 3, 4, 5]  # flushed on failure
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "history.jsonl",
                                                        "status.json"]
    assert _members(art)[1] == {"boom": state}
    row = list_experiments(art).set_index("run_id").loc["boom"]
    assert row["state"] == state and row["error"] == text


def test_a_search_whose_first_config_write_fails_still_shows_failed(art, monkeypatch):
    original, calls = ensemble_job.atomic_write_json, []

    def full_once(path, obj):  # the disk is full when the search writes its first config.json
        calls.append(Path(path).name)
        if calls.count("config.json") == 1 and Path(path).name == "config.json":
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(path, obj)

    monkeypatch.setattr(ensemble_job, "atomic_write_json", full_once)
    folder = art / "ensembles" / "full"
    with pytest.raises(OSError, match="No space left"):
        E.run_search([art / "runs" / n for n in "AB"], method="mean", methods=("mean",),
                         n_boot=0, out_dir=art / "ensembles", ensemble_id="full")
    config = json.loads((folder / "config.json").read_text())  # the base config, no weights
    assert config["ensemble_id"] == "full" and config["members"] == ["A", "B"]
    assert "weights" not in config
    text = "OSError: [Errno 28] No space left on device"
    assert effective_status(folder)["state"] == "failed"
    row = list_experiments(art).set_index("run_id").loc["full"]  # every reader shows it
    assert row["state"] == "failed" and row["error"] == text
    _, skipped = list_members(art)
    assert skipped.set_index("member_id").loc["full", "reason"] == text


def test_a_search_that_cannot_write_its_config_at_all_keeps_a_minimal_one(art, monkeypatch):
    original = ensemble_job.atomic_write_json

    def no_full_config(path, obj):  # e.g. a value that is not JSON in the full config
        if Path(path).name == "config.json" and "member_paths" in obj:
            raise TypeError("Object of type Thing is not JSON serializable")
        return original(path, obj)

    monkeypatch.setattr(ensemble_job, "atomic_write_json", no_full_config)
    folder = art / "ensembles" / "odd"
    with pytest.raises(TypeError):
        E.run_search([art / "runs" / n for n in "AB"], method="mean", methods=("mean",),
                         n_boot=0, out_dir=art / "ensembles", ensemble_id="odd")
    config = json.loads((folder / "config.json").read_text())
    assert config["kind"] == "ensemble" and config["members"] == ["A", "B"]
    row = list_experiments(art).set_index("run_id").loc["odd"]
    assert row["state"] == "failed" and "TypeError: Object of type Thing" in row["error"]


@pytest.mark.parametrize("args, err_msg", [
    (["--ga-generations", "-1"], ("--ga-generations -1: The 'generations' parameter of "
                                  "GeneticWeights must be an int in the range [1, inf]. Got -1")),
    (["--ga-generations", "0"], ("--ga-generations 0: The 'generations' parameter of "
                                 "GeneticWeights must be an int in the range [1, inf]. Got 0")),
    (["--ga-population", "1"], ("--ga-population 1: The 'population_size' parameter of "
                                "GeneticWeights must be an int in the range [2, inf]. Got 1")),
    # the memory guard needs the number of val images: checked once the members are aligned,
    # still before any folder exists
    (["--ga-population", "1000000000"], ("GeneticWeights with population_size=1000000000 on "
                                         "120 images needs a 120,000,000,000-value matrix per "
                                         "generation")),
    (["--method", "ga_mean", "--report", "chosen", "--ga-population", "1000000000"],
     "MeanCrossoverGA with population_size=1000000000 on 120 images"),
    (["--ga-restarts", "0"], ("--ga-restarts 0: The 'restarts' parameter of GeneticWeights "
                              "must be an int in the range [1, inf]. Got 0")),
    (["--method", "mean", "--report", "chosen", "--ga-restarts", "3"],
     "--ga-restarts only apply when a GA runs: use --method ga (or ga_mean), or --report all."),
    (["--n-boot", "1000000000"], ("The '--n-boot' parameter must be an int in the range "
                                  "[0, 100000]. Got 1000000000 instead. 0 skips the CIs")),
    (["--n-boot", "-1"], "The '--n-boot' parameter must be an int in the range [0, 100000]"),
    (["--seed", "-1"], ("The '--seed' parameter must be an int in the range [0, 4294967295]. "
                        "Got -1 instead. Use a whole number")),
    (["--seed", str(2**32)], "The '--seed' parameter must be an int in the range"),
    (["--report", "all", "--compare", "none"],
     "--compare none (the old name of --report chosen) contradicts --report all"),
    (["--method", "weighted", "--weights", "1,2"],
     "The 'weights' parameter of WeightedAverage must be 3 non-negative numbers"),
    (["--name", "../up"], "Invalid ensemble id '../up'"),
])
def test_bad_arguments_fail_before_any_folder_exists(art, capsys, args, err_msg):
    out = art / "ensembles"
    before = sorted(art.rglob("*"))
    rc = main(["ensemble", "A", "B", "C", "--runs-dir", str(art), "--n-boot", "0",
               "--out", str(out), *args])
    err = capsys.readouterr().err
    assert rc == 2 and err_msg in err, err
    assert not out.exists() or not any(out.iterdir())
    assert sorted(art.rglob("*")) == before  # nothing written anywhere in the workspace


def test_library_refuses_a_bad_seed_or_n_boot_before_any_folder_exists(art):
    from cnmc_core.exceptions import ConfigError

    for kwargs, err_msg in (({"seed": -1}, "The 'seed' parameter of run_search"),
                            ({"n_boot": 10**9}, "The 'n_boot' parameter of run_search"),
                            ({"params": {"ga": {"population_size": 10**9}}},
                             "population_size=1000000000 on 120 images")):
        with pytest.raises(ConfigError, match=err_msg):
            E.run_search([art / "runs" / n for n in "AB"], method="ga",
                         **{"n_boot": 0, **kwargs})
        assert not (art / "ensembles").exists()


def test_the_deprecated_compare_flag_still_works_and_warns(art, capsys):
    rc = main(["ensemble", "A", "B", "--runs-dir", str(art), "--method", "mean",
               "--n-boot", "0", "--compare", "none"])
    captured = capsys.readouterr()
    assert rc == 0 and "--compare none is deprecated; use --report chosen" in captured.err
    config = json.loads((Path(captured.out.strip().splitlines()[-1]) / "config.json").read_text())
    assert config["methods"] == ["mean"]


def test_cli_method_list_is_the_librarys():
    from cnmc_core.cli import ensemble as cli_ensemble

    assert cli_ensemble._ALL_METHODS == E.DEFAULT_METHODS
    assert set(cli_ensemble._GA_METHODS) == set(E.GA_METHODS)


# --------------------------------------------------------------------------- readers
def test_readers_apply_liveness_to_search_folders(art, capsys):
    pid, start = _dead_pid()
    _search_folder(art, "gone", state="running", pid=pid, pid_start=start, heartbeat=time.time())
    _search_folder(art, "silent", state="running", pid=os.getpid(),
                   pid_start=R.proc_start_time(os.getpid()), heartbeat=time.time() - 60)
    _search_folder(art, "live", state="running", pid=os.getpid(),
                   pid_start=R.proc_start_time(os.getpid()), heartbeat=time.time())
    (art / "ensembles" / "broken").mkdir()
    (art / "ensembles" / "broken" / "config.json").write_text("{}")
    (art / "ensembles" / "broken" / "status.json").write_text("[1, 2]")
    assert _members(art) == ({"A", "B", "C"}, {"gone": "failed", "silent": "unresponsive",
                                               "live": "running", "broken": "damaged"})
    _, skipped = list_members(art)
    reasons = dict(zip(skipped["member_id"], skipped["reason"]))
    assert f"process (pid {pid}) is gone" in reasons["gone"]
    assert (f"no heartbeat for 60 s, but the ensemble search's process (pid {os.getpid()}) lives"
            in reasons["silent"])
    frame = list_experiments(art).set_index("run_id")
    assert frame.loc[["gone", "silent", "live", "broken"], "state"].tolist() == [
        "failed", "unresponsive", "running", "damaged"]
    assert main(["runs", "--runs-dir", str(art)]) == 0
    assert "live  running" in capsys.readouterr().out


@pytest.mark.parametrize("state, alive, said, advice", [
    ("running", True, "is running (ga: restart 1 of 2", "Wait for the ensemble search to finish"),
    ("running", False, "is failed (the ensemble search's process (pid", "run the search again"),
    ("failed", False, "is failed (RuntimeError: boom)", "run the search again"),
    ("cancelled", False, "is cancelled (KeyboardInterrupt)", "run the search again"),
])
def test_an_unfinished_search_is_never_used_as_a_model(art, tmp_path, capsys, state, alive,
                                                       said, advice):
    from conftest import cell_image, write_image

    from cnmc_core.ensemble.members import leaf_runs
    from cnmc_core.explain.members import leaf_weights
    from cnmc_core.predict import score_member

    pid, start = (os.getpid(), R.proc_start_time(os.getpid())) if alive else _dead_pid()
    error = {"failed": "RuntimeError: boom", "cancelled": "KeyboardInterrupt"}.get(state)
    folder = _search_folder(art, "unfinished", state=state, pid=pid, pid_start=start,
                            heartbeat=time.time(), error=error,
                            message="ga: restart 1 of 2, generation 3 of 10")
    image = cell_image()
    for call, use in ((lambda: leaf_weights([folder]), "explained"),
                      (lambda: score_member(folder, [image]), "scored"),
                      (lambda: leaf_runs(folder), "used")):
        with pytest.raises(RunError) as info:
            call()
        text = str(info.value)
        assert f"The ensemble search unfinished {said}" in text and advice in text, text
        assert f"not completed: it cannot be {use}" in text
    figure = write_image(tmp_path / "cell.png", image)
    assert main(["explain", "unfinished", str(figure), "--out", str(tmp_path / "x.png"),
                 "--runs-dir", str(art)]) == 2
    assert "The ensemble search unfinished" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()
    # inside a finished ensemble too
    outer = _search_folder(art, "outer", state="completed")
    config = json.loads((outer / "config.json").read_text())
    config.update(members=["unfinished", "A"], weights={"A": 0.5, "unfinished": 0.5})
    (outer / "config.json").write_text(json.dumps(config))
    with pytest.raises(RunError, match="The ensemble search unfinished"):
        leaf_runs(outer)


def test_a_completed_ensemble_without_weights_is_refused_not_equal_weighted(art):
    from cnmc_core.ensemble.members import ensemble_weights, leaf_runs
    from cnmc_core.predict import score_member

    for name in "AB":
        (art / "runs" / name / "model.keras").write_bytes(b"not read")
    folder = _search_folder(art, "noweights", state="completed")
    for call in (lambda: leaf_runs(folder), lambda: score_member(folder, [])):
        with pytest.raises(RunError, match="Ensemble noweights: its config.json has no fitted "
                                           "weights"):
            call()
    config = json.loads((folder / "config.json").read_text())
    for weights, message in (({"A": 1.0}, r"no weight for member\(s\) \['B'\]"),
                             ({"A": 0.0, "B": 0.0}, "positive sum"),
                             ({"A": "x", "B": 1.0}, "positive sum")):
        (folder / "config.json").write_text(json.dumps({**config, "weights": weights}))
        with pytest.raises(RunError, match=message):
            leaf_runs(folder)
    (folder / "config.json").write_text(json.dumps({**config, "weights": {"A": 3, "B": 1}}))
    assert ensemble_weights(folder) == [0.75, 0.25]
    assert dict(leaf_runs(folder)) == {art / "runs" / "A": 0.75, art / "runs" / "B": 0.25}


def test_cli_runs_lists_runs_then_searches_oldest_first_with_progress(art, capsys):
    now = time.time()
    for name, created in (("C", now - 300), ("A", now - 200)):  # B has no creation time
        config = json.loads((art / "runs" / name / "config.json").read_text())
        (art / "runs" / name / "config.json").write_text(json.dumps({**config, "created": created}))
    done = _search_folder(art, "done", state="completed")
    old = json.loads((done / "config.json").read_text())
    (done / "config.json").write_text(json.dumps({**old, "created": now - 100}))
    # a completed folder has its predictions (without them it is listed damaged)
    (done / "predictions.csv").write_bytes((art / "runs" / "A" / "predictions.csv").read_bytes())
    _search_folder(art, "busy", state="running", pid=os.getpid(),
                   pid_start=R.proc_start_time(os.getpid()), heartbeat=now, fitting="ga",
                   step=2, steps=3, restart=1, restarts=2, generation=3, generations=10,
                   message="ga: restart 1 of 2, generation 3 of 10")
    (art / "ensembles" / "broken").mkdir()  # damaged: no creation time
    (art / "ensembles" / "broken" / "config.json").write_text("{")
    assert main(["runs", "--runs-dir", str(art), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["run_id"] for r in rows] == ["C", "A", "B", "done", "busy", "broken"]
    progress = {r["run_id"]: r["progress"] for r in rows}
    assert progress["busy"] == "method 2 of 3: ga: restart 1 of 2, generation 3 of 10"
    assert progress["done"] == "" and "created_ts" not in rows[0]
    assert main(["runs", "--runs-dir", str(art)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["C", "A", "B", "done", "busy", "broken"]
    assert lines[4].startswith("busy  running") and lines[4].endswith(
        "method 2 of 3: ga: restart 1 of 2, generation 3 of 10")
    assert lines[5].startswith("broken  damaged") and "error: " in lines[5]


def test_catalog_signature_changes_when_a_search_dies(art):
    proc = subprocess.Popen(["sleep", "30"])
    try:
        _search_folder(art, "dies", state="running", pid=proc.pid,
                       pid_start=R.proc_start_time(proc.pid), heartbeat=time.time())
        before = workspace_signature(art)
        assert workspace_signature(art) == before  # stable while it lives
    finally:
        proc.kill()
        proc.wait()
    assert workspace_signature(art) != before  # cached page listings are recomputed


def test_history_lines_of_a_long_restart_are_thinned(tmp_path):
    hist = ensemble_job.GAHistory(tmp_path, None, restarts=1, generations=10_000, max_lines=100)
    best = 0.0
    for g in range(1, 10_001):
        best = max(best, 0.5 + (0.1 if g >= 3333 else 0.0))
        hist({"restart": 0, "generation": g, "best_fitness": best, "generation_best": best,
              "mean_fitness": 0.4})
    gens = read_history(tmp_path)["generation"].tolist()
    assert gens == sorted({1, 3333, *range(100, 10_001, 100)})


# --------------------------------------------------------------------------- pages
@pytest.mark.parametrize("page", ["3_Compare", "4_Errors", "5_Ensemble", "6_Explain"])
def test_pages_show_running_and_killed_searches_without_a_traceback(workspace, tmp_path,
                                                                    monkeypatch, page):
    from streamlit.testing.v1 import AppTest

    root = tmp_path / "artifacts"
    shutil.copytree(workspace["artifacts"], root, ignore=shutil.ignore_patterns("cache"))
    monkeypatch.setenv("CNMC_ARTIFACTS", str(root))
    pid, start = _dead_pid()
    _search_folder(root, "ens-ga-20260101-000000-killed", state="running", pid=pid,
                   pid_start=start, heartbeat=time.time())
    _search_folder(root, "ens-ga-20260101-000001-alive", state="running", pid=os.getpid(),
                   pid_start=R.proc_start_time(os.getpid()), heartbeat=time.time())
    at = AppTest.from_file(str(REPO / "pages" / f"{page}.py"), default_timeout=120).run()
    assert not at.exception, [e.value for e in at.exception]
    options = [str(o) for w in (*at.selectbox, *at.multiselect) for o in w.options]
    assert not [o for o in options if "killed" in o or "alive" in o]  # never offered as a member
    if page == "6_Explain":  # lists usable models only
        return
    states = {}  # Compare's table names it "ens-ga-killed"; the others' skipped list by id
    for df in at.dataframe:
        frame = df.value
        if "state" in frame.columns:
            ids = frame["member_id"] if "member_id" in frame.columns else frame["name"]
            states.update({i.split("-")[-1]: s for i, s in zip(ids, frame["state"])})
    if page == "3_Compare":
        assert states["killed"] == "failed" and states["alive"] == "running"
        return
    assert states["killed"] == "failed" and "alive" not in states  # running: not in the table
    assert any("1 ensemble search still running" in m.value for m in at.markdown)
