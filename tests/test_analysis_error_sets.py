"""cnmc_core.analysis.error_sets: sets of images picked on the Errors page and their gallery rows."""

from __future__ import annotations

import pytest

from cnmc_core.analysis import error_sets as S
from cnmc_core.exceptions import ConfigError


# --------------------------------------------------------------------------- error sets
def test_filter_class_keeps_one_class(aligned):
    hem = S.filter_class(aligned, "test", "hem")
    assert set(hem.splits["test"].y) == {0}
    assert hem.splits["val"] is aligned.splits["val"]
    assert S.filter_class(aligned, "test", "both") is aligned
    with pytest.raises(ConfigError, match="class filter"):
        S.filter_class(aligned, "test", "cancer")


def test_sets_match_the_report(aligned, report):
    correct = report["correct"].to_numpy()
    k = (~correct).sum(axis=1)
    for n in range(4):
        s = S.histogram_set(report, n)
        assert len(s.image_ids) == int((k == n).sum())
    assert S.histogram_set(report, 3).title == "missed by all 3 models"
    inter = report["intersections"]
    s = S.intersection_set(report, 0, {"run0": "A"})
    assert s.image_ids == [str(i) for i in inter["images"][0]]
    u = S.unique_set(report, "run1", right=True, labels={"run1": "B"})
    assert u.title == "that only B gets right"
    assert u.image_ids == [str(i) for i in report["unique_correct"]["run1"]]
    with pytest.raises(ConfigError):
        S.histogram_set(report, 4)
    with pytest.raises(ConfigError):
        S.intersection_set(report, len(inter))
    with pytest.raises(ConfigError):
        S.unique_set(report, "nope", True)
    assert s.to_dict()["split"] == "test"


def test_gallery_rows_give_class_probabilities_and_correctness(aligned):
    d = aligned.splits["test"]
    ids = list(d.image_id[:10]) + ["unknown.bmp"]
    rows = S.gallery_rows(aligned, "test", ids)
    assert len(rows) == 10
    r = rows.iloc[0]
    i = list(d.image_id).index(r["image_id"])
    assert r["true"] == ("ALL" if d.y[i] else "HEM")
    assert r["prob:run2"] == pytest.approx(d.probs[i, 2])
    assert r["right:run2"] == ((d.probs[i, 2] >= 0.5) == bool(d.y[i]))
    assert rows["n_wrong"].is_monotonic_decreasing
