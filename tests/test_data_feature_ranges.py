"""Tests of :mod:`cnmc_core.data.feature_ranges`: the training summary, z-scores against numpy,
the flags and their text, and damaged summaries."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import cell_image, write_image

from cnmc_core.data.cell_features import FEATURE_NAMES, features_of_files
from cnmc_core.data.feature_ranges import (
    OUTSIDE_TEXT,
    Z_LIMIT,
    image_features,
    outside_features,
    outside_text,
    read_ranges,
    training_ranges,
    zscores,
)
from cnmc_core.exceptions import DataError


def _ranges(mean, sd):
    return {"features": {n: {"mean": float(m), "sd": float(s)}
                         for n, m, s in zip(FEATURE_NAMES, mean, sd)}}


def test_training_ranges_are_numpys_mean_and_sd_over_a_seeded_sample(tmp_path):
    paths = [write_image(tmp_path / f"c{k}.png", cell_image(size=80, radius=20 + k, seed=k))
             for k in range(7)]
    ranges = training_ranges(paths)
    values = features_of_files(paths)
    assert ranges["n_images"] == ranges["n_train"] == 7 and ranges["z_limit"] == Z_LIMIT
    for k, name in enumerate(FEATURE_NAMES):
        assert ranges["features"][name]["mean"] == pytest.approx(values[:, k].mean())
        assert ranges["features"][name]["sd"] == pytest.approx(values[:, k].std(ddof=1))
    # more images than max_images: a seeded sample of that many, the same for the same seed
    a, b = training_ranges(paths, seed=1, max_images=4), training_ranges(paths, seed=1, max_images=4)
    assert a == b and a["n_images"] == 4 and a["n_train"] == 7
    assert a != training_ranges(paths, seed=2, max_images=4)
    with pytest.raises(DataError, match="list of paths is empty"):
        training_ranges([])


def test_zscores_match_numpy_and_flag_beyond_the_limit():
    rng = np.random.default_rng(0)
    mean, sd = rng.normal(50, 10, 8), rng.uniform(1, 5, 8)
    x = mean + sd * rng.normal(0, 3, (20, 8))
    z = zscores(x, _ranges(mean, sd))
    np.testing.assert_allclose(z, (x - mean) / sd)
    flags = outside_features(z)
    for row, found in zip(z, flags):
        assert set(found) == {n for n, v in zip(FEATURE_NAMES, row) if abs(v) > Z_LIMIT}
    assert any(flags) and not all(flags)
    # sd 0: the same value is inside, any other is outside (infinite z)
    sd0 = sd.copy()
    sd0[0] = 0.0
    same, other = mean.copy(), mean.copy()
    other[0] += 1e-6
    z0 = zscores(np.vstack([same, other]), _ranges(mean, sd0))
    assert z0[0, 0] == 0 and z0[1, 0] == np.inf
    assert outside_features(z0) == [{}, {"area": np.inf}]
    # an image that could not be measured (NaN) is never flagged
    assert outside_features(zscores(np.full((1, 8), np.nan), _ranges(mean, sd))) == [{}]


def test_outside_text_names_the_features_by_decreasing_z():
    assert outside_text({}) == ""
    text = outside_text({"mean_b": -4.31, "area": 5.24})
    assert text == f"{OUTSIDE_TEXT}: area z=+5.2, mean_b z=-4.3"
    assert outside_text({"area": 5.24}, prefix=False) == "area z=+5.2"


def test_image_features_of_uploads_and_of_an_image_without_a_cell(tmp_path):
    cell = cell_image(size=90, seed=3)
    path = write_image(tmp_path / "c.png", cell)
    feats = image_features([cell, np.zeros((20, 20, 3), np.uint8)])
    np.testing.assert_allclose(feats[0], features_of_files([path])[0])
    assert np.isnan(feats[1]).all()


def test_read_ranges_says_why_there_is_none(tmp_path):
    ranges, why = read_ranges(tmp_path)
    assert ranges is None and "records no training summary" in why
    (tmp_path / "feature_ranges.json").write_text("{not json")
    ranges, why = read_ranges(tmp_path)
    assert ranges is None and "feature_ranges.json is damaged" in why
    (tmp_path / "feature_ranges.json").write_text(json.dumps({"features": {"area": {}}}))
    assert read_ranges(tmp_path)[0] is None
    good = _ranges(np.ones(8), np.ones(8))
    (tmp_path / "feature_ranges.json").write_text(json.dumps(good))
    assert read_ranges(tmp_path) == (good, None)
