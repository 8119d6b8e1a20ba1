"""The data of a run: the dataset resolved and split by the config's protocol and seed, the
preprocessing cache opened, and the arrays of each split read from it (no image is decoded per
epoch). :mod:`cnmc_core.training.batches` turns the arrays into batches for Keras.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from cnmc_core.data.manifest import manifest_fingerprint, resolve_manifest
from cnmc_core.data.preprocess import build_cache
from cnmc_core.data.balance import apply_transform, balance_training
from cnmc_core.data.splits import make_split
from cnmc_core.exceptions import ConfigError, DataError

__all__ = ["DataBundle", "plan_split", "prepare_data", "training_arrays", "split_arrays", "train_paths"]


@dataclass
class DataBundle:
    """Everything a run needs to know about its images."""

    manifest: pd.DataFrame
    split: pd.DataFrame  # image_id, split, y, subject
    cache: object  # preprocess.ImageCache
    fingerprint: str


def _cap(split: pd.DataFrame, cap: int | None, seed: int) -> pd.DataFrame:
    """At most ``cap`` images per split, drawn stratified by class (for quick demo runs)."""
    if cap is None:
        return split
    parts = []
    for _, part in split.groupby("split", sort=False):
        if len(part) <= cap:
            parts.append(part)
            continue
        frac = cap / len(part)
        parts.append(part.groupby("y").sample(frac=frac, random_state=seed))
    return pd.concat(parts).sort_values(["split", "image_id"]).reset_index(drop=True)


def plan_split(manifest: pd.DataFrame, config: dict) -> pd.DataFrame:
    """The images a run uses, by split: the config's protocol, seed and fractions, then its cap
    per split (``max_images_per_split``).

    Returns:
        ``image_id``, ``split``, ``y``, ``subject``, one row per image used.

    Raises:
        DataError: the dataset cannot be split so, or a split lacks a class after the cap.
    """
    split = make_split(manifest, config["split_protocol"], seed=config["seed"],
                       fractions=tuple(config["split_fractions"]), kfold=config.get("kfold"))
    split = split.merge(manifest[["image_id", "y", "subject"]], on="image_id")
    split = _cap(split, config.get("max_images_per_split"), config["seed"])
    for name in ("train", "val", "test"):
        part = split[split["split"] == name]
        if part["y"].nunique() < 2:
            raise DataError(f"The {name} split has a single class after sampling; use more images "
                            "(raise max_images_per_split) or another seed.")
    return split


def prepare_data(config: dict, artifacts: str | os.PathLike | None = None,
                 progress: Callable[[int, int], None] | None = None) -> DataBundle:
    """Resolve the dataset, split it by the config's protocol and seed (:func:`plan_split`),
    and open the cache.

    Raises:
        ConfigError: no dataset given.
        DataError: the dataset cannot be read or split, or a split lacks a class.
    """
    data = config.get("data")
    if not data:
        raise ConfigError("No dataset: give --data ROOT (a C-NMC folder or a manifest CSV).")
    manifest = resolve_manifest(data)
    split = plan_split(manifest, config)
    used = manifest[manifest["image_id"].isin(split["image_id"])]
    cache = build_cache(used, config["image_size"], clahe=config.get("clahe", False),
                        root=artifacts, progress=progress)
    return DataBundle(manifest=manifest, split=split, cache=cache, fingerprint=manifest_fingerprint(manifest))


def training_arrays(bundle: DataBundle, config: dict) -> tuple[np.ndarray, np.ndarray]:
    train = bundle.split[bundle.split["split"] == "train"]
    if config.get("balance"):
        plan = balance_training(train[["image_id", "y"]], seed=config["seed"])
    else:
        plan = train[["image_id", "y"]].assign(transform="none")
    images = bundle.cache.get(plan["image_id"].tolist())
    for i, t in enumerate(plan["transform"].to_numpy()):
        if t != "none":
            images[i] = apply_transform(images[i], t)
    return images, plan["y"].to_numpy()


def split_arrays(bundle: DataBundle, name: str) -> tuple[pd.DataFrame, np.ndarray]:
    part = bundle.split[bundle.split["split"] == name].reset_index(drop=True)
    return part, bundle.cache.get(part["image_id"].tolist())


def train_paths(bundle: DataBundle) -> list[str]:
    """The image files of the training split (before balancing), in split order."""
    ids = bundle.split.loc[bundle.split["split"] == "train", "image_id"]
    path_of = dict(zip(bundle.manifest["image_id"], bundle.manifest["path"]))
    return [str(path_of[i]) for i in ids]
