"""AppTest tests of the entry page, Data, Train and Compare, over the fixture workspace (three
completed tiny runs, a failed one, plus a mean ensemble added here) and an empty workspace.

Each test points ``CNMC_ARTIFACTS`` at its own copy of the workspace, so nothing written here
(workspace.json, scans, launched runs) reaches other tests. Long actions are replaced by fakes
where only the page's handling is under test (creating the demo dataset, queueing the demo runs,
starting a worker); the real ones are covered by test_compare.py and test_browser.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import make_kaggle_tree
from streamlit.testing.v1 import AppTest

from cnmc_core.workspace.layout import create_run
from cnmc_core.workspace.status import read_status

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 60


@pytest.fixture(scope="module")
def base_ws(workspace, tmp_path_factory):
    """The session workspace plus a mean ensemble of its three completed runs (built once)."""
    from cnmc_core.ensemble.search import run_search

    root = tmp_path_factory.mktemp("pages") / "artifacts"
    shutil.copytree(workspace["artifacts"], root)
    runs = sorted(p for p in (root / "runs").iterdir() if "fixture_" in p.name)
    run_search(runs, method="mean", methods=("mean",), n_boot=20, out_dir=root / "ensembles",
               runs_root=root)
    return root


@pytest.fixture
def ws(base_ws, workspace, tmp_path, monkeypatch):
    """A private copy of the workspace with the fixture dataset chosen; CNMC_ARTIFACTS set."""
    root = tmp_path / "artifacts"
    shutil.copytree(base_ws, root, ignore=shutil.ignore_patterns("model.keras", "cache"))
    (root / "workspace.json").write_text(json.dumps({"dataset": str(workspace["data"])}))
    monkeypatch.setenv("CNMC_ARTIFACTS", str(root))
    return {"root": root, "data": workspace["data"]}


@pytest.fixture
def empty_ws(tmp_path, monkeypatch):
    root = tmp_path / "empty"
    monkeypatch.setenv("CNMC_ARTIFACTS", str(root))
    return root


def run_app(page: str | None = None) -> AppTest:
    """Run app.py (and switch to ``page``), failing on any exception shown to the user."""
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT).run()
    assert_clean(at)
    if page:
        at.switch_page(page).run()
        assert_clean(at)
    return at


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def button(at: AppTest, label: str):
    matches = [b for b in at.button if b.label == label]
    assert matches, f"no button {label!r} in {[b.label for b in at.button]}"
    return matches[0]


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


# --------------------------------------------------------------------------- entry page
def test_home_on_an_empty_workspace_offers_the_first_steps(empty_ws):
    at = run_app()
    assert at.title[0].value.startswith("C-NMC 2019")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Completed runs"] == "0" and metrics["Dataset"] == "none"
    assert not button(at, "Create the demo dataset").disabled
    assert button(at, "Train the four demo models").disabled


def test_home_creates_the_demo_dataset_with_progress_and_remembers_it(empty_ws, monkeypatch, tmp_path):
    import cnmc_core.demo as demo

    calls = []

    def fake_create(root=None, seed=0, progress=None):
        target = demo.demo_data_root(root)
        make_kaggle_tree(tmp_path / "tree")
        shutil.copytree(tmp_path / "tree", target)
        (target / ".synth_info.json").write_text("{}")
        for done in (0, 5, 10):
            progress(done, 10)
            calls.append(done)
        return target

    monkeypatch.setattr(demo, "create_demo_dataset", fake_create)
    at = run_app()
    button(at, "Create the demo dataset").click().run()
    assert_clean(at)
    assert calls == [0, 5, 10]
    assert "The demo dataset is ready." in texts(at.success)
    saved = json.loads((empty_ws / "workspace.json").read_text())
    assert saved["dataset"] == str((empty_ws / "demo-data").resolve())
    assert not button(at, "Train the four demo models").disabled


def test_home_queues_the_demo_runs_and_shows_their_progress(ws, monkeypatch):
    import cnmc_core.demo as demo

    queued = []

    def fake_queue(root=None, data=None, presets=demo.DEMO_PRESETS, *, actor=None):
        assert actor is not None and actor.via == "dashboard"  # the page passes who acts
        # create the runs without starting workers: they stay queued
        for name in presets:
            queued.append(create_run({"name": name, "model": name, "stages": [{"epochs": 3}]}, root))
        return queued

    monkeypatch.setattr(demo, "queue_demo_runs", fake_queue)
    at = run_app()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Completed runs"] == "3" and metrics["Failed runs"] == "1" and metrics["Ensembles"] == "1"
    button(at, "Train the four demo models").click().run()
    assert_clean(at)
    assert len(queued) == 4
    assert "Active runs" in texts(at.markdown)
    progress = at.get("progress")
    assert len(progress) == 4 and all("queued" in p.proto.text for p in progress)
    # while runs are active the button is disabled, so a second click cannot queue them twice
    assert button(at, "Train the four demo models").disabled


def test_home_lists_running_ensemble_searches_apart_from_the_runs(ws):
    import os
    import time

    from cnmc_core.workspace.status import proc_start_time, write_status

    folder = ws["root"] / "ensembles" / "ens-ga-20260101-000000-busy01"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({
        "kind": "ensemble", "ensemble_id": folder.name, "model": "ensemble:ga",
        "members": ["a", "b"], "method": "ga", "created": time.time()}))
    write_status(folder, kind="ensemble", state="running", pid=os.getpid(),
                 pid_start=proc_start_time(os.getpid()), heartbeat=time.time(), fitting="ga",
                 step=2, steps=3, restart=1, restarts=2, generation=3, generations=10,
                 message="ga: restart 1 of 2, generation 3 of 10")
    at = run_app()
    markdown = texts(at.markdown)
    assert "**Latest runs**" in markdown and "Active runs" not in markdown
    assert "**Ensemble searches running**" in markdown
    bars = [p.proto.text for p in at.get("progress")]
    searches = [b for b in bars if "ens-ga-busy01" in b]
    assert searches == [":material/sync: `ens-ga-busy01` (ensemble:ga): running - method 2 of 3: "
                        "ga: restart 1 of 2, generation 3 of 10"]
    assert len(bars) == 5  # the four latest runs, then the search
    create_run({"name": "queued_one", "model": "cnn", "stages": [{"epochs": 2}]}, ws["root"])
    at = run_app()
    assert "**Active runs** (trained one at a time, in this order)" in texts(at.markdown)
    bars = [p.proto.text for p in at.get("progress")]
    assert len(bars) == 2 and "`queued_one` (cnn): queued" in bars[0] and "busy01" in bars[1]


def test_home_says_when_the_chosen_dataset_is_gone(ws):
    (ws["root"] / "workspace.json").write_text(json.dumps({"dataset": "/no/such/dataset"}))
    at = run_app()
    assert "no longer exists" in texts(at.error)


# --------------------------------------------------------------------------- Data
def test_data_page_on_an_empty_workspace(empty_ws):
    at = run_app("pages/1_Data.py")
    assert "No dataset chosen yet" in texts(at.info)
    button(at, "Use this dataset").click().run()
    assert "Type the path of a dataset folder" in texts(at.error)
    at.text_input[0].input("/no/such/folder")
    button(at, "Use this dataset").click().run()
    assert_clean(at)
    assert "does not exist on this machine" in texts(at.error)
    assert not (empty_ws / "workspace.json").exists()


def test_data_page_chooses_a_folder_and_shows_its_contents(empty_ws, workspace):
    at = run_app("pages/1_Data.py")
    at.text_input[0].input(str(workspace["data"]))
    button(at, "Use this dataset").click().run()
    assert_clean(at)
    assert json.loads((empty_ws / "workspace.json").read_text())["dataset"] == str(Path(workspace["data"]).resolve())
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Images"] == "65" and metrics["Skipped files"] == "0"
    assert metrics["Subjects (ALL / HEM)"] == "10 / 8"
    counts = at.dataframe[0].value
    assert counts.loc["total", "total"] == 65
    assert len(at.get("plotly_chart")) == 1  # images per subject
    # gallery (6 per class) + preprocessing preview (raw, crop, CLAHE, resized)
    images = at.get("image")
    assert len(images) == 12 + 4
    assert "subject-disjoint" in texts(at.success).lower()


def test_data_page_protocol_choice_warns_about_the_leak_and_persists(ws):
    at = run_app("pages/1_Data.py")
    at.radio(key="protocol_choice").set_value("paper").run()
    assert_clean(at)
    assert "leaks subjects" in texts(at.warning)
    assert "have cells in both train and test" in texts(at.error)
    assert json.loads((ws["root"] / "workspace.json").read_text())["split_protocol"] == "paper"
    # a reload (a new session) keeps the choice
    at = run_app("pages/1_Data.py")
    assert at.radio(key="protocol_choice").value == "paper"


def test_data_page_preview_size_and_other_samples(ws):
    at = run_app("pages/1_Data.py")
    at.selectbox(key="preview_size").set_value(64).run()
    assert_clean(at)
    assert "resized to 64x64" in str(at.get("image")[-1].proto)
    before = at.selectbox(key="preview_image").options
    button(at, "Show other samples").click().run()
    assert_clean(at)
    assert at.selectbox(key="preview_image").options != before


def test_data_page_explains_a_dataset_without_subjects(ws, tmp_path):
    from conftest import cell_image, write_image

    plain = tmp_path / "plain"
    for i in range(4):
        write_image(plain / "all" / f"a{i}.png", cell_image(seed=i))
        write_image(plain / "hem" / f"h{i}.png", cell_image(seed=10 + i))
    (plain / "readme.txt").write_text("not an image")
    (ws["root"] / "workspace.json").write_text(json.dumps({"dataset": str(plain)}))
    at = run_app("pages/1_Data.py")
    assert "cannot be split with the `subject` protocol" in texts(at.error)
    assert {m.label: m.value for m in at.metric}["Skipped files"] == "1"
    assert any("skipped file" in e.label for e in at.expander)


def test_data_page_with_a_deleted_dataset(ws):
    (ws["root"] / "workspace.json").write_text(json.dumps({"dataset": "/no/such/dataset"}))
    at = run_app("pages/1_Data.py")
    assert "does not exist any more" in texts(at.error)


# --------------------------------------------------------------------------- Train
def test_train_page_shows_the_failed_run_and_its_log(ws):
    at = run_app("pages/2_Train.py")
    assert "MemoryError: out of memory while training" in texts(at.error)
    assert "Traceback (most recent call last)" in at.code[0].value
    assert "No run is queued or training" in texts(at.info)
    finished = at.dataframe[0].value
    assert sorted(finished["state"]) == ["completed"] * 4 or sorted(set(finished["state"])) == ["completed", "failed"]
    assert at.text_input(key="demo_scratch:data").value == str(ws["data"])


def test_train_page_mistakes_are_errors_that_say_what_to_do(ws):
    at = run_app("pages/2_Train.py")
    at.text_input(key="demo_scratch:data").input("")
    button(at, "Launch run").click().run()
    assert_clean(at)
    assert "No dataset: choose one on the Data page" in texts(at.error)
    at.text_input(key="demo_scratch:data").input(str(ws["data"]))
    at.number_input(key="demo_scratch:cap").set_value(3)
    button(at, "Launch run").click().run()
    assert "Max images per split must be 0 (use every image) or at least 6" in texts(at.error)
    at.number_input(key="demo_scratch:cap").set_value(0)
    at.selectbox(key="demo_scratch:weights").set_value("a .h5 file")
    button(at, "Launch run").click().run()
    assert "type the path of the notop weights file" in texts(at.error)
    assert not [p for p in (ws["root"] / "runs").iterdir() if "demo_scratch" in p.name and
                read_status(p)["state"] == "queued"]


def test_train_page_launches_then_cancels_a_queued_run(ws, monkeypatch):
    import cnmc_core.training.launch as launch

    launched = []

    def fake_launch(config, root=None, *, detach=True, actor=None):  # no worker: stays queued
        assert actor is not None and actor.role == "admin"  # no CNMC_AUTH: the OS user
        run = create_run({**config, "launched_by": actor.launched_by}, root)
        launched.append((run, config))
        return run

    monkeypatch.setattr(launch, "start_run", fake_launch)
    at = run_app("pages/2_Train.py")
    at.selectbox(key="preset").set_value("paper_vgg16_block4").run()
    assert [n.label for n in at.number_input if n.key.endswith(("epochs0", "epochs1"))] == ["Epochs (max)"] * 2
    at.selectbox(key="paper_vgg16_block4:weights").set_value("none")
    at.selectbox(key="paper_vgg16_block4:size").set_value(64)
    at.number_input(key="paper_vgg16_block4:epochs0").set_value(1)
    at.number_input(key="paper_vgg16_block4:epochs1").set_value(2)
    at.number_input(key="paper_vgg16_block4:lr1").set_value(0.0001)
    button(at, "Launch run").click().run()
    assert_clean(at)
    assert "is queued" in texts(at.success)
    (run, config), = launched
    assert config["model"] == "vgg16_block4" and config["image_size"] == 64 and config["weights"] == "none"
    assert [s["epochs"] for s in config["stages"]] == [1, 2] and config["stages"][1]["learning_rate"] == 1e-4
    assert config["split_protocol"] == "subject"  # the Data page's choice, not the preset's leaky one
    at = run_app("pages/2_Train.py")
    assert any(s.value.startswith("Queue and running runs (1)") for s in at.subheader)
    assert "queued" in at.get("progress")[0].proto.text
    button(at, "Cancel").click().run()
    assert_clean(at)
    assert read_status(run)["state"] == "cancelled"


def test_train_page_on_an_empty_workspace(empty_ws):
    at = run_app("pages/2_Train.py")
    assert "No dataset: choose one" not in texts(at.error)
    assert "None yet." in texts(at.caption)
    button(at, "Launch run").click().run()
    assert "No dataset: choose one on the Data page" in texts(at.error)


# --------------------------------------------------------------------------- Compare
def test_compare_on_an_empty_workspace(empty_ws):
    at = run_app("pages/3_Compare.py")
    assert "No run or ensemble yet" in texts(at.info)


def test_compare_shows_every_section_for_the_completed_runs(ws):
    at = run_app("pages/3_Compare.py")
    table = at.dataframe[0].value
    assert len(table) == 5 and sorted(table["kind"]) == ["ensemble", "run", "run", "run", "run"]
    assert at.session_state["runs_table"]["selection"]["rows"] == [0, 1, 2, 4]  # completed ones, not the failed
    subheaders = [s.value for s in at.subheader]
    assert subheaders == ["Runs", "Learning curves", "Confusion matrices", "ROC and precision-recall curves",
                          "Config diff", "Metrics table", "Share"]
    # curves + 4 confusion matrices + their difference + ROC + PR
    assert len(at.get("plotly_chart")) == 1 + 4 + 1 + 2
    metrics = at.dataframe[-1].value
    assert len(metrics) == 4 and {"weighted_f1", "f1_ci_low", "f1_ci_high", "roc_auc"} <= set(metrics.columns)
    assert set(metrics["split"]) == {"test"}
    assert len(at.get("download_button")) == 2  # the metrics as CSV, the report
    diff = at.dataframe[1].value  # runs and an ensemble: fields only one kind has show as "-"
    assert "model" in diff.index and "split_protocol" not in diff.index
    assert diff.loc["batch_size"].tolist()[-1] == "-"


def test_compare_controls(ws):
    at = run_app("pages/3_Compare.py")
    at.radio(key="curve_x").set_value("time").run()
    at.radio(key="curve_smoothing").set_value("none").run()
    at.selectbox(key="curve_metric").set_value("accuracy").run()
    at.toggle(key="curve_log_y").set_value(True).run()
    assert_clean(at)
    assert at.slider(key="curve_weight").disabled
    at.radio(key="compare_split").set_value("val").run()
    assert_clean(at)
    assert set(at.dataframe[-1].value["split"]) == {"val"}
    at.selectbox(key="diff_b").set_value(at.selectbox(key="diff_a").value).run()
    assert "Choose two different runs." in texts(at.info)
    at.toggle(key="hide_identical").set_value(False).run()
    assert "batch_size" in at.dataframe[1].value.index


def test_compare_selection_of_the_failed_run_only(ws):
    at = run_app("pages/3_Compare.py")
    failed_row = list(at.dataframe[0].value["state"]).index("failed")
    at.session_state["runs_table"] = {"selection": {"rows": [failed_row], "columns": [], "cells": []}}
    at.run()
    assert_clean(at)
    info = texts(at.info)
    assert "None of the selected runs has finished" in info and "has metrics yet" in info
    assert len(at.get("plotly_chart")) == 1  # its one epoch still draws a learning curve


def test_compare_warns_about_mixed_and_leaky_protocols(ws):
    run = next(p for p in (ws["root"] / "runs").iterdir() if "fixture_scratch_d128" in p.name)
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "split_protocol": "paper"}))
    at = run_app("pages/3_Compare.py")
    warnings = texts(at.warning)
    assert "different split protocols" in warnings and "inflated" in warnings


def test_compare_selection_empty(ws):
    at = run_app("pages/3_Compare.py")
    at.session_state["runs_table"] = {"selection": {"rows": [], "columns": [], "cells": []}}
    at.run()
    assert "Tick rows in the table" in texts(at.info)
    assert len(at.subheader) == 1
