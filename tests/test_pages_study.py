"""AppTest tests of studies on the dashboard: Train launches one (every refusal shown before
anything is created; the coordinator a detached process), Home shows running studies, live
counts, expected times and, once the demo runs exist, the demo study as the next step; Compare
groups runs by study (pooled scores with CIs, per-fold dots, the paired matrix) and shows running
runs with live curves.

Studies with results are written by hand and scored by the real library (study_fixture.py).
Launches are real (plan, folders, the detached coordinator) except the training workers, which
are not started (as in test_pages_main.py): the runs stay queued and the study is cancelled.
"""

from __future__ import annotations

import json
import os
import shutil
import time

import pytest
from study_fixture import DONE, TWO, add_built_studies, write_study
from test_pages_main import assert_clean, button, run_app, texts
from test_training_timing import write_timed_run

from cnmc_core.demo import DEMO_PRESETS
from cnmc_core.study.runner import cancel_study
from cnmc_core.study.store import read_study
from cnmc_core.workspace.status import effective_status, proc_start_time, write_status



@pytest.fixture(scope="module")
def study_ws(workspace, tmp_path_factory):
    """The session workspace plus a finished 4-fold study and a 2-fold one (built once)."""
    root = tmp_path_factory.mktemp("study-pages") / "artifacts"
    shutil.copytree(workspace["artifacts"], root, ignore=shutil.ignore_patterns("model.keras"))
    return add_built_studies(root)


@pytest.fixture
def ws(study_ws, workspace, tmp_path, monkeypatch):
    root = tmp_path / "artifacts"
    shutil.copytree(study_ws, root)
    (root / "workspace.json").write_text(json.dumps({"dataset": str(workspace["data"])}))
    monkeypatch.setenv("CNMC_ARTIFACTS", str(root))
    return {"root": root, "data": workspace["data"]}


@pytest.fixture
def no_workers(monkeypatch):
    """Runs are created and queued, but no training worker starts."""
    from cnmc_core.workspace import queue

    monkeypatch.setattr(queue, "launch_run", lambda run_dir, env=None: 0)


def _wait_ended(folder, timeout=60.0) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = effective_status(folder)
        if status["state"] not in ("queued", "running"):
            return status
        time.sleep(0.5)
    raise AssertionError(f"{folder} still {status['state']} after {timeout} s")


def _studies(root):
    base = root / "studies"
    return sorted(p.name for p in base.iterdir()) if base.is_dir() else []


# --------------------------------------------------------------------------- Compare
def test_compare_groups_runs_by_study(ws):
    at = run_app("pages/3_Compare.py")
    assert [s.value for s in at.subheader][:2] == ["Studies (2)", "Runs"]
    labels = [e.proto.label for e in at.expander]
    assert any(DONE in x and "4 folds x 1 seed(s)" in x and "runs 8 of 8" in x for x in labels)
    frames = [d.value for d in at.dataframe]
    presets = next(f for f in frames if "pooled OOF AUC [95% CI]" in f.columns)
    assert list(presets["preset"][:2]) == ["demo_scratch", "demo_vgg16"]
    assert presets["pooled OOF wF1 [95% CI]"].str.match(r"^\d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\]$").all()
    matrices = [f for f in frames if f.index.name == "row - column"]
    cells = [str(v) for m in matrices for v in m.to_numpy().ravel()]
    assert any(", p=" in c for c in cells)  # the 4-fold study decides
    assert any(c.startswith("cannot be decided: 2 paired fold(s)") for c in cells)  # not the 2-fold
    assert len(at.get("plotly_chart")) >= 2  # the dots of both studies, then the runs' charts
    # one CSV button per table (the table's own), ours named by what it downloads
    downloads = [b.proto.label for b in at.get("download_button")]
    assert "Download as CSV" not in downloads
    assert "Download the metrics of the test split (CSV)" in downloads
    runs = next(f for f in frames if "test F1 [95% CI]" in f.columns)
    assert "study" not in runs.columns and not runs["name"].str.contains("-ab12").any()  # single runs
    at.radio(key=f"study-metric-{DONE}").set_value("weighted_f1").run()
    assert_clean(at)
    assert "ensembles fitted per fold, weighted F1" in texts(at.markdown)
    at.toggle(key="show_study_runs").set_value(True).run()
    assert_clean(at)
    runs = next(d.value for d in at.dataframe if "test F1 [95% CI]" in d.value.columns)
    assert (runs["study"] == DONE).sum() == 8 and (runs["study"] == TWO).sum() == 4


