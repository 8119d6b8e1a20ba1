"""cnmc_core.training.launch: a launch form's values turned into a checked config, then a run."""

from __future__ import annotations

import json
import time

import pytest

from cnmc_core.analysis.experiments import (
    read_log_tail,
)
from cnmc_core.exceptions import ConfigError, DataError
from cnmc_core.workspace.layout import create_run
from cnmc_core.workspace.listing import (
    list_experiments,
)
from cnmc_core.workspace.status import write_status


# --------------------------------------------------------------------------- launch from a form
def test_form_defaults_follow_the_preset():
    from cnmc_core.training.launch import form_defaults, preset_models

    d = form_defaults("paper_vgg16_block4")
    assert d["model"] == "vgg16_block4" and d["image_size"] == 224 and d["weights"] == "imagenet"
    assert [s["name"] for s in d["stages"]] == ["feature_extraction", "fine_tune"]
    assert d["max_images_per_split"] == 0
    assert {"scratch_dd256", "vgg16_block4", "resnet50_conv4_v2"} <= set(preset_models())


def test_build_run_config_applies_the_form(workspace):
    from cnmc_core.training.launch import build_run_config

    config = build_run_config("paper_resnet50_conv4_v1", data=workspace["data"], image_size=64, weights="none",
                              split_protocol="subject", balance=False, augment=True, batch_size=8, seed=3,
                              max_images_per_split=0, epochs=[1, 2], learning_rates=[1e-3, 1e-4])
    assert config["image_size"] == 64 and config["weights"] == "none" and config["split_protocol"] == "subject"
    assert config["balance"] is False and config["augment"] is True and config["batch_size"] == 8
    assert config["max_images_per_split"] is None and config["seed"] == 3
    assert [(s["epochs"], s["learning_rate"]) for s in config["stages"]] == [(1, 1e-3), (2, 1e-4)]
    assert config["data"] == str(workspace["data"])


@pytest.mark.parametrize("kwargs, message", [
    ({"data": ""}, "No dataset: choose one on the Data page"),
    ({"data": "/no/such/folder"}, "does not exist; choose an existing folder"),
    ({"epochs": [1, 2]}, "has 1 stage"),
    ({"epochs": [0]}, "epochs of stage 1 .* at least 1"),
    ({"learning_rates": [0.0]}, "learning rate of stage 1 .* positive number"),
    ({"max_images_per_split": 3}, "Max images per split must be 0"),
    ({"image_size": 0}, "input size must be a positive whole number"),
    ({"split_protocol": "random"}, "'split_protocol' must be one of"),
    ({"batch_size": 0}, r"The 'batch_size' parameter of --set must be an int in the range \[1, 65536\]"),
])
def test_build_run_config_errors_say_what_to_do(workspace, kwargs, message):
    from cnmc_core.training.launch import build_run_config

    kwargs = {"data": workspace["data"], **kwargs}
    with pytest.raises(ConfigError, match=message):
        build_run_config("demo_scratch", **kwargs)


def _runs(root):
    runs = root / "runs"
    return sorted(p.name for p in runs.iterdir() if p.is_dir() and not p.name.startswith(".")) \
        if runs.is_dir() else []


def _wait(run, states=("queued", "running"), timeout=150.0):
    from cnmc_core.workspace.status import effective_status

    deadline = time.time() + timeout
    while time.time() < deadline and effective_status(run)["state"] in states:
        time.sleep(0.3)
    return effective_status(run)


def test_start_run_refuses_before_creating_anything(workspace, tmp_path):
    from cnmc_core.training.launch import build_run_config, start_run

    # the demo's pools 2*2*2*2 need at least 16 px
    config = build_run_config("demo_scratch", data=workspace["data"], image_size=8)
    for detach in (True, False):
        with pytest.raises(ConfigError, match=r"The 'image_size' parameter of scratch_dd256 must be an "
                                              r"int in the range \[16, 600\]\. Got 8 instead"):
            start_run(config, tmp_path, detach=detach)
    assert _runs(tmp_path) == []


