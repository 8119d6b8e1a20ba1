"""One synthetic cell: the signature of a subject and the rendering of its cells (see
:mod:`cnmc_core.data.synth` for the dataset they make up).

A cell is composed in this order: its latent blast-likeness ``m`` (class mean, subject shift,
cell spread); its area (log-linear in ``m``, times subject and cell factors); an outline
(:mod:`~cnmc_core.data.synth_shapes`); the chromatin pattern (:mod:`~cnmc_core.data.synth_texture`),
whose values are mapped onto a class-blind reference distribution and scaled to the cell's
contrast; the colour (subject stain + microscope-image shift + cell shift + a slight tint by ``m``,
minus the density along the stain's density direction); the bright segmentation halo at the edge,
sometimes a thin rim of cytoplasm; a soft blur and a little sensor noise. The numeric constants
below were fitted on the ``fit`` half of the real samples only.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from cnmc_core.data.synth_shapes import draw_outline, rasterise_outline
from cnmc_core.data.synth_texture import chromatin_field, match_marginal
from cnmc_core.exceptions import ConfigError
from cnmc_core.validation import check_scalar

__all__ = [
    "DEFAULT_SIZE",
    "MIN_SIZE",
    "MAX_SIZE",
    "REFERENCE_SIZE",
    "STAIN_BRIGHT_DIR",
    "SubjectProfile",
    "make_subject_profile",
    "render_cell",
    "check_render_size",
    "SubjectTask",
    "render_subject",
]

DEFAULT_SIZE = 450
MIN_SIZE = 32
MAX_SIZE = 2048
REFERENCE_SIZE = 450.0  # every length below is in pixels of a 450 px image and scaled by size / 450
# Calibrated on the "fit" half of the real samples (cnmc_core.data.cell_features.real_sample_halves;
# the "held_out" half is only measured, never fitted). Mean cell area at 450 px (fit half: ALL
# 36,850, HEM 29,710) and the value of the latent blast-likeness m at which a cell gets it; the
# per-cell spread of log area beyond what m and the subject explain (fit half sd: ALL 17 %,
# HEM 30 %: mature cells vary more in size).
_AREA_ALL, _AREA_HEM = 36_850.0, 29_700.0
_AREA_CELL_SD = {"all": 0.14, "hem": 0.27}
_M_ALL, _M_HEM = 0.68, 0.32
_M_CELL_SD = 0.16  # per-cell spread of m: sets how much the classes overlap
_M_SUBJECT_SD = 0.05  # per-subject shift of m: some patients' blasts look more mature
# Attached fragments give real circularity its heavy low tail (1 of the 10 fit-half HEM images
# is two touching cells, circularity 0.41; none of its 10 ALL images): (bleb, neighbour piece).
_FRAGMENTS = {"all": (0.06, 0.03), "hem": (0.08, 0.15)}
# Interior colour before any texture (RGB at 450 px, stain-normalised like the real data) and the
# direction in RGB along which chromatin density varies inside real cells (first principal
# component of the interior pixels: mostly red, some green and blue).
_BASE_RGB = np.array([67.5, 27.5, 77.0], np.float32)
_DENSITY_DIR = np.array([0.82, 0.40, 0.40], np.float32)
# A slight class tint, per cell through m: blasts a little bluer (real: mean blue separates the
# classes at AUC 0.61 on the 40 samples, red not at all).
_CLASS_TINT = np.array([1.0, 0.0, 6.0], np.float32)
# Stain along a brightness axis and a red/blue hue axis, split into subject, microscope image
# and cell parts (sd along STAIN_BRIGHT_DIR; fit half: sd of mean red over images about 5.5).
STAIN_BRIGHT_DIR = np.array([0.66, 0.36, 0.60], np.float32)
_STAIN_HUE_DIR = np.array([0.55, 0.0, -0.55], np.float32)
_STAIN_SUBJECT_SD, _STAIN_IMAGE_SD, _STAIN_CELL_SD = 7.5, 4.5, 3.5
_HUE_SUBJECT_SD, _HUE_IMAGE_SD = 2.0, 1.5
# Texture contrast (density sd inside the cell; fit half grey sd about 5) and sensor noise.
_CONTRAST = 9.5
_NOISE_SD = 1.1
# Halo at the edge of the segmented cell: amplitude at distance 0 and decay length per channel
# (real: +28/+32/+25 at 2 px, +9/+12/+13 at 6 px, about 0 beyond 12 px).
_RIM_AMP = np.array([37.0, 40.0, 33.0], np.float32)
_RIM_DECAY = np.array([3.7, 3.7, 4.9], np.float32)
_LABELS = {"all": "all", "hem": "hem", "1": "all", "0": "hem"}


@dataclass(frozen=True)
class SubjectProfile:
    """The signature shared by every cell of one subject (the source of the subject leak).

    Attributes:
        subject: the subject token of the file names (``"7"`` or ``"H3"``).
        label: ``"all"`` or ``"hem"``.
        stain: RGB colour of the chromatin at average density (stain and scanner of the subject).
        size_factor: multiplies every cell's area.
        m_shift: added to every cell's blast-likeness (how typical this subject's cells look).
        texture_scale: multiplies the grain size of the chromatin texture.
        rim_strength: multiplies the bright halo at the cell edge.
        irregularity: multiplies the outline irregularity.
        elongation: typical elongation of the cells (0 = round).
        halo_prob: probability that a cell shows a thin pale rim of cytoplasm (whole or a
            crescent) left by the segmentation; 2 of the 40 real samples have one.
        contrast: multiplies the chromatin contrast.
    """

    subject: str
    label: str
    stain: tuple[float, float, float]
    size_factor: float
    m_shift: float
    texture_scale: float
    rim_strength: float
    irregularity: float
    elongation: float
    halo_prob: float = 0.0
    contrast: float = 1.0


def _norm_label(label: str | int) -> str:
    """``"all"``/``"hem"`` (also 1/0) as ``"all"``/``"hem"``; anything else is a ConfigError."""
    key = str(label).strip().lower()
    if key not in _LABELS:
        raise ConfigError(f"label {label!r} is not allowed: use 'all' (1, ALL) or 'hem' (0, HEM).")
    return _LABELS[key]


def make_subject_profile(rng: np.random.Generator, subject: str, label: str | int) -> SubjectProfile:
    """Draw the signature of one subject.

    Args:
        rng: the random generator to draw from (consumed deterministically).
        subject: the subject token (``"7"``, ``"H3"``).
        label: ``"all"``/``"hem"`` (or 1/0).

    Returns:
        A :class:`SubjectProfile`.

    Raises:
        ConfigError: for an unknown label.
    """
    label = _norm_label(label)
    # Stain: the subject's part only (microscope images and cells add theirs): enough that the
    # cells of one subject cluster in colour a little, which a model trained on a random split by
    # image can memorise, but less than the class signal in the texture.
    bright = rng.normal(0.0, _STAIN_SUBJECT_SD)
    hue = rng.normal(0.0, _HUE_SUBJECT_SD)
    stain = _BASE_RGB + bright * STAIN_BRIGHT_DIR + hue * _STAIN_HUE_DIR
    return SubjectProfile(
        subject=subject,
        label=label,
        stain=tuple(float(v) for v in stain),
        size_factor=float(math.exp(rng.normal(0.0, 0.08))),
        m_shift=float(rng.normal(0.0, _M_SUBJECT_SD)),
        texture_scale=float(math.exp(rng.normal(0.0, 0.12))),
        rim_strength=float(math.exp(rng.normal(-0.045, 0.3))),
        irregularity=float(math.exp(rng.normal(0.0, 0.2))),
        elongation=float(rng.uniform(0.0, 0.06)),
        # A minority of subjects (slides) often leave cytoplasm around the cells.
        halo_prob=float(0.3 if rng.random() < 0.2 else 0.03),
        contrast=float(math.exp(rng.normal(0.0, 0.2))),
    )


def render_cell(
    rng: np.random.Generator,
    label: str | int,
    profile: SubjectProfile,
    size: int = DEFAULT_SIZE,
) -> np.ndarray:
    """Render one segmented cell on a black square, like a C-NMC image.

    Args:
        rng: the random generator to draw from (consumed deterministically).
        label: ``"all"``/``"hem"`` (or 1/0): which morphology the cell is drawn from.
        profile: the subject's signature (stain, size, texture, halo, outline style).
        size: side of the square image in pixels (32-2048); every length scales with size / 450.

    Returns:
        An ``(size, size, 3)`` uint8 RGB array: the cell, background exactly ``(0, 0, 0)``, no cell
        pixel on the image border.

    Raises:
        ConfigError: for an unknown label or a size out of range.
    """
    import cv2

    label = _norm_label(label)
    size = check_render_size(size)
    k = size / REFERENCE_SIZE

    # Latent blast-likeness: everything class-related follows it, so the classes overlap as much
    # as m does.
    mu = _M_ALL if label == "all" else _M_HEM
    m = float(np.clip(rng.normal(mu + profile.m_shift, _M_CELL_SD), 0.0, 1.0))

    # Area: log-linear in m between the HEM and ALL means, times the subject and a per-cell factor.
    t = (m - _M_HEM) / (_M_ALL - _M_HEM)
    log_area = math.log(_AREA_HEM) + t * math.log(_AREA_ALL / _AREA_HEM)
    cell_sd = _AREA_CELL_SD[label]
    area = math.exp(log_area + rng.normal(0.0, cell_sd) - 0.5 * cell_sd**2)
    area *= profile.size_factor * k * k

    outline = draw_outline(rng, m, area, size, profile.irregularity, profile.elongation,
                           _FRAGMENTS[label])
    alpha, (x0, y0) = rasterise_outline(outline, size)
    h, w = alpha.shape
    inside = alpha >= 128
    dist = cv2.distanceTransform(inside.astype(np.uint8), cv2.DIST_L2, 5)  # px from the edge
    r_cell = math.sqrt(area / math.pi)
    centre = (float(outline.ys.mean()) - y0, float(outline.xs.mean()) - x0)

    # --- chromatin density (positive = darker), in "R units" along _DENSITY_DIR -------------
    field = chromatin_field(rng, (h, w), inside, centre, r_cell, m, k, profile.texture_scale)
    # The marginal (spread and tails) is drawn alike for both classes: the class lives in the
    # spatial pattern, not in the grey-level histogram.
    contrast = _CONTRAST * profile.contrast * math.exp(rng.normal(0.0, 0.2) + 0.25 * (m - 0.5))
    density = np.zeros((h, w), np.float32)
    covered = alpha > 0
    density[covered] = contrast * match_marginal(
        field[covered], light_share=float(rng.uniform(0.02, 0.07)), light_lift=float(rng.uniform(0.6, 1.6)),
        dark_tail=float(rng.uniform(0.0, 0.6)))

    # --- colour -----------------------------------------------------------------------------
    stain = (np.asarray(profile.stain, np.float32) + rng.normal(0.0, _STAIN_CELL_SD) * STAIN_BRIGHT_DIR
             + (m - 0.5) * _CLASS_TINT)
    rgb = stain[None, None, :] - density[:, :, None] * _DENSITY_DIR[None, None, :]
    rim_d = np.maximum(dist - 0.5, 0.0)[:, :, None]
    rim = np.exp(-rim_d / (_RIM_DECAY * max(k, 0.15))[None, None, :]) * (_RIM_AMP * profile.rim_strength)
    rgb += rim
    if rng.random() < profile.halo_prob:  # a thin rim of pale cytoplasm, whole or a crescent
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        ang = np.arctan2(yy - centre[0], xx - centre[1])
        reach = rng.uniform(0.2, 1.2)
        weight = np.clip(reach + np.cos(ang - rng.uniform(-np.pi, np.pi)), 0.0, 1.0)
        halo_len = rng.uniform(5.0, 11.0) * max(k, 0.15)
        halo_amp = np.array([26.0, 36.0, 22.0], np.float32) * rng.uniform(0.6, 1.1)
        rgb += (np.exp(-rim_d / halo_len) * weight[:, :, None]) * halo_amp
    rgb = cv2.GaussianBlur(rgb, (0, 0), max(0.7 * k, 0.35))  # the real images are soft
    rgb += _NOISE_SD * rng.standard_normal((h, w, 1), dtype=np.float32) * _DENSITY_DIR  # sensor
    np.clip(rgb, (4.0, 1.0, 6.0), 255.0, out=rgb)  # inside stays non-black (threshold at 1)
    rgb *= (alpha.astype(np.float32) / 255.0)[:, :, None]

    img = np.zeros((size, size, 3), np.uint8)
    img[y0:y0 + h, x0:x0 + w] = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    # The margin of the outline keeps the cell off the border; clearing it makes it a guarantee.
    img[0, :] = img[-1, :] = 0
    img[:, 0] = img[:, -1] = 0
    return img


def check_render_size(size, name: str = "size") -> int:
    """Return ``size`` if it is a side in pixels the renderer draws (:data:`MIN_SIZE` to
    :data:`MAX_SIZE`).

    Args:
        size: the side of the square image.
        name: the argument as the caller knows it (``size``; the CLI's flag is ``--size``).

    Raises:
        ConfigError: not an int (bools and floats too) or out of range; the message names
            ``name``, the range and the value, and says what to use.
    """
    return check_scalar(size, name, "int", low=MIN_SIZE, high=MAX_SIZE,
                        fix="Use e.g. --size 450 (the real images) or --size 128 (quick tests).")


@dataclass
class SubjectTask:
    """Everything a worker needs to render the cells of one subject."""

    profile: SubjectProfile
    split: str
    cell_seed: tuple[int, ...]
    size: int
    files: list[tuple[str, str]] = field(default_factory=list)  # (original name, dest path)


def _image_no(name: str) -> int:
    return int(name.split("_")[2])


def render_subject(task: SubjectTask) -> list[dict]:
    """Render and write the cells of one subject (runs in a worker process)."""
    import cv2

    # Parallelism comes from the workers: one OpenCV thread each avoids oversubscribing the
    # cores (the images are small). Restored afterwards for a caller that renders in-process.
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        rng = np.random.default_rng(np.random.SeedSequence(task.cell_seed))
        # Cells of one microscope image share a small stain shift (same field, same light).
        image_shift: dict[int, np.ndarray] = {}
        records = []
        for name, dest in task.files:
            no = _image_no(name)
            if no not in image_shift:
                image_shift[no] = (rng.normal(0.0, _STAIN_IMAGE_SD) * STAIN_BRIGHT_DIR
                                   + rng.normal(0.0, _HUE_IMAGE_SD) * _STAIN_HUE_DIR)
            stain = np.asarray(task.profile.stain, np.float32) + image_shift[no]
            prof = dataclasses.replace(task.profile, stain=tuple(float(v) for v in stain))
            img = render_cell(rng, task.profile.label, prof, task.size)
            # OpenCV writes BGR. PNG level 3: near the smallest files at a fifth of level 9's time.
            params = [cv2.IMWRITE_PNG_COMPRESSION, 3] if dest.lower().endswith(".png") else []
            if not cv2.imwrite(dest, np.ascontiguousarray(img[:, :, ::-1]), params):
                raise OSError(f"could not write {dest}")
            records.append({"name": name, "path": dest, "split": task.split,
                            "label": task.profile.label, "subject": task.profile.subject})
        return records
    finally:
        cv2.setNumThreads(threads)
