"""cnmc_core.training.batches: the PyDataset that feeds Keras from the cache under any backend."""

from __future__ import annotations

import numpy as np
import pytest

from cnmc_core.exceptions import ConfigError, DataError
from cnmc_core.training.batches import CacheBatches, dihedral, make_dataset


def _epoch(ds) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = zip(*(ds[i] for i in range(len(ds))))
    return np.concatenate(xs), np.concatenate(ys)


def test_batches_in_order_without_shuffle():
    images = np.arange(5 * 2 * 2 * 3, dtype=np.uint8).reshape(5, 2, 2, 3)
    ds = make_dataset(images, np.array([1, 0, 1, 0, 1]), batch_size=2)
    assert len(ds) == 3 and [len(ds[i][0]) for i in range(3)] == [2, 2, 1]
    x, y = _epoch(ds)
    assert x.dtype == np.float32 and y.dtype == np.float32 and y.shape == (5, 1)
    np.testing.assert_array_equal(x, images.astype(np.float32))
    np.testing.assert_array_equal(y.ravel(), [1, 0, 1, 0, 1])
    with pytest.raises(IndexError):
        ds[3]


def test_dihedral_gives_the_eight_symmetries_of_the_square():
    image = np.arange(3 * 3 * 2, dtype=np.uint8).reshape(3, 3, 2)
    bits = np.array([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)], dtype=bool)
    out = dihedral(np.repeat(image[None], 8, axis=0), bits)
    expected = [np.rot90(image, k) for k in range(4)] + [np.rot90(image[:, ::-1], k) for k in range(4)]
    as_bytes = {o.tobytes() for o in out}
    assert len(as_bytes) == 8 and as_bytes == {e.tobytes() for e in expected}
    np.testing.assert_array_equal(out[0], image)  # no bit: unchanged
    np.testing.assert_array_equal(out[4], image[:, ::-1])  # flip left-right alone


def test_shuffle_and_augmentation_are_seeded_per_epoch_and_lose_no_image():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(37, 4, 4, 3), dtype=np.uint8)
    labels = np.arange(37) % 2
    ds = make_dataset(images, labels, batch_size=8, shuffle=True, augment=True, seed=3)
    again = make_dataset(images, labels, batch_size=8, shuffle=True, augment=True, seed=3)
    first = _epoch(ds)
    np.testing.assert_array_equal(first[0], _epoch(again)[0])  # same seed, same batches
    ds.on_epoch_end()
    second = _epoch(ds)
    assert not np.array_equal(first[0], second[0])  # a new order (and symmetries) each epoch
    for x, y in (first, second):  # every image once per epoch, in one of its 8 orientations
        keys = sorted(min(np.rot90(v, k).tobytes() for k in range(4) for v in (im, im[:, ::-1]))
                      for im in x.astype(np.uint8))
        originals = sorted(min(np.rot90(v, k).tobytes() for k in range(4) for v in (im, im[:, ::-1]))
                           for im in images)
        assert keys == originals and y.sum() == labels.sum()
    assert images.flags.writeable and np.array_equal(images, np.random.default_rng(0).integers(
        0, 256, size=(37, 4, 4, 3), dtype=np.uint8))  # the cache's array is never changed


def test_bad_arguments_are_named():
    with pytest.raises(ConfigError, match="'batch_size' parameter of CacheBatches"):
        CacheBatches(np.zeros((2, 2, 2, 3), np.uint8), np.zeros(2), batch_size=0)
    with pytest.raises(DataError, match="one label per image; got 2 images and 3 labels"):
        CacheBatches(np.zeros((2, 2, 2, 3), np.uint8), np.zeros(3), batch_size=1)
