"""cnmc_core.live_ensemble (the slider ensemble), cnmc_core.error_sets (sets of images picked on
the Errors page) and cnmc_core.analysis_charts (their figures and click keys), on aligned
predictions built in memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cnmc_core import analysis_charts as C
from cnmc_core import error_sets as S
from cnmc_core import live_ensemble as L
from cnmc_core.ensemble import AlignedPredictions, SplitData, load_predictions
from cnmc_core.erroranalysis import analyse_errors
from cnmc_core.exceptions import ConfigError, RunError
from cnmc_core.metrics import binary_report


def make_aligned(n: int = 200, m: int = 3, seed: int = 0) -> AlignedPredictions:
    rng = np.random.default_rng(seed)
    splits = {}
    for split in ("val", "test"):
        y = (rng.random(n) < 0.6).astype(np.int8)
        noise = rng.normal(0, 0.3, (n, m)) * np.linspace(1.0, 2.5, m)
        probs = np.clip(0.5 + (y[:, None] - 0.5) * 0.6 + noise, 0, 1)
        splits[split] = SplitData(np.array([f"{split}{i}.bmp" for i in range(n)]), y,
                                  np.array([f"S{i % 20}" for i in range(n)]), probs)
    names = [f"run{j}" for j in range(m)]
    return AlignedPredictions(names, [Path(x) for x in names], ["run"] * m, [0.5] * m,
                              "subject", "fp", splits)


@pytest.fixture(scope="module")
def aligned():
    return make_aligned()


# --------------------------------------------------------------------------- live ensemble
@pytest.mark.parametrize("raw, message", [
    ([0, 0, 0], "Every weight is 0"),
    ([1, -1, 1], "non-negative"),
    ([1, np.nan, 1], "non-negative"),
    ([1, 1], "one weight per member"),
])
def test_normalise_weights_refuses_with_a_message(raw, message):
    with pytest.raises(ConfigError, match=message):
        L.normalise_weights(raw, ["a", "b", "c"])


def test_normalise_weights_sums_to_one():
    np.testing.assert_allclose(L.normalise_weights([2, 1, 1]), [0.5, 0.25, 0.25])


def test_live_reports_equal_the_metrics_of_the_weighted_vote(aligned):
    w = [0.6, 0.3, 0.1]
    reps = L.live_reports(aligned, [6, 3, 1], 0.4)
    for split in ("val", "test"):
        d = aligned.splits[split]
        ref = binary_report(d.y, d.probs @ np.array(w), 0.4)
        assert reps[split]["weighted_f1"] == pytest.approx(ref["weighted_f1"])
        assert reps[split]["confusion"] == ref["confusion"]
        assert "roc" in reps[split]
    assert reps["weights"] == pytest.approx(dict(zip(aligned.members, w)))


def test_live_reports_follow_the_weights(aligned):
    only_best = L.live_reports(aligned, [1, 0, 0], 0.5)["test"]["weighted_f1"]
    only_worst = L.live_reports(aligned, [0, 0, 1], 0.5)["test"]["weighted_f1"]
    assert only_best > only_worst


def test_fit_method_ga_reports_progress_and_is_seeded(aligned):
    seen = []
    params = {"population_size": 20, "generations": 5, "restarts": 2}
    a = L.fit_method(aligned, "ga", seed=1, params=params,
                     progress=lambda d, t: seen.append((d, t)))
    b = L.fit_method(aligned, "ga", seed=1, params=params)
    assert a["weights"] == b["weights"]
    assert sum(a["weights"]) == pytest.approx(1.0)
    assert seen[-1] == (1, 1) and (10, 10) in seen
    assert [d for d, _ in seen[:-1]] == sorted(d for d, _ in seen[:-1])


@pytest.mark.parametrize("method", ["mean", "greedy", "dirichlet", "slsqp"])
def test_fit_method_other_methods(aligned, method):
    res = L.fit_method(aligned, method, params={"n_samples": 50} if method == "dirichlet" else None)
    assert res["method"] == method and len(res["weights"]) == 3
    assert 0 <= res["val_weighted_f1"] <= 1


def test_fit_method_refuses_stacking(aligned):
    with pytest.raises(ConfigError, match="must be one of"):
        L.fit_method(aligned, "stacking")


def test_comparison_table_names_methods_and_members():
    rows = [{"method": "member:run0", "threshold": 0.5, "val_weighted_f1": 0.8,
             "test_weighted_f1": 0.7, "test_ci": {"low": 0.6, "high": 0.8, "unit": "subject"},
             "precision_hem": 1, "precision_all": 1, "recall_hem": 1, "recall_all": 1,
             "test_auc": 0.9, "diff_vs_mean": None, "weights": None},
            {"method": "ga", "threshold": 0.5, "val_weighted_f1": 0.9, "test_weighted_f1": 0.8,
             "test_ci": None, "precision_hem": 1, "precision_all": 1, "recall_hem": 1,
             "recall_all": 1, "test_auc": 0.9, "weights": {"run0": 0.25, "run1": 0.75},
             "diff_vs_mean": {"estimate": 0.01, "low": -0.02, "high": 0.03}}]
    table = L.comparison_table(rows, {"run0": "A", "run1": "B"})
    assert table["method"].tolist() == ["only A", "genetic algorithm (paper)"]
    assert table["test wF1 95% CI"][0] == "[0.600, 0.800] by subject"
    assert table["weights"][1] == "A 0.25, B 0.75"
    assert table["vs mean 95% CI"][1] == "[-0.020, +0.030]"


def test_save_live_ensemble_writes_a_weighted_ensemble(aligned, tmp_path):
    path = L.save_live_ensemble(aligned, [3, 1, 0], 0.45, name="mine", out_dir=tmp_path,
                                n_boot=0)
    assert path == tmp_path / "mine"
    member = load_predictions(path)
    assert member.kind == "ensemble" and member.threshold == pytest.approx(0.45)
    assert member.config["method"] == "weighted"
    assert member.config["weights"] == pytest.approx({"run0": 0.75, "run1": 0.25, "run2": 0.0})
    test = member.frame[member.frame["split"] == "test"]
    np.testing.assert_allclose(test["prob"], aligned.splits["test"].probs @ [0.75, 0.25, 0.0])
    with pytest.raises(RunError, match="already exists"):
        L.save_live_ensemble(aligned, [1, 1, 1], 0.5, name="mine", out_dir=tmp_path, n_boot=0)
    with pytest.raises(ConfigError, match="threshold"):
        L.save_live_ensemble(aligned, [1, 1, 1], 1.5, out_dir=tmp_path, n_boot=0)


def test_live_reports_are_fast_enough_for_sliders():
    import time

    big = make_aligned(n=2133, m=4, seed=3)
    start = time.perf_counter()
    for _ in range(10):
        L.live_reports(big, [0.4, 0.3, 0.2, 0.1], 0.5)
    assert (time.perf_counter() - start) / 10 < 0.25  # a slider move must feel instant


# --------------------------------------------------------------------------- error sets
@pytest.fixture(scope="module")
def report(aligned):
    return analyse_errors(aligned, "test")


def test_filter_class_keeps_one_class(aligned):
    hem = S.filter_class(aligned, "test", "hem")
    assert set(hem.splits["test"].y) == {0}
    assert hem.splits["val"] is aligned.splits["val"]
    assert S.filter_class(aligned, "test", "both") is aligned
    with pytest.raises(ConfigError, match="class filter"):
        S.filter_class(aligned, "test", "cancer")


def test_sets_match_the_report(aligned, report):
    correct = report["correct"].to_numpy()
    k = (~correct).sum(axis=1)
    for n in range(4):
        s = S.histogram_set(report, n)
        assert len(s.image_ids) == int((k == n).sum())
    assert S.histogram_set(report, 3).title == "missed by all 3 models"
    inter = report["intersections"]
    s = S.intersection_set(report, 0, {"run0": "A"})
    assert s.image_ids == [str(i) for i in inter["images"][0]]
    u = S.unique_set(report, "run1", right=True, labels={"run1": "B"})
    assert u.title == "that only B gets right"
    assert u.image_ids == [str(i) for i in report["unique_correct"]["run1"]]
    with pytest.raises(ConfigError):
        S.histogram_set(report, 4)
    with pytest.raises(ConfigError):
        S.intersection_set(report, len(inter))
    with pytest.raises(ConfigError):
        S.unique_set(report, "nope", True)
    assert s.to_dict()["split"] == "test"


def test_gallery_rows_give_class_probabilities_and_correctness(aligned):
    d = aligned.splits["test"]
    ids = list(d.image_id[:10]) + ["unknown.bmp"]
    rows = S.gallery_rows(aligned, "test", ids)
    assert len(rows) == 10
    r = rows.iloc[0]
    i = list(d.image_id).index(r["image_id"])
    assert r["true"] == ("ALL" if d.y[i] else "HEM")
    assert r["prob:run2"] == pytest.approx(d.probs[i, 2])
    assert r["right:run2"] == ((d.probs[i, 2] >= 0.5) == bool(d.y[i]))
    assert rows["n_wrong"].is_monotonic_decreasing


# --------------------------------------------------------------------------- charts
def test_histogram_figure_keys_are_the_number_of_models(report):
    fig = C.miss_histogram_figure(report["histogram"])
    assert [t.name for t in fig.data[:2]] == ["HEM (normal)", "ALL (cancer)"]
    assert list(fig.data[0].customdata) == [0, 1, 2, 3]
    assert list(fig.data[0].y) == report["histogram"]["hem"].tolist()


def test_upset_figure_bars_and_dots_carry_the_intersection_row(report, aligned):
    inter = report["intersections"]
    fig = C.upset_figure(inter, aligned.members, [5, 6, 7], {"run0": "A"}, top=3)
    bars = [t for t in fig.data if t.type == "bar" and t.orientation != "h"]
    assert list(bars[0].customdata) == [0, 1, 2]
    assert list(bars[0].y + bars[1].y) == inter["size"].head(3).tolist()
    dots = fig.data[-2] if fig.data[-1].type == "bar" else fig.data[-1]
    on = inter[aligned.members].head(3).to_numpy()
    assert len(dots.x) == int(on.sum())
    assert list(fig.layout.yaxis2.ticktext) == ["A", "run1", "run2"]


def test_upset_figure_without_intersections(aligned):
    empty = pd.DataFrame(columns=[*aligned.members, "degree", "size", "inclusive_size", "hem",
                                  "all", "images"])
    fig = C.upset_figure(empty, aligned.members, [0, 0, 0])
    assert fig.layout.height > 0


def test_diversity_matrix_is_symmetric(report, aligned):
    mat = C.diversity_matrix(report["diversity"], aligned.members, "disagreement")
    np.testing.assert_allclose(mat.to_numpy(), mat.to_numpy().T)
    assert np.all(np.diag(mat.to_numpy()) == 0)
    fig = C.diversity_figure(report["diversity"], aligned.members, "q")
    assert fig.data[0].zmin == -1
    with pytest.raises(ValueError, match="metric must be one of"):
        C.diversity_matrix(report["diversity"], aligned.members, "entropy")


def test_confusion_and_roc_figures(aligned):
    rep = L.live_reports(aligned, [1, 1, 1], 0.5)
    fig = C.confusion_figure(rep["test"]["confusion"])
    assert np.asarray(fig.data[0].z).shape == (2, 2)
    fig = C.roc_figure({"val": rep["val"], "test": rep["test"]})
    point = fig.data[1]
    assert point.x[0] == pytest.approx(1 - rep["val"]["hem"]["recall"])
    assert point.y[0] == pytest.approx(rep["val"]["all"]["recall"])


@pytest.mark.parametrize("state, keys", [
    (None, []),
    ({}, []),
    ({"selection": {"points": []}}, []),
    ({"selection": {"points": [{"customdata": 2}, {"customdata": [2]}, {"customdata": 3.0},
                               {"x": 1}]}}, [2, 3]),
    ({"selection": {"points": [{"customdata": ["a", 1]}]}}, ["a"]),
])
def test_selected_keys(state, keys):
    assert C.selected_keys(state) == keys
