"""crop_to_cell on every real sample, CLAHE, resize, and the preprocessing cache."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import cell_image, write_image

from cnmc_core.data.images import read_image
from cnmc_core.data.manifest import scan_dataset
from cnmc_core.data.preprocess import (
    build_cache,
    clahe_y,
    crop_to_cell,
    preprocess_file,
    preprocess_image,
)
from cnmc_core.exceptions import ConfigError, DataError


def test_crop_on_every_real_sample(real_samples):
    files = sorted(real_samples.glob("*/*.bmp"))
    assert len(files) == 40
    for f in files:
        image = read_image(f)
        crop = crop_to_cell(image)
        assert crop.shape[0] == crop.shape[1], f
        # the crop holds every non-black pixel
        assert np.count_nonzero(crop.any(axis=2)) == np.count_nonzero(image.any(axis=2)), f
        assert crop.sum(dtype=np.int64) == image.sum(dtype=np.int64), f
        # the cell is centred: the margins on each side differ by at most one pixel
        mask = crop.any(axis=2)
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        side = crop.shape[0]
        assert abs(rows[0] - (side - 1 - rows[-1])) <= 1 and abs(cols[0] - (side - 1 - cols[-1])) <= 1, f
        assert rows[0] == 0 or cols[0] == 0  # tight on the longer side


def test_crop_keeps_pieces_of_a_split_cell():
    # two blobs: the paper's first-contour crop would keep one of them only
    image = np.zeros((100, 100, 3), np.uint8)
    image[10:20, 10:20] = 100
    image[70:90, 60:80] = 100
    crop = crop_to_cell(image)
    assert crop.shape == (80, 80, 3) and crop.sum() == image.sum()


def test_crop_all_black_is_an_error():
    with pytest.raises(DataError, match="all black .* no cell to crop"):
        crop_to_cell(np.zeros((10, 10, 3), np.uint8))


def test_crop_one_pixel_and_grayscale():
    one = np.zeros((1, 1, 3), np.uint8) + 5
    assert crop_to_cell(one).shape == (1, 1, 3)
    gray = np.zeros((20, 30), np.uint8)
    gray[5:10, 2:28] = 9
    assert crop_to_cell(gray).shape == (26, 26)


def test_clahe_keeps_background_black_and_changes_the_cell():
    image = cell_image(size=128, radius=50)
    out = clahe_y(image)
    background = ~image.any(axis=2)
    assert not out[background].any()
    assert out.shape == image.shape and not np.array_equal(out, image)


def test_preprocess_image_size_and_errors():
    image = cell_image(size=200, radius=40)
    assert preprocess_image(image, 64).shape == (64, 64, 3)
    assert preprocess_image(image, 64, clahe=True).dtype == np.uint8
    for bad in (0, 8, 5000, 64.0, "64", True, np.nan):
        with pytest.raises(ConfigError, match=r"^The 'size' parameter must be an int in the range "
                                              r"\[16, 1024\]. Got .* instead. Use the model's input side"):
            preprocess_image(image, bad)
    assert preprocess_image(image, np.int64(16)).shape == (16, 16, 3)  # the bounds are allowed
    assert preprocess_image(image, 1024).shape == (1024, 1024, 3)


def test_preprocess_file_names_the_file(tmp_path):
    path = write_image(tmp_path / "black.png", np.zeros((20, 20, 3), np.uint8))
    with pytest.raises(DataError, match=r"black.png: .*all black"):
        preprocess_file(path, 32)


def _dataset(tmp_path: Path, n: int = 10) -> Path:
    root = tmp_path / "data"
    for i in range(n):
        label = "all" if i % 2 else "hem"
        write_image(root / label / f"UID_{'' if i % 2 else 'H'}{i}_1_1_{label}.bmp", cell_image(seed=i))
    return root


def test_cache_hit_and_invalidation(tmp_path):
    root = _dataset(tmp_path)
    manifest = scan_dataset(root).manifest
    art = tmp_path / "art"
    calls = []
    first = build_cache(manifest, 32, root=art, n_jobs=1, progress=lambda d, t: calls.append((d, t)))
    assert not first.hit and first.images.shape == (10, 32, 32, 3) and calls[-1] == (10, 10)
    expected = preprocess_file(manifest["path"][3], 32)
    assert np.array_equal(first.get([manifest["image_id"][3]])[0], expected)

    again = build_cache(manifest, 32, root=art, n_jobs=1)
    assert again.hit and again.path == first.path and np.array_equal(again.images, first.images)

    # a parameter change is another cache
    assert not build_cache(manifest, 32, clahe=True, root=art, n_jobs=1).hit
    assert not build_cache(manifest, 48, root=art, n_jobs=1).hit
    # an input file change invalidates
    path = Path(manifest["path"][0])
    write_image(path, cell_image(seed=99, radius=20))
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    changed = build_cache(manifest, 32, root=art, n_jobs=1)
    assert not changed.hit and changed.path != first.path
    assert np.array_equal(changed.get([manifest["image_id"][0]])[0], preprocess_file(path, 32))
    # a different file list invalidates
    assert not build_cache(manifest.iloc[:5], 32, root=art, n_jobs=1).hit
    # no temporary folders are left behind
    assert not [p for p in (art / "cache").iterdir() if p.name.startswith(".")]


def test_cache_parallel_build_equals_serial(tmp_path, monkeypatch):
    import cnmc_core.data.preprocess as pre

    monkeypatch.setattr(pre, "SERIAL_BELOW", 0)  # force worker processes on this small set
    manifest = scan_dataset(_dataset(tmp_path, n=12)).manifest
    serial = build_cache(manifest, 32, root=tmp_path / "a", n_jobs=1, chunk=4)
    parallel = build_cache(manifest, 32, root=tmp_path / "b", n_jobs=2, chunk=4)
    assert np.array_equal(np.asarray(serial.images), np.asarray(parallel.images))


def test_cache_build_error_names_the_file_and_leaves_nothing(tmp_path):
    manifest = scan_dataset(_dataset(tmp_path, n=4)).manifest
    write_image(Path(manifest["path"][1]), np.zeros((30, 30, 3), np.uint8))
    with pytest.raises(DataError, match=Path(manifest["path"][1]).name):
        build_cache(manifest, 32, root=tmp_path / "art", n_jobs=1)
    assert not list((tmp_path / "art" / "cache").iterdir())


def test_cache_unknown_id(tmp_path):
    manifest = scan_dataset(_dataset(tmp_path, n=4)).manifest
    cache = build_cache(manifest, 32, root=tmp_path / "art", n_jobs=1)
    with pytest.raises(DataError, match="'nope' is not in the cache"):
        cache.get(["nope"])
