"""cnmc_core.metrics against scikit-learn on random cases, edge cases and bad inputs."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from sklearn import metrics as skm

from cnmc_core import metrics as M
from cnmc_core.exceptions import CnmcError
from cnmc_core.metrics import bootstrap as B
from cnmc_core.workspace.fileio import atomic_write_json


def _case(seed: int):
    """A random case: sizes 1-80, ties in prob for a third of the seeds, single class sometimes."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 80))
    if seed % 7 == 0:
        y = np.full(n, seed % 2)
    else:
        y = rng.integers(0, 2, n)
    prob = rng.random(n)
    if seed % 3 == 0:
        prob = np.round(prob, 1)  # many ties, and values equal to 0.5
    threshold = float(rng.choice([0.5, 0.3, 0.9, prob[0]]))
    return y, prob, threshold


def _sk(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


@pytest.mark.parametrize("seed", range(120))
def test_binary_report_equals_sklearn(seed):
    y, prob, t = _case(seed)
    pred = (prob >= t).astype(int)
    for zd in (0.0, 1.0, np.nan):
        r = M.binary_report(y, prob, t, zero_division=zd)
        p, rc, f, s = _sk(skm.precision_recall_fscore_support, y, pred, labels=[0, 1],
                          zero_division=zd)
        np.testing.assert_allclose([r["hem"]["precision"], r["all"]["precision"]], p)
        np.testing.assert_allclose([r["hem"]["recall"], r["all"]["recall"]], rc)
        np.testing.assert_allclose([r["hem"]["f1"], r["all"]["f1"]], f)
        assert [r["hem"]["support"], r["all"]["support"]] == s.tolist()
        wp, wr, wf, _ = _sk(skm.precision_recall_fscore_support, y, pred, average="weighted",
                            zero_division=zd)
        np.testing.assert_allclose(
            [r["weighted_precision"], r["weighted_recall"], r["weighted_f1"]], [wp, wr, wf]
        )
        np.testing.assert_allclose(
            r["macro_f1"], _sk(skm.f1_score, y, pred, average="macro", zero_division=zd)
        )
    assert r["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert r["confusion"] == skm.confusion_matrix(y, pred, labels=[0, 1]).tolist()
    assert M.confusion(y, pred).tolist() == r["confusion"]
    expected_auc = skm.roc_auc_score(y, prob) if len(np.unique(y)) == 2 else np.nan
    np.testing.assert_allclose(r["roc_auc"], expected_auc, rtol=1e-12)
    np.testing.assert_allclose(M.roc_auc(y, prob), expected_auc, rtol=1e-12)
    assert (r["n"], r["n_all"], r["n_hem"], r["threshold"]) == (
        y.size, int(y.sum()), int((y == 0).sum()), t)


@pytest.mark.parametrize("seed", range(120))
def test_curves_equal_sklearn(seed):
    y, prob, _ = _case(seed)
    for drop in (True, False):
        got = M.roc_curve_points(y, prob, drop_intermediate=drop)
        exp = _sk(skm.roc_curve, y, prob, drop_intermediate=drop)
        for g, e in zip(got, exp):
            np.testing.assert_allclose(g, e)
        got = M.pr_curve_points(y, prob, drop_intermediate=drop)
        exp = _sk(skm.precision_recall_curve, y, prob, drop_intermediate=drop)
        for g, e in zip(got, exp):
            np.testing.assert_allclose(g, e)
    r = M.binary_report(y, prob, curves=True)
    for g, e in zip((r["roc"]["fpr"], r["roc"]["tpr"], r["roc"]["thresholds"]),
                    _sk(skm.roc_curve, y, prob)):
        np.testing.assert_allclose(g, e)
    expected_auc = skm.roc_auc_score(y, prob) if len(np.unique(y)) == 2 else np.nan
    np.testing.assert_allclose(r["roc_auc"], expected_auc, rtol=1e-12)  # read from the curve
    if y.any():
        assert M.average_precision(y, prob) == pytest.approx(skm.average_precision_score(y, prob))
    else:  # no ALL image: no recall to average over
        assert np.isnan(M.average_precision(y, prob))


def test_one_class_curves_say_nan_without_a_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fpr, tpr, _ = M.roc_curve_points([1, 1, 1], [0.2, 0.5, 0.9])
        assert np.isnan(fpr).all() and not np.isnan(tpr).any()
        assert np.isnan(M.roc_auc([0, 0], [0.1, 0.7]))
        precision, recall, _ = M.pr_curve_points([0, 0], [0.1, 0.7])
        assert recall[:-1].tolist() == [1.0, 1.0]
        # the best non-empty ALL set is the single highest image: HEM F1 2*2 / (3 + 2)
        assert M.best_f1_threshold([0, 0, 0], [0.1, 0.2, 0.3]) == pytest.approx((0.3, 0.8))


@pytest.mark.parametrize("seed", range(40))
def test_weighted_f1_many_equals_sklearn(seed):
    rng = np.random.default_rng(seed)
    y, _, t = _case(seed)
    scores = rng.random((7, y.size))
    scores[0] = 1.0  # all-one predictions
    scores[1] = 0.0  # all-zero predictions
    scores[2] = t  # prob == threshold counts as ALL
    got = M.weighted_f1_many(y, scores, t)
    exp = [_sk(skm.f1_score, y, (s >= t).astype(int), average="weighted") for s in scores]
    np.testing.assert_allclose(got, exp)
    np.testing.assert_allclose(M.weighted_f1_many(y, scores >= t), exp)
    assert M.weighted_f1(y, scores[3], t) == pytest.approx(exp[3])


@pytest.mark.parametrize(
    "y, prob, expected",
    [
        # single class present, every prediction right / wrong / mixed
        ([1, 1, 1], [0.9, 0.8, 0.7], {"weighted_f1": 1.0, "macro_f1": 1.0, "accuracy": 1.0}),
        ([1, 1, 1], [0.1, 0.2, 0.3], {"weighted_f1": 0.0, "macro_f1": 0.0, "accuracy": 0.0}),
        ([0, 0, 0, 0], [0.6, 0.1, 0.1, 0.1], {"weighted_f1": 6 / 7, "accuracy": 0.75}),
        # all-one predictions: HEM never predicted, its precision is 0 (zero_division)
        ([0, 1, 1, 1], [0.5, 0.5, 0.9, 1.0], {"weighted_f1": 0.75 * 6 / 7, "accuracy": 0.75}),
        # all-zero predictions
        ([0, 0, 0, 1], [0.0, 0.1, 0.2, 0.4999], {"weighted_f1": 0.75 * 6 / 7}),
    ],
)
def test_edge_cases(y, prob, expected):
    r = M.binary_report(y, prob)
    for key, value in expected.items():
        assert r[key] == pytest.approx(value)
    pred = (np.asarray(prob) >= 0.5).astype(int)
    assert r["weighted_f1"] == pytest.approx(_sk(skm.f1_score, y, pred, average="weighted"))
    if len(set(y)) == 1:
        assert np.isnan(r["roc_auc"])


def test_threshold_is_inclusive():
    r = M.binary_report([0, 1], [0.5, 0.5], threshold=0.5)
    assert r["confusion"] == [[0, 1], [0, 1]]
    r = M.binary_report([0, 1], [0.3, 0.7], threshold=0.7)
    assert r["confusion"] == [[1, 0], [0, 1]]


def test_single_class_auc_is_nan_and_json_null(tmp_path):
    r = M.full_report([1, 1, 1], [0.2, 0.6, 0.9], n_boot=20)
    assert np.isnan(r["roc_auc"]) and np.isnan(r["ci"]["roc_auc"]["estimate"])
    assert r["ci"]["roc_auc"]["n_undefined"] == 20
    atomic_write_json(tmp_path / "m.json", r)
    loaded = json.loads((tmp_path / "m.json").read_text())
    assert loaded["roc_auc"] is None and loaded["weighted_f1"] == pytest.approx(0.8)


@pytest.mark.parametrize("seed", range(25))
def test_best_and_sensitivity_thresholds(seed):
    y, prob, _ = _case(seed)
    t, f1 = M.best_f1_threshold(y, prob)
    assert t in prob
    candidates = np.unique(prob)
    scores = [_sk(skm.f1_score, y, (prob >= c).astype(int), average="weighted") for c in candidates]
    assert f1 == pytest.approx(max(scores))
    assert M.weighted_f1(y, prob, t) == pytest.approx(f1)
    if y.sum() == 0:
        with pytest.raises(CnmcError, match="no ALL image"):
            M.sensitivity_threshold(y, prob, 0.9)
        return
    for target in (0.5, 0.9, 0.98, 1.0):
        t = M.sensitivity_threshold(y, prob, target)
        assert skm.recall_score(y, (prob >= t).astype(int)) >= target - 1e-12
        higher = candidates[candidates > t]
        if higher.size:  # the next larger threshold misses the target: t is the largest
            assert skm.recall_score(y, (prob >= higher.min()).astype(int)) < target


def test_bootstrap_evaluator_equals_sklearn_on_explicit_resamples():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 60)
    prob = np.round(rng.random(60), 1)
    subjects = rng.integers(0, 8, 60)
    units = B._Units(y.astype(np.int8), subjects)
    ev = B._BootEvaluator(y.astype(np.int8), prob, 0.5, ("weighted_f1", "roc_auc", "recall_all"))
    w = next(units.weights(30, seed=1))
    got = ev(w)
    for b in range(w.shape[0]):
        idx = np.repeat(np.arange(60), w[b].astype(int))
        yb, pb = y[idx], prob[idx]
        predb = (pb >= 0.5).astype(int)
        assert got["weighted_f1"][b] == pytest.approx(skm.f1_score(yb, predb, average="weighted"))
        assert got["recall_all"][b] == pytest.approx(
            _sk(skm.recall_score, yb, predb, zero_division=0))
        exp = skm.roc_auc_score(yb, pb) if len(np.unique(yb)) == 2 else np.nan
        np.testing.assert_allclose(got["roc_auc"][b], exp)
        # a drawn subject brings all its images
        drawn = np.unique(subjects[idx])
        assert set(idx) == set(np.flatnonzero(np.isin(subjects, drawn)))


def test_bootstrap_ci_reproducible_and_sane():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    prob = np.clip(y * 0.6 + rng.random(500) * 0.5, 0, 1)
    subjects = rng.integers(0, 25, 500)
    a = M.bootstrap_ci(y, prob, subjects, n_boot=200, seed=5)
    b = M.bootstrap_ci(y, prob, subjects, n_boot=200, seed=5)
    c = M.bootstrap_ci(y, prob, subjects, n_boot=200, seed=6)
    assert a == b and a != c
    assert a["unit"] == "subject" and a["n_units"] == 25
    for k in ("weighted_f1", "roc_auc"):
        assert a[k]["low"] <= a[k]["estimate"] <= a[k]["high"]
    assert a["weighted_f1"]["estimate"] == pytest.approx(M.weighted_f1(y, prob))
    # one subject per image, in image order: the same draws as the image bootstrap
    ids = [f"s{i:04d}" for i in range(500)]
    assert M.bootstrap_ci(y, prob, ids, n_boot=60)["weighted_f1"] == M.bootstrap_ci(
        y, prob, None, n_boot=60)["weighted_f1"]
    assert M.bootstrap_ci(y, prob, n_boot=60)["unit"] == "image"


def _nine_subjects(seed: int = 0):
    """A demo-like test split: 5 ALL and 4 HEM subjects of 12-30 images, a fair model."""
    rng = np.random.default_rng(seed)
    y, subjects = [], []
    for k in range(9):
        n = int(rng.integers(12, 31))
        y += [int(k < 5)] * n
        subjects += [f"{'' if k < 5 else 'H'}{k}"] * n
    y = np.array(y)
    prob = np.clip(0.5 + (y - 0.5) * 0.3 + rng.normal(0, 0.25, y.size), 0, 1)
    return y, prob, np.array(subjects)


def test_stratified_subject_bootstrap_has_both_classes_in_every_resample():
    y, prob, subjects = _nine_subjects()
    units = B._Units(y.astype(np.int8), subjects)
    assert [s.size for s in units.strata] == [4, 5] and units.mixed == 0
    for w in units.weights(1000, seed=0):
        # each resample draws 5 ALL and 4 HEM subjects (with replacement): both classes there
        drawn = w[:, np.unique(units.codes, return_index=True)[1]]
        assert (drawn[:, units.strata[1]].sum(axis=1) == 5).all()
        assert (drawn[:, units.strata[0]].sum(axis=1) == 4).all()
        assert (w[:, y == 1].sum(axis=1) > 0).all() and (w[:, y == 0].sum(axis=1) > 0).all()
    ci = M.bootstrap_ci(y, prob, subjects, n_boot=1000, seed=0)
    assert ci["roc_auc"]["n_undefined"] == 0 and ci["weighted_f1"]["n_undefined"] == 0
    assert ci["stratified"] and ci["strata"] == {"hem": 4, "all": 5} and ci["mixed_subjects"] == 0
    for k in ("weighted_f1", "roc_auc"):
        assert ci[k]["low"] <= ci[k]["estimate"] <= ci[k]["high"]
        assert ci[k]["low"] < ci[k]["high"]
    d = M.paired_bootstrap_diff(y, prob, np.clip(prob + 0.1, 0, 1), subjects, metric="roc_auc",
                                n_boot=500, seed=0)
    assert d["stratified"] and np.isfinite([d["low"], d["high"]]).all()


def test_stratified_bootstrap_depends_on_the_seed_only():
    y, prob, subjects = _nine_subjects(1)
    a = M.bootstrap_ci(y, prob, subjects, n_boot=300, seed=7)
    np.random.seed(123)  # the global generator plays no part
    b = M.bootstrap_ci(y, prob, subjects, n_boot=300, seed=7)
    c = M.bootstrap_ci(y, prob, subjects, n_boot=300, seed=8)
    assert a == b and a != c
    # the same subjects under other names, in another image order: the same units, same draws
    order = np.random.default_rng(0).permutation(y.size)
    renamed = np.array([f"x{s}" for s in subjects])
    d = M.bootstrap_ci(y[order], prob[order], renamed[order], n_boot=300, seed=7)
    assert d["weighted_f1"] == a["weighted_f1"] and d["roc_auc"] == a["roc_auc"]


def test_image_bootstrap_stratifies_images_and_mixed_subjects_follow_their_majority():
    y = np.array([1] * 7 + [0] * 3)
    units = B._Units(y.astype(np.int8), None)
    for w in units.weights(200, seed=3):
        assert (w[:, y == 1].sum(axis=1) == 7).all() and (w[:, y == 0].sum(axis=1) == 3).all()
    # subject "m" has 2 ALL and 1 HEM image: ALL stratum; "t" 1 and 1: a tie, ALL too
    subjects = np.array(["m", "m", "m", "t", "t", "h", "h", "a", "a", "a"])
    y = np.array([1, 1, 0, 1, 0, 0, 0, 1, 1, 1])
    units = B._Units(y.astype(np.int8), subjects)
    names = np.unique(subjects)
    assert sorted(names[units.strata[1]]) == ["a", "m", "t"] and list(names[units.strata[0]]) \
        == ["h"] and units.mixed == 2
    ci = M.bootstrap_ci(y, np.linspace(0, 1, 10), subjects, n_boot=50)
    assert ci["mixed_subjects"] == 2 and ci["strata"] == {"hem": 1, "all": 3}


def test_paired_bootstrap_diff():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 400)
    good = np.clip(y * 0.7 + rng.random(400) * 0.4, 0, 1)
    bad = rng.random(400)
    d = M.paired_bootstrap_diff(y, good, bad, rng.integers(0, 20, 400), n_boot=300, seed=2)
    assert d["estimate"] == pytest.approx(M.weighted_f1(y, good) - M.weighted_f1(y, bad))
    assert 0 < d["low"] <= d["estimate"] <= d["high"] and d["p_a_not_better"] == 0.0
    same = M.paired_bootstrap_diff(y, good, good, n_boot=50)
    assert same["low"] == same["high"] == same["estimate"] == 0.0
    two = M.paired_bootstrap_diff(y, good, good, threshold=(0.5, 0.0), n_boot=50)
    assert two["estimate"] == pytest.approx(M.weighted_f1(y, good) - M.weighted_f1(y, good, 0.0))


