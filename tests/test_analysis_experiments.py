"""cnmc_core.analysis.experiments: metric tables, confusion matrices and their difference, curve
points, config diffs and log tails of runs and ensembles."""

from __future__ import annotations

import json

import keras
import numpy as np
import pandas as pd
import pytest

from cnmc_core.analysis.experiments import (
    config_diff,
    confusion_difference,
    confusion_frame,
    flatten_config,
    load_curve_points,
    metrics_table,
    read_log_tail,
    row_normalised,
)
from cnmc_core.exceptions import CnmcError


# --------------------------------------------------------------------------- metrics and confusion
def test_metrics_table_has_cis_and_per_class_rates(ws_copy):
    paths = [*ws_copy["runs"], ws_copy["ensemble"], ws_copy["failed"]]
    table = metrics_table(paths, "test", names=["a", "b", "c", "ens", "failed"])
    assert list(table["run"]) == ["a", "b", "c", "ens"]  # the failed run has no metrics
    assert list(table["kind"]) == ["run", "run", "run", "ensemble"]
    metrics = json.loads((ws_copy["runs"][0] / "metrics.json").read_text())["test"]
    row = table.iloc[0]
    assert row["weighted_f1"] == pytest.approx(metrics["weighted_f1"])
    assert row["f1_ci_low"] == pytest.approx(metrics["ci"]["weighted_f1"]["low"])
    assert row["sensitivity_all"] == pytest.approx(metrics["all"]["recall"])
    assert row["specificity_hem"] == pytest.approx(metrics["hem"]["recall"])
    assert row["protocol"] == "subject" and row["n"] == metrics["n"]
    csv = table.to_csv(index=False)
    assert csv.splitlines()[0].startswith("run,kind,model,backend,protocol,split,weighted_f1,f1_ci_low")
    # the runs trained here name their backend; an ensemble has none
    assert list(table["backend"].fillna("-")) == [keras.backend.backend()] * 3 + ["-"]
    with pytest.raises(CnmcError, match="split must be 'val' or 'test'"):
        metrics_table(paths, "train")


def test_confusion_frame_and_row_normalisation(ws_copy):
    cm = confusion_frame(ws_copy["runs"][0], "test")
    metrics = json.loads((ws_copy["runs"][0] / "metrics.json").read_text())["test"]
    assert cm.to_numpy().tolist() == metrics["confusion"]
    assert list(cm.index) == ["true HEM (normal)", "true ALL (cancer)"]
    assert confusion_frame(ws_copy["failed"], "test") is None
    share = row_normalised(cm)
    assert share.sum(axis=1).to_numpy() == pytest.approx([1.0, 1.0])


def test_confusion_difference():
    idx, cols = ["true HEM (normal)", "true ALL (cancer)"], ["predicted HEM (normal)", "predicted ALL (cancer)"]
    a = pd.DataFrame([[8, 2], [1, 9]], index=idx, columns=cols)
    b = pd.DataFrame([[30, 10], [0, 0]], index=idx, columns=cols)  # a row with no image
    diff = confusion_difference(a, b)
    np.testing.assert_allclose(diff.to_numpy(), [[0.8 - 0.75, 0.2 - 0.25], [0.1, 0.9]])
    assert confusion_difference(a, b, normalise=False).to_numpy().tolist() == [[-22, -8], [1, 9]]
    with pytest.raises(CnmcError, match="different classes"):
        confusion_difference(a, b.rename(index={"true HEM (normal)": "x"}))


def test_curve_points_match_the_stored_auc(ws_copy):
    points = load_curve_points(ws_copy["runs"][1], "test")
    metrics = json.loads((ws_copy["runs"][1] / "metrics.json").read_text())["test"]
    assert points["roc_auc"] == pytest.approx(metrics["roc_auc"])
    assert points["fpr"][0] == 0 and points["tpr"][-1] == 1
    assert 0 <= points["average_precision"] <= 1 and points["n"] == metrics["n"]
    assert load_curve_points(ws_copy["failed"], "test") is None
    assert load_curve_points(ws_copy["ensemble"], "val")["n"] > 0


def test_average_precision_matches_sklearn(tmp_path):
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 200)
    prob = np.clip(y * 0.3 + rng.random(200) * 0.7, 0, 1).round(2)  # ties included
    run = tmp_path / "r"
    run.mkdir()
    pd.DataFrame({"image_id": range(200), "split": "test", "y": y, "prob": prob}).to_csv(run / "predictions.csv",
                                                                                         index=False)
    assert load_curve_points(run, "test")["average_precision"] == pytest.approx(average_precision_score(y, prob))


# --------------------------------------------------------------------------- config diff
def test_flatten_config():
    flat = flatten_config({"a": 1, "stages": [{"lr": 0.1, "t": {"blocks": ["b2", "b3"]}}], "fr": [0.6, 0.4],
                           "empty": {}})
    assert flat == {"a": 1, "stages.0.lr": 0.1, "stages.0.t.blocks": ["b2", "b3"], "fr": [0.6, 0.4], "empty": {}}


def test_config_diff_hides_identical_fields():
    a = {"run_id": "1", "created": 1.0, "model": "x", "seed": 0, "stages": [{"learning_rate": 1e-3, "epochs": 5}],
         "split_fractions": [0.6, 0.2, 0.2]}
    b = {"run_id": "2", "created": 2.0, "model": "y", "seed": 0, "stages": [{"learning_rate": 1e-5, "epochs": 5}],
         "split_fractions": [0.6, 0.2, 0.2], "extra": True}
    diff = config_diff({"A": a, "B": b})
    assert list(diff.index) == ["model", "stages.0.learning_rate", "extra"]
    assert diff.loc["stages.0.learning_rate"].tolist() == ["0.001", "1e-05"]
    assert diff.loc["extra"].tolist() == ["-", "True"]
    full = config_diff({"A": a, "B": b}, hide_identical=False)
    assert "seed" in full.index and "split_fractions" in full.index and "run_id" not in full.index
    assert full.loc["split_fractions"].tolist() == ["0.6, 0.2, 0.2"] * 2
    assert config_diff({"A": a, "B": dict(a, run_id="other")}).empty


def test_config_diff_of_the_fixture_runs_shows_the_model(ws_copy):
    configs = {p.name: json.loads((p / "config.json").read_text()) for p in ws_copy["runs"]}
    diff = config_diff(configs)
    assert "model" in diff.index and "name" in diff.index
    assert "split_protocol" not in diff.index and "batch_size" not in diff.index


# --------------------------------------------------------------------------- logs
def test_read_log_tail(tmp_path, ws_copy):
    (tmp_path / "log.txt").write_text("".join(f"line {i}\n" for i in range(100)))
    assert read_log_tail(tmp_path, 3) == "line 97\nline 98\nline 99"
    assert "MemoryError" in read_log_tail(ws_copy["failed"])
    assert read_log_tail(tmp_path / "none") == ""
