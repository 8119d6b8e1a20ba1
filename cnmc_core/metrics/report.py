"""The single-split report of the one metrics implementation: every count metric of
:mod:`cnmc_core.metrics.classification` and the AUC (and, for plots, the curves) of
:mod:`cnmc_core.metrics.curves`, in one JSON-ready dict: what a run's ``metrics.json`` stores per
split (with bootstrap CIs added by :func:`cnmc_core.metrics.bootstrap.full_report`) and what the
dashboard's live ensemble shows.
"""

from __future__ import annotations

import numpy as np

from cnmc_core.metrics.classification import (
    check_labels,
    check_probs,
    check_threshold,
    metrics_from_counts,
)
from cnmc_core.metrics.curves import (
    pr_curve_points,
    roc_auc,
    roc_auc_of_curve,
    roc_curve_points,
)

__all__ = ["binary_report"]


def binary_report(
    y, prob, threshold: float = 0.5, *, zero_division: float = 0.0, curves: bool = False
) -> dict:
    """All the single-split metrics of ``prob >= threshold``, in one pass.

    Args:
        y: (n,) labels, 1 ALL / 0 HEM.
        prob: (n,) P(ALL) in [0, 1].
        threshold: probability at or above which an image is predicted ALL.
        zero_division: value of a 0/0 per-class ratio (0.0, 1.0 or nan), as scikit-learn.
        curves: also return the ROC and PR curve points (for plots).

    Returns:
        A JSON-ready dict: ``n``, ``n_all``, ``n_hem``, ``threshold``, ``accuracy``,
        ``weighted_f1``, ``macro_f1``, ``weighted_precision``, ``weighted_recall``, ``hem`` and
        ``all`` (each ``precision``, ``recall``, ``f1``, ``support``), ``confusion``
        (``[[TN, FP], [FN, TP]]``), ``roc_auc`` (nan with a single class) and, with
        ``curves``, ``roc`` (``fpr``, ``tpr``, ``thresholds``; the first threshold ``inf`` is
        stored as None in JSON) and ``pr`` (``precision``, ``recall``, ``thresholds``).

    Raises:
        CnmcError: invalid labels, probabilities, threshold or zero_division.
    """
    y = check_labels(y)
    prob = check_probs(prob, y.size)
    threshold = check_threshold(threshold)
    pred = prob >= threshold
    pos = y.astype(bool)
    tp = int(np.count_nonzero(pred & pos))
    fp = int(np.count_nonzero(pred)) - tp
    n_all = int(pos.sum())
    fn = n_all - tp
    tn = (y.size - n_all) - fp
    m = {k: float(v) for k, v in metrics_from_counts(tp, fp, fn, tn, zero_division).items()}
    report = {
        "n": int(y.size),
        "n_all": n_all,
        "n_hem": int(y.size - n_all),
        "threshold": threshold,
        "accuracy": m["accuracy"],
        "weighted_f1": m["weighted_f1"],
        "macro_f1": m["macro_f1"],
        "weighted_precision": m["weighted_precision"],
        "weighted_recall": m["weighted_recall"],
        "hem": {"precision": m["precision_hem"], "recall": m["recall_hem"],
                "f1": m["f1_hem"], "support": int(y.size - n_all)},
        "all": {"precision": m["precision_all"], "recall": m["recall_all"],
                "f1": m["f1_all"], "support": n_all},
        "confusion": [[tn, fp], [fn, tp]],
    }
    if not curves:
        report["roc_auc"] = roc_auc(y, prob)
        return report
    fpr, tpr, rthr = roc_curve_points(y, prob)
    precision, recall, pthr = pr_curve_points(y, prob)
    # roc_auc_score of binary labels is auc() of this very roc_curve (scikit-learn's own
    # _binary_roc_auc_score), so the area is read from the curve instead of a second pass:
    # the live sliders re-score on every move.
    report["roc_auc"] = roc_auc_of_curve(fpr, tpr)
    report["roc"] = {"fpr": fpr, "tpr": tpr, "thresholds": rthr}
    report["pr"] = {"precision": precision, "recall": recall, "thresholds": pthr}
    return report