def test_start_runs_checks_every_config_before_creating_any(workspace, tmp_path):
    from cnmc_core.training.config import resolve_config
    from cnmc_core.training.launch import start_runs

    good = resolve_config("demo_scratch", data=str(workspace["data"]))
    bad = {**good, "model_args": {"dropout": 2}}
    with pytest.raises(ConfigError, match=r"'model_args.dropout' parameter of scratch_dd256 .* Got 2"):
        start_runs([good, bad], tmp_path)
    with pytest.raises(ConfigError, match=r"The 'seed' parameter of the run config must be"):
        start_runs([good, {**good, "seed": -1}], tmp_path)
    # a cap that leaves a split with one class is caught too (it would fail in the worker)
    from test_training_pipeline import one_hem_in_val

    manifest = tmp_path / "manifest.csv"
    one_hem_in_val().to_csv(manifest, index=False)
    capped = {**good, "data": str(manifest), "split_protocol": "official", "max_images_per_split": 6}
    with pytest.raises(DataError, match="The val split has a single class after sampling"):
        start_runs([capped], tmp_path)
    assert _runs(tmp_path) == []


def test_start_run_in_the_foreground_creates_the_folder_only(workspace, tmp_path, monkeypatch):
    from cnmc_core.training.config import resolve_config
    from cnmc_core.training.launch import start_run
    from cnmc_core.workspace.status import read_status

    monkeypatch.chdir(workspace["data"].parent)
    config = resolve_config("demo_scratch", data=workspace["data"].name)  # a relative path
    run = start_run(config, tmp_path, detach=False)
    assert _runs(tmp_path) == [run.name]
    status = read_status(run)
    assert status["state"] == "queued" and status["pid"] is None  # no worker started
    recorded = json.loads((run / "config.json").read_text())
    assert recorded["data"] == str(workspace["data"].resolve())  # recorded absolute
    assert config["data"] == workspace["data"].name  # the caller's config is not changed


def test_demo_runs_are_checked_together(tmp_path):
    from cnmc_core.demo import queue_demo_runs
    from cnmc_core.exceptions import DataError

    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="No C-NMC image found"):
        queue_demo_runs(tmp_path / "art", data=tmp_path / "empty")
    assert _runs(tmp_path / "art") == []


def test_start_run_trains_a_tiny_run(workspace, tmp_path):
    from cnmc_core.training.launch import build_run_config, start_run

    config = build_run_config("demo_scratch", data=workspace["data"], epochs=[1], batch_size=16)
    run = start_run(config, tmp_path)
    status = _wait(run)
    assert status["state"] == "completed", (status, read_log_tail(run))
    assert (run / "metrics.json").is_file() and list_experiments(tmp_path).iloc[0]["state"] == "completed"


# What TensorFlow's C++ side prints that reads like an error in a run's log (issue 12 item 13).
_NOISE = ("E0000", "NodeDef mentions attribute", "use_unbounded_threadpool", "absl::InitializeLog",
          "oneDNN custom operations", "cpu_feature_guard", "W0000", "I0000")


def test_a_cancelled_detached_run_leaves_a_log_without_library_noise(workspace, tmp_path):
    from cnmc_core.training.launch import build_run_config, start_run
    from cnmc_core.workspace.layout import read_history
    from cnmc_core.workspace.queue import cancel_run

    config = build_run_config("demo_scratch", data=workspace["data"], epochs=[300], batch_size=4)
    config["patience"] = 1000  # it would train for minutes: the cancel lands mid-training
    run = start_run(config, tmp_path)
    deadline = time.time() + 150
    while time.time() < deadline and len(read_history(run)) < 2:
        time.sleep(0.2)
    assert len(read_history(run)) >= 2, read_log_tail(run)
    cancel_run(run)
    status = _wait(run, timeout=60)
    assert status["state"] == "cancelled", (status, read_log_tail(run))
    assert len(read_history(run)) < 300
    log = (run / "log.txt").read_text()
    assert "[train] epoch 2/300" in log and "run cancelled" in log
    noisy = [line for line in log.splitlines() if any(n in line for n in _NOISE)]
    assert not noisy, noisy


def test_experiment_status_of_an_ensemble_and_a_dead_run(ws_copy, tmp_path):
    from cnmc_core.workspace.listing import experiment_status

    assert experiment_status(ws_copy["ensemble"])["state"] == "completed"
    run = create_run({"name": "dead", "model": "m", "stages": [{"epochs": 1}]}, tmp_path)
    write_status(run, state="running", pid=999_999_999, heartbeat=time.time())
    assert experiment_status(run)["state"] == "failed"
