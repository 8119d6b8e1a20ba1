"""Expected run times from a preset's measured epoch times (training.timing) and the demo study's
folds chosen to fit its budget (demo.demo_study_plan), over run folders written by hand."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from cnmc_core.demo import DEMO_PRESETS, demo_runs_done, demo_study_plan
from cnmc_core.training.config import load_preset
from cnmc_core.training.timing import (
    DEFAULT_STARTUP,
    DOCUMENTED,
    expected_run_seconds,
    format_duration,
    preset_timing,
    queued_expectations,
    run_epochs,
)
from cnmc_core.workspace.listing import list_experiments


def write_timed_run(root: Path, run_id: str, preset: str, epoch_seconds: list[float], *,
                    startup: float = 6.0, state: str = "completed", created: float | None = None,
                    stages: list[int] | None = None) -> Path:
    """A run folder whose history.jsonl and status.json record these epoch times (one stage)."""
    path = root / "runs" / run_id
    path.mkdir(parents=True)
    created = created or time.time() - 1000
    (path / "config.json").write_text(json.dumps({
        "run_id": run_id, "kind": "run", "name": preset, "model": "cnn", "image_size": 32,
        "split_protocol": "subject", "seed": 0, "dataset_fingerprint": "fp", "created": created,
        "stages": [{"name": "train", "epochs": e} for e in (stages or [len(epoch_seconds)])],
        "split_counts": {"train_all": 30, "train_hem": 30, "val_all": 10, "val_hem": 10,
                         "test_all": 10, "test_hem": 10}}))
    started = created + 1
    elapsed, lines = 0.0, []
    for i, t in enumerate(epoch_seconds):
        elapsed += t
        lines.append(json.dumps({"stage": "train", "stage_index": 0, "epoch": i + 1,
                                 "stage_epoch": i + 1, "time": started + startup / 2 + elapsed,
                                 "elapsed": elapsed, "loss": 0.5}))
    (path / "history.jsonl").write_text("".join(line + "\n" for line in lines))
    status = {"state": state, "created": created, "heartbeat": time.time()}
    if state == "completed":
        status.update(started=started, finished=started + startup + elapsed)
        (path / "predictions.csv").write_text("image_id,split,y,prob,subject\n"
                                              "a.bmp,val,1,0.8,1\nb.bmp,val,0,0.3,H1\n"
                                              "c.bmp,test,1,0.7,2\nd.bmp,test,0,0.4,H2\n")
        (path / "metrics.json").write_text(json.dumps({"threshold": 0.5}))
    (path / "status.json").write_text(json.dumps(status))
    return path


def test_epoch_time_is_measured_on_the_completed_runs_of_the_preset(tmp_path):
    write_timed_run(tmp_path, "20260101-000001-demo_scratch-aaaa", "demo_scratch", [4.0, 6.0, 5.0],
                    startup=8.0)
    write_timed_run(tmp_path, "20260101-000002-demo_scratch-bbbb", "demo_scratch", [5.0, 5.0],
                    startup=10.0)
    write_timed_run(tmp_path, "20260101-000003-demo_vgg16-cccc", "demo_vgg16", [50.0])
    timing = preset_timing("demo_scratch", list_experiments(tmp_path))
    assert timing.epoch_seconds == pytest.approx(5.0) and timing.n_runs == 2
    assert timing.startup_seconds == pytest.approx(9.0)
    assert timing.train_share == pytest.approx(0.6)
    assert "measured here on 2 completed runs of demo_scratch" == timing.source
    # 8 epochs on the same share; a 5-fold study's run trains on 3 folds of 5 (same share)
    assert expected_run_seconds(timing, 8) == pytest.approx(9.0 + 40.0)
    assert expected_run_seconds(timing, 8, 1 / 3) == pytest.approx(9.0 + 40.0 * (1 / 3) / 0.6)


def test_without_a_completed_run_the_documented_figure_is_used_and_named(tmp_path):
    write_timed_run(tmp_path, "20260101-000001-demo_vgg16-aaaa", "demo_vgg16", [3.0],
                    state="failed")
    timing = preset_timing("demo_vgg16", list_experiments(tmp_path))
    assert timing.epoch_seconds == DOCUMENTED["demo_vgg16"] and timing.n_runs == 0
    assert timing.startup_seconds == DEFAULT_STARTUP and "documented figure" in timing.source
    assert preset_timing("paper_vgg16_block4", list_experiments(tmp_path)) is None


def test_queued_runs_get_their_expected_time(tmp_path):
    write_timed_run(tmp_path, "20260101-000001-demo_scratch-aaaa", "demo_scratch", [10.0, 10.0],
                    startup=5.0)
    write_timed_run(tmp_path, "20260101-000009-demo_scratch-qqqq", "demo_scratch", [],
                    state="queued", created=time.time(), stages=[3, 2])
    write_timed_run(tmp_path, "20260101-000010-other-qqqq", "other", [], state="queued",
                    created=time.time())
    experiments = list_experiments(tmp_path)
    queued = experiments[experiments["state"] == "queued"]
    expected = queued_expectations(queued, experiments)
    assert set(expected) == {"20260101-000009-demo_scratch-qqqq"}  # "other" has no figure
    mine = expected["20260101-000009-demo_scratch-qqqq"]
    assert mine["epochs"] == 5 and mine["seconds"] == pytest.approx(5.0 + 50.0)
    assert mine["epoch_seconds"] == pytest.approx(10.0)


def test_sources_in_one_phrase():
    from cnmc_core.training.timing import sources_text

    assert sources_text({"a": "measured here on 2 completed runs of a", "b": "b's documented figure",
                         "c": "measured here on 1 completed run of c"}) == \
        "measured here for a, c; documented (an idle 2-core machine; a loaded one is slower) for b"


def test_run_epochs_and_durations():
    assert run_epochs(load_preset("demo_scratch")) == 8
    assert [format_duration(s) for s in (45, 210, 9000)] == ["45 s", "3.5 min", "2.5 h"]


def test_demo_study_folds_fit_the_budget(tmp_path):
    assert not demo_runs_done(list_experiments(tmp_path / "none"))
    for i, preset in enumerate(DEMO_PRESETS):
        write_timed_run(tmp_path, f"20260101-00000{i}-{preset}-aaaa", preset, [2.0] * 5, startup=4.0)
    experiments = list_experiments(tmp_path)
    assert demo_runs_done(experiments)
    plan = demo_study_plan(experiments, budget=600)
    k = plan["folds"]
    assert 3 <= k <= 10 and plan["runs"] == 4 * k and plan["seconds"] <= 600
    per_run = {p: 4.0 + run_epochs(load_preset(p)) * 2.0 * ((k - 2) / k) / 0.6 for p in DEMO_PRESETS}
    assert plan["per_preset"] == pytest.approx(per_run)
    assert plan["seconds"] == pytest.approx(k * sum(per_run.values()))
    if k < 10:  # one more fold would not fit
        assert demo_study_plan(experiments, budget=plan["seconds"] - 1e-6)["folds"] < k or k == 3
        bigger = (k + 1) * sum(4.0 + run_epochs(load_preset(p)) * 2.0 * ((k - 1) / (k + 1)) / 0.6
                               for p in DEMO_PRESETS)
        assert bigger > 600
    assert all("measured here" in s for s in plan["sources"].values())
    # a slow machine: even 3 folds overrun, and the plan says how long they take
    slow = demo_study_plan(experiments, budget=10)
    assert slow["folds"] == 3 and slow["seconds"] > 10
