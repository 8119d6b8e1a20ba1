"""Is A better than B? Paired tests of two presets (or ensemble methods) of one study.

A study trains every preset on the same folds with the same seeds, so two presets' results pair
up fold by fold:

- :func:`corrected_ttest`: the per-fold differences of a metric with the corrected resampled
  t-test of Nadeau & Bengio (2003, "Inference for the generalization error"; Bouckaert & Frank
  2004 for repeated cross-validation). The folds' training sets overlap, so the differences are
  correlated and the plain t-test is far too confident: the variance of their mean is
  ``(1/n + n_test/n_train) s^2`` instead of ``s^2 / n``.
- the paired subject bootstrap of the pooled out-of-fold difference is
  :func:`cnmc_core.metrics.bootstrap.paired_bootstrap_diff` on the pooled predictions.

Where an outcome cannot be decided (fewer than 3 paired folds, no variation at all), the result
says so in ``reason`` and gives no p-value instead of a number that means nothing.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from cnmc_core.exceptions import CnmcError

__all__ = ["MIN_FOLDS", "corrected_ttest"]

#: The fewest paired folds a t-test is reported for (two give one degree of freedom).
MIN_FOLDS = 3


def corrected_ttest(diffs: Sequence[float], n_train: float, n_test: float,
                    alpha: float = 0.05) -> dict:
    """The corrected resampled t-test of per-fold differences ``metric(A) - metric(B)``.

    Args:
        diffs: one difference per (fold, seed), in any order; NaN values (a fold where a metric
            is undefined) are left out and counted in ``n_undefined``.
        n_train, n_test: the (mean) numbers of training and test units per fold (images, or
            subjects), whose ratio sets the correction.
        alpha: 1 - the confidence level of the interval.

    Returns:
        ``{"estimate" (mean difference), "sd", "n" (folds used), "n_undefined", "t", "df",
        "p" (two-sided), "low", "high" (CI of the mean difference), "decided" (bool),
        "reason" (why not, or "")}``; ``t``, ``p``, ``low``, ``high`` are None when not decided.

    Raises:
        CnmcError: non-positive sizes or alpha outside (0, 1).
    """
    from scipy import stats

    if not (n_train > 0 and n_test > 0):
        raise CnmcError(f"n_train and n_test must be positive; got {n_train!r} and {n_test!r}.")
    if not 0 < alpha < 1:
        raise CnmcError(f"alpha must be in (0, 1); got {alpha!r}.")
    d = np.asarray(list(diffs), dtype=float)
    undefined = int(np.isnan(d).sum())
    d = d[~np.isnan(d)]
    n = int(d.size)
    out = {"estimate": float(d.mean()) if n else None, "sd": float(d.std(ddof=1)) if n > 1 else None,
           "n": n, "n_undefined": undefined, "t": None, "df": n - 1 if n else None, "p": None,
           "low": None, "high": None, "decided": False, "reason": ""}
    if n < MIN_FOLDS:
        out["reason"] = (f"{n} paired fold(s) with a defined difference; at least {MIN_FOLDS} are "
                         "needed for a test: use more folds or seeds")
        return out
    sd = out["sd"]
    if sd <= 1e-12 * max(1.0, abs(out["estimate"])):  # equal up to float rounding
        out["reason"] = ("the difference is the same in every fold, so its spread is 0 and no "
                         "test is possible" + (" (the two are identical)" if out["estimate"] == 0
                                               else ""))
        return out
    se = math.sqrt((1.0 / n + float(n_test) / float(n_train)) * sd ** 2)
    t = out["estimate"] / se
    df = n - 1
    q = float(stats.t.ppf(1 - alpha / 2, df))
    out.update(t=float(t), df=df, p=float(2 * stats.t.sf(abs(t), df)),
               low=out["estimate"] - q * se, high=out["estimate"] + q * se, decided=True)
    return out
