"""cnmc_core.ensemble.live: the slider ensemble scored on val and test, fitted methods, saving."""

from __future__ import annotations

import numpy as np
import pytest
from run_fixtures import make_aligned

from cnmc_core.ensemble import live as L
from cnmc_core.ensemble.align import load_predictions
from cnmc_core.exceptions import ConfigError, RunError
from cnmc_core.metrics.report import binary_report


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


@pytest.mark.parametrize("method", ["ga", "ga_mean"])
def test_fit_method_ga_reports_progress_and_is_seeded(aligned, method):
    seen = []
    params = {"population_size": 20, "generations": 5, "restarts": 2}
    a = L.fit_method(aligned, method, seed=1, params=params,
                     progress=lambda d, t: seen.append((d, t)))
    b = L.fit_method(aligned, method, seed=1, params=params)
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
    rows.append({**rows[1], "method": "ga_mean", "test_auc": float("nan")})
    table = L.comparison_table(rows, {"run0": "A", "run1": "B"})
    assert table["method"].tolist() == ["only A", "genetic algorithm (paper)",
                                        "genetic algorithm (mean crossover)"]
    assert table["test wF1 95% CI"][0] == "[0.600, 0.800] by subject"
    assert table["weights"][1] == "A 0.25, B 0.75"
    assert table["vs mean 95% CI"][1] == "[-0.020, +0.030]"
    # nothing undefined prints as None: a dash, with the reason in the column's help
    assert table["vs mean"].tolist() == [L.MISSING, "+0.0100", "+0.0100"]
    assert table["test AUC"].tolist() == ["0.9000", "0.9000", L.MISSING]
    assert table["test wF1 95% CI"][1] == L.MISSING
    assert "None" not in table.astype(str).to_numpy().ravel().tolist()
    assert not table.isna().any().any()
    assert "not defined for a single member" in L.COLUMN_HELP["vs mean"]
    assert "the paper does not report it" in L.COLUMN_HELP["test AUC"]


def test_paper_table_shows_a_dash_where_the_paper_gives_no_auc():
    paper = L.paper_table()
    assert paper["method"].tolist() == ["paper: average", "paper: GA weights"]
    assert paper["test AUC"].tolist() == ["0.98", L.MISSING]
    assert paper["test wF1"].tolist() == [0.9503, 0.9552]
    assert not paper.isna().any().any()
    assert list(paper.columns) == ["method", "protocol", "test wF1", "P hem", "P all", "R hem",
                                   "R all", "test AUC"]


def test_save_live_ensemble_writes_a_weighted_ensemble(three_runs, tmp_path):
    from cnmc_core.ensemble.align import align_runs

    _, paths = three_runs
    aligned = align_runs(paths)
    home = tmp_path / "artifacts" / "ensembles"
    path = L.save_live_ensemble(aligned, [3, 1, 0], 0.45, name="mine", n_boot=0)
    assert path == home / "mine"  # beside its members by default
    member = load_predictions(path)
    assert member.kind == "ensemble" and member.threshold == pytest.approx(0.45)
    assert member.config["method"] == "weighted"
    assert member.config["weights"] == pytest.approx({"A": 0.75, "B": 0.25, "C": 0.0})
    assert member.config["member_paths"] == ["runs/A", "runs/B", "runs/C"]
    test = member.frame[member.frame["split"] == "test"]
    np.testing.assert_allclose(test["prob"], aligned.splits["test"].probs @ [0.75, 0.25, 0.0])
    with pytest.raises(RunError, match="already exists"):
        L.save_live_ensemble(aligned, [1, 1, 1], 0.5, name="mine", out_dir=home, n_boot=0)
    with pytest.raises(ConfigError, match="threshold"):
        L.save_live_ensemble(aligned, [1, 1, 1], 1.5, out_dir=home, n_boot=0)
    with pytest.raises(ConfigError, match="is not in the workspace"):
        L.save_live_ensemble(aligned, [1, 1, 1], 0.5, out_dir=tmp_path / "x", n_boot=0)
    assert not (tmp_path / "x").exists()


def test_live_reports_are_fast_enough_for_sliders():
    import time

    big = make_aligned(n=2133, m=4, seed=3)
    start = time.perf_counter()
    for _ in range(10):
        L.live_reports(big, [0.4, 0.3, 0.2, 0.1], 0.5)
    assert (time.perf_counter() - start) / 10 < 0.25  # a slider move must feel instant
