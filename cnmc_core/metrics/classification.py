"""The one metrics implementation of the project: pure numpy, vectorised, equal to scikit-learn.

Training reports, the ensemble search (a whole GA population at once), error analysis and the
dashboard's live sliders all call these functions, so a number means the same thing everywhere.

Conventions (see DESIGN.md):

- ``y`` holds 1 for ALL (malignant, the positive class) and 0 for HEM (normal); ``prob`` is
  P(ALL) in [0, 1].
- An image is predicted ALL when ``prob >= threshold`` (a probability equal to the threshold
  counts as ALL, like scikit-learn's curves, which use ``score >= threshold``).
- The confusion matrix is ``[[TN, FP], [FN, TP]]``: rows are the true class (HEM, ALL), columns
  the predicted class (HEM, ALL), as :func:`sklearn.metrics.confusion_matrix` with
  ``labels=[0, 1]``.
- Weighted F1 has scikit-learn's ``average="weighted"`` semantics: the per-class F1 of the
  classes present in ``y`` or in the predictions, averaged with the class supports in ``y`` as
  weights. A class absent from ``y`` weighs 0, so with a single class in ``y`` the weighted F1
  is that class's F1 (0 if no image is predicted as it). It never depends on ``zero_division``.
- Per-class precision/recall/F1 follow ``precision_recall_fscore_support(labels=[0, 1])``: a
  0/0 ratio takes the ``zero_division`` value (0.0 by default, as scikit-learn's ``"warn"``
  without the warning).
- ROC AUC is ``nan`` (not None) when ``y`` holds a single class, as scikit-learn 1.9's
  ``roc_auc_score`` returns; JSON files store it as ``null``.
"""

from __future__ import annotations

import numpy as np

from cnmc_core.exceptions import CnmcError

__all__ = [
    "COUNT_METRICS",
    "check_labels",
    "check_probs",
    "check_threshold",
    "confusion",
    "safe_div",
    "metrics_from_counts",
    "weighted_f1",
    "weighted_f1_many",
    "weighted_f1_pred",
    "roc_curve_points",
    "pr_curve_points",
    "roc_auc",
    "binary_report",
    "best_f1_threshold",
    "sensitivity_threshold",
]

#: Metrics that depend only on the confusion counts (usable in the bootstrap), plus ``roc_auc``.
COUNT_METRICS = (
    "accuracy",
    "weighted_f1",
    "macro_f1",
    "weighted_precision",
    "weighted_recall",
    "precision_hem",
    "recall_hem",
    "f1_hem",
    "precision_all",
    "recall_all",
    "f1_all",
)


def check_labels(y, name: str = "y") -> np.ndarray:
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise CnmcError(
            f"Expected 1D array for {name}, got {arr.ndim}D array instead; pass one label per image."
        )
    if arr.size == 0:
        raise CnmcError(f"{name} is empty: at least one image is needed.")
    if arr.dtype == bool:
        return arr.astype(np.int8)
    if not np.issubdtype(arr.dtype, np.number):
        raise CnmcError(f"{name} must hold the labels 0 (HEM) and 1 (ALL); got dtype {arr.dtype}.")
    bad = ~np.isin(arr, (0, 1))
    if bad.any():
        shown = np.unique(arr[bad])[:5].tolist()
        raise CnmcError(f"{name} must hold only 0 (HEM) and 1 (ALL); got {shown} instead.")
    return arr.astype(np.int8)


def check_probs(prob, n: int, name: str = "prob", ndim: int = 1) -> np.ndarray:
    arr = np.asarray(prob)
    if arr.ndim != ndim:
        raise CnmcError(f"Expected {ndim}D array for {name}, got {arr.ndim}D array instead.")
    if arr.dtype == bool:
        arr = arr.astype(np.float64)
    if not np.issubdtype(arr.dtype, np.number):
        raise CnmcError(f"{name} must hold probabilities P(ALL); got dtype {arr.dtype}.")
    arr = arr.astype(np.float64, copy=False)
    if arr.shape[-1] != n:
        raise CnmcError(
            f"{name} and y have inconsistent numbers of images: {arr.shape[-1]} and {n}."
        )
    if not np.isfinite(arr).all():
        raise CnmcError(f"{name} contains NaN or infinity; every image needs a probability.")
    if arr.size and (arr.min() < 0.0 or arr.max() > 1.0):
        raise CnmcError(
            f"{name} must be probabilities in [0, 1]; got values from {arr.min():g} to "
            f"{arr.max():g}. Apply a sigmoid to logits first."
        )
    return arr


