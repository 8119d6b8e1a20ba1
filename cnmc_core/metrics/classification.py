"""The count metrics of the one metrics implementation: input checks, the confusion matrix, and
every metric of confusion counts (weighted F1 above all), vectorised over many prediction
vectors at once and equal to scikit-learn's.

This is the fast path: the GA scores a whole population, the bootstrap every resample, and the
dashboard's sliders re-score on every move, through the same functions. The curves and areas
(ROC, precision-recall, AUC, average precision) are scikit-learn's own, in
:mod:`cnmc_core.metrics.curves`; :func:`cnmc_core.metrics.report.binary_report` puts both in
one report. Training reports, the ensemble search, error analysis and the dashboard all call
these modules, so a number means the same thing everywhere.

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
    """``y`` as a 1-D int8 array of 0 (HEM) / 1 (ALL) labels (booleans are taken as labels).

    Raises:
        CnmcError: not 1-D, empty, not numeric, or a value other than 0 and 1 (the message
            names ``name`` and shows the bad values).
    """
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
    """``prob`` as a float64 array of ``ndim`` dimensions whose last axis has ``n`` finite
    probabilities P(ALL) in [0, 1].

    Raises:
        CnmcError: wrong dimensions, a length other than ``n``, NaN/infinity, or values outside
            [0, 1] (the message says to apply a sigmoid to logits).
    """
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
    """``threshold`` as a float in [0, 1].

    Raises:
        CnmcError: not a real number (a bool or a string included) or outside [0, 1].
    """
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
    """``num / den`` elementwise, with ``zero_division`` where ``den`` is 0."""
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
