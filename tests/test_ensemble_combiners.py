"""cnmc_core.ensemble.combiners: threshold rules, every combiner's weights on the simplex,
parameter errors in scikit-learn's format (the GAs' own behaviour: test_ensemble_genetic.py)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score, log_loss

from cnmc_core import ensemble as E
from cnmc_core import metrics as M
from cnmc_core.exceptions import CnmcError, ConfigError


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


@pytest.mark.parametrize("method", ["mean", "ga", "ga_mean", "greedy", "dirichlet", "slsqp",
                                    "stacking"])
@pytest.mark.parametrize("seed", range(3))
def test_every_method_gives_simplex_weights_and_threshold(method, seed):
    X, y = _data(seed)
    params = {"restarts": 2, "generations": 20} if method in E.GA_METHODS else {}
    comb = E.make_combiner(method, threshold="best", **params).fit(X, y)
    w = comb.weights_
    assert w.shape == (4,) and (w >= 0).all() and w.sum() == pytest.approx(1.0)
    prob = comb.predict_proba(X)
    assert prob.shape == (300,) and (0 <= prob).all() and (prob <= 1).all()
    assert comb.threshold_ == M.best_f1_threshold(y, prob)[0]
    assert comb.val_score_ == pytest.approx(f1_score(y, comb.predict(X), average="weighted"))
    if method != "stacking":
        np.testing.assert_allclose(prob, np.average(X, axis=1, weights=w))


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
        (lambda: E.GeneticWeights(seed=-1), r"'seed' parameter of GeneticWeights must be an int "
                                            r"in the range \[0, 4294967295\]. Got -1 instead."),
        (lambda: E.GeneticWeights(seed=2**32), r"'seed' parameter of GeneticWeights must be an "
                                               r"int in the range \[0, 4294967295\]"),
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
                                          r"'ga', 'ga_mean', 'greedy', 'mean', 'slsqp', 'stacking', "
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