def check_threshold(threshold) -> float:
    if isinstance(threshold, (bool, np.bool_)) or not isinstance(threshold, (int, float, np.number)):
        raise CnmcError(f"threshold must be a real number in [0, 1]; got {threshold!r} instead.")
    value = float(threshold)
    if not (np.isfinite(value) and 0.0 <= value <= 1.0):
        raise CnmcError(f"threshold must be a real number in [0, 1]; got {threshold!r} instead.")
    return value


def _check_zero_division(zero_division) -> float:
    if isinstance(zero_division, (int, float)) and not isinstance(zero_division, bool):
        if zero_division in (0, 1) or np.isnan(zero_division):
            return float(zero_division)
    raise CnmcError(f"zero_division must be one of 0.0, 1.0 or nan; got {zero_division!r} instead.")


def confusion(y, pred) -> np.ndarray:
    """The 2x2 confusion matrix ``[[TN, FP], [FN, TP]]`` of 0/1 predictions ``pred``.

    Rows are the true class (HEM, ALL), columns the predicted class (HEM, ALL); equal to
    ``sklearn.metrics.confusion_matrix(y, pred, labels=[0, 1])``.

    Raises:
        CnmcError: ``y`` or ``pred`` is not a 1-D array of 0/1 labels, or their lengths differ.
    """
    y = check_labels(y)
    pred = check_labels(pred, "pred")
    if pred.shape != y.shape:
        raise CnmcError(f"pred and y have inconsistent numbers of images: {pred.size} and {y.size}.")
    codes = np.bincount(2 * y.astype(np.intp) + pred, minlength=4)
    return codes.reshape(2, 2).astype(np.int64)


