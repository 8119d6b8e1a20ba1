"""What a model saw: a per-feature summary of its training images, and the images outside it.

At training time :func:`training_ranges` computes the eight hand features of
:mod:`cnmc_core.data.cell_features` (size, shape, texture and colour of the cell) on the training
split's images, as the files are (a seeded sample of at most :data:`MAX_IMAGES`, so it stays a
second or two), and keeps their mean and sd; the run stores it as ``feature_ranges.json``
(:data:`~cnmc_core.contracts.FEATURE_RANGES`). At scoring time each new image gets its z-score
per feature against that summary (:func:`zscores`), and an image with any ``|z|`` above
:data:`Z_LIMIT` (4: beyond almost every training image, about 1 in 16,000 under a normal law) is
flagged "outside what this model saw", naming the features (:func:`outside_text`).

A flag says the image is unlike the training images in a way these simple statistics see; no
flag does not make an image like them (a CNN can react to what the features miss).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from cnmc_core.data.cell_features import FEATURE_NAMES, cell_features, features_of_files
from cnmc_core.exceptions import CnmcError, DataError

__all__ = [
    "Z_LIMIT",
    "MAX_IMAGES",
    "OUTSIDE_TEXT",
    "RANGES_VERSION",
    "training_ranges",
    "image_features",
    "zscores",
    "outside_features",
    "outside_text",
    "read_ranges",
]

#: ``|z|`` above this is outside what the model saw.
Z_LIMIT = 4.0
#: At most this many training images are measured (a seeded sample of the split).
MAX_IMAGES = 200
#: How a flagged image is described, in the Predict table and its CSV.
OUTSIDE_TEXT = "outside what this model saw"
RANGES_VERSION = 1


def training_ranges(paths: Sequence[str | os.PathLike], seed: int = 0,
                    max_images: int = MAX_IMAGES) -> dict:
    """The mean and sd of each hand feature over the training images ``paths``.

    Args:
        paths: the image files of the training split.
        seed: seed of the sample drawn when there are more than ``max_images``.
        max_images: at most this many images are measured.

    Returns:
        ``{"version", "features": {name: {"mean", "sd"}}, "n_images" (measured), "n_train"
        (given), "z_limit"}``; ``sd`` is the sample sd (ddof=1; 0 for a single image).

    Raises:
        DataError: no path, a file that cannot be read, or an image without a cell.
    """
    paths = [str(p) for p in paths]
    if not paths:
        raise DataError("training_ranges needs the training images; the list of paths is empty.")
    chosen = paths
    if len(paths) > max_images:
        rng = np.random.default_rng(seed)
        chosen = [paths[i] for i in sorted(rng.choice(len(paths), max_images, replace=False))]
    values = features_of_files(chosen)
    sd = values.std(axis=0, ddof=1) if len(values) > 1 else np.zeros(values.shape[1])
    return {"version": RANGES_VERSION,
            "features": {name: {"mean": float(values[:, k].mean()), "sd": float(sd[k])}
                         for k, name in enumerate(FEATURE_NAMES)},
            "n_images": len(chosen), "n_train": len(paths), "z_limit": Z_LIMIT}


def image_features(images: Sequence[np.ndarray]) -> np.ndarray:
    """The hand features of images as uploaded (RGB ``uint8``, a cell on black), one row each in
    :data:`FEATURE_NAMES` order; a row of NaN for an image without a cell (it cannot be
    measured, and is not flagged for it)."""
    rows = []
    for image in images:
        try:
            feats = cell_features(image)
        except DataError:
            rows.append([np.nan] * len(FEATURE_NAMES))
        else:
            rows.append([feats[n] for n in FEATURE_NAMES])
    return np.array(rows, np.float64).reshape(len(rows), len(FEATURE_NAMES))


def zscores(features: np.ndarray, ranges: dict) -> np.ndarray:
    """``(x - mean) / sd`` of each image and feature against a training summary.

    A feature of sd 0 (every training image alike) gives z 0 for the same value and +-inf for
    any other: outside what the model saw.

    Args:
        features: ``(n, len(FEATURE_NAMES))`` from :func:`image_features`.
        ranges: a summary from :func:`training_ranges`.
    """
    stats = ranges["features"]
    mean = np.array([stats[n]["mean"] for n in FEATURE_NAMES], np.float64)
    sd = np.array([stats[n]["sd"] for n in FEATURE_NAMES], np.float64)
    diff = np.asarray(features, np.float64) - mean
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(sd > 0, diff / np.where(sd > 0, sd, 1.0),
                     np.where(diff == 0, 0.0, np.sign(diff) * np.inf))
    return np.where(np.isnan(diff), np.nan, z)


def outside_features(z: np.ndarray, limit: float = Z_LIMIT) -> list[dict[str, float]]:
    """Per image, ``{feature: z}`` of the features with ``|z| > limit`` (empty: inside)."""
    out = []
    for row in np.atleast_2d(np.asarray(z, np.float64)):
        out.append({name: float(v) for name, v in zip(FEATURE_NAMES, row)
                    if np.isinf(v) or (np.isfinite(v) and abs(v) > limit)})
    return out


def outside_text(flags: dict[str, float], prefix: bool = True) -> str:
    """``"outside what this model saw: area z=+5.2, mean_b z=-4.3"`` (without ``prefix``, only
    the features), or "" for no flag; the features by decreasing ``|z|``."""
    if not flags:
        return ""
    parts = ", ".join(f"{name} z={z:+.1f}"
                      for name, z in sorted(flags.items(), key=lambda kv: -abs(kv[1])))
    return f"{OUTSIDE_TEXT}: {parts}" if prefix else parts


def read_ranges(path: str | os.PathLike) -> tuple[dict | None, str | None]:
    """A run's stored training summary: ``(ranges, None)``, or ``(None, why)`` when the run has
    none (trained before it was recorded) or its file is damaged (the reason names the file)."""
    from cnmc_core.contracts import FEATURE_RANGES
    from cnmc_core.workspace.fileio import read_json

    file = Path(path) / FEATURE_RANGES
    if not file.is_file():
        return None, f"{Path(path).name} records no training summary (trained before it was kept)"
    try:
        ranges = read_json(file, expect=dict)
        feats = ranges["features"]
        for name in FEATURE_NAMES:
            float(feats[name]["mean"]), float(feats[name]["sd"])
    except (OSError, CnmcError, KeyError, TypeError, ValueError) as exc:
        return None, f"{file} is damaged ({exc}); train the run again to record it"
    return ranges, None
