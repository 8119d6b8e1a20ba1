"""Intermediate activations of a layer and the grid that shows them (dead channels marked).
"""

from __future__ import annotations

import math

import cv2
import keras
import numpy as np

from cnmc_core.exceptions import DataError
from cnmc_core.explain.inputs import (
    as_batch,
    input_size,
    single_input,
    spatial_layer,
    to_model_size,
)

__all__ = ["activations", "dead_channels", "activation_grid"]


def activations(model: keras.Model, image: np.ndarray, layer: str) -> np.ndarray:
    """The feature maps of ``layer`` for one image.

    Args:
        model: a flat Keras model.
        image: one raw RGB image ``(h, w, 3)``, 0-255 (resized to the model's input if needed).
        layer: a layer name, e.g. from :func:`list_feature_layers`.

    Returns:
        ``(h', w', c)`` float32 activations.

    Raises:
        ConfigError: unknown layer or one without a spatial output. DataError: bad image shape.
    """
    batch = as_batch(image)
    if batch.shape[0] != 1:
        raise DataError(f"activations() takes one image; got a batch of {batch.shape[0]}.")
    lyr = spatial_layer(model, layer)
    feat = keras.Model(single_input(model), lyr.output)
    out = feat(to_model_size(batch, input_size(model)), training=False)
    return np.asarray(keras.ops.convert_to_numpy(out)[0], dtype="float32")


def dead_channels(maps: np.ndarray, tol: float = 1e-6) -> np.ndarray:
    """``(c,)`` bool: channels of ``maps`` ``(h, w, c)`` that are constant (e.g. all zero after
    ReLU), within ``tol`` relative to their magnitude."""
    maps = np.asarray(maps, dtype="float64")
    lo, hi = maps.min(axis=(0, 1)), maps.max(axis=(0, 1))
    return (hi - lo) <= tol * np.maximum(1.0, np.abs(hi))


def activation_grid(maps: np.ndarray, max_channels: int = 64, cols: int | None = None,
                    cell_size: int | None = None, separator: int = 1,
                    colormap: int | None = None) -> np.ndarray:
    """Tile the channels of ``maps`` ``(h, w, c)`` into one RGB image.

    Each channel is scaled to 0-255 on its own (min to 0, max to 255), so weak channels stay
    visible. Dead (constant) channels are drawn flat grey with a red diagonal cross, so they are
    not mistaken for dark but active ones. Cells are separated by white lines.

    Args:
        maps: activations ``(h, w, c)``, e.g. from :func:`activations`.
        max_channels: draw the first ``max_channels`` channels only.
        cols: cells per row; default ``ceil(sqrt(n))``.
        cell_size: side of a cell in pixels; default the map size, enlarged by an integer factor
            to at least 32 px (nearest neighbour, so pixels stay sharp).
        separator: width of the separating lines in pixels.
        colormap: an OpenCV colormap (e.g. ``cv2.COLORMAP_VIRIDIS``) or None for grey.

    Returns:
        ``(H, W, 3)`` uint8 RGB image.

    Raises:
        DataError: ``maps`` is not 3-D or has no channel.
    """
    maps = np.nan_to_num(np.asarray(maps, dtype="float64"))
    if maps.ndim != 3 or maps.shape[-1] == 0:
        raise DataError(f"maps must be (h, w, c) activations; got shape {maps.shape}.")
    n = int(min(maps.shape[-1], max(1, max_channels)))
    cols = int(cols) if cols else int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / cols))
    h, w = maps.shape[:2]
    if cell_size is None:
        factor = max(1, int(math.ceil(32 / max(h, w))))
        ch, cw = h * factor, w * factor
    else:
        ch = cw = int(cell_size)
    sep = max(0, int(separator))
    grid = np.full((rows * ch + (rows - 1) * sep, cols * cw + (cols - 1) * sep, 3), 255, "uint8")
    dead = dead_channels(maps[..., :n])
    for i in range(n):
        r, c = divmod(i, cols)
        y, x = r * (ch + sep), c * (cw + sep)
        if dead[i]:
            cell = np.full((ch, cw, 3), 128, "uint8")
            cv2.line(cell, (0, 0), (cw - 1, ch - 1), (220, 40, 40), max(1, min(ch, cw) // 16))
            cv2.line(cell, (0, ch - 1), (cw - 1, 0), (220, 40, 40), max(1, min(ch, cw) // 16))
        else:
            m = maps[..., i]
            g = np.round((m - m.min()) / (m.max() - m.min()) * 255).astype("uint8")
            g = cv2.resize(g, (cw, ch), interpolation=cv2.INTER_NEAREST)
            if colormap is None:
                cell = np.repeat(g[..., None], 3, axis=-1)
            else:
                cell = cv2.cvtColor(cv2.applyColorMap(g, colormap), cv2.COLOR_BGR2RGB)
        grid[y:y + ch, x:x + cw] = cell
    for i in range(n, rows * cols):  # unused cells of the last row
        r, c = divmod(i, cols)
        y, x = r * (ch + sep), c * (cw + sep)
        grid[y:y + ch, x:x + cw] = 0
    return grid
