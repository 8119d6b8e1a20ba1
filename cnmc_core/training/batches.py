"""Batches for Keras from the preprocessing cache held in memory, under any Keras backend.

:class:`CacheBatches` is a ``keras.utils.PyDataset``: each batch is gathered from the uint8
arrays with NumPy, cast to float32 and, for training, augmented with one of the 8 symmetries of
the square per image (flips and 90-degree rotations, the invariances the paper used;
:func:`dihedral`), in background threads while the model trains. It needs no TensorFlow, so
the same pipeline feeds the tensorflow, jax and torch backends. Shuffling and augmentation are
drawn from the seed, the epoch and the batch index, so a seeded run sees the same batches
whatever the number of worker threads.
"""

from __future__ import annotations

import math

import keras
import numpy as np

from cnmc_core.exceptions import DataError
from cnmc_core.validation import check_scalar

__all__ = ["dihedral", "CacheBatches", "make_dataset"]


def dihedral(images: np.ndarray, bits: np.ndarray) -> np.ndarray:
    """Flip left-right, then up-down, then transpose each image where its bit says so.

    Args:
        images: ``(n, h, w, c)`` square images; changed in place and returned.
        bits: ``(n, 3)`` booleans, one row per image: (flip left-right, flip up-down,
            transpose). The 8 combinations are the 8 symmetries of the square.
    """
    for i in np.flatnonzero(np.asarray(bits).any(axis=1)):
        image = images[i]
        if bits[i, 0]:
            image = image[:, ::-1]
        if bits[i, 1]:
            image = image[::-1]
        if bits[i, 2]:
            image = image.transpose(1, 0, 2)
        images[i] = image  # NumPy copies through a buffer where source and target overlap
    return images


class CacheBatches(keras.utils.PyDataset):
    """(float32 image batch 0-255, float32 label column) batches from in-memory arrays.

    Args:
        images: uint8 ``(N, S, S, 3)``, already preprocessed (from the cache).
        labels: 0/1 per image.
        batch_size: images per batch (the last batch may be smaller).
        shuffle: a new order of the images every epoch (from ``seed`` and the epoch).
        augment: a random symmetry of the square per image and epoch.
        seed: the seed of the order and the augmentation.
        workers: threads that prepare batches ahead of the model (1: in the training loop).
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, batch_size: int, shuffle: bool = False,
                 augment: bool = False, seed: int = 0, workers: int = 2):
        super().__init__(workers=workers, use_multiprocessing=False, max_queue_size=4)
        self.images = np.asarray(images)
        self.labels = np.asarray(labels, dtype=np.float32).reshape(-1, 1)
        if len(self.images) != len(self.labels):
            raise DataError(f"CacheBatches needs one label per image; got {len(self.images)} images and "
                            f"{len(self.labels)} labels.")
        self.batch_size = int(check_scalar(batch_size, "batch_size", low=1, owner="CacheBatches"))
        self.shuffle, self.augment, self.seed = bool(shuffle), bool(augment), int(seed)
        self.epoch = 0
        self.order = self._order()

    def _order(self) -> np.ndarray:
        n = len(self.images)
        if not self.shuffle:
            return np.arange(n)
        return np.random.default_rng((self.seed, self.epoch)).permutation(n)

    def __len__(self) -> int:
        return math.ceil(len(self.images) / self.batch_size)

    def __getitem__(self, index: int):
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} of {len(self)}")
        idx = self.order[index * self.batch_size:(index + 1) * self.batch_size]
        x = self.images[idx]  # a copy: the cache's arrays are never changed
        if self.augment:
            rng = np.random.default_rng((self.seed, self.epoch, index, 1))
            x = dihedral(x, rng.integers(0, 2, size=(len(idx), 3)).astype(bool))
        return x.astype(np.float32), self.labels[idx]

    def on_epoch_end(self) -> None:
        """The next epoch's order (Keras calls this after the last batch of an epoch)."""
        self.epoch += 1
        self.order = self._order()


def make_dataset(images: np.ndarray, labels: np.ndarray, batch_size: int, shuffle: bool = False,
                 augment: bool = False, seed: int = 0) -> CacheBatches:
    """The batches ``model.fit`` / ``evaluate`` take, under any backend (:class:`CacheBatches`).

    Pass ``shuffle=False`` to ``fit``: the dataset shuffles images itself (Keras would only
    reorder whole batches, drawing from Python's global random state).
    """
    return CacheBatches(images, labels, batch_size, shuffle=shuffle, augment=augment, seed=seed)
