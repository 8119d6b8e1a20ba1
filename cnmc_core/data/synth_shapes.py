"""Outlines of synthetic cells: irregular, varied, rasterised with an anti-aliased edge.

A cell outline is a star-shaped radius function ``r(theta)`` (mean about 1) built from parts that
real C-NMC nuclei show (see ``../shared/real-samples``):

- elongation (ovals) and a few low harmonics (lumpy, bean and peanut shapes);
- a ragged edge: short-scale roughness along the contour, which lengthens the perimeter;
- notches: small, sharp dents; clefts: narrow, deep ones (cleaved nuclei);
- a kidney shape: one broad indentation;
- a flat side, cut straight where the cell lay against a neighbour;
- an attached fragment: a small bleb, or a piece of a neighbouring cell left by the segmentation
  (an ellipse 0.6-1 times the cell's radius, joined by a neck); the heavy low tail of
  real circularity.

How often each part appears depends a little on the cell's latent blast-likeness ``m`` (blasts
are more often notched and cleaved; mature cells more often round, but carry most fragments), and
on the subject's ``irregularity``; most of the spread is shared by both classes, so circularity
alone separates them only weakly, as on the real samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["Outline", "draw_outline", "rasterise_outline"]


@dataclass
class Outline:
    """A cell outline in image coordinates.

    Attributes:
        xs, ys: polygon vertices (pixels, sub-pixel precision).
        fragment: ``(cx, cy, ax, ay, angle_deg)`` of an attached ellipse, or ``None``.
        radius: the mean radius in pixels (before any fragment).
    """

    xs: np.ndarray
    ys: np.ndarray
    fragment: tuple[float, float, float, float, float] | None
    radius: float


def _circular_smooth(rng: np.random.Generator, n: int, width: float) -> np.ndarray:
    """Unit-sd noise around a closed contour of ``n`` points, correlated over ``width`` points."""
    x = rng.standard_normal(n)
    width = max(0.5, width)
    half = int(min(n // 2 - 1, math.ceil(3 * width)))
    kern = np.exp(-0.5 * (np.arange(-half, half + 1) / width) ** 2)
    full = np.roll(np.pad(kern, (0, n - kern.size)), -half)
    out = np.real(np.fft.ifft(np.fft.fft(x) * np.fft.fft(full)))
    return out / max(float(out.std()), 1e-9)


def _dent(theta: np.ndarray, centre: float, width: float, depth: float, power: float) -> np.ndarray:
    """A dent of ``depth`` at angle ``centre``: ``depth * exp(-|d / width|^power)``."""
    d = np.abs(np.angle(np.exp(1j * (theta - centre))))
    return depth * np.exp(-((d / width) ** power))


def _radius_function(rng: np.random.Generator, m: float, irregularity: float, elongation: float,
                     n: int) -> np.ndarray:
    """The radius multiplier ``r(theta)`` for ``n`` angles (see the module docstring)."""
    theta = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    r = np.ones(n, np.float64)
    e = elongation + abs(rng.normal(0.0, 0.05))
    r += e * np.cos(2.0 * (theta - rng.uniform(0, np.pi)))
    lump = 0.022 * irregularity * math.exp(rng.normal(0.0, 0.45))
    for k in range(3, 7):
        r += rng.normal(0.0, lump * 2.0 / k) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    # A ragged edge: the wavelength is a few pixels, so it adds perimeter more than area.
    rough = (0.002 + 0.007 * m) * irregularity * math.exp(rng.normal(0.0, 0.35))
    r += rough * _circular_smooth(rng, n, n / 180.0)
    r += 0.6 * rough * _circular_smooth(rng, n, n / 60.0)
    # Notches: small sharp dents, in both classes, a little more often in blasts.
    for _ in range(int(rng.poisson((0.1 + 2.2 * m) * irregularity))):
        r -= _dent(theta, rng.uniform(0, 2 * np.pi), rng.uniform(0.03, 0.09),
                   rng.uniform(0.03, 0.10), 1.5)
    # Clefts: narrow and deep (cleaved blast nuclei).
    if rng.random() < (0.02 + 0.3 * m) * irregularity:
        r -= _dent(theta, rng.uniform(0, 2 * np.pi), rng.uniform(0.04, 0.10),
                   rng.uniform(0.12, 0.30), 1.2)
    # Kidney: one broad indentation.
    if rng.random() < 0.05 + 0.12 * m:
        r -= _dent(theta, rng.uniform(0, 2 * np.pi), rng.uniform(0.35, 0.7),
                   rng.uniform(0.06, 0.16), 2.0)
    # A flat side: r(theta) <= d / cos(theta - phi) near phi.
    if rng.random() < 0.12:
        phi, d = rng.uniform(0, 2 * np.pi), rng.uniform(0.82, 0.95) * float(r.mean())
        c = np.cos(theta - phi)
        with np.errstate(divide="ignore"):
            cap = np.where(c > 1e-3, d / np.maximum(c, 1e-3), np.inf)
        r = np.minimum(r, cap)
    return np.clip(r, 0.45, None)


def draw_outline(rng: np.random.Generator, m: float, area: float, size: int, irregularity: float,
                 elongation: float, fragments: tuple[float, float]) -> Outline:
    """Draw a cell outline of about ``area`` pixels, centred in a ``size`` image with a margin.

    Args:
        rng: the random generator (consumed deterministically).
        m: the cell's blast-likeness in [0, 1].
        area: the target area in pixels (the threshold-at-1 area, edge pixels included).
        size: the image side in pixels.
        irregularity: the subject's outline irregularity (1 = typical).
        elongation: the subject's typical elongation (0 = round).
        fragments: probabilities of an attached small bleb and of an attached piece of a
            neighbouring cell (at most one of them).

    Returns:
        An :class:`Outline` that keeps a margin of at least 3 % of ``size`` from the border.
    """
    n = int(max(96, min(1440, 2 * math.pi * math.sqrt(area / math.pi) / 0.75)))
    shape_r = _radius_function(rng, m, irregularity, elongation, n)
    theta = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    unit_area = 0.5 * float(np.sum(shape_r * np.roll(shape_r, -1))) * math.sin(2 * math.pi / n)
    perim_unit = float(np.sum(np.hypot(np.diff(shape_r, append=shape_r[:1]),
                                       shape_r * 2 * math.pi / n)))
    # The threshold-at-1 area also counts the partly covered edge pixels (half a pixel along
    # the outline), so the polygon itself is a little smaller than the drawn area.
    r_guess = math.sqrt(area / unit_area)
    radius = math.sqrt(max(area - 0.5 * perim_unit * r_guess, 0.5 * area) / unit_area)

    fragment = None
    u = rng.random()
    bleb_prob, piece_prob = fragments
    if u < bleb_prob + piece_prob:
        piece = u >= bleb_prob  # a piece of a neighbouring cell, else a small bleb
        ang = rng.uniform(0, 2 * np.pi)
        ax = radius * (rng.uniform(0.6, 1.0) if piece else rng.uniform(0.15, 0.35))
        ay = ax * (rng.uniform(0.75, 1.0) if piece else rng.uniform(0.6, 1.0))
        j = int(round(ang / (2 * np.pi) * n)) % n
        # The centre sits less than its smaller semi-axis outside the outline: always one piece.
        dist = radius * shape_r[j] + ay * (rng.uniform(0.45, 0.85) if piece else rng.uniform(0.0, 0.5))
        fragment = (dist * math.cos(ang), dist * math.sin(ang), ax, ay, float(rng.uniform(0, 180)))
        # The drawn area is the whole mask's: shrink cell and fragment together by the share the
        # fragment adds (its ellipse, less about a fifth for the overlap).
        s = math.sqrt(area / (area + 0.8 * math.pi * ax * ay))
        radius *= s
        fragment = (fragment[0] * s, fragment[1] * s, ax * s, ay * s, fragment[4])

    margin = max(2.0, 0.03 * size)
    ext = float(shape_r.max()) * radius
    if fragment is not None:
        ext = max(ext, math.hypot(fragment[0], fragment[1]) + fragment[2])
    if ext > size / 2.0 - margin:  # shrink to fit
        s = (size / 2.0 - margin) / ext
        radius *= s
        ext = size / 2.0 - margin
        if fragment is not None:
            fragment = (fragment[0] * s, fragment[1] * s, fragment[2] * s, fragment[3] * s, fragment[4])
    jitter = min(max(0.0, size / 2.0 - margin - ext), 0.025 * size)
    cx = size / 2.0 + rng.uniform(-jitter, jitter)
    cy = size / 2.0 + rng.uniform(-jitter, jitter)
    if fragment is not None:
        fragment = (cx + fragment[0], cy + fragment[1], fragment[2], fragment[3], fragment[4])
    return Outline(xs=cx + radius * shape_r * np.cos(theta), ys=cy + radius * shape_r * np.sin(theta),
                   fragment=fragment, radius=radius)


def rasterise_outline(outline: Outline, size: int, pad: int = 3) -> tuple[np.ndarray, tuple[int, int]]:
    """The anti-aliased coverage (0-255) of an outline on a canvas just around it.

    Args:
        outline: from :func:`draw_outline`.
        size: the image side (the canvas is clipped to it).
        pad: pixels of empty canvas around the shape.

    Returns:
        ``(alpha, (x0, y0))``: a ``uint8`` coverage array and its top-left corner in the image.
    """
    import cv2

    xs, ys = outline.xs, outline.ys
    lo_x, hi_x, lo_y, hi_y = xs.min(), xs.max(), ys.min(), ys.max()
    if outline.fragment is not None:
        fx, fy, ax, _, _ = outline.fragment
        lo_x, hi_x = min(lo_x, fx - ax), max(hi_x, fx + ax)
        lo_y, hi_y = min(lo_y, fy - ax), max(hi_y, fy + ax)
    x0 = max(0, int(math.floor(lo_x)) - pad)
    y0 = max(0, int(math.floor(lo_y)) - pad)
    x1 = min(size, int(math.ceil(hi_x)) + pad + 1)
    y1 = min(size, int(math.ceil(hi_y)) + pad + 1)
    shift = 4  # sub-pixel vertices: 1/16 px
    alpha = np.zeros((y1 - y0, x1 - x0), np.uint8)
    pts = np.round(np.stack([xs - x0, ys - y0], axis=1) * (1 << shift)).astype(np.int32)
    cv2.fillPoly(alpha, [pts], 255, lineType=cv2.LINE_AA, shift=shift)
    if outline.fragment is not None:
        fx, fy, ax, ay, angle = outline.fragment
        extra = np.zeros_like(alpha)
        centre = (int(round((fx - x0) * (1 << shift))), int(round((fy - y0) * (1 << shift))))
        axes = (max(1, int(round(ax * (1 << shift)))), max(1, int(round(ay * (1 << shift)))))
        cv2.ellipse(extra, centre, axes, angle, 0, 360, 255, -1, lineType=cv2.LINE_AA, shift=shift)
        np.maximum(alpha, extra, out=alpha)
    return alpha, (x0, y0)
