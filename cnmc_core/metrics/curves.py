"""Curves and areas of the one metrics implementation: ROC and precision-recall curves, ROC AUC
and average precision, all scikit-learn's own functions on inputs validated here, and the
thresholds chosen on a curve (best weighted F1, a target sensitivity), read from
:func:`sklearn.metrics.roc_curve` counts.

Conventions as :mod:`cnmc_core.metrics.classification`: ALL (``y = 1``) is the positive class,
a point at threshold ``t`` predicts ALL where ``prob >= t``, and a rate or area that is
undefined because ``y`` holds a single class is ``nan`` (scikit-learn's warning about it is
silenced, since the result says so).
"""

from __future__ import annotations

import contextlib
import warnings

import numpy as np
from sklearn import metrics as skm
from sklearn.exceptions import UndefinedMetricWarning

from cnmc_core.exceptions import CnmcError
from cnmc_core.metrics.classification import (
    check_labels,
    check_probs,
    metrics_from_counts,
)

__all__ = [
    "roc_curve_points",
    "pr_curve_points",
    "roc_auc",
    "roc_auc_of_curve",
    "average_precision",
    "best_f1_threshold",
    "sensitivity_threshold",
]


@contextlib.contextmanager
def _quiet_if_one_class(y: np.ndarray):
    """Silence scikit-learn's warnings about an undefined rate, only when ``y`` holds a single
    class: the result is then documented here (NaN rates, NaN AUC) and the warning is noise.
    With both classes nothing is silenced."""
    n_all = int(y.sum())
    if 0 < n_all < y.size:
        yield
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        warnings.simplefilter("ignore", UserWarning)  # precision_recall_curve: no positive class
        yield


def _roc(y: np.ndarray, prob: np.ndarray, drop_intermediate: bool = True):
    with _quiet_if_one_class(y):
        return skm.roc_curve(y, prob, drop_intermediate=drop_intermediate)


def _pr(y: np.ndarray, prob: np.ndarray, drop_intermediate: bool = False):
    with _quiet_if_one_class(y):
        return skm.precision_recall_curve(y, prob, drop_intermediate=drop_intermediate)


def _auc(y: np.ndarray, prob: np.ndarray) -> float:
    n_all = int(y.sum())
    if n_all == 0 or n_all == y.size:  # undefined; scikit-learn would warn and say nan too
        return float("nan")
    return float(skm.roc_auc_score(y, prob))


def _counts_by_threshold(y: np.ndarray, prob: np.ndarray):
    """``(fps, tps, thresholds)``: false and true positives of ``prob >= t`` at each distinct
    observed probability ``t``, in decreasing order of ``t``.

    From :func:`sklearn.metrics.roc_curve` with ``drop_intermediate=False`` (every distinct
    score is a point; its first point, threshold ``inf``, predicts nothing ALL and is left
    out): the rates times the class sizes, rounded back to the integer counts they came from.
    """
    fpr, tpr, thr = _roc(y, prob, drop_intermediate=False)
    n_all = float(y.sum())
    n_hem = y.size - n_all
    tps = np.rint(tpr[1:] * n_all) if n_all else np.zeros(thr.size - 1)
    fps = np.rint(fpr[1:] * n_hem) if n_hem else np.zeros(thr.size - 1)
    return fps, tps, thr[1:]


def roc_curve_points(y, prob, drop_intermediate: bool = True):
    """ROC curve ``(fpr, tpr, thresholds)`` of ALL: :func:`sklearn.metrics.roc_curve` on
    validated inputs.

    Thresholds decrease from ``inf`` (nothing predicted ALL); point ``i`` is the rate of
    ``prob >= thresholds[i]``. With a single class in ``y`` the undefined rate is all ``nan``
    (scikit-learn's warning about it is silenced).

    Raises:
        CnmcError: invalid labels or probabilities.
    """
    y = check_labels(y)
    prob = check_probs(prob, y.size)
    return _roc(y, prob, drop_intermediate)


