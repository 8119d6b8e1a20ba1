"""cnmc_core.training.launch: a launch form's values turned into a checked config, then a run."""

from __future__ import annotations

import time

import pytest

from cnmc_core.analysis.experiments import (
    read_log_tail,
)
from cnmc_core.exceptions import ConfigError
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
    ({"batch_size": 0}, "'batch_size' must be a positive integer"),
])
def test_build_run_config_errors_say_what_to_do(workspace, kwargs, message):
    from cnmc_core.training.launch import build_run_config

    kwargs = {"data": workspace["data"], **kwargs}
    with pytest.raises(ConfigError, match=message):
        build_run_config("demo_scratch", **kwargs)


def test_launch_checked_refuses_before_creating_anything(workspace, tmp_path):
    from cnmc_core.training.launch import build_run_config, launch_checked

    config = build_run_config("demo_scratch", data=workspace["data"], image_size=32)  # scratch needs >= 60
    with pytest.raises(ConfigError, match="image_size must be"):
        launch_checked(config, tmp_path)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_launch_checked_trains_a_tiny_run(workspace, tmp_path):
    from cnmc_core.training.launch import build_run_config, launch_checked
    from cnmc_core.workspace.status import effective_status

    config = build_run_config("demo_scratch", data=workspace["data"], epochs=[1], batch_size=16)
    run = launch_checked(config, tmp_path)
    deadline = time.time() + 150
    while time.time() < deadline and effective_status(run)["state"] in ("queued", "running"):
        time.sleep(0.5)
    status = effective_status(run)
    assert status["state"] == "completed", (status, read_log_tail(run))
    assert (run / "metrics.json").is_file() and list_experiments(tmp_path).iloc[0]["state"] == "completed"


def test_experiment_status_of_an_ensemble_and_a_dead_run(ws_copy, tmp_path):
    from cnmc_core.workspace.listing import experiment_status

    assert experiment_status(ws_copy["ensemble"])["state"] == "completed"
    run = create_run({"name": "dead", "model": "m", "stages": [{"epochs": 1}]}, tmp_path)
    write_status(run, state="running", pid=999_999_999, heartbeat=time.time())
    assert experiment_status(run)["state"] == "failed"
