"""cnmc_core.analysis.charts: the figures of the analysis pages and the clicks read back from them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cnmc_core.analysis import charts as C
from cnmc_core.ensemble import live as L


# --------------------------------------------------------------------------- charts
def test_histogram_figure_keys_are_the_number_of_models(report):
    fig = C.miss_histogram_figure(report["histogram"])
    assert [t.name for t in fig.data[:2]] == ["HEM (normal)", "ALL (cancer)"]
    assert list(fig.data[0].customdata) == [0, 1, 2, 3]
    assert list(fig.data[0].y) == report["histogram"]["hem"].tolist()


def test_upset_figure_bars_and_dots_carry_the_intersection_row(report, aligned):
    inter = report["intersections"]
    fig = C.upset_figure(inter, aligned.members, [5, 6, 7], {"run0": "A"}, top=3)
    bars = [t for t in fig.data if t.type == "bar" and t.orientation != "h"]
    assert list(bars[0].customdata) == [0, 1, 2]
    assert list(bars[0].y + bars[1].y) == inter["size"].head(3).tolist()
    dots = fig.data[-2] if fig.data[-1].type == "bar" else fig.data[-1]
    on = inter[aligned.members].head(3).to_numpy()
    assert len(dots.x) == int(on.sum())
    assert list(fig.layout.yaxis2.ticktext) == ["A", "run1", "run2"]


def test_upset_figure_without_intersections(aligned):
    empty = pd.DataFrame(columns=[*aligned.members, "degree", "size", "inclusive_size", "hem",
                                  "all", "images"])
    fig = C.upset_figure(empty, aligned.members, [0, 0, 0])
    assert fig.layout.height > 0


def test_diversity_matrix_is_symmetric(report, aligned):
    mat = C.diversity_matrix(report["diversity"], aligned.members, "disagreement")
    np.testing.assert_allclose(mat.to_numpy(), mat.to_numpy().T)
    assert np.all(np.diag(mat.to_numpy()) == 0)
    fig = C.diversity_figure(report["diversity"], aligned.members, "q")
    assert fig.data[0].zmin == -1
    with pytest.raises(ValueError, match="metric must be one of"):
        C.diversity_matrix(report["diversity"], aligned.members, "entropy")


def test_confusion_and_roc_figures(aligned):
    rep = L.live_reports(aligned, [1, 1, 1], 0.5)
    fig = C.confusion_figure(rep["test"]["confusion"])
    assert np.asarray(fig.data[0].z).shape == (2, 2)
    fig = C.roc_figure({"val": rep["val"], "test": rep["test"]})
    point = fig.data[1]
    assert point.x[0] == pytest.approx(1 - rep["val"]["hem"]["recall"])
    assert point.y[0] == pytest.approx(rep["val"]["all"]["recall"])


@pytest.mark.parametrize("state, keys", [
    (None, []),
    ({}, []),
    ({"selection": {"points": []}}, []),
    ({"selection": {"points": [{"customdata": 2}, {"customdata": [2]}, {"customdata": 3.0},
                               {"x": 1}]}}, [2, 3]),
    ({"selection": {"points": [{"customdata": ["a", 1]}]}}, ["a"]),
])
def test_selected_keys(state, keys):
    assert C.selected_keys(state) == keys
