"""Tests of the hand features and the split of the real samples (:mod:`cnmc_core.data.cell_features`)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from conftest import write_image

from cnmc_core.data.cell_features import (
    FEATURE_NAMES,
    FIT_HALF,
    HELD_OUT_HALF,
    cell_features,
    features_of_files,
    real_sample_halves,
    split_subjects,
)
from cnmc_core.exceptions import DataError


def _disc(size: int = 450, radius: int = 100, color=(70, 30, 80)) -> np.ndarray:
    img = np.zeros((size, size, 3), np.uint8)
    cv2.circle(img, (size // 2, size // 2), radius, color, -1, lineType=cv2.LINE_AA)
    return img


def test_disc_features():
    f = cell_features(_disc())
    assert set(f) == set(FEATURE_NAMES)
    assert f["area"] == pytest.approx(math.pi * 100**2, rel=0.04)  # + the anti-aliased edge
    assert 0.88 < f["circularity"] < 0.93  # a pixel contour's perimeter runs a little long
    assert f["solidity"] > 0.99
    assert f["grey_sd"] < 0.5 and f["lap_sd"] < 0.5  # flat colour: no texture
    assert f["mean_r"] == pytest.approx(70, abs=1.5) and f["mean_b"] == pytest.approx(80, abs=1.5)


def test_area_is_in_450px_units():
    small = cell_features(_disc(size=225, radius=50))
    big = cell_features(_disc(size=450, radius=100))
    assert small["area"] == pytest.approx(big["area"], rel=0.04)


def test_irregular_outline_lowers_circularity_and_solidity():
    img = _disc()
    # a deep notch (a cleft) cut into the disc
    cv2.ellipse(img, (225 + 95, 225), (40, 8), 0, 0, 360, (0, 0, 0), -1)
    f, ref = cell_features(img), cell_features(_disc())
    assert f["circularity"] < ref["circularity"] - 0.05
    assert f["solidity"] < ref["solidity"] - 0.01


def test_bright_spots_and_texture():
    img = _disc()
    rng = np.random.default_rng(0)
    noisy = np.where(img > 0, np.clip(img + rng.normal(0, 4, img.shape), 1, 255), 0).astype(np.uint8)
    spots = noisy.copy()
    centres = ((190, 210), (250, 240), (230, 180))
    for cx, cy in centres:
        cv2.circle(spots, (cx, cy), 9, (110, 70, 120), -1)
    flat, plain, spotted = cell_features(img), cell_features(noisy), cell_features(spots)
    assert plain["lap_sd"] > flat["lap_sd"] + 2
    assert spotted["grey_sd"] > plain["grey_sd"] + 3
    # the bright pixels are the spots: their share of the interior (radius 100 - 10 px)
    share = len(centres) * math.pi * 9**2 / (math.pi * 90**2)
    assert spotted["bright_frac"] == pytest.approx(share, rel=0.3)


@pytest.mark.parametrize(
    "image, words",
    [
        (np.zeros((40, 40, 3), np.uint8), ["all black", "no cell"]),
        (np.zeros((40, 40), np.uint8), ["(H, W, 3) uint8", "read_image"]),
        (np.zeros((40, 40, 3), np.float32), ["(H, W, 3) uint8"]),
    ],
)
def test_bad_images(image, words):
    with pytest.raises(DataError) as info:
        cell_features(image)
    for word in words:
        assert word in str(info.value)


def test_features_of_files(tmp_path):
    paths = [write_image(tmp_path / f"{i}.png", _disc(radius=60 + 10 * i)) for i in range(3)]
    X = features_of_files(paths)
    assert X.shape == (3, len(FEATURE_NAMES))
    assert list(np.argsort(X[:, FEATURE_NAMES.index("area")])) == [0, 1, 2]
    assert features_of_files([]).shape == (0, len(FEATURE_NAMES))


def test_split_subjects_is_balanced_and_order_free():
    counts = {"1": 3, "2": 1, "7": 1, "H3": 2, "9": 1, "12": 1, "30": 1}
    halves = split_subjects(counts)
    assert set(halves) == set(counts) and set(halves.values()) == {FIT_HALF, HELD_OUT_HALF}
    per = {h: sum(n for s, n in counts.items() if halves[s] == h) for h in (FIT_HALF, HELD_OUT_HALF)}
    assert abs(per[FIT_HALF] - per[HELD_OUT_HALF]) <= max(counts.values())
    assert split_subjects(dict(reversed(list(counts.items())))) == halves  # order does not matter
    assert split_subjects({"h3": 2, **{k: v for k, v in counts.items() if k != "H3"}})["h3"] == halves["H3"]


def test_real_sample_halves(real_samples):
    halves = real_sample_halves(real_samples)
    fit, held = halves[FIT_HALF], halves[HELD_OUT_HALF]
    assert len(fit) + len(held) == len(list(real_samples.glob("*/*.bmp")))
    fit_subjects, held_subjects = {s for *_, s in fit}, {s for *_, s in held}
    assert not fit_subjects & held_subjects, "a subject's images stay in one half"
    for half in (fit, held):  # about half of each class in each half
        for y in (0, 1):
            assert 7 <= sum(1 for _, yy, _ in half if yy == y) <= 13
    assert real_sample_halves(real_samples) == halves  # deterministic


def test_real_sample_halves_errors(tmp_path):
    with pytest.raises(DataError, match="no all/ subfolder"):
        real_sample_halves(tmp_path)
    write_image(tmp_path / "all" / "cell.bmp", _disc(64, 20))
    (tmp_path / "hem").mkdir()
    with pytest.raises(DataError, match="not a C-NMC file name"):
        real_sample_halves(tmp_path)
