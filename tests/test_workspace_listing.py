"""cnmc_core.workspace.listing: runs and ensembles listed once, its views (members, counts), the
signature, and cnmc_core.workspace.progress (progress text)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pandas as pd
import pytest
from run_fixtures import DAMAGES

from cnmc_core.analysis.experiments import (
    default_selection,
    runs_table,
)
from cnmc_core.workspace.layout import append_history, create_run
from cnmc_core.workspace.listing import (
    EXPERIMENT_COLUMNS,
    display_name,
    list_experiments,
    workspace_signature,
)
from cnmc_core.workspace.progress import run_progress
from cnmc_core.workspace.status import write_status
from cnmc_core.workspace.views import list_members, workspace_counts


# --------------------------------------------------------------------------- listing
def test_list_experiments_lists_runs_and_ensembles_together(ws_copy):
    frame = list_experiments(ws_copy["root"])
    assert list(frame.columns) == EXPERIMENT_COLUMNS
    assert sorted(frame["kind"].value_counts().items()) == [("ensemble", 1), ("run", 4)]
    ens = frame[frame["kind"] == "ensemble"].iloc[0]
    assert ens["state"] == "completed" and ens["model"] == "ensemble:mean"
    assert ens["protocol"] == "subject" and 0 <= ens["test_weighted_f1"] <= 1
    assert ens["run_id"] == ws_copy["ensemble"].name
    failed = frame[frame["state"] == "failed"].iloc[0]
    assert "MemoryError" in failed["error"]
    # newest first
    assert list(frame["created_ts"]) == sorted(frame["created_ts"], reverse=True)


def test_runs_created_in_the_same_second_keep_their_creation_order(tmp_path):
    runs = [create_run({"name": name, "model": "m", "stages": [{"epochs": 1}]}, tmp_path)
            for name in ("zeta", "alpha", "mid")]  # names sort otherwise
    frame = list_experiments(tmp_path)
    assert list(frame["run_id"]) == [p.name for p in reversed(runs)]
    assert list(runs_table(frame)["run_id"]) == [p.name for p in runs]


def test_list_experiments_on_empty_workspace(tmp_path):
    frame = list_experiments(tmp_path)
    assert frame.empty and list(frame.columns) == EXPERIMENT_COLUMNS
    assert workspace_counts(frame) == {"runs": 0, "completed": 0, "active": 0, "running": 0, "queued": 0,
                                       "failed": 0, "cancelled": 0, "damaged": 0, "ensembles": 0}
    assert runs_table(frame).empty


def test_damaged_ensemble_folder_is_listed_as_damaged(tmp_path):
    folder = tmp_path / "ensembles" / "ens-broken"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{not json")
    frame = list_experiments(tmp_path)
    assert frame.iloc[0]["state"] == "damaged" and "not valid JSON" in frame.iloc[0]["error"]
    assert str(folder / "config.json") in frame.iloc[0]["error"]


def test_workspace_counts_and_signature_changes(ws_copy, tmp_path):
    frame = list_experiments(ws_copy["root"])
    assert workspace_counts(frame) == {"runs": 4, "completed": 3, "active": 0, "running": 0, "queued": 0,
                                       "failed": 1, "cancelled": 0, "damaged": 0, "ensembles": 1}
    root = tmp_path / "a"
    shutil.copytree(ws_copy["root"] / "runs", root / "runs")
    before = workspace_signature(root)
    assert before == workspace_signature(root)
    run = next(p for p in (root / "runs").iterdir() if p.is_dir() and not p.name.startswith("."))
    time.sleep(0.01)
    append_history(run, {"epoch": 9, "loss": 0.1})  # a finished run's files changed
    assert workspace_signature(root) != before


def test_display_name_strips_creation_time():
    assert display_name("20261126-005214-demo_scratch-7700") == "demo_scratch-7700"
    assert display_name("ens-ga-20261126-010203-abc123") == "ens-ga-abc123"
    assert display_name("my-own-name") == "my-own-name"


def test_runs_table_is_oldest_first_with_ci_text_and_leak_label(ws_copy):
    table = runs_table(list_experiments(ws_copy["root"]))
    assert list(table["created_ts"]) == sorted(table["created_ts"])
    row = table[table["kind"] == "run"].iloc[0]
    assert row["state"] == "completed" and row["epochs"] == "2 of 2"
    assert row["test F1 [95% CI]"].count("[") == 1 and row["test F1 [95% CI]"].endswith("]")
    failed = table[table["state"] == "failed"].iloc[0]
    assert failed["test F1 [95% CI]"] == "" and failed["epochs"] == "1 of 3"
    # the ensemble has no epochs; a leaky protocol is labelled as such
    assert table[table["kind"] == "ensemble"].iloc[0]["epochs"] == ""
    frame = list_experiments(ws_copy["root"]).assign(protocol="paper")
    assert set(runs_table(frame)["protocol"]) == {"paper (leaky: split by image)"}


def test_default_selection_takes_the_newest_completed():
    table = pd.DataFrame({"state": ["completed", "failed", "completed", "running", "completed"]})
    assert default_selection(table) == [0, 2, 4]
    assert default_selection(table, limit=2) == [2, 4]
    assert default_selection(table.iloc[[1, 3]]) == []


# --------------------------------------------------------------------------- progress
@pytest.mark.parametrize("status, fraction, text", [
    ({"state": "queued", "message": "waiting in the queue"}, 0.0, "queued - waiting in the queue"),
    ({"state": "running", "epoch": 3, "epochs": 8, "batch": 10, "batches": 40, "stage": "train",
      "message": "train: epoch 3"}, (2 + 0.25) / 8, "running - train: epoch 3 of 8, batch 10 of 40"),
    ({"state": "running", "epoch": 0, "epochs": 8, "message": "preprocessing images 5/65"}, 0.0,
     "running - preprocessing images 5/65"),
    ({"state": "completed", "epoch": 4, "epochs": 8}, 1.0, "completed - 4 epochs"),
    ({"state": "failed", "epoch": 1, "epochs": 4, "error": "MemoryError: boom"}, 0.25, "failed - MemoryError: boom"),
    ({"state": "cancelled", "epoch": 0, "epochs": 0, "message": "cancelled by the user"}, 0.0,
     "cancelled - cancelled by the user"),
    # a damaged run's row in a table: NaN and missing counts
    ({"state": "failed", "epoch": float("nan"), "epochs": float("nan"), "error": "not valid JSON"}, 0.0,
     "failed - not valid JSON"),
    ({"state": "running", "epoch": "x", "epochs": None, "message": "starting"}, 0.0, "running - starting"),
])
def test_run_progress(status, fraction, text):
    got_fraction, got_text = run_progress(status)
    assert got_fraction == pytest.approx(fraction) and got_text == text


def test_run_progress_mentions_a_non_epoch_message():
    _, text = run_progress({"state": "running", "epoch": 2, "epochs": 2, "batch": 4, "batches": 4,
                            "stage": "train", "message": "scoring val and test"})
    assert text.endswith("(scoring val and test)")


_GA = {"kind": "ensemble", "state": "running", "fitting": "ga", "step": 2, "steps": 4,
       "restart": 2, "restarts": 4, "generation": 50, "generations": 100,
       "message": "ga: restart 2 of 4, generation 50 of 100"}


@pytest.mark.parametrize("status, fraction, text", [
    (_GA, (1 + (1 + 0.5) / 4) / 4, "running - method 2 of 4: ga: restart 2 of 4, generation 50 of 100"),
    ({**_GA, "fitting": "mean", "step": 1, "message": "fitting mean"}, 0.0,
     "running - method 1 of 4: fitting mean"),
    ({**_GA, "fitting": None, "step": 4, "message": "scoring and writing predictions and metrics"},
     1.0, "running - method 4 of 4: scoring and writing predictions and metrics"),
    ({"kind": "ensemble", "state": "running", "step": 0, "steps": 4, "message": "starting"}, 0.0,
     "running - starting"),
    ({**_GA, "state": "completed"}, 1.0, "completed"),
    ({**_GA, "state": "failed", "error": "the ensemble search's process (pid 7) is gone"},
     (1 + (1 + 0.5) / 4) / 4, "failed - the ensemble search's process (pid 7) is gone"),
])
def test_run_progress_of_an_ensemble_search(status, fraction, text):
    got_fraction, got_text = run_progress(status)
    assert got_fraction == pytest.approx(fraction) and got_text == text


# --------------------------------------------------------------------------- damage
@pytest.fixture
def run_copy(ws_copy, tmp_path):
    """A workspace with a copy of one completed run (files and summary as training left them)."""
    from cnmc_core.workspace.listing import forget_summaries

    root = tmp_path / "artifacts"
    run = root / "runs" / ws_copy["runs"][0].name
    shutil.copytree(ws_copy["runs"][0], run)
    forget_summaries()
    return root, run


@pytest.mark.parametrize("name, damage, words", DAMAGES, ids=[d[0] for d in DAMAGES])
def test_a_damaged_run_is_listed_damaged_with_its_reason(run_copy, name, damage, words):
    root, run = run_copy
    assert list_experiments(root).loc[0, "state"] == "completed"  # its summary is known now
    before = workspace_signature(root)
    damage(run)
    row = list_experiments(root).iloc[0]
    assert row["state"] == "damaged" and row["run_id"] == run.name and row["path"] == str(run)
    assert all(w in row["error"] for w in words), row["error"]
    assert workspace_signature(root) != before
    members, skipped = list_members(root)
    assert members.empty and skipped.loc[0, "state"] == "damaged"
    assert skipped.loc[0, "reason"] == row["error"]
    assert workspace_counts(list_experiments(root))["damaged"] == 1


def test_a_symlink_out_of_the_workspace_is_listed_damaged_unread(run_copy, tmp_path):
    root, run = run_copy
    outside = tmp_path / "elsewhere"
    shutil.move(str(run), outside)
    (root / "runs" / "link").symlink_to(outside, target_is_directory=True)
    (root / "runs" / "dangling").symlink_to(root / "runs" / "missing", target_is_directory=True)
    (outside / "summary.json").unlink()  # were it read, the listing would write a new one
    frame = list_experiments(root).set_index("run_id")
    assert frame.loc["link", "state"] == "damaged"
    assert f"is a symlink to {outside}, outside the workspace" in frame.loc["link", "error"]
    assert not (outside / "summary.json").exists()
    assert frame.loc["dangling", "state"] == "damaged"
    assert "which is not a folder" in frame.loc["dangling", "error"]


# --------------------------------------------------------------------------- signature
def test_the_signature_ignores_heartbeats_and_follows_every_change_of_state(run_copy):
    from cnmc_core.workspace.status import Heartbeat

    root, done = run_copy
    config = {"name": "live", "model": "cnn", "stages": [{"epochs": 3}]}
    signatures = [workspace_signature(root)]
    live = create_run(config, root)  # queued
    signatures.append(workspace_signature(root))
    beat = Heartbeat(live, interval=0.05)
    beat.update(state="running", pid=os.getpid(), epoch=1, epochs=3, message="training")
    beat.start()
    try:
        signatures.append(workspace_signature(root))
        time.sleep(0.3)  # several beats and a new epoch: the same key
        beat.note(epoch=2)
        time.sleep(0.2)
        assert workspace_signature(root) == signatures[-1]
        assert list_experiments(root).set_index("run_id").loc[live.name, "epoch"] == 2
    finally:
        beat.finish()  # ends: completed
    signatures.append(workspace_signature(root))
    ghost = create_run(config, root)
    write_status(ghost, state="running", pid=_dead_pid(), heartbeat=time.time())
    signatures.append(workspace_signature(root))  # a killed job: failed by liveness
    assert list_experiments(root).set_index("run_id").loc[ghost.name, "state"] == "failed"
    shutil.rmtree(ghost)
    signatures.append(workspace_signature(root))  # deleted
    (done / "metrics.json").write_text("[")
    signatures.append(workspace_signature(root))  # damaged
    assert len(set(signatures)) == len(signatures), signatures


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_an_unchanged_workspace_is_listed_without_reading_its_runs(ws_copy, monkeypatch):
    import cnmc_core.workspace.listing as L

    list_experiments(ws_copy["root"])
    reads = []
    monkeypatch.setattr(L, "read_summary", lambda path: reads.append(path))
    monkeypatch.setattr(L, "build_summary", lambda *a: reads.append(a))
    frame = list_experiments(ws_copy["root"])
    workspace_signature(ws_copy["root"])
    assert reads == [] and len(frame) == 5


def test_a_fresh_process_lists_from_the_summary_index_checked_like_each_summary(run_copy,
                                                                                monkeypatch):
    import cnmc_core.workspace.listing as L
    from cnmc_core.workspace.summary import read_summary

    root, run = run_copy
    expected = list_experiments(root)
    index = L.read_summary_index(root)
    assert list(index) == [f"run/{run.name}"] and index[f"run/{run.name}"] == read_summary(run)
    L.forget_summaries()
    (run / "summary.json").unlink()  # the index alone tells the listing what the run holds
    reads = []
    monkeypatch.setattr(L, "build_summary", lambda *a: reads.append(a))
    monkeypatch.setattr(L, "read_summary", lambda path: reads.append(path))
    pd.testing.assert_frame_equal(list_experiments(root), expected)
    assert reads == []
    monkeypatch.undo()
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["val"]["weighted_f1"] = 0.321
    (run / "metrics.json").write_text(json.dumps(metrics))  # the index entry is stale now
    L.forget_summaries()
    assert list_experiments(root).loc[0, "val_weighted_f1"] == 0.321
    assert L.read_summary_index(root)[f"run/{run.name}"]["val_weighted_f1"] == 0.321
    (root / L.SUMMARY_INDEX).write_bytes(b"\xff damaged")  # a cache: ignored, then rewritten
    L.forget_summaries()
    assert list_experiments(root).loc[0, "val_weighted_f1"] == 0.321
    assert f"run/{run.name}" in L.read_summary_index(root)
    shutil.rmtree(run)
    assert list_experiments(root).empty and L.read_summary_index(root) == {}


def test_a_copied_run_folder_lists_under_its_own_name(run_copy):
    """A copy keeps its source's run_id in config.json (and its summary.json); it lists under the
    folder's name, by which verbs find it, not as a second row of its source."""
    from cnmc_core.workspace.listing import forget_summaries

    root, run = run_copy
    backup = root / "runs" / f"{run.name}-backup"
    shutil.copytree(run, backup)
    forget_summaries()
    frame = list_experiments(root)
    assert sorted(frame["run_id"]) == sorted([run.name, backup.name])
    assert dict(zip(frame["run_id"], frame["path"]))[backup.name] == str(backup)