def pr_curve_points(y, prob, drop_intermediate: bool = False):
    """Precision-recall curve ``(precision, recall, thresholds)`` of ALL:
    :func:`sklearn.metrics.precision_recall_curve` on validated inputs (increasing thresholds;
    the last point is precision 1, recall 0; recall is all ones when ``y`` has no ALL image).

    Raises:
        CnmcError: invalid labels or probabilities.
    """
    y = check_labels(y)
    prob = check_probs(prob, y.size)
    return _pr(y, prob, drop_intermediate)


def roc_auc(y, prob) -> float:
    """Area under the ROC curve: :func:`sklearn.metrics.roc_auc_score` (ties count half).

    Returns ``nan`` when ``y`` holds a single class (the AUC is undefined).

    Raises:
        CnmcError: invalid labels or probabilities.
    """
    y = check_labels(y)
    prob = check_probs(prob, y.size)
    return _auc(y, prob)


def roc_auc_of_curve(fpr: np.ndarray, tpr: np.ndarray) -> float:
    """The area under a ROC curve of :func:`roc_curve_points` (:func:`sklearn.metrics.auc`):
    equal to :func:`roc_auc` of the same data, without a second pass over it; ``nan`` when a
    rate is undefined (a single class)."""
    if np.isnan(fpr).any() or np.isnan(tpr).any():
        return float("nan")
    return float(skm.auc(fpr, tpr))


def average_precision(y, prob) -> float:
    """Average precision of ALL: :func:`sklearn.metrics.average_precision_score` (the step-wise
    area under the precision-recall curve).

    Returns ``nan`` when ``y`` has no ALL image (no recall to average over).

    Raises:
        CnmcError: invalid labels or probabilities.
    """
    y = check_labels(y)
    prob = check_probs(prob, y.size)
    if not y.any():
        return float("nan")
    return float(skm.average_precision_score(y, prob))


def best_f1_threshold(y, prob) -> tuple[float, float]:
    """The threshold that maximises weighted F1 of ``prob >= t`` on (y, prob).

    Candidates are the observed probabilities (every non-empty set of predicted ALL images that
    a threshold can produce). Ties go to the candidate closest to 0.5, then to the larger one.

    Returns:
        ``(threshold, weighted_f1)``.
    """
    y = check_labels(y)
    prob = check_probs(prob, y.size)
    fps, tps, thr = _counts_by_threshold(y, prob)
    n_all = float(y.sum())
    n_hem = y.size - n_all
    f1 = metrics_from_counts(tps, fps, n_all - tps, n_hem - fps)["weighted_f1"]
    best = np.flatnonzero(f1 == f1.max())
    pick = best[np.lexsort((-thr[best], np.abs(thr[best] - 0.5)))[0]]
    return float(thr[pick]), float(f1[pick])


def sensitivity_threshold(y, prob, target: float) -> float:
    """The largest threshold ``t`` whose recall on ALL (sensitivity) of ``prob >= t`` is at least
    ``target``; ``t`` is one of the observed probabilities.

    Raises:
        CnmcError: ``target`` outside (0, 1], or ``y`` has no ALL image.
    """
    y = check_labels(y)
    prob = check_probs(prob, y.size)
    if isinstance(target, bool) or not isinstance(target, (int, float)) or not 0 < target <= 1:
        raise CnmcError(f"target sensitivity must be a number in (0, 1]; got {target!r} instead.")
    n_all = int(y.sum())
    if n_all == 0:
        raise CnmcError("Cannot choose a threshold for a target sensitivity: y has no ALL image.")
    _, tps, thr = _counts_by_threshold(y, prob)
    # tps grows as the threshold decreases; the first distinct score reaching the target wins.
    # A tiny tolerance keeps e.g. 49/50 >= 0.98 true despite float rounding.
    k = int(np.flatnonzero(tps / n_all >= target - 1e-12)[0])
    return float(thr[k])