def test_full_report_shape():
    r = M.full_report([0, 1, 1, 0, 1], [0.1, 0.9, 0.6, 0.4, 0.3], 0.5, ["a", "a", "b", "c", "c"],
                      n_boot=50, seed=0)
    assert r["ci"]["unit"] == "subject" and set(r["ci"]) >= {"weighted_f1", "roc_auc"}
    assert M.full_report([0, 1], [0.2, 0.8], n_boot=0)["ci"] is None


@pytest.mark.parametrize(
    "call, err_msg",
    [
        (lambda: M.binary_report([[0, 1]], [0.1, 0.2]), "Expected 1D array for y, got 2D"),
        (lambda: M.binary_report([0, 2], [0.1, 0.2]), r"only 0 \(HEM\) and 1 \(ALL\); got \[2\]"),
        (lambda: M.binary_report(["a", "b"], [0.1, 0.2]), "must hold the labels 0"),
        (lambda: M.binary_report([], []), "y is empty"),
        (lambda: M.binary_report([0, 1], [0.1]), "inconsistent numbers of images: 1 and 2"),
        (lambda: M.binary_report([0, 1], [0.1, np.nan]), "NaN or infinity"),
        (lambda: M.binary_report([0, 1], [0.1, 3.0]), r"probabilities in \[0, 1\].*sigmoid"),
        (lambda: M.binary_report([0, 1], [0.1, 0.2], threshold=1.5), "threshold must be"),
        (lambda: M.binary_report([0, 1], [0.1, 0.2], threshold="best"), "threshold must be"),
        (lambda: M.binary_report([0, 1], [0.1, 0.2], zero_division="warn"), "zero_division must"),
        (lambda: M.weighted_f1_many([0, 1], np.zeros(2)), "Expected 2D array for scores"),
        (lambda: M.weighted_f1_many([0, 1], np.zeros((2, 3), bool)), "Expected a 2D"),
        (lambda: M.confusion([0, 1], [1]), "inconsistent numbers of images"),
        (lambda: M.sensitivity_threshold([0, 1], [0.1, 0.2], 1.5), "target sensitivity"),
        (lambda: M.bootstrap_ci([0, 1], [0.1, 0.2], n_boot=0),
         r"The 'n_boot' parameter of bootstrap_ci must be an int in the range \[1, 100000\]. "
         r"Got 0 instead. Use 1,000 to 10,000"),
        (lambda: M.bootstrap_ci([0, 1], [0.1, 0.2], n_boot=1_000_000_000),
         r"range \[1, 100000\]. Got 1000000000 instead"),
        (lambda: M.bootstrap_ci([0, 1], [0.1, 0.2], alpha=1.0),
         r"The 'alpha' parameter of bootstrap_ci must be a float in the range \(0, 1\)"),
        (lambda: M.bootstrap_ci([0, 1], [0.1, 0.2], seed=-1),
         r"The 'seed' parameter of bootstrap_ci must be an int in the range \[0, 4294967295\]"),
        (lambda: M.paired_bootstrap_diff([0, 1], [.1, .2], [.3, .4], n_boot=2.5),
         "The 'n_boot' parameter of paired_bootstrap_diff must be an int"),
        (lambda: M.bootstrap_ci([0, 1], [0.1, 0.2], metrics=("auc",)), "cannot be bootstrapped"),
        (lambda: M.bootstrap_ci([0, 1], [0.1, 0.2], ["a"]), "one subject per image"),
        (lambda: M.paired_bootstrap_diff([0, 1], [0.1, 0.2], [0.3]), "prob_b and y"),
        (lambda: M.paired_bootstrap_diff([0, 1], [.1, .2], [.3, .4], threshold=(1,)),
         "number or a pair"),
    ],
)
def test_errors(call, err_msg):
    with pytest.raises(CnmcError, match=err_msg):
        call()
