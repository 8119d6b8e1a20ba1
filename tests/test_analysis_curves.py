"""cnmc_core.analysis.curves: debiased EMA smoothing, history frames, stage boundaries."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cnmc_core.analysis.curves import (
    debiased_ema,
    ema,
    history_frame,
    history_metrics,
    smooth_curves,
    stage_boundaries,
)
from cnmc_core.exceptions import CnmcError
from cnmc_core.workspace.layout import append_history, create_run


# --------------------------------------------------------------------------- smoothing
def test_debiased_ema_starts_at_the_first_value_and_keeps_constants():
    assert debiased_ema([5.0, 5.0, 5.0], 0.9) == pytest.approx([5.0, 5.0, 5.0])
    out = debiased_ema([1.0, 0.0], 0.5)
    # s1 = 0.5 -> /(1-0.5) = 1; s2 = 0.25 -> /(1-0.25) = 1/3
    assert out == pytest.approx([1.0, 1 / 3])
    biased = ema([1.0, 0.0], 0.5)
    assert biased == pytest.approx([0.5, 0.25])


def test_debiased_ema_matches_tensorboard_formula():
    rng = np.random.default_rng(0)
    x, w = rng.normal(size=50), 0.8
    s, expected = 0.0, []
    for i, v in enumerate(x, start=1):
        s = w * s + (1 - w) * v
        expected.append(s / (1 - w ** i))
    assert debiased_ema(x, w) == pytest.approx(expected)
    assert debiased_ema(x, 0.0) == pytest.approx(x)


def test_debiased_ema_skips_nan_without_moving():
    out = debiased_ema([1.0, float("nan"), 1.0], 0.7)
    assert out[0] == pytest.approx(1.0) and math.isnan(out[1]) and out[2] == pytest.approx(1.0)


@pytest.mark.parametrize("weight", [-0.1, 1.0, 1.5, "0.5", True])
def test_smoothing_weight_is_checked(weight):
    with pytest.raises(CnmcError, match=r"smoothing weight must be a number in \[0, 1\)"):
        debiased_ema([1.0], weight)


def _two_stage_history(tmp_path: Path) -> Path:
    run = create_run({"name": "two", "model": "m", "stages": [{"epochs": 2}, {"epochs": 2}]}, tmp_path)
    t0 = 1000.0
    for epoch, (stage, index, loss) in enumerate([("feature_extraction", 0, 1.0), ("feature_extraction", 0, 0.8),
                                                 ("fine_tune", 1, 0.9), ("fine_tune", 1, 0.5)], start=1):
        stage_start = t0 if index == 0 else t0 + 25
        now = t0 + 10 * epoch + (5 if index else 0)
        append_history(run, {"stage": stage, "stage_index": index, "epoch": epoch, "time": now,
                             "elapsed": now - stage_start, "loss": loss, "val_loss": loss + 0.1,
                             "accuracy": 0.5, "learning_rate": 1e-3})
    return run


def test_history_frame_time_axis_and_stage_boundaries(tmp_path):
    history = history_frame(_two_stage_history(tmp_path))
    assert list(history["epoch"]) == [1, 2, 3, 4]
    assert list(history["elapsed_total"]) == pytest.approx([10, 20, 35, 45])
    assert stage_boundaries(history, "epoch") == [(2.5, "fine_tune")]
    assert stage_boundaries(history, "time") == [(27.5, "fine_tune")]
    assert history_metrics([history]) == ["loss", "val_loss", "accuracy"]


def test_smoothing_restarts_at_each_stage(tmp_path):
    history = history_frame(_two_stage_history(tmp_path))
    curve = smooth_curves(history, "loss", 0.9, "epoch")
    assert list(curve["raw"]) == [1.0, 0.8, 0.9, 0.5]
    # debiased: the first point of each stage equals its raw value
    assert curve["smooth"][0] == pytest.approx(1.0) and curve["smooth"][2] == pytest.approx(0.9)
    assert list(smooth_curves(history, "loss", 0.0, "time")["x"]) == pytest.approx([10, 20, 35, 45])


@pytest.mark.parametrize("metric, x, message", [
    ("nope", "epoch", "Metric 'nope' is not in this history; choose one of"),
    ("loss", "step", "The x axis must be 'epoch' or 'time'"),
])
def test_smooth_curves_errors(tmp_path, metric, x, message):
    history = history_frame(_two_stage_history(tmp_path))
    with pytest.raises(CnmcError, match=message):
        smooth_curves(history, metric, 0.5, x)


def test_history_of_an_ensemble_or_new_run_is_empty(ws_copy, tmp_path):
    assert history_frame(ws_copy["ensemble"]).empty
    assert history_frame(create_run({"name": "x", "model": "m", "stages": []}, tmp_path)).empty
    assert stage_boundaries(pd.DataFrame()) == []
    assert smooth_curves(pd.DataFrame(), "loss").empty
