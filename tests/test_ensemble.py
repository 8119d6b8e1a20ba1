"""cnmc_core.ensemble: run folders written by hand, alignment refusals, combiners, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score, log_loss

from cnmc_core import ensemble as E
from cnmc_core import metrics as M
from cnmc_core.cli import main
from cnmc_core.exceptions import CnmcError, ConfigError, RunError


# --------------------------------------------------------------------------- fixtures
def make_truth(n_val: int = 120, n_test: int = 150, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for split, n in (("val", n_val), ("test", n_test)):
        for i in range(n):
            subject = int(rng.integers(0, 12))
            rows.append({"image_id": f"UID_{subject}_{split}{i}_1.bmp", "split": split,
                         "y": int(subject < 7), "subject": str(subject)})
    return pd.DataFrame(rows)


def write_run(root: Path, run_id: str, truth: pd.DataFrame, prob, *, state="completed",
              protocol="subject", fingerprint="fp-1", shuffle_seed=None, drop=()) -> Path:
    """A run folder as the training engine writes it."""
    path = root / run_id
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({
        "run_id": run_id, "kind": "run", "model": "cnn", "preset": "demo",
        "split_protocol": protocol, "seed": 0, "dataset_fingerprint": fingerprint,
        "image_size": 64}))
    (path / "status.json").write_text(json.dumps({"state": state}))
    frame = truth.assign(prob=np.asarray(prob, float))
    frame = frame.drop(index=list(drop))
    if shuffle_seed is not None:
        frame = frame.sample(frac=1.0, random_state=shuffle_seed)
    frame[["image_id", "split", "y", "prob", "subject"]].to_csv(path / "predictions.csv",
                                                                index=False)
    return path


def model_probs(truth: pd.DataFrame, skill: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.random(len(truth))
    return np.clip(skill * truth["y"].to_numpy() + (1 - skill) * noise + rng.normal(0, .1, len(truth))
                   * 0.3, 0, 1)


@pytest.fixture
def three_runs(tmp_path):
    truth = make_truth()
    runs = tmp_path / "artifacts" / "runs"
    paths = [write_run(runs, name, truth, model_probs(truth, skill, k), shuffle_seed=k)
             for k, (name, skill) in enumerate([("A", 0.5), ("B", 0.4), ("C", 0.3)])]
    return truth, paths


# --------------------------------------------------------------------------- loading
def test_load_and_align_reorders_by_image(three_runs):
    truth, paths = three_runs
    aligned = E.align_runs(paths)
    assert aligned.members == ["A", "B", "C"] and aligned.split_protocol == "subject"
    test = aligned.splits["test"]
    # every member's column is its own prob of the same image, whatever its row order
    for j, path in enumerate(paths):
        frame = pd.read_csv(path / "predictions.csv", dtype={"image_id": str}).set_index(
            ["split", "image_id"])
        expected = frame.loc[[("test", i) for i in test.image_id], "prob"].to_numpy()
        np.testing.assert_array_equal(test.probs[:, j], expected)
    by_id = truth.set_index("image_id")
    assert (test.y == by_id.loc[test.image_id, "y"].to_numpy()).all()
    assert (test.subject == by_id.loc[test.image_id, "subject"].to_numpy()).all()


@pytest.mark.parametrize(
    "change, err_msg",
    [
        (lambda p: (p / "predictions.csv").unlink(),
         r"has no predictions.csv: the run may not be finished"),
        (lambda p: (p / "status.json").write_text('{"state": "running"}'),
         r"run 'B' is 'running', not 'completed'"),
        (lambda p: (p / "config.json").write_text('{"run_id": "B", "split_protocol": "subject"}'),
         r"has no 'dataset_fingerprint'"),
        (lambda p: (p / "predictions.csv").write_text("image_id,split,y\nx,val,1\n"),
         r"lacks the column\(s\) \['prob'\]"),
        (lambda p: (p / "predictions.csv").write_text("image_id,split,y,prob\nx,val,1,1.5\n"),
         r"prob must be a probability P\(ALL\) in \[0, 1\]"),
        (lambda p: (p / "predictions.csv").write_text("image_id,split,y,prob\nx,val,2,0.5\n"),
         r"y must be 0 \(HEM\) or 1 \(ALL\)"),
        (lambda p: (p / "predictions.csv").write_text("image_id,split,y,prob\nx,train,1,0.5\n"),
         r"split must be 'val' or 'test'; got \['train'\]"),
        (lambda p: (p / "predictions.csv").write_text(
            "image_id,split,y,prob\nx,val,1,0.5\nx,val,1,0.5\n"), r"1 duplicated \(image_id, split\)"),
        (lambda p: (p / "config.json").write_text("{oops"), r"is not valid JSON"),
    ],
)
def test_load_predictions_refuses_bad_runs(three_runs, change, err_msg):
    _, paths = three_runs
    change(paths[1])
    with pytest.raises(RunError, match=err_msg):
        E.align_runs(paths)


def test_misaligned_runs_are_refused_by_message(tmp_path):
    truth = make_truth(n_val=20, n_test=10)
    runs = tmp_path / "runs"
    a = write_run(runs, "A", truth, np.full(len(truth), 0.4))
    test_rows = truth.index[truth["split"] == "test"][:3]
    b = write_run(runs, "B", truth, np.full(len(truth), 0.6), drop=test_rows)
    with pytest.raises(RunError) as info:
        E.align_runs([a, b])
    msg = str(info.value)
    missing = ", ".join(sorted(truth.loc[test_rows, "image_id"]))
    assert f"run 'B' has 7 test images, run 'A' 10; 3 test images of 'A' are missing from 'B': {missing}" in msg
    assert "never silently intersected" in msg

    c = write_run(runs, "C", truth, np.full(len(truth), 0.5), protocol="paper",
                  fingerprint="fp-2")
    flipped = truth.copy()
    flipped.loc[flipped.index[:2], "y"] = 1 - flipped.loc[flipped.index[:2], "y"]
    d = write_run(runs, "D", flipped, np.full(len(truth), 0.5))
    with pytest.raises(RunError) as info:
        E.align_runs([a, c, d])
    msg = str(info.value)
    assert "split protocol differs (split_protocol): 'A' 'subject', 'C' 'paper', 'D' 'subject'" in msg
    assert "dataset differs (dataset_fingerprint)" in msg
    assert "'D' labels 2 val images differently from 'A'" in msg

    with pytest.raises(RunError, match=r"Run\(s\) \['A'\] given more than once"):
        E.align_runs([a, a])
    with pytest.raises(RunError, match="At least 2 runs are needed; got 1"):
        E.align_runs([a])


def test_resolve_member_by_id(three_runs, tmp_path):
    _, paths = three_runs
    assert E.resolve_member("B", tmp_path / "artifacts") == paths[1]
    assert E.resolve_member(paths[0]) == paths[0]
    with pytest.raises(RunError, match="Run 'Z' not found"):
        E.resolve_member("Z", tmp_path / "artifacts")
    with pytest.raises(CnmcError, match="Invalid run id '../x'"):
        E.resolve_member("../x", tmp_path / "artifacts")


# --------------------------------------------------------------------------- thresholds
@pytest.mark.parametrize("rule, expected", [
    (0.5, ("fixed", 0.5)), ("0.3", ("fixed", 0.3)), ("best", ("best", None)),
    ("sensitivity:0.98", ("sensitivity", 0.98)), (1, ("fixed", 1.0))])
def test_parse_threshold_rule(rule, expected):
    assert E.parse_threshold_rule(rule) == expected


@pytest.mark.parametrize("rule", ["1.5", "sensitivity:0", "sensitivity:x", "bestest", None, True, -1])
def test_parse_threshold_rule_errors(rule):
    with pytest.raises(ConfigError, match="The 'threshold' parameter must be a number in \\[0, 1\\], "
                                          "'best' or 'sensitivity:<target in \\(0, 1\\]>'. Got"):
        E.parse_threshold_rule(rule)


# --------------------------------------------------------------------------- combiners
def _data(seed=0, n=300, m=4):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    X = np.clip(y[:, None] * rng.uniform(0.1, 0.5, m) + rng.random((n, m)) * 0.6, 0, 1)
    return X, y


@pytest.mark.parametrize("method", ["mean", "ga", "greedy", "dirichlet", "slsqp", "stacking"])
@pytest.mark.parametrize("seed", range(3))
def test_every_method_gives_simplex_weights_and_threshold(method, seed):
    X, y = _data(seed)
    params = {"restarts": 2, "generations": 20} if method == "ga" else {}
    comb = E.make_combiner(method, threshold="best", **params).fit(X, y)
    w = comb.weights_
    assert w.shape == (4,) and (w >= 0).all() and w.sum() == pytest.approx(1.0)
    prob = comb.predict_proba(X)
    assert prob.shape == (300,) and (0 <= prob).all() and (prob <= 1).all()
    assert comb.threshold_ == M.best_f1_threshold(y, prob)[0]
    assert comb.val_score_ == pytest.approx(f1_score(y, comb.predict(X), average="weighted"))
    if method != "stacking":
        np.testing.assert_allclose(prob, np.average(X, axis=1, weights=w))


def test_ga_reproducible_and_on_simplex():
    X, y = _data(1)
    a = E.GeneticWeights(seed=7, restarts=3, generations=30).fit(X, y)
    b = E.GeneticWeights(seed=7, restarts=3, generations=30).fit(X, y)
    c = E.GeneticWeights(seed=8, restarts=3, generations=30).fit(X, y)
    np.testing.assert_array_equal(a.weights_, b.weights_)
    np.testing.assert_array_equal(a.history_, b.history_)
    assert not np.array_equal(a.history_, c.history_)
    assert a.best_fitness_ == pytest.approx(a.val_score_)
    assert a.best_fitness_ == pytest.approx(np.nanmax(a.history_))
    # the whole population is scored per call: (generations + 1) calls of 100 per restart
    assert a.n_evaluations_ == 3 * 31 * 100


def test_ga_population_stays_on_simplex(monkeypatch):
    seen = []
    original = E._Fitness.__call__

    def spy(self, W):
        seen.append(W.copy())
        return original(self, W)

    monkeypatch.setattr(E._Fitness, "__call__", spy)
    X, y = _data(2)
    E.GeneticWeights(seed=0, restarts=2, generations=15, mutation_rate=0.5).fit(X, y)
    pop = np.vstack(seen)
    assert pop.shape == (2 * 16 * 100, 4) and (pop >= 0).all()
    np.testing.assert_allclose(pop.sum(axis=1), 1.0)


def test_ga_puts_nearly_all_weight_on_a_perfect_model():
    rng = np.random.default_rng(0)
    n = 1000
    y = rng.integers(0, 2, n)
    # perfect but close to 0.5: any weight on a noise model flips some images
    perfect = np.where(y == 1, 0.5 + 0.5 * rng.random(n), 0.5 * rng.random(n))
    X = np.column_stack([rng.random(n), perfect, rng.random(n), rng.random(n)])
    ga = E.GeneticWeights(seed=0).fit(X, y)  # the paper's settings
    assert ga.weights_[1] > 0.85 and ga.weights_.argmax() == 1
    assert ga.val_score_ > 0.97
    greedy = E.GreedySelection().fit(X, y)
    np.testing.assert_allclose(greedy.weights_, [0, 1, 0, 0])


def test_ga_elitism_callback_and_stop():
    X, y = _data(3)
    calls = []
    ga = E.GeneticWeights(seed=1, restarts=2, generations=10, elitism=2,
                          callback=calls.append).fit(X, y)
    assert len(calls) == 20 and calls[-1]["restart"] == 1 and calls[-1]["generation"] == 10
    assert all(np.diff(ga.history_, axis=1).min(axis=1) >= 0)  # elitism: best never lost
    assert calls[-1]["best_fitness"] == ga.best_fitness_
    stop = E.GeneticWeights(seed=1, restarts=5, generations=10,
                            callback=lambda info: info["generation"] < 3).fit(X, y)
    assert stop.stopped_early_ and np.isnan(stop.history_[1:]).all()
    assert stop.weights_.sum() == pytest.approx(1.0)


def test_slsqp_minimises_log_loss():
    X, y = _data(4)
    comb = E.SLSQPWeights().fit(X, y)
    loss = log_loss(y, comb.predict_proba(X))
    assert comb.log_loss_ == pytest.approx(loss, rel=1e-4)
    assert loss <= log_loss(y, X.mean(axis=1)) + 1e-9
    for w in np.random.default_rng(0).dirichlet(np.ones(4), 20):
        assert loss <= log_loss(y, X @ w) + 1e-6


def test_stacking_is_a_logistic_regression_on_logits():
    X, y = _data(5)
    comb = E.StackingEnsemble(C=0.5).fit(X, y)
    Z = np.log(np.clip(X, 1e-6, 1 - 1e-6)) - np.log1p(-np.clip(X, 1e-6, 1 - 1e-6))
    lr = LogisticRegression(C=0.5, max_iter=1000).fit(Z, y)
    np.testing.assert_allclose(comb.predict_proba(X), lr.predict_proba(Z)[:, 1], rtol=1e-6)
    pos = np.clip(lr.coef_.ravel(), 0, None)
    np.testing.assert_allclose(comb.weights_, pos / pos.sum(), rtol=1e-6)


def test_threshold_rules_in_fit():
    X, y = _data(6)
    comb = E.MeanEnsemble(threshold="sensitivity:0.95").fit(X, y)
    prob = X.mean(axis=1)
    assert comb.threshold_ == M.sensitivity_threshold(y, prob, 0.95)
    assert M.binary_report(y, prob, comb.threshold_)["all"]["recall"] >= 0.95
    assert E.WeightedAverage([2, 1, 1, 0]).fit(X, y).weights_.tolist() == [0.5, 0.25, 0.25, 0.0]


@pytest.mark.parametrize(
    "make, err_msg",
    [
        (lambda: E.GeneticWeights(population_size=1),
         r"The 'population_size' parameter of GeneticWeights must be an int in the range "
         r"\[2, inf\]. Got 1 instead."),
        (lambda: E.GeneticWeights(crossover_rate=1.5),
         r"The 'crossover_rate' parameter of GeneticWeights must be a float in the range "
         r"\[0.0, 1.0\]. Got 1.5 instead."),
        (lambda: E.GeneticWeights(seed=-1), r"'seed' parameter of GeneticWeights must be a "
                                            r"non-negative int or None"),
        (lambda: E.GeneticWeights(callback=3), r"'callback' parameter .* must be a callable"),
        (lambda: E.GeneticWeights(elitism=100), r"'elitism' parameter .* smaller than "
                                                r"population_size \(100\)"),
        (lambda: E.GeneticWeights(threshold="maybe"), r"The 'threshold' parameter must be"),
        (lambda: E.GeneticWeights(restarts=1000, generations=10_000_000),
         r"restarts=1000 x generations=10000000 keeps 10,000,001,000 best-fitness values "
         r"\(74\.5 GiB\); at most 100,000,000 are allowed: lower restarts or generations"),
        (lambda: E.DirichletSearch(alpha=0.0), r"'alpha' parameter of DirichletSearch must be a "
                                               r"float in the range \(0.0, inf\]"),
        (lambda: E.GreedySelection(n_iter=0), r"'n_iter' parameter of GreedySelection"),
        (lambda: E.WeightedAverage([1, 1]), r"'weights' parameter of WeightedAverage must be 4 "
                                            r"non-negative numbers"),
        (lambda: E.WeightedAverage([0, 0, 0, 0]), r"not all zero"),
    ],
)
def test_parameter_errors(make, err_msg):
    X, y = _data(0)
    with pytest.raises(ConfigError, match=err_msg):
        make().fit(X, y)


@pytest.mark.parametrize(
    "call, err_msg",
    [
        (lambda: E.make_combiner("vote"), r"The 'method' parameter must be one of \['dirichlet', "
                                          r"'ga', 'greedy', 'mean', 'slsqp', 'stacking', "
                                          r"'weighted'\]. Got 'vote' instead."),
        (lambda: E.make_combiner("ga", pop=3), r"GeneticWeights got unexpected parameter\(s\) "
                                               r"\['pop'\]"),
        (lambda: E.MeanEnsemble().predict_proba(np.zeros((2, 2))),
         "This MeanEnsemble instance is not fitted yet"),
        (lambda: E.MeanEnsemble().fit(np.zeros(3), [0, 1, 0]), "Expected 2D array X"),
        (lambda: E.MeanEnsemble().fit(np.full((2, 2), 2.0), [0, 1]), r"probabilities P\(ALL\)"),
        (lambda: E.MeanEnsemble().fit(np.zeros((2, 2)), [0, 1, 1]), "one label per row of X"),
        (lambda: E.MeanEnsemble().fit(np.zeros((2, 2)), [0, 1]).predict(np.zeros((2, 3))),
         "X has 3 models, but the ensemble was fitted with 2"),
    ],
)
def test_usage_errors(call, err_msg):
    with pytest.raises(CnmcError, match=err_msg):
        call()


# --------------------------------------------------------------------------- report, artifacts, CLI
def test_compare_methods_report(three_runs):
    _, paths = three_runs
    aligned = E.align_runs(paths)
    rows, fitted = E.compare_methods(aligned, ("mean", "ga", "stacking"), n_boot=50,
                                     params={"ga": {"restarts": 2, "generations": 10}})
    by = {r["method"]: r for r in rows}
    assert list(by) == ["member:A", "member:B", "member:C", "mean", "ga", "stacking"]
    test = aligned.splits["test"]
    ga = by["ga"]
    prob = fitted["ga"].predict_proba(test.probs)
    assert ga["test_weighted_f1"] == pytest.approx(M.weighted_f1(test.y, prob, ga["threshold"]))
    assert ga["test_ci"]["unit"] == "subject" and ga["test_ci"]["low"] <= ga["test_ci"]["high"]
    assert by["mean"]["diff_vs_mean"]["estimate"] == 0.0
    d = M.paired_bootstrap_diff(test.y, prob, test.probs.mean(axis=1), test.subject, n_boot=50)
    assert ga["diff_vs_mean"]["low"] == pytest.approx(d["low"])
    assert "logistic regression" in by["stacking"]["note"]
    text = E.format_report(rows, chosen="ga")
    assert "ga *" in text and "paper: GA weights" in text and "0.9552" in text and "0.9503" in text
    assert "protocol paper (leaky: split by image)" in text and "protocol: subject" in text


def test_cli_ensemble_saves_a_run_like_folder(three_runs, tmp_path, capsys):
    truth, paths = three_runs
    art = tmp_path / "artifacts"
    rc = main(["ensemble", "A", "B", "C", "--runs-dir", str(art), "--method", "ga",
               "--threshold", "best", "--seed", "3", "--n-boot", "40", "--name", "ens1",
               "--out", str(art / "ensembles")])
    out = capsys.readouterr().out.strip().splitlines()
    assert rc == 0
    folder = Path(out[-1])
    assert folder == art / "ensembles" / "ens1"
    assert any(line.startswith("ga *") for line in out)
    config = json.loads((folder / "config.json").read_text())
    assert config["kind"] == "ensemble" and config["members"] == ["A", "B", "C"]
    assert config["method"] == "ga" and config["threshold_rule"] == "best"
    assert set(config["weights"]) == {"A", "B", "C"}
    assert sum(config["weights"].values()) == pytest.approx(1.0)
    assert config["split_protocol"] == "subject" and config["dataset_fingerprint"] == "fp-1"
    assert json.loads((folder / "status.json").read_text())["state"] == "completed"
    metrics = json.loads((folder / "metrics.json").read_text())
    assert {"val", "test", "comparison", "paper_reference"} <= set(metrics)
    preds = pd.read_csv(folder / "predictions.csv")
    assert list(preds.columns) == ["image_id", "split", "y", "prob", "subject"]
    assert len(preds) == len(truth)
    member = E.load_predictions(folder)
    assert member.kind == "ensemble" and member.threshold == config["threshold"]
    rep = M.binary_report(preds.loc[preds.split == "test", "y"], preds.loc[preds.split == "test",
                                                                            "prob"],
                          config["threshold"])
    assert metrics["test"]["weighted_f1"] == pytest.approx(rep["weighted_f1"])
    # the same seed gives the same weights
    main(["ensemble", *map(str, paths), "--method", "ga", "--threshold", "best", "--seed", "3",
          "--n-boot", "0", "--compare", "none", "--out", str(tmp_path / "again")])
    again = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert json.loads((again / "config.json").read_text())["weights"] == config["weights"]
    # an ensemble is a member of a new ensemble
    rc = main(["ensemble", str(folder), "A", "--runs-dir", str(art), "--method", "mean",
               "--n-boot", "0", "--compare", "none", "--out", str(tmp_path / "nested")])
    assert rc == 0
    nested = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert json.loads((nested / "config.json").read_text())["members"] == ["ens1", "A"]
    # and of error analysis
    assert main(["errors", str(folder), "A", "B", "--runs-dir", str(art)]) == 0
    assert "images by number of models that miss them" in capsys.readouterr().out


def test_cli_refusals(three_runs, tmp_path, capsys):
    truth, paths = three_runs
    art = tmp_path / "artifacts"
    write_run(art / "runs", "D", truth, np.full(len(truth), 0.5), protocol="paper")
    rc = main(["ensemble", "A", "D", "--runs-dir", str(art), "--out", str(tmp_path / "e")])
    err = capsys.readouterr().err
    assert rc == 2 and "error: Cannot align 2 runs" in err and "'D' 'paper'" in err
    assert not (tmp_path / "e").exists() or not any((tmp_path / "e").iterdir())
    rc = main(["ensemble", "A", "B", "--runs-dir", str(art), "--threshold", "sometimes"])
    assert rc == 2 and "The 'threshold' parameter must be" in capsys.readouterr().err
    rc = main(["ensemble", "A", "B", "--runs-dir", str(art), "--method", "weighted"])
    assert rc == 2 and "--method weighted needs --weights" in capsys.readouterr().err
    rc = main(["ensemble", "A", "B", "--runs-dir", str(art), "--method", "weighted",
               "--weights", "1,2", "--n-boot", "0", "--compare", "none", "--name", "w",
               "--out", str(tmp_path / "w")])
    assert rc == 0
    config = json.loads((tmp_path / "w" / "w" / "config.json").read_text())
    assert config["weights"] == pytest.approx({"A": 1 / 3, "B": 2 / 3})
    rc = main(["ensemble", "A", "B", "--runs-dir", str(art), "--method", "mean", "--n-boot", "0",
               "--compare", "none", "--name", "w", "--out", str(tmp_path / "w")])
    assert rc == 2 and "already exists" in capsys.readouterr().err


def test_ga_memory_guards_fail_before_any_work(tmp_path, three_runs, capsys):
    """Absurd GA sizes are refused with the memory they would take, not a MemoryError later;
    from the CLI before any ensemble folder exists."""
    rng = np.random.default_rng(0)
    X, y = rng.random((1000, 3)), rng.integers(0, 2, 1000)
    with pytest.raises(ConfigError, match=r"population_size=300000 on 1,000 images needs a "
                                          r"300,000,000-value matrix per generation .* lower "
                                          r"population_size"):
        E.GeneticWeights(population_size=300_000, generations=1, restarts=1).fit(X, y)
    _, paths = three_runs
    out = tmp_path / "ens"
    rc = main(["ensemble", *map(str, paths), "--method", "ga", "--ga-generations", "10000000",
               "--ga-restarts", "1000", "--out", str(out)])
    assert rc == 2 and "lower restarts or generations" in capsys.readouterr().err
    assert not out.exists() or not list(out.iterdir())
