"""Bootstrap confidence intervals of the metrics, class-stratified: subjects (or images) are
resampled with replacement within each class, every resample is evaluated at once from weighted
confusion counts, and the paired difference of two predictions uses the same resamples.

Why stratified: a C-NMC subject is all ALL or all HEM, so a test split of a few subjects (the
demo's has 9) draws resamples without one of the classes now and then (31 of 1,000 with 9
subjects); there the AUC is undefined, and dropping those resamples made the AUC interval too
narrow. Drawing ``n_all`` ALL subjects among the ALL subjects and ``n_hem`` HEM subjects among
the HEM ones (with replacement) keeps the class mix of the data in every resample, so every
resample has both classes. A subject with images of both classes (which C-NMC does not have)
is put in the stratum of its majority class (ALL on a tie) and counted in ``mixed_subjects``;
with images as units (no subjects known) the images are stratified by their label.
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
from cnmc_core.validation import check_scalar, check_seed

__all__ = ["MAX_N_BOOT", "bootstrap_ci", "paired_bootstrap_diff", "full_report"]

#: The most resamples allowed: a percentile of 100,000 resamples has a Monte Carlo error far
#: below any CI width worth reading (already about 0.001 at 10,000), and each resample costs
#: time and memory; a typo such as 1,000,000,000 would run for hours.
MAX_N_BOOT = 100_000

_BOOT_METRICS = COUNT_METRICS + ("roc_auc",)
# Resamples drawn per chunk in the bootstrap: a constant, so results depend on the seed only.
_BOOT_CHUNK = 50


class _Units:
    """The resampling units of a bootstrap and their strata.

    ``codes`` maps each image to its unit (None: each image is its own unit); ``strata`` holds
    the units of each class (HEM, then ALL); ``mixed`` counts subjects with both classes.
    """

    def __init__(self, y: np.ndarray, subjects):
        if subjects is None:
            self.codes, self.n_units, unit_y, self.mixed = None, y.size, y, 0
        else:
            arr = np.asarray(subjects)
            if arr.ndim != 1 or arr.size != y.size:
                raise CnmcError(f"subjects must be a 1D array with one subject per image "
                                f"({y.size}); got shape {arr.shape}.")
            if arr.dtype.kind in "fc" and np.isnan(arr.astype(float)).any():
                raise CnmcError("subjects contains missing values; give every image a subject.")
            codes = np.unique(arr.astype(str), return_inverse=True)[1].ravel().astype(np.intp)
            self.codes, self.n_units = codes, int(codes.max()) + 1
            size = np.bincount(codes, minlength=self.n_units)
            n_all = np.bincount(codes, weights=y, minlength=self.n_units)
            unit_y = (2 * n_all >= size).astype(np.int8)  # the majority class; ALL on a tie
            self.mixed = int(np.count_nonzero((n_all > 0) & (n_all < size)))
        self.strata = (np.flatnonzero(unit_y == 0), np.flatnonzero(unit_y == 1))
        self.unit = "image" if self.codes is None else "subject"

    def describe(self) -> dict:
        """The units, as the results report them."""
        out = {"unit": self.unit, "n_units": self.n_units, "stratified": True,
               "strata": {"hem": int(self.strata[0].size), "all": int(self.strata[1].size)}}
        if self.codes is not None:
            out["mixed_subjects"] = self.mixed
        return out

    def weights(self, n_boot: int, seed: int):
        """Yield (chunk, n_images) weights: how many times each image is drawn per resample.

        In each resample every stratum draws as many of its units as it has, with replacement;
        a drawn subject brings all its images. Chunks of a fixed size each get their own child
        seed, so the draws depend only on ``seed``.
        """
        n_units = self.n_units
        seeds = np.random.SeedSequence(seed).spawn((n_boot + _BOOT_CHUNK - 1) // _BOOT_CHUNK)
        for i, child in enumerate(seeds):
            size = min(_BOOT_CHUNK, n_boot - i * _BOOT_CHUNK)
            rng = np.random.default_rng(child)
            offsets = (np.arange(size) * n_units)[:, None]
            counts = np.zeros(size * n_units)
            for stratum in self.strata:
                if stratum.size:
                    draws = stratum[rng.integers(0, stratum.size, size=(size, stratum.size))]
                    counts += np.bincount((draws + offsets).ravel(), minlength=size * n_units)
            counts = counts.reshape(size, n_units)
            yield counts if self.codes is None else counts[:, self.codes]


def _check_boot(n_boot, alpha, seed, owner: str):
    check_scalar(n_boot, "n_boot", "int", low=1, high=MAX_N_BOOT, owner=owner,
                 fix="Use 1,000 to 10,000 resamples; more do not make a 95% CI more precise.")
    check_scalar(alpha, "alpha", "float", low=0, high=1, closed="neither", owner=owner,
                 fix="Use 0.05 for a 95% interval.")
    check_seed(seed, owner=owner)


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
    """Percentile confidence intervals (95% by default) from a class-stratified bootstrap.

    Resamples subjects with replacement when ``subjects`` is given (a drawn subject brings all
    its images: images of one person are not independent), else images; either way within
    each class: a resample draws as many ALL units among the ALL ones, and as many HEM units
    among the HEM ones, as the data has, so every resample has both classes (when the data
    has) and the AUC is defined in every one. A subject with images of both classes goes to
    the stratum of its majority class (ALL on a tie; counted in ``mixed_subjects``). All
    resamples are evaluated at once from weighted confusion counts.

    Args:
        y, prob: labels and P(ALL).
        subjects: (n,) subject of each image, or None to resample images.
        threshold: predicted ALL when ``prob >= threshold``.
        metrics: names from :data:`COUNT_METRICS` and ``"roc_auc"``.
        n_boot: number of resamples, 1 to :data:`MAX_N_BOOT`.
        alpha: 1 - confidence level, in (0, 1).
        seed: the draws depend on it only (0 to 2**32 - 1).

    Returns:
        ``{metric: {"estimate", "low", "high", "n_undefined"}, "n_boot", "alpha", "unit"
        ("subject" or "image"), "n_units", "stratified" (True), "strata" (units per class:
        ``{"hem", "all"}``), "mixed_subjects" (subjects only), "seed", "threshold"}``;
        ``estimate`` is the metric on the full data; resamples where a metric is still
        undefined (AUC when ``y`` has a single class) are dropped and counted in
        ``n_undefined``.

    Raises:
        CnmcError: invalid labels, probabilities, threshold, metric names or subjects;
            ConfigError: ``n_boot``, ``alpha`` or ``seed`` out of range.
    """
    y = check_labels(y)
    prob = check_probs(prob, y.size)
    threshold = check_threshold(threshold)
    metrics = _check_metrics(metrics)
    _check_boot(n_boot, alpha, seed, "bootstrap_ci")
    units = _Units(y, subjects)
    ev = _BootEvaluator(y, prob, threshold, metrics)
    draws = {k: [] for k in metrics}
    for w in units.weights(int(n_boot), seed):
        for k, v in ev(w).items():
            draws[k].append(v)
    out: dict = {}
    for k in metrics:
        values = np.concatenate(draws[k])
        low, high = _interval(values, alpha)
        out[k] = {"estimate": _point(y, prob, threshold, k), "low": low, "high": high,
                  "n_undefined": int(np.isnan(values).sum())}
    out.update({"n_boot": int(n_boot), "alpha": float(alpha), **units.describe(),
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

    Both are evaluated on the same resamples (subjects when given, else images, stratified by
    class as in :func:`bootstrap_ci`), so the CI reflects the difference, not the two scores'
    separate noise.

    Args:
        y, prob_a, prob_b: labels and the two P(ALL) vectors.
        subjects: (n,) subject of each image, or None to resample images.
        threshold: one threshold for both, or ``(threshold_a, threshold_b)``.
        metric: one name from :data:`COUNT_METRICS` or ``"roc_auc"``.
        n_boot, alpha, seed: as :func:`bootstrap_ci`.

    Returns:
        ``{"metric", "estimate" (on the full data), "low", "high", "p_a_not_better" (share of
        resamples with a difference <= 0), "n_boot", "alpha", "unit", "n_units",
        "stratified", "strata", ("mixed_subjects"), "seed"}``.

    Raises:
        CnmcError: invalid inputs; ConfigError: ``n_boot``, ``alpha`` or ``seed`` out of range.
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
    _check_boot(n_boot, alpha, seed, "paired_bootstrap_diff")
    units = _Units(y, subjects)
    ev_a = _BootEvaluator(y, prob_a, t_a, (metric,))
    ev_b = _BootEvaluator(y, prob_b, t_b, (metric,))
    diffs = [ev_a(w)[metric] - ev_b(w)[metric] for w in units.weights(int(n_boot), seed)]
    diffs = np.concatenate(diffs)
    low, high = _interval(diffs, alpha)
    finite = diffs[~np.isnan(diffs)]
    return {
        "metric": metric,
        "estimate": _point(y, prob_a, t_a, metric) - _point(y, prob_b, t_b, metric),
        "low": low,
        "high": high,
        "p_a_not_better": float(np.mean(finite <= 0)) if finite.size else float("nan"),
        "n_boot": int(n_boot), "alpha": float(alpha), **units.describe(), "seed": seed,
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
    """:func:`~cnmc_core.metrics.report.binary_report` plus class-stratified bootstrap CIs of
    weighted F1 and AUC under ``"ci"`` (:func:`bootstrap_ci`): what a run's ``metrics.json``
    stores for each split. ``n_boot=0`` skips the CIs (``"ci": None``).

    Raises:
        CnmcError: as :func:`~cnmc_core.metrics.report.binary_report` and :func:`bootstrap_ci`.
    """
    report = binary_report(y, prob, threshold, zero_division=zero_division)
    if n_boot == 0:
        report["ci"] = None
    else:
        report["ci"] = bootstrap_ci(y, prob, subjects, threshold=threshold, n_boot=n_boot,
                                    alpha=alpha, seed=seed)
    return report
