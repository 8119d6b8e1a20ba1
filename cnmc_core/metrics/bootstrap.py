"""Bootstrap confidence intervals of the metrics: subjects (or images) resampled with
replacement, every resample evaluated at once from weighted confusion counts, and the paired
difference of two predictions on the same resamples.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from cnmc_core.exceptions import CnmcError
from cnmc_core.metrics.classification import (
    COUNT_METRICS,
    check_labels,
    check_probs,
    check_threshold,
    metrics_from_counts,
    safe_div,
)
from cnmc_core.metrics.curves import roc_auc
from cnmc_core.metrics.report import binary_report

__all__ = ["bootstrap_ci", "paired_bootstrap_diff", "full_report"]

_BOOT_METRICS = COUNT_METRICS + ("roc_auc",)
# Resamples drawn per chunk in the bootstrap: a constant, so results depend on the seed only.
_BOOT_CHUNK = 50


def _check_subjects(subjects, n: int):
    if subjects is None:
        return None, n
    arr = np.asarray(subjects)
    if arr.ndim != 1 or arr.size != n:
        raise CnmcError(
            f"subjects must be a 1D array with one subject per image ({n}); got shape {arr.shape}."
        )
    if arr.dtype.kind in "fc" and np.isnan(arr.astype(float)).any():
        raise CnmcError("subjects contains missing values; give every image a subject.")
    codes = np.unique(arr.astype(str), return_inverse=True)[1].ravel()
    return codes.astype(np.intp), int(codes.max()) + 1


def _check_boot(n_boot, alpha):
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise CnmcError(f"n_boot must be a positive integer; got {n_boot!r} instead.")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise CnmcError(f"alpha must be a number in (0, 1); got {alpha!r} instead.")


def _check_metrics(metrics) -> tuple[str, ...]:
    if isinstance(metrics, str):
        metrics = (metrics,)
    metrics = tuple(metrics)
    for name in metrics:
        if name not in _BOOT_METRICS:
            raise CnmcError(
                f"The metric {name!r} cannot be bootstrapped; must be one of "
                f"{sorted(_BOOT_METRICS)}."
            )
    return metrics


def _resample_weights(codes, n_units: int, n: int, n_boot: int, seed: int):
    """Yield (chunk, n) image weights: how many times each image is drawn in each resample.

    Units (subjects, or images when ``codes`` is None) are drawn with replacement, n_units per
    resample; a drawn subject brings all its images. Chunks of a fixed size each get their own
    child seed, so the draws depend only on ``seed``.
    """
    seeds = np.random.SeedSequence(seed).spawn((n_boot + _BOOT_CHUNK - 1) // _BOOT_CHUNK)
    for i, child in enumerate(seeds):
        size = min(_BOOT_CHUNK, n_boot - i * _BOOT_CHUNK)
        draws = np.random.default_rng(child).integers(0, n_units, size=(size, n_units))
        flat = draws + (np.arange(size) * n_units)[:, None]
        counts = np.bincount(flat.ravel(), minlength=size * n_units).reshape(size, n_units)
        counts = counts.astype(np.float64)
        yield counts if codes is None else counts[:, codes]


class _BootEvaluator:
    """Metrics of one probability vector on weighted resamples (rows of a weight matrix)."""

    def __init__(self, y: np.ndarray, prob: np.ndarray, threshold: float, metrics):
        self.metrics = metrics
        pred = prob >= threshold
        pos = y.astype(bool)
        self.ind = np.stack([pred & pos, pred & ~pos, ~pred & pos, ~pred & ~pos], 1).astype(float)
        if "roc_auc" in metrics:
            order = np.argsort(-prob, kind="stable")
            s = prob[order]
            self.order = order
            self.starts = np.r_[0, np.flatnonzero(np.diff(s)) + 1]
            self.pos_sorted = pos[order]

    def __call__(self, w: np.ndarray) -> dict[str, np.ndarray]:
        tp, fp, fn, tn = (w @ self.ind).T
        values = metrics_from_counts(tp, fp, fn, tn)
        out = {k: values[k] for k in self.metrics if k != "roc_auc"}
        if "roc_auc" in self.metrics:
            ws = w[:, self.order]
            tps = np.cumsum(np.add.reduceat(ws * self.pos_sorted, self.starts, axis=1), axis=1)
            fps = np.cumsum(np.add.reduceat(ws * ~self.pos_sorted, self.starts, axis=1), axis=1)
            f = np.concatenate([np.zeros((w.shape[0], 1)), fps], axis=1)
            t = np.concatenate([np.zeros((w.shape[0], 1)), tps], axis=1)
            area = np.sum(np.diff(f, axis=1) * (t[:, 1:] + t[:, :-1]), axis=1) / 2.0
            out["roc_auc"] = safe_div(area, fps[:, -1] * tps[:, -1], np.nan)
        return out


def _point(y, prob, threshold, name):
    if name == "roc_auc":
        return roc_auc(y, prob)
    ev = _BootEvaluator(y, prob, threshold, (name,))
    return float(ev(np.ones((1, y.size)))[name][0])


def _interval(values: np.ndarray, alpha: float):
    finite = values[~np.isnan(values)]
    if finite.size == 0:
        return float("nan"), float("nan")
    low, high = np.percentile(finite, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return float(low), float(high)


def bootstrap_ci(
    y,
    prob,
    subjects=None,
    *,
    threshold: float = 0.5,
    metrics: Sequence[str] | str = ("weighted_f1", "roc_auc"),
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict:
    """Percentile bootstrap confidence intervals (95% by default).

    Resamples subjects with replacement when ``subjects`` is given (a drawn subject brings all
    its images: images of one person are not independent), else images. All resamples are
    evaluated at once from weighted confusion counts.

    Args:
        y, prob: labels and P(ALL).
        subjects: (n,) subject of each image, or None to resample images.
        threshold: predicted ALL when ``prob >= threshold``.
        metrics: names from :data:`COUNT_METRICS` and ``"roc_auc"``.
        n_boot: number of resamples.
        alpha: 1 - confidence level.
        seed: the draws depend on it only.

    Returns:
        ``{metric: {"estimate", "low", "high", "n_undefined"}, "n_boot", "alpha", "unit"
        ("subject" or "image"), "n_units", "seed", "threshold"}``; ``estimate`` is the metric on
        the full data; resamples where a metric is undefined (AUC with one class) are dropped
        and counted in ``n_undefined``.
    """
    y = check_labels(y)
    prob = check_probs(prob, y.size)
    threshold = check_threshold(threshold)
    metrics = _check_metrics(metrics)
    _check_boot(n_boot, alpha)
    codes, n_units = _check_subjects(subjects, y.size)
    ev = _BootEvaluator(y, prob, threshold, metrics)
    draws = {k: [] for k in metrics}
    for w in _resample_weights(codes, n_units, y.size, int(n_boot), seed):
        for k, v in ev(w).items():
            draws[k].append(v)
    out: dict = {}
    for k in metrics:
        values = np.concatenate(draws[k])
        low, high = _interval(values, alpha)
        out[k] = {"estimate": _point(y, prob, threshold, k), "low": low, "high": high,
                  "n_undefined": int(np.isnan(values).sum())}
    out.update({"n_boot": int(n_boot), "alpha": float(alpha),
                "unit": "image" if codes is None else "subject", "n_units": n_units,
                "seed": seed, "threshold": threshold})
    return out


def paired_bootstrap_diff(
    y,
    prob_a,
    prob_b,
    subjects=None,
    *,
    threshold: float | tuple[float, float] = 0.5,
    metric: str = "weighted_f1",
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict:
    """Bootstrap CI of ``metric(a) - metric(b)`` for two predictions of the same images.

    Both are evaluated on the same resamples (subjects when given, else images), so the CI
    reflects the difference, not the two scores' separate noise.

    Args:
        threshold: one threshold for both, or ``(threshold_a, threshold_b)``.

    Returns:
        ``{"metric", "estimate" (on the full data), "low", "high", "p_a_not_better" (share of
        resamples with a difference <= 0), "n_boot", "alpha", "unit", "n_units", "seed"}``.
    """
    y = check_labels(y)
    prob_a = check_probs(prob_a, y.size, "prob_a")
    prob_b = check_probs(prob_b, y.size, "prob_b")
    if isinstance(threshold, (tuple, list)):
        if len(threshold) != 2:
            raise CnmcError(f"threshold must be a number or a pair; got {threshold!r} instead.")
        t_a, t_b = (check_threshold(t) for t in threshold)
    else:
        t_a = t_b = check_threshold(threshold)
    (metric,) = _check_metrics((metric,))
    _check_boot(n_boot, alpha)
    codes, n_units = _check_subjects(subjects, y.size)
    ev_a = _BootEvaluator(y, prob_a, t_a, (metric,))
    ev_b = _BootEvaluator(y, prob_b, t_b, (metric,))
    diffs = [ev_a(w)[metric] - ev_b(w)[metric]
             for w in _resample_weights(codes, n_units, y.size, int(n_boot), seed)]
    diffs = np.concatenate(diffs)
    low, high = _interval(diffs, alpha)
    finite = diffs[~np.isnan(diffs)]
    return {
        "metric": metric,
        "estimate": _point(y, prob_a, t_a, metric) - _point(y, prob_b, t_b, metric),
        "low": low,
        "high": high,
        "p_a_not_better": float(np.mean(finite <= 0)) if finite.size else float("nan"),
        "n_boot": int(n_boot), "alpha": float(alpha),
        "unit": "image" if codes is None else "subject", "n_units": n_units, "seed": seed,
    }


def full_report(
    y,
    prob,
    threshold: float = 0.5,
    subjects=None,
    *,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    zero_division: float = 0.0,
) -> dict:
    """:func:`binary_report` plus bootstrap CIs of weighted F1 and AUC under ``"ci"``: what a
    run's ``metrics.json`` stores for each split. ``n_boot=0`` skips the CIs (``"ci": None``)."""
    report = binary_report(y, prob, threshold, zero_division=zero_division)
    if n_boot == 0:
        report["ci"] = None
    else:
        report["ci"] = bootstrap_ci(y, prob, subjects, threshold=threshold, n_boot=n_boot,
                                    alpha=alpha, seed=seed)
    return report