def safe_div(num, den, zero_division: float):
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.full(np.broadcast(num, den).shape, zero_division, dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _nanaverage2(a0, a1, w0, w1):
    """scikit-learn's ``_nanaverage`` over two classes, elementwise (NaN values dropped; all
    remaining weights zero -> plain mean of what remains)."""
    a0, a1 = np.broadcast_arrays(np.asarray(a0, float), np.asarray(a1, float))
    k0, k1 = ~np.isnan(a0), ~np.isnan(a1)
    v0, v1 = np.where(k0, a0, 0.0), np.where(k1, a1, 0.0)
    ww0, ww1 = np.where(k0, w0, 0.0), np.where(k1, w1, 0.0)
    wsum = ww0 + ww1
    weighted = safe_div(v0 * ww0 + v1 * ww1, wsum, np.nan)
    plain = safe_div(v0 + v1, k0.astype(float) + k1, np.nan)
    return np.where(wsum != 0, weighted, plain)


def metrics_from_counts(tp, fp, fn, tn, zero_division: float = 0.0) -> dict[str, np.ndarray]:
    """Every count-based metric from confusion counts (scalars or arrays of equal shape).

    Args:
        tp, fp, fn, tn: true/false positives/negatives with ALL as the positive class; may be
            non-integer (bootstrap weights).
        zero_division: value of a 0/0 per-class precision/recall/F1 (0.0, 1.0 or nan).

    Returns:
        A dict with the names of :data:`COUNT_METRICS`, each an array shaped like the inputs.
    """
    zd = _check_zero_division(zero_division)
    tp, fp, fn, tn = (np.asarray(v, dtype=np.float64) for v in (tp, fp, fn, tn))
    n_all, n_hem = tp + fn, tn + fp  # supports in y
    pred_all, pred_hem = tp + fp, tn + fn
    n = n_all + n_hem
    out = {"accuracy": safe_div(tp + tn, n, np.nan)}
    # Per class, as precision_recall_fscore_support(labels=[0, 1]): F = 2 tp / (support + pred).
    out["precision_all"] = safe_div(tp, pred_all, zd)
    out["recall_all"] = safe_div(tp, n_all, zd)
    out["f1_all"] = safe_div(2.0 * tp, n_all + pred_all, zd)
    out["precision_hem"] = safe_div(tn, pred_hem, zd)
    out["recall_hem"] = safe_div(tn, n_hem, zd)
    out["f1_hem"] = safe_div(2.0 * tn, n_hem + pred_hem, zd)
    # Averages over the labels present in y or in the predictions (sklearn's unique_labels).
    present_all = (n_all + pred_all) > 0
    present_hem = (n_hem + pred_hem) > 0
    # On present labels a 0/0 F1 cannot happen; a 0 denominator means the label is absent.
    f1_all = safe_div(2.0 * tp, n_all + pred_all, 0.0)
    f1_hem = safe_div(2.0 * tn, n_hem + pred_hem, 0.0)
    out["weighted_f1"] = safe_div(f1_hem * n_hem + f1_all * n_all, n, np.nan)
    out["macro_f1"] = safe_div(
        f1_hem * present_hem + f1_all * present_all, present_hem * 1.0 + present_all, np.nan
    )

    def labelled(values, present):  # a label absent from y and predictions is not averaged
        return np.where(present, values, np.nan)

    out["weighted_precision"] = _nanaverage2(
        labelled(out["precision_hem"], present_hem), labelled(out["precision_all"], present_all),
        n_hem, n_all,
    )
    out["weighted_recall"] = _nanaverage2(
        labelled(out["recall_hem"], present_hem), labelled(out["recall_all"], present_all),
        n_hem, n_all,
    )
    return out


def _counts_many(y: np.ndarray, pred: np.ndarray):
    """Confusion counts of each row of a (P, n) boolean prediction matrix."""
    pos = y.astype(bool)
    n_all = int(pos.sum())
    # A float32 product counts exactly up to 2**24 images per row and uses BLAS.
    tp = pred.astype(np.float32) @ pos.astype(np.float32)
    pred_all = np.count_nonzero(pred, axis=-1)
    tp = tp.astype(np.float64)
    fp = pred_all - tp
    fn = n_all - tp
    tn = (y.size - n_all) - fp
    return tp, fp, fn, tn


def weighted_f1(y, prob, threshold: float = 0.5) -> float:
    """Weighted F1 (scikit-learn ``average="weighted"``) of ``prob >= threshold``."""
    return float(weighted_f1_many(y, np.asarray(prob)[None, :], threshold)[0])


def weighted_f1_many(y, scores, threshold: float = 0.5) -> np.ndarray:
    """Weighted F1 of many prediction vectors at once.

    Args:
        y: (n,) true labels, 0 HEM / 1 ALL.
        scores: (P, n) probabilities P(ALL), thresholded with ``>= threshold``; or a boolean
            (P, n) matrix of predictions (True = ALL), used as is.
        threshold: in [0, 1]; ignored for boolean ``scores``.

    Returns:
        (P,) array of weighted F1 values, equal to ``f1_score(y, pred, average="weighted")``
        row by row.
    """
    y = check_labels(y)
    scores = np.asarray(scores)
    if scores.dtype == bool:
        if scores.ndim != 2 or scores.shape[1] != y.size:
            raise CnmcError(
                f"Expected a 2D (n_vectors, {y.size}) prediction matrix, got shape {scores.shape}."
            )
        pred = scores
    else:
        scores = check_probs(scores, y.size, "scores", ndim=2)
        pred = scores >= check_threshold(threshold)
    return weighted_f1_pred(y, pred)


def weighted_f1_pred(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Weighted F1 of each row of a validated (P, n) boolean prediction matrix (no checks: the
    GA's inner loop calls this directly)."""
    tp, fp, fn, tn = _counts_many(y, pred)
    n_all = tp + fn
    n_hem = tn + fp
    # 2 tp / (support + predicted), as sklearn; absent classes weigh 0 (their F1 is set to 0).
    f1_all = safe_div(2.0 * tp, n_all + tp + fp, 0.0)
    f1_hem = safe_div(2.0 * tn, n_hem + tn + fn, 0.0)
    return (f1_hem * n_hem + f1_all * n_all) / y.size


def _clf_curve(y: np.ndarray, prob: np.ndarray):
    """Cumulative (fps, tps, thresholds) at each distinct score, descending (sklearn's order)."""
    # sklearn sorts descending with a stable sort: equal scores keep their input order.
    order = np.argsort(-prob, kind="stable")
    s = prob[order]
    yt = y[order].astype(np.float64)
    idx = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]
    tps = np.cumsum(yt)[idx]
    fps = 1.0 + idx - tps
    return fps, tps, s[idx]


def roc_curve_points(y, prob, drop_intermediate: bool = True):
    """ROC curve ``(fpr, tpr, thresholds)``, equal to :func:`sklearn.metrics.roc_curve`.

    Thresholds decrease from ``inf`` (nothing predicted ALL); point ``i`` is the rate of
    ``prob >= thresholds[i]``. With a single class in ``y`` the undefined rate is all ``nan``.
    """
    y = check_labels(y)
    prob = check_probs(prob, y.size)
    fps, tps, thr = _clf_curve(y, prob)
    return _roc_from_clf(fps, tps, thr, drop_intermediate)


def _roc_from_clf(fps, tps, thr, drop_intermediate=True):
    if drop_intermediate and fps.size > 2:
        keep = np.flatnonzero(
            np.r_[True, np.logical_or(np.diff(fps, 2), np.diff(tps, 2)), True]
        )
        fps, tps, thr = fps[keep], tps[keep], thr[keep]
    fps = np.r_[0.0, fps]
    tps = np.r_[0.0, tps]
    thr = np.r_[np.inf, thr]
    fpr = fps / fps[-1] if fps[-1] > 0 else np.full(fps.shape, np.nan)
    tpr = tps / tps[-1] if tps[-1] > 0 else np.full(tps.shape, np.nan)
    return fpr, tpr, thr


def pr_curve_points(y, prob, drop_intermediate: bool = False):
    """Precision-recall curve ``(precision, recall, thresholds)`` for ALL, equal to
    :func:`sklearn.metrics.precision_recall_curve` (increasing thresholds; the last point is
    precision 1, recall 0; recall is all ones when ``y`` has no ALL image)."""
    y = check_labels(y)
    prob = check_probs(prob, y.size)
    fps, tps, thr = _clf_curve(y, prob)
    return _pr_from_clf(fps, tps, thr, drop_intermediate)


def _pr_from_clf(fps, tps, thr, drop_intermediate=False):
    if drop_intermediate and fps.size > 2:
        keep = np.flatnonzero(
            np.r_[True, np.logical_or(np.diff(tps[:-1]), np.diff(tps[1:])), True]
        )
        fps, tps, thr = fps[keep], tps[keep], thr[keep]
    ps = tps + fps
    precision = safe_div(tps, ps, 0.0)
    recall = tps / tps[-1] if tps[-1] != 0 else np.ones(tps.shape)
    return np.r_[precision[::-1], 1.0], np.r_[recall[::-1], 0.0], thr[::-1].copy()


def _auc_from_clf(fps, tps) -> float:
    if fps[-1] <= 0 or tps[-1] <= 0:
        return float("nan")
    f = np.r_[0.0, fps]
    t = np.r_[0.0, tps]
    area = np.sum(np.diff(f) * (t[1:] + t[:-1])) / 2.0  # integer arithmetic until here
    return float(area / (fps[-1] * tps[-1]))


def roc_auc(y, prob) -> float:
    """Area under the ROC curve, equal to :func:`sklearn.metrics.roc_auc_score` (ties count half).

    Returns ``nan`` when ``y`` holds a single class (the AUC is undefined).
    """
    y = check_labels(y)
    prob = check_probs(prob, y.size)
    fps, tps, _ = _clf_curve(y, prob)
    return _auc_from_clf(fps, tps)


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
    fps, tps, thr = _clf_curve(y, prob)
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
        "roc_auc": _auc_from_clf(fps, tps),
    }
    if curves:
        fpr, tpr, rthr = _roc_from_clf(fps, tps, thr)
        precision, recall, pthr = _pr_from_clf(fps, tps, thr)
        report["roc"] = {"fpr": fpr, "tpr": tpr, "thresholds": rthr}
        report["pr"] = {"precision": precision, "recall": recall, "thresholds": pthr}
    return report


def best_f1_threshold(y, prob) -> tuple[float, float]:
    """The threshold that maximises weighted F1 of ``prob >= t`` on (y, prob).

    Candidates are the observed probabilities (every non-empty set of predicted ALL images that
    a threshold can produce). Ties go to the candidate closest to 0.5, then to the larger one.

    Returns:
        ``(threshold, weighted_f1)``.
    """
    y = check_labels(y)
    prob = check_probs(prob, y.size)
    fps, tps, thr = _clf_curve(y, prob)
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
    fps, tps, thr = _clf_curve(y, prob)
    # tps grows as the threshold decreases; the first distinct score reaching the target wins.
    # A tiny tolerance keeps e.g. 49/50 >= 0.98 true despite float rounding.
    k = int(np.flatnonzero(tps / n_all >= target - 1e-12)[0])
    return float(thr[k])
