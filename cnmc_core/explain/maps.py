"""Heatmap arithmetic, free of TensorFlow: the classes a map can explain, a stack of maps scaled
to [0, 1], and the one weighted combination of several models' maps of an image (what the
Explain and Predict pages show as the ensemble's map)."""

from __future__ import annotations

from typing import Mapping, Sequence

import cv2
import numpy as np

from cnmc_core.exceptions import ConfigError, DataError

__all__ = ["CAM_TARGETS", "CAM_METHODS", "ZERO_TOL", "normalise_maps", "ensemble_heatmap"]

#: The class a map explains: ALL, HEM, or the class predicted for the image.
CAM_TARGETS = ("all", "hem", "predicted")
CAM_METHODS = ("gradcam", "gradcam++")
# A heatmap whose maximum is below this is "all zero": normalising it would amplify float noise.
ZERO_TOL = 1e-12


def normalise_maps(cams: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Divide each map by its max; maps without a positive value become zeros and are flagged."""
    cams = np.nan_to_num(cams, nan=0.0, posinf=0.0, neginf=0.0)
    cams = np.maximum(cams, 0.0)
    peak = cams.reshape(len(cams), -1).max(axis=1) if cams.size else np.zeros(len(cams))
    zero = ~(peak > ZERO_TOL)
    out = np.zeros_like(cams, dtype="float32")
    ok = ~zero
    out[ok] = cams[ok] / peak[ok].reshape(-1, *([1] * (cams.ndim - 1)))
    return out, zero


def ensemble_heatmap(heatmaps_by_member: Mapping[str, np.ndarray] | Sequence[np.ndarray],
                     weights: Mapping[str, float] | Sequence[float] | None = None,
                     size: tuple[int, int] | None = None, normalize: bool = False) -> np.ndarray:
    """Weighted combination of the members' heatmaps of one image.

    Each member's map is first scaled to [0, 1] by its own maximum (an all-zero map stays zero),
    then resized (bilinear) to a common grid, then averaged with the weights scaled to sum 1.
    The result is 1 only where every weighted member puts its maximum.

    Args:
        heatmaps_by_member: ``{member: (h_i, w_i)}`` or a list of 2-D maps.
        weights: ``{member: w}`` (same keys) or a list (same order); default equal. Non-negative,
            not all zero.
        size: ``(h, w)`` of the common grid; default the largest member map.
        normalize: rescale the result so that its maximum is 1 (when it is not all zero).

    Returns:
        ``(h, w)`` float32 in [0, 1].

    Raises:
        ConfigError: no members, weights that do not match the members, negative or all-zero
            weights. DataError: a map that is not 2-D.
    """
    if isinstance(heatmaps_by_member, Mapping):
        names = list(heatmaps_by_member)
        maps = [heatmaps_by_member[k] for k in names]
    else:
        maps = list(heatmaps_by_member)
        names = list(range(len(maps)))
    if not maps:
        raise ConfigError("ensemble_heatmap needs at least one member heatmap.")
    if weights is None:
        w = np.ones(len(maps))
    elif isinstance(weights, Mapping):
        if set(weights) != set(names):
            raise ConfigError(
                f"weights must name exactly the members {sorted(map(str, names))}; got "
                f"{sorted(map(str, weights))}."
            )
        w = np.array([float(weights[k]) for k in names])
    else:
        w = np.asarray(list(weights), dtype="float64")
        if w.shape != (len(maps),):
            raise ConfigError(f"weights must have one value per member ({len(maps)}); got "
                              f"{len(w)}.")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ConfigError(
            f"weights must be finite, non-negative and not all zero; got {w.tolist()}.")
    w = w / w.sum()
    arrays = []
    for name, m in zip(names, maps):
        m = np.asarray(m, dtype="float32")
        if m.ndim != 2 or m.size == 0:
            raise DataError(f"heatmap of member {name!r} must be 2-D; got shape {m.shape}.")
        arrays.append(m)
    if size is None:
        size = max((m.shape for m in arrays), key=lambda s: s[0] * s[1])
    h, w_px = int(size[0]), int(size[1])
    total = np.zeros((h, w_px), dtype="float64")
    normed, _ = normalise_maps(np.stack([
        cv2.resize(m, (w_px, h), interpolation=cv2.INTER_LINEAR) for m in arrays]))
    for weight, m in zip(w, normed):
        total += weight * m
    total = np.clip(total, 0.0, 1.0)
    if normalize and total.max() > ZERO_TOL:
        total = total / total.max()
    return total.astype("float32")
