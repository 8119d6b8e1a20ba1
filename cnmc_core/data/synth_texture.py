"""Chromatin texture of synthetic cells: where the class signal lives.

The texture is a "density" field inside the cell (positive = darker, in units along the stain's
density direction). It is built from parts, weighted by the cell's latent blast-likeness ``m``:

- shared by both classes: broad mottling, fine speckled grain, small pale speckles;
- blast-like (weight ``m``): smooth, even chromatin at the middle scales, with 1-3 large pale
  nucleoli (each with a thin darker ring of chromatin around it), more likely the higher ``m``;
- mature-like (weight ``1 - m``): coarse clumped chromatin: dark blocks about 15-25 px across
  (at 450 px) separated by a pale network.

So the classes differ in the *spatial organisation* of the light and dark areas, which a CNN sees
even at 32-64 px (the nucleoli and clumps are several pixels wide there), and hardly in one
scalar: the field's values inside the cell are mapped, rank for rank, onto a reference
distribution whose spread and tails are drawn alike for both classes (:func:`match_marginal`),
so the grey-level spread and the share of bright pixels do not tell the classes apart, as on the
real samples.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["smooth_noise", "blobs", "match_marginal", "chromatin_field"]


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Gaussian noise blurred to correlation length ``sigma`` px, with unit standard deviation.

    Drawn at a lower resolution and resized up, so a wide blur costs no more than a narrow one.
    """
    import cv2

    h, w = shape
    sigma = max(float(sigma), 0.3)
    f = max(1.0, sigma / 2.0)  # after downsampling the blur is about 2 px wide
    lh, lw = int(math.ceil(h / f)) + 3, int(math.ceil(w / f)) + 3
    low = rng.standard_normal((lh, lw), dtype=np.float32)
    low = cv2.GaussianBlur(low, (0, 0), sigma / f, borderType=cv2.BORDER_REFLECT)
    if f > 1.0:
        low = cv2.resize(low, (int(round(lw * f)), int(round(lh * f))), interpolation=cv2.INTER_CUBIC)
    out = np.ascontiguousarray(low[1 : h + 1, 1 : w + 1])
    sd = float(out.std())
    return out / sd if sd > 1e-6 else out


def blobs(shape: tuple[int, int], centers: np.ndarray, radii: np.ndarray, power: float) -> np.ndarray:
    """Sum of soft round spots ``exp(-(d/r)^power)``, computed only around each spot."""
    h, w = shape
    out = np.zeros(shape, np.float32)
    for (cy, cx), r in zip(centers, radii):
        ext = int(math.ceil(2.5 * r)) + 1
        y0, y1 = max(0, int(cy) - ext), min(h, int(cy) + ext + 1)
        x0, x1 = max(0, int(cx) - ext), min(w, int(cx) + ext + 1)
        if y0 >= y1 or x0 >= x1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        d = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2) / max(r, 0.3)
        out[y0:y1, x0:x1] += np.exp(-(d**power))
    return out


def match_marginal(values: np.ndarray, light_share: float, light_lift: float,
                   dark_tail: float) -> np.ndarray:
    """Map ``values`` rank for rank onto a reference distribution with zero mean and unit sd.

    The reference is a standard normal whose lightest ``light_share`` (the lowest density
    values) are lifted by a further ``light_lift`` sd (the pale spots of real chromatin), and
    whose dark tail beyond 1.8 is stretched by ``dark_tail`` (0 = plain normal). Ties keep their
    order of appearance (a stable sort), so the result is deterministic.
    """
    from scipy.special import ndtri

    n = values.size
    if n < 2:
        return np.zeros_like(values, np.float32)
    order = np.argsort(values, kind="stable")
    z = ndtri((np.arange(n, dtype=np.float64) + 0.5) / n)
    n_light = int(round(light_share * n))
    z[:n_light] -= light_lift * np.linspace(1.0, 0.6, n_light)
    z += dark_tail * np.maximum(z - 1.8, 0.0) ** 1.3
    z = (z - z.mean()) / max(float(z.std()), 1e-9)
    out = np.empty(n, np.float32)
    out[order] = z
    return out


def chromatin_field(rng: np.random.Generator, shape: tuple[int, int], inside: np.ndarray,
                    centre: tuple[float, float], r_cell: float, m: float, k: float,
                    texture_scale: float) -> np.ndarray:
    """The density field of one cell, before its marginal is matched (see the module docstring).

    Args:
        rng: the random generator (consumed deterministically).
        shape: ``(h, w)`` of the canvas.
        inside: boolean mask of the cell on the canvas.
        centre: ``(cy, cx)`` of the cell on the canvas.
        r_cell: the cell's equivalent radius in pixels.
        m: blast-likeness in [0, 1].
        k: image size / 450 (every length scales with it).
        texture_scale: the subject's grain-size multiplier.

    Returns:
        A float32 ``(h, w)`` field, zero mean and unit sd inside the cell.
    """
    ts = texture_scale * k
    cy, cx = centre

    def unit(field: np.ndarray) -> np.ndarray:
        vals = field[inside]
        sd = float(vals.std()) if vals.size else 0.0
        return (field - float(vals.mean())) / sd if sd > 1e-6 else field * 0.0

    # Shared by both classes: broad mottling and a fine speckled grain.
    shared = 0.55 * smooth_noise(rng, shape, 18.0 * ts) + 0.45 * smooth_noise(rng, shape, 2.2 * ts)
    n_speck = int(rng.integers(6, 22))
    ang = rng.uniform(0, 2 * np.pi, n_speck)
    rad = r_cell * np.sqrt(rng.uniform(0, 0.8, n_speck))
    spots = np.stack([cy + rad * np.sin(ang), cx + rad * np.cos(ang)], axis=1)
    shared -= 1.6 * blobs(shape, spots, rng.uniform(2.0, 4.0, n_speck) * ts, 2.0)

    # Mature-like: coarse dark clumps with a pale network between them.
    coarse = smooth_noise(rng, shape, 6.5 * ts)
    gaps = smooth_noise(rng, shape, 8.0 * ts)
    clumps = np.maximum(coarse + 0.2, 0.0) ** 1.5 - 1.1 * np.maximum(gaps - 0.7, 0.0)

    # Blast-like: even chromatin at the middle scales, large pale nucleoli with a dark ring.
    blast = 0.35 * smooth_noise(rng, shape, 6.5 * ts)
    p_nuc = float(np.clip((m - 0.15) / 0.6, 0.0, 1.0)) ** 1.3
    if rng.random() < p_nuc:
        n_nuc = int(rng.choice([1, 1, 2, 2, 3]))
        ang = rng.uniform(0, 2 * np.pi, n_nuc)
        rad = r_cell * np.sqrt(rng.uniform(0.0, 0.4, n_nuc))
        nuclei = np.stack([cy + rad * np.sin(ang), cx + rad * np.cos(ang)], axis=1)
        radii = rng.uniform(10.0, 18.0, n_nuc) * k * (0.5 + 0.5 * texture_scale)
        pale = blobs(shape, nuclei, radii, 3.0)
        ring = blobs(shape, nuclei, radii * 1.35, 3.0) - pale
        blast += -4.5 * pale + 1.2 * ring

    field = unit(shared) + (1.0 - m) * 1.5 * unit(clumps) + m * blast
    return unit(field).astype(np.float32)
