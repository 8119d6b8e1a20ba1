"""cnmc_core.study.stats: the corrected resampled t-test against the formula computed by hand,
and the cases where no test can be decided."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from cnmc_core.exceptions import CnmcError
from cnmc_core.study.stats import corrected_ttest


def test_corrected_ttest_matches_nadeau_bengio():
    d = np.array([0.02, 0.05, -0.01, 0.04, 0.03, 0.00, 0.06, 0.01, 0.02, 0.05])
    n_train, n_test = 300.0, 100.0
    out = corrected_ttest(d, n_train, n_test)
    se = math.sqrt((1 / d.size + n_test / n_train) * d.var(ddof=1))
    t = d.mean() / se
    assert out["decided"] and out["n"] == 10 and out["df"] == 9
    assert out["t"] == pytest.approx(t)
    assert out["p"] == pytest.approx(2 * sps.t.sf(abs(t), 9))
    q = sps.t.ppf(0.975, 9)
    assert (out["low"], out["high"]) == pytest.approx((d.mean() - q * se, d.mean() + q * se))
    # the correction makes the test more careful than the plain paired t-test
    plain = sps.ttest_1samp(d, 0.0)
    assert out["p"] > plain.pvalue


def test_undefined_folds_are_left_out_and_counted():
    out = corrected_ttest([0.1, np.nan, 0.2, 0.15, np.nan], 80, 20)
    assert out["n"] == 3 and out["n_undefined"] == 2 and out["decided"]


@pytest.mark.parametrize("diffs, reason", [
    ([0.1, 0.2], "at least 3 are needed"),
    ([0.0, 0.0, 0.0, 0.0], "the two are identical"),
    ([0.05, 0.05, 0.05], "spread is 0"),
    ([np.nan, np.nan, 0.1, 0.2], "2 paired fold(s)"),
])
def test_undecided_outcomes_say_why_and_give_no_p(diffs, reason):
    out = corrected_ttest(diffs, 100, 25)
    assert not out["decided"] and reason in out["reason"]
    assert out["p"] is None and out["t"] is None and out["low"] is None


def test_bad_sizes_are_refused():
    with pytest.raises(CnmcError, match="positive"):
        corrected_ttest([0.1, 0.2, 0.3], 0, 10)
