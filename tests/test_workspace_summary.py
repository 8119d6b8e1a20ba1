"""cnmc_core.workspace.summary: summary.json written when a job ends, fresh while its files are
unchanged, rebuilt when missing or stale, never kept for an active or damaged folder."""

from __future__ import annotations

import json
import os
import shutil
import time

import pandas as pd
import pytest

from cnmc_core.contracts import SUMMARY
from cnmc_core.workspace import listing
from cnmc_core.workspace.layout import create_run
from cnmc_core.workspace.listing import list_experiments
from cnmc_core.workspace.status import write_status
from cnmc_core.workspace.summary import (
    SUMMARY_FIELDS,
    build_summary,
    folder_stamps,
    group_key,
    is_fresh,
    read_summary,
)
from cnmc_core.workspace.views import list_members


@pytest.fixture
def one_run(ws_copy, tmp_path):
    """A workspace holding a copy of one completed run (copied as `cp -p` would: same mtimes)."""
    root = tmp_path / "artifacts"
    run = root / "runs" / ws_copy["runs"][0].name
    shutil.copytree(ws_copy["runs"][0], run)
    listing.forget_summaries()
    return root, run


def test_the_training_loop_and_the_ensemble_search_leave_a_fresh_summary(ws_copy):
    for path, kind in [(p, "run") for p in ws_copy["runs"]] + [(ws_copy["ensemble"], "ensemble")]:
        stored = read_summary(path)
        assert is_fresh(stored, folder_stamps(path, kind), kind), path
        assert set(SUMMARY_FIELDS) <= set(stored)
    run = read_summary(ws_copy["runs"][0])
    metrics = json.loads((ws_copy["runs"][0] / "metrics.json").read_text())
    assert run["state"] == "completed" and run["has_model"] is True
    assert run["test_weighted_f1"] == metrics["test"]["weighted_f1"]
    assert run["val_f1_low"] == metrics["val"]["ci"]["weighted_f1"]["low"]
    assert run["val_auc"] == metrics["val"]["roc_auc"]
    predictions = pd.read_csv(ws_copy["runs"][0] / "predictions.csv", dtype=str)
    assert run["n_val"] == (predictions["split"] == "val").sum()
    assert run["group"] == group_key("subject", run["dataset"], predictions)
    ensemble = read_summary(ws_copy["ensemble"])
    assert ensemble["group"] == run["group"] and ensemble["weights_ok"] is True
    assert ensemble["preset"] == "ensemble (mean)" and ensemble["members"]


def test_a_summary_is_rebuilt_when_a_file_it_came_from_changes(one_run):
    root, run = one_run
    assert read_summary(run)["test_weighted_f1"] != 0.123
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["test"]["weighted_f1"] = 0.123
    (run / "metrics.json").write_text(json.dumps(metrics))
    assert not is_fresh(read_summary(run), folder_stamps(run, "run"), "run")
    assert list_experiments(root).loc[0, "test_weighted_f1"] == 0.123
    assert read_summary(run)["test_weighted_f1"] == 0.123  # and kept for the next listing
    (run / "model.keras").unlink()
    assert not list_experiments(root).loc[0, "has_model"]


def test_a_missing_or_damaged_summary_is_rebuilt_and_written(one_run):
    root, run = one_run
    expected = read_summary(run)
    (run / SUMMARY).unlink()
    row = list_experiments(root).iloc[0]
    assert row["state"] == "completed" and row["test_weighted_f1"] == expected["test_weighted_f1"]
    assert read_summary(run) == expected
    (run / SUMMARY).write_bytes(b"\xff not json")  # a damaged cache is not the run's damage
    (root / listing.SUMMARY_INDEX).unlink()  # (else the index's entry would be used)
    listing.forget_summaries()
    assert list_experiments(root).loc[0, "state"] == "completed"
    assert read_summary(run) == expected


def test_a_summary_stays_fresh_in_a_copied_folder(one_run, tmp_path):
    root, run = one_run
    copy = tmp_path / "other" / "runs" / run.name
    shutil.copytree(run, copy)  # copy2 keeps sizes and mtimes: the summary holds no path
    assert is_fresh(read_summary(copy), folder_stamps(copy, "run"), "run")


def test_active_and_damaged_folders_are_never_kept(one_run):
    root, run = one_run
    queued = create_run({"name": "q", "model": "cnn", "stages": [{"epochs": 2}]}, root)
    running = create_run({"name": "r", "model": "cnn", "stages": [{"epochs": 2}]}, root)
    write_status(running, state="running", pid=os.getpid(), heartbeat=time.time(), epoch=1,
                 message="training")
    (run / "metrics.json").write_text("[1, 2]")
    frame = list_experiments(root).set_index("run_id")
    assert frame.loc[queued.name, "state"] == "queued"
    assert frame.loc[running.name, "state"] == "running"
    assert frame.loc[running.name, "progress"] == "epoch 1 of 2 (training)"
    assert frame.loc[run.name, "state"] == "damaged"
    assert not (queued / SUMMARY).exists() and not (running / SUMMARY).exists()
    assert read_summary(run)["state"] == "completed"  # the old one stays, stale: never used
    assert not is_fresh(read_summary(run), folder_stamps(run, "run"), "run")


def test_build_summary_never_raises_and_names_the_file(tmp_path):
    folder = tmp_path / "runs" / "x"
    folder.mkdir(parents=True)
    summary = build_summary(folder, "run")
    assert summary["state"] == "damaged" and "config.json is missing" in summary["error"]
    (folder / "config.json").write_text(json.dumps({"name": "x", "seed": "zero"}))
    (folder / "status.json").write_text(json.dumps({"state": "completed"}))
    summary = build_summary(folder, "run")
    assert summary["state"] == "damaged" and "'seed' must be an integer or null; got 'zero'" \
        in summary["error"]
    (folder / "config.json").write_text(json.dumps({"name": "x", "split_protocol": "subject",
                                                    "dataset_fingerprint": "fp"}))
    summary = build_summary(folder, "run")  # completed without predictions
    assert summary["state"] == "damaged" and "has no predictions.csv" in summary["error"]


def test_an_ensemble_has_a_model_only_while_all_its_runs_do(ws_copy, tmp_path):
    root = tmp_path / "artifacts"
    shutil.copytree(ws_copy["root"], root, ignore=shutil.ignore_patterns("cache"))
    ensemble = ws_copy["ensemble"].name
    config = json.loads((root / "ensembles" / ensemble / "config.json").read_text())
    assert config["member_paths"] == [f"runs/{m}" for m in config["members"]]  # the copy's own
    members, _ = list_members(root)
    assert members.set_index("member_id").loc[ensemble, "has_model"]
    (root / "runs" / config["members"][1] / "model.keras").unlink()
    members, _ = list_members(root)
    assert not members.set_index("member_id").loc[ensemble, "has_model"]
    shutil.rmtree(root / "runs" / config["members"][1])
    assert not list_members(root)[0].set_index("member_id").loc[ensemble, "has_model"]