def test_compare_shows_running_runs_with_live_curves(ws):
    run = next(p for p in sorted((ws["root"] / "runs").iterdir()) if "fixture_" in p.name)
    live = ws["root"] / "runs" / "20990101-000000-live_one-beef"
    shutil.copytree(run, live, ignore=shutil.ignore_patterns("summary.json", "metrics.json",
                                                            "predictions.csv"))
    config = json.loads((live / "config.json").read_text())
    (live / "config.json").write_text(json.dumps({**config, "run_id": live.name,
                                                  "created": time.time()}))
    write_status(live, state="running", pid=os.getpid(), pid_start=proc_start_time(os.getpid()),
                 heartbeat=time.time(), epoch=2, epochs=3, batch=1, batches=4, stage="train")
    at = run_app("pages/3_Compare.py")
    assert "Training now (1 running, 0 queued)" in [s.value for s in at.subheader]
    assert any("compare-curves-" in c.proto.id or c.proto.id for c in at.get("plotly_chart"))
    bars = [p.proto.text for p in at.get("progress")]
    assert any("running - train: epoch 2 of 3, batch 1 of 4" in b for b in bars)
    table = next(d.value for d in at.dataframe if "test F1 [95% CI]" in d.value.columns)
    assert "running" in set(table["state"])


def test_compare_says_when_a_study_has_no_results_yet_or_is_damaged(ws):
    (ws["root"] / "studies" / TWO / "metrics.json").unlink()
    (ws["root"] / "studies" / DONE / "metrics.json").write_text("[1, 2]")
    at = run_app("pages/3_Compare.py")
    assert "Its scores appear here when every run is done" in texts(at.info)
    assert "metrics.json" in texts(at.error)


# --------------------------------------------------------------------------- Home
def test_home_shows_running_studies_live_counts_and_expected_times(ws):
    write_study(ws["root"], "study-20261201-000005-running-aa11", state="running", done=3)
    at = run_app()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Training / queued"] == "0 / 5"
    assert "**Studies running**" in texts(at.markdown)
    bars = [p.proto.text for p in at.get("progress")]
    study = [b for b in bars if "study-20261201-000005-running-aa11" in b]
    assert len(study) == 1 and "running - 3 of 8 runs done, 1 training" in study[0]
    assert "(demo_scratch, demo_vgg16 x 4 folds x 1 seed(s))" in study[0]
    queued = [b for b in bars if "queued" in b and "expected" in b]
    assert len(queued) == 5
    assert "The queue should be done in about" in texts(at.caption)


def test_home_offers_the_demo_study_once_the_demo_runs_exist(ws, no_workers):
    for i, preset in enumerate(DEMO_PRESETS):
        write_timed_run(ws["root"], f"20261202-00000{i}-{preset}-d{i:03d}", preset, [2.0] * 3)
    at = run_app()
    assert "Train the four demo models" not in [b.label for b in at.button]
    assert "The four demo models are trained" in texts(at.success)
    start = next(b for b in at.button if b.label.startswith("Run the demo study ("))
    folds = int(start.label.split("(")[1].split()[0])
    assert 3 <= folds <= 10
    assert "Expected about" in texts(at.markdown) and "measured here" in texts(at.markdown)
    before = set(_studies(ws["root"]))
    start.click().run()
    assert_clean(at)
    new = [s for s in _studies(ws["root"]) if s not in before]
    assert len(new) == 1
    folder = ws["root"] / "studies" / new[0]
    study = read_study(folder)
    assert study["presets"] == list(DEMO_PRESETS) and study["folds"] == folds
    assert len(study["runs"]) == 4 * folds
    cancel_study(folder)
    assert _wait_ended(folder)["state"] == "cancelled"


