"""The paper's balancing of a training split and its augmentations: the larger class
undersampled, the smaller one topped up with copies under one random flip or rotation each
(:data:`TRANSFORMS`), applied to the cached images by the training pipeline."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cnmc_core.exceptions import ConfigError, DataError

__all__ = ["TRANSFORMS", "AUGMENT_TRANSFORMS", "balance_training", "apply_transform"]

TRANSFORMS = ("none", "flip_h", "flip_v", "rot90", "rot180", "rot270")
AUGMENT_TRANSFORMS = TRANSFORMS[1:]


def balance_training(train: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """The paper's balancing of a training split: undersample the larger class, augment the
    smaller one by one random flip or rotation per added image, to equal counts.

    With the paper's 4,432 ALL and 1,964 HEM images the target is 3,198 each
    (``(4432 + 1964) // 2``): 3,198 ALL kept at random, and 1,234 HEM images drawn at random and
    added once more with a random transform. Apply it to the training split only.

    Args:
        train: rows of the training split with at least ``image_id`` and ``y``.
        seed: random seed.

    Returns:
        A frame with ``image_id``, ``y`` and ``transform`` (one of :data:`TRANSFORMS`), one row per
        training example; originals have ``transform == "none"``.
    """
    if not set(train["y"].unique()) <= {0, 1} or train["y"].nunique() != 2:
        raise DataError("Balancing needs a training split with both ALL and HEM images.")
    rng = np.random.default_rng(seed)
    n_all, n_hem = int((train["y"] == 1).sum()), int((train["y"] == 0).sum())
    target = (n_all + n_hem) // 2
    parts = []
    for y, n in ((1, n_all), (0, n_hem)):
        ids = train.loc[train["y"] == y, "image_id"].to_numpy()
        if n >= target:
            keep = np.sort(rng.choice(n, size=target, replace=False))
            parts.append(pd.DataFrame({"image_id": ids[keep], "y": y, "transform": "none"}))
        else:
            parts.append(pd.DataFrame({"image_id": ids, "y": y, "transform": "none"}))
            extra = target - n
            # draw without replacement while possible, as the paper did (1,234 of 1,964)
            picks = np.concatenate([rng.permutation(n) for _ in range(extra // n + 1)])[:extra]
            transforms = rng.choice(AUGMENT_TRANSFORMS, size=extra)
            parts.append(pd.DataFrame({"image_id": ids[picks], "y": y, "transform": transforms}))
    return pd.concat(parts, ignore_index=True)


def apply_transform(image: np.ndarray, transform: str) -> np.ndarray:
    """Apply one of :data:`TRANSFORMS` to an (H, W, C) image (square images keep their shape)."""
    if transform == "none":
        return image
    if transform == "flip_h":
        return image[:, ::-1]
    if transform == "flip_v":
        return image[::-1]
    if transform in ("rot90", "rot180", "rot270"):
        return np.rot90(image, k={"rot90": 1, "rot180": 2, "rot270": 3}[transform], axes=(0, 1))
    raise ConfigError(f"transform must be one of {list(TRANSFORMS)}; got {transform!r}.")