def test_home_offers_the_demo_study_in_a_workspace_without_any_study(workspace, tmp_path,
                                                                     monkeypatch):
    """The first start as bench_demo.py meets it: the four demo runs done, no study ever made
    (the empty listing of studies has no rows to pick the demo studies from)."""
    from cnmc_core.demo import demo_studies
    from cnmc_core.study.listing import list_studies

    root = tmp_path / "artifacts"
    for i, preset in enumerate(DEMO_PRESETS):
        write_timed_run(root, f"20261202-00000{i}-{preset}-d{i:03d}", preset, [2.0] * 3)
    (root / "workspace.json").write_text(json.dumps({"dataset": str(workspace["data"])}))
    monkeypatch.setenv("CNMC_ARTIFACTS", str(root))
    assert demo_studies(list_studies(root)).empty
    at = run_app()
    assert_clean(at)
    assert any(b.label.startswith("Run the demo study (") for b in at.button)


# --------------------------------------------------------------------------- Train
def _fill_study(at, presets, folds, **extra):
    at.multiselect(key="study_presets").set_value(presets)
    at.number_input(key="study_folds").set_value(folds)
    for key, value in extra.items():
        widget = {"backend": at.radio, "address": at.text_input}[key]
        widget(key=f"study_{key}").set_value(value)
    button(at, "Launch study").click().run()
    assert_clean(at)
    return at


def test_train_refuses_a_bad_study_before_anything_is_created(ws, no_workers):
    from cnmc_core.data.manifest import resolve_manifest
    from cnmc_core.study.plan import subjects_per_class

    fewest = min(subjects_per_class(resolve_manifest(str(ws["data"]), verify=False)).values())
    before = _studies(ws["root"])
    runs = sorted(p.name for p in (ws["root"] / "runs").iterdir())
    at = run_app("pages/2_Train.py")
    for presets, folds, extra, message in [
        (["demo_scratch"], 2, {}, "at least 3"),
        (["demo_scratch"], fewest + 1, {}, "subjects of each class"),
        (["demo_scratch", "paper_vgg16_block4"], 3, {}, "share one input size"),
        ([], 3, {}, "one or more presets"),
        (["demo_scratch"], 3, {"backend": "ray", "address": "127.0.0.1:1"}, "nothing answers"),
    ]:
        at = _fill_study(at, presets, folds, **extra)
        errors = texts(at.error)
        assert "The study was not launched (nothing was created)" in errors and message in errors
        assert _studies(ws["root"]) == before
        assert sorted(p.name for p in (ws["root"] / "runs").iterdir()) == runs


def test_train_launches_a_study_whose_coordinator_is_a_detached_process(ws, no_workers):
    before = set(_studies(ws["root"]))
    at = _fill_study(run_app("pages/2_Train.py"), ["demo_scratch"], 3)
    assert "started: 3 runs (demo_scratch x 3 folds x 1 seed(s))" in texts(at.success)
    new = [s for s in _studies(ws["root"]) if s not in before]
    assert len(new) == 1
    folder = ws["root"] / "studies" / new[0]
    study = read_study(folder)
    assert [(r["preset"], r["fold"]) for r in study["runs"]] == [("demo_scratch", f) for f in range(3)]
    for entry in study["runs"]:
        config = json.loads((ws["root"] / entry["path"] / "config.json").read_text())
        assert config["study"]["id"] == folder.name and config["kfold"]["k"] == 3
    pid = json.loads((folder / "status.json").read_text())["pid"]
    assert pid and pid != os.getpid()
    with open(f"/proc/{pid}/stat") as fh:  # not a child of this process: detached
        assert int(fh.read().rsplit(")", 1)[1].split()[1]) != os.getpid()
    at = run_app("pages/2_Train.py")
    assert any(s.value == "Queue and running runs (3)" for s in at.subheader)
    cancel_study(folder)
    assert _wait_ended(folder)["state"] == "cancelled"
