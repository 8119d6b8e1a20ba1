"""Synthetic stand-in for the C-NMC 2019 dataset: realistic single-cell images, fast, seeded.

The real C-NMC images cannot be downloaded everywhere this project runs, so every other part
(training, ensembles, the dashboard, the tests) is developed on this generator's output. It writes
the Kaggle mirror layout of ``DESIGN.md``::

    OUT/C-NMC_Leukemia/training_data/fold_{0,1,2}/{all,hem}/UID_<subject>_<image>_<cell>_<all|hem>.bmp
    OUT/C-NMC_Leukemia/validation_data/C-NMC_test_prelim_phase_data/{N}.bmp
    OUT/C-NMC_Leukemia/validation_data/C-NMC_test_prelim_phase_data_labels.csv   (Patient_ID,new_names,labels)
    OUT/C-NMC_Leukemia/testing_data/C-NMC_test_final_phase_data/{N}.bmp           (unlabelled)
    OUT/.synth_info.json          (parameters and counts; a dot file, so dataset scanners skip it)

ALL subjects are numbered ``1``, ``2``, ...; healthy subjects ``H1``, ``H2``, ... . The ``H`` is
always upper case here (the real data has one lower-case ``h3``; readers must case-normalise, and
the real samples already exercise that). Each subject lives in exactly one of fold_0/1/2, the
preliminary set or the final set, so the preliminary and final subjects are unseen in training.
Subject numbers are shuffled across those sets, so the set cannot be read off the number.

What the images look like (figures measured on the 40 real 450x450 samples; the synthetic ones
match them within a few per cent, see ``tests/test_synth.py``):

- one purple cell on pure black ``(0, 0, 0)``, centred, never touching the border; anti-aliased
  edge, then the bright halo of the real segmentation (about +30 per channel right at the edge,
  gone after about 12 px), then the stained chromatin;
- mean colour inside the cell about (69, 30, 80) RGB for both classes, within-cell standard
  deviation about (11.5, 9, 10.5);
- cell area about 37,400 px for ALL and 28,700 px for HEM at 450 px, with a large overlap.

Where the class signal lives (as haematology describes it, and deliberately overlapping): every
cell draws a latent "blast-likeness" ``m`` in [0, 1] (ALL subjects around 0.68, HEM around 0.32,
spread 0.10 per cell plus a per-subject shift), and its morphology follows ``m``: blasts are larger,
with fine, even chromatin, 1-3 lighter round nucleoli and a more irregular, notched outline; mature
lymphocytes are smaller, with coarse clumped chromatin (darker blotches) and a smooth round outline.
Because ALL subjects contribute some mature-looking cells and vice versa (the real labels are per
subject, not per cell), a good model stays well short of 100 %.

The subject leak: each subject has its own stain (colour shift), size, texture scale, halo
strength and outline style, and the cells of one microscope image share a little extra stain
shift. A model evaluated on a random split by image meets the same subjects in training and test
and learns them; a subject-disjoint split does not allow that, so it scores lower, as on the real
data.

Every length scales with ``size / 450`` (areas with its square). The output is a pure function of
the arguments: the same seed gives the same bytes, whatever ``n_jobs`` is.

Defaults: 25 ALL and 12 HEM subjects in the training folds, 4 + 2 unseen subjects in the
preliminary set and 4 + 2 in the final set, 40 cells per subject on average (subjects vary between
about 0.6x and 1.4x of that, class totals are exact): 1,960 images, 1,320 ALL : 640 HEM (2.06:1),
1,480 of them in the training folds; 450 px; seed 0.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable

import numpy as np

from .exceptions import ConfigError

__all__ = [
    "SubjectProfile",
    "SynthSummary",
    "DEFAULT_SUBJECTS_ALL",
    "DEFAULT_SUBJECTS_HEM",
    "DEFAULT_CELLS_PER_SUBJECT",
    "DEFAULT_SIZE",
    "DEFAULT_SEED",
    "MIN_SIZE",
    "MAX_SIZE",
    "ROOT_NAME",
    "LABELS_CSV_NAME",
    "default_unseen_subjects",
    "make_subject_profile",
    "render_cell",
    "plan_dataset",
    "generate_dataset",
]

DEFAULT_SUBJECTS_ALL = 25
DEFAULT_SUBJECTS_HEM = 12
DEFAULT_CELLS_PER_SUBJECT = 40
DEFAULT_SIZE = 450
DEFAULT_SEED = 0
MIN_SIZE = 32
MAX_SIZE = 2048

ROOT_NAME = "C-NMC_Leukemia"
TRAIN_DIR = "training_data"
PRELIM_DIR = "validation_data/C-NMC_test_prelim_phase_data"
LABELS_CSV_NAME = "C-NMC_test_prelim_phase_data_labels.csv"
LABELS_CSV_DIR = "validation_data"
FINAL_DIR = "testing_data/C-NMC_test_final_phase_data"
INFO_NAME = ".synth_info.json"
GENERATOR_VERSION = 1

_REF = 450.0  # every length below is in pixels of a 450 px image and scaled by size / 450

# Mean cell area at 450 px (measured on the real samples: ALL 37,436, HEM 28,722) and the value
# of the latent blast-likeness m at which a cell gets it.
_AREA_ALL, _AREA_HEM = 37_400.0, 28_700.0
_M_ALL, _M_HEM = 0.68, 0.32
_M_CELL_SD = 0.10  # per-cell spread of m: sets how much the classes overlap
_M_SUBJECT_SD = 0.045  # per-subject shift of m: some patients' blasts look more mature

# Interior colour before any texture (RGB at 450 px, stain-normalised like the real data) and the
# direction in RGB along which chromatin density varies inside real cells (first principal
# component of the interior pixels of the 40 samples: mostly red, some green and blue).
_BASE_RGB = np.array([66.0, 26.5, 76.5], np.float32)
_DENSITY_DIR = np.array([0.82, 0.40, 0.40], np.float32)
# Subject stain: a brightness axis (real cells range from about (57,23,64) to (95,49,101)) and a
# red/blue hue axis.
_STAIN_BRIGHT_DIR = np.array([0.66, 0.36, 0.60], np.float32)
_STAIN_HUE_DIR = np.array([0.55, 0.0, -0.55], np.float32)
# Halo at the edge of the segmented cell: amplitude at distance 0 and decay length per channel
# (real: +28/+32/+25 at 2 px, +9/+12/+13 at 6 px, about 0 beyond 12 px).
_RIM_AMP = np.array([37.0, 40.0, 33.0], np.float32)
_RIM_DECAY = np.array([3.7, 3.7, 4.9], np.float32)

_LABELS = {"all": "all", "hem": "hem", "1": "all", "0": "hem"}

ProgressFn = Callable[[int, int], None]


# --------------------------------------------------------------------------------------------
# Subjects and single cells
# --------------------------------------------------------------------------------------------


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
        halo_prob: probability that a cell shows a wide pale halo (a rim of cytoplasm left by
            the segmentation; 2 of the 40 real samples have one).
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
    # Stain: strong enough that cells of one subject cluster in colour, which is what a model
    # trained on a random split by image can memorise.
    bright = rng.normal(0.0, 10.5)
    hue = rng.normal(0.0, 3.5)
    stain = _BASE_RGB + bright * _STAIN_BRIGHT_DIR + hue * _STAIN_HUE_DIR
    return SubjectProfile(
        subject=subject,
        label=label,
        stain=tuple(float(v) for v in stain),
        size_factor=float(math.exp(rng.normal(0.0, 0.1))),
        m_shift=float(rng.normal(0.0, _M_SUBJECT_SD)),
        texture_scale=float(math.exp(rng.normal(0.0, 0.18))),
        rim_strength=float(math.exp(rng.normal(-0.045, 0.3))),
        irregularity=float(math.exp(rng.normal(0.0, 0.3))),
        elongation=float(rng.uniform(0.0, 0.08)),
        # A minority of subjects (slides) often leave cytoplasm around the cells.
        halo_prob=float(0.35 if rng.random() < 0.25 else 0.03),
    )


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
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


def _blobs(shape: tuple[int, int], centers: np.ndarray, radii: np.ndarray, power: float) -> np.ndarray:
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


def _outline(rng: np.random.Generator, m: float, profile: SubjectProfile, n: int) -> np.ndarray:
    """Radius multiplier r(theta) of a cell outline, for ``n`` angles (mean about 1).

    Blasts (high m): more irregular, often with a notch or cleft; mature lymphocytes: round.
    """
    theta = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    r = np.ones(n, np.float64)
    # Elongation: the subject's style plus a per-cell part.
    e = profile.elongation + rng.uniform(0.0, 0.09)
    r += e * np.cos(2.0 * (theta - rng.uniform(0, np.pi)))
    # Low harmonics: lumpy outline, larger for blasts.
    irr = (0.008 + 0.05 * m) * profile.irregularity
    for k in range(3, 9):
        r += rng.normal(0.0, irr * 2.2 / k) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    # Gentle roughness along the contour (circular smooth noise, about 1/40 of the perimeter
    # wide), mostly on blasts; a shorter scale looks crinkled, which real cells are not.
    fine = rng.standard_normal(n)
    width = max(1.0, n / 40.0)
    half = int(min(n // 2 - 1, math.ceil(3 * width)))
    kern = np.exp(-0.5 * (np.arange(-half, half + 1) / width) ** 2)
    kern_full = np.roll(np.pad(kern, (0, n - kern.size)), -half)
    fine = np.real(np.fft.ifft(np.fft.fft(fine) * np.fft.fft(kern_full)))
    fine /= max(fine.std(), 1e-6)
    r += (0.002 + 0.012 * m) * profile.irregularity * fine
    # Notches / clefts: common in blasts, rare in mature cells.
    if rng.random() < 0.04 + 0.7 * m**2:
        for _ in range(int(rng.integers(1, 3))):
            c = rng.uniform(0, 2 * np.pi)
            notch_w = rng.uniform(0.06, 0.25)
            depth = rng.uniform(0.04, 0.14)
            dist = np.angle(np.exp(1j * (theta - c)))
            r -= depth * np.exp(-0.5 * (dist / notch_w) ** 2)
    return np.clip(r, 0.55, None)


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
    size = _check_size(size)
    k = size / _REF

    # Latent blast-likeness: everything class-related follows it, so the classes overlap as much
    # as m does.
    mu = _M_ALL if label == "all" else _M_HEM
    m = float(np.clip(rng.normal(mu + profile.m_shift, _M_CELL_SD), 0.0, 1.0))

    # Area: log-linear in m between the HEM and ALL means, times the subject and a per-cell factor.
    t = (m - _M_HEM) / (_M_ALL - _M_HEM)
    log_area = math.log(_AREA_HEM) + t * math.log(_AREA_ALL / _AREA_HEM)
    # Mature cells vary more in size (real HEM: 17,800-43,500 px; ALL: 27,100-48,200 px).
    cell_sd = 0.09 if label == "all" else 0.17
    area = math.exp(log_area + rng.normal(0.0, cell_sd) - 0.5 * (0.1**2 + cell_sd**2))
    area *= profile.size_factor * k * k

    n_pts = int(max(64, min(720, 2 * math.pi * math.sqrt(area / math.pi) / 1.5)))
    shape_r = _outline(rng, m, profile, n_pts)
    theta = np.linspace(0.0, 2.0 * np.pi, n_pts, endpoint=False)
    # Scale the outline so that its polygon area is the drawn area.
    poly_area_unit = 0.5 * float(np.sum(shape_r * np.roll(shape_r, -1))) * math.sin(2 * math.pi / n_pts)
    # The threshold-at-1 area also counts the partly covered edge pixels (half a pixel along the
    # outline), so the polygon itself is a little smaller than the drawn area.
    perim_unit = float(np.sum(np.hypot(np.diff(shape_r, append=shape_r[:1]), shape_r * 2 * math.pi / n_pts)))
    r_guess = math.sqrt(area / poly_area_unit)
    radius = math.sqrt(max(area - 0.5 * perim_unit * r_guess, 0.5 * area) / poly_area_unit)
    # Keep a margin from the border: real cells sit centred with about 50 px or more around them.
    margin = max(2.0, 0.03 * size)
    max_r = float(shape_r.max()) * radius
    if max_r > size / 2.0 - margin:
        radius *= (size / 2.0 - margin) / max_r
        max_r = size / 2.0 - margin
    slack = max(0.0, size / 2.0 - margin - max_r)
    jitter = min(slack, 0.025 * size)
    cx = size / 2.0 + rng.uniform(-jitter, jitter)
    cy = size / 2.0 + rng.uniform(-jitter, jitter)
    xs = cx + radius * shape_r * np.cos(theta)
    ys = cy + radius * shape_r * np.sin(theta)

    # Work on a canvas just around the cell: all texture costs scale with the cell, not the image.
    pad = 3
    x0 = max(0, int(math.floor(xs.min())) - pad)
    y0 = max(0, int(math.floor(ys.min())) - pad)
    x1 = min(size, int(math.ceil(xs.max())) + pad + 1)
    y1 = min(size, int(math.ceil(ys.max())) + pad + 1)
    h, w = y1 - y0, x1 - x0
    shift = 4  # sub-pixel vertices: 1/16 px
    pts = np.round(np.stack([xs - x0, ys - y0], axis=1) * (1 << shift)).astype(np.int32)
    alpha = np.zeros((h, w), np.uint8)
    cv2.fillPoly(alpha, [pts], 255, lineType=cv2.LINE_AA, shift=shift)
    inside = (alpha >= 128).astype(np.uint8)
    dist = cv2.distanceTransform(inside, cv2.DIST_L2, 5)  # px from the edge, 0 outside

    # --- chromatin density (positive = darker), in "R units" along _DENSITY_DIR -------------
    ts = profile.texture_scale
    # Broad and mid-scale blotches, both classes (most of the real within-cell variation).
    density = 6.5 * _smooth_noise(rng, (h, w), 16.0 * k * ts)
    density += 4.5 * _smooth_noise(rng, (h, w), 6.0 * k * ts)
    # Mature cells: coarse, clumped chromatin = darker blotches (a rectified coarse field).
    coarse = _smooth_noise(rng, (h, w), 8.5 * k * ts)
    clumps = np.maximum(coarse - 0.4, 0.0) ** 1.2
    density += (1.0 - m) * 16.0 * clumps
    # Blasts: fine, even chromatin = low-contrast fine grain.
    fine = _smooth_noise(rng, (h, w), 2.0 * k * ts)
    density += (1.0 + 2.5 * m) * fine

    # Light speckles that real cells of both classes show.
    n_speck = int(rng.integers(3, 13))
    r_cell = math.sqrt(area / math.pi)
    ang = rng.uniform(0, 2 * np.pi, n_speck)
    rad = r_cell * np.sqrt(rng.uniform(0, 0.7, n_speck))
    centers = np.stack([cy - y0 + rad * np.sin(ang), cx - x0 + rad * np.cos(ang)], axis=1)
    density -= 9.0 * _blobs((h, w), centers, rng.uniform(3.0, 6.0, n_speck) * k, 2.0)

    # Nucleoli: 1-3 lighter round spots, mostly in blasts.
    p_nuc = float(np.clip((m - 0.25) / 0.55, 0.0, 1.0)) ** 1.5
    if rng.random() < p_nuc:
        n_nuc = int(rng.integers(1, 4))
        ang = rng.uniform(0, 2 * np.pi, n_nuc)
        rad = r_cell * np.sqrt(rng.uniform(0.0, 0.35, n_nuc))
        centers = np.stack([cy - y0 + rad * np.sin(ang), cx - x0 + rad * np.cos(ang)], axis=1)
        radii = rng.uniform(0.02, 0.034, n_nuc) * size
        density -= rng.uniform(22.0, 32.0) * _blobs((h, w), centers, radii, 3.0)

    density += 2.2 * rng.standard_normal((h, w), dtype=np.float32)  # sensor noise
    # Stain-normalised like the real data: texture moves colour around, not the cell's mean.
    interior = dist > 3.0 * k + 1.0
    if interior.any():
        density -= float(density[interior].mean())

    # --- colour -----------------------------------------------------------------------------
    stain = np.asarray(profile.stain, np.float32) + rng.normal(0.0, 2.5) * _STAIN_BRIGHT_DIR
    rgb = stain[None, None, :] - density[:, :, None] * _DENSITY_DIR[None, None, :]
    rim_d = np.maximum(dist - 0.5, 0.0)[:, :, None]
    rim = np.exp(-rim_d / (_RIM_DECAY * max(k, 0.15))[None, None, :]) * (_RIM_AMP * profile.rim_strength)
    rgb += rim
    if rng.random() < profile.halo_prob:
        halo_len = rng.uniform(6.0, 11.0) * max(k, 0.15)
        halo_amp = np.array([28.0, 40.0, 24.0], np.float32) * rng.uniform(0.6, 1.1)
        rgb += np.exp(-rim_d / halo_len) * halo_amp
    rgb = cv2.GaussianBlur(rgb, (0, 0), max(0.7 * k, 0.35))  # the real images are soft
    np.clip(rgb, (4.0, 1.0, 6.0), 255.0, out=rgb)  # inside stays non-black (threshold at 1)
    rgb *= (alpha.astype(np.float32) / 255.0)[:, :, None]

    img = np.zeros((size, size, 3), np.uint8)
    img[y0:y1, x0:x1] = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    # The margin above keeps the cell off the border; clearing the border makes it a guarantee.
    img[0, :] = img[-1, :] = 0
    img[:, 0] = img[:, -1] = 0
    return img


# --------------------------------------------------------------------------------------------
# The dataset
# --------------------------------------------------------------------------------------------


@dataclass
class SynthSummary:
    """What :func:`generate_dataset` wrote (or, from :func:`plan_dataset`, would write).

    Attributes:
        out: the output folder given.
        root: the dataset root ``OUT/C-NMC_Leukemia`` (what a scanner is pointed at).
        labels_csv: the preliminary-phase labels file.
        info_path: ``OUT/.synth_info.json``, the parameters and counts (a dot file, so dataset
            scanners skip it).
        seed: the seed used.
        size: the image side in pixels.
        counts: images per split (``fold_0``, ``fold_1``, ``fold_2``, ``prelim``, ``final``) and
            class (``all``, ``hem``).
        subjects: subject tokens per split and class.
        n_images: total number of images.
        seconds: wall time of the generation (0 for a plan).
    """

    out: Path
    root: Path
    labels_csv: Path
    info_path: Path
    seed: int
    size: int
    counts: dict[str, dict[str, int]]
    subjects: dict[str, dict[str, list[str]]]
    n_images: int
    seconds: float = 0.0

    def class_totals(self) -> dict[str, int]:
        """Images per class over all splits."""
        return {c: sum(v[c] for v in self.counts.values()) for c in ("all", "hem")}

    def to_dict(self) -> dict:
        """A JSON-friendly dict (paths as strings)."""
        d = dataclasses.asdict(self)
        for key in ("out", "root", "labels_csv", "info_path"):
            d[key] = str(d[key])
        return d


@dataclass
class _SubjectTask:
    """Everything a worker needs to render the cells of one subject."""

    profile: SubjectProfile
    split: str
    cell_seed: tuple[int, ...]
    size: int
    files: list[tuple[str, str]] = field(default_factory=list)  # (original name, dest path)


_SPLITS = ("fold_0", "fold_1", "fold_2", "prelim", "final")


def default_unseen_subjects(n_subjects: int) -> int:
    """Default number of unseen subjects of one class in the preliminary (and in the final) set:
    about one for every six training subjects, at least one."""
    return max(1, int(round(n_subjects / 6)))


def _check_count(value, name: str, flag: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        rule = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ConfigError(f"{name} ({flag}) must be {rule}, got {value!r}; pass e.g. {flag} 10.")
    return int(value)


def _check_size(size) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or not MIN_SIZE <= size <= MAX_SIZE:
        raise ConfigError(
            f"size (--size) must be an integer from {MIN_SIZE} to {MAX_SIZE} pixels, got {size!r}; "
            f"use e.g. --size 450 (the real images) or --size 128 (quick tests)."
        )
    return int(size)


def _split_counts(rng: np.random.Generator, n_subjects: int, total: int) -> list[int]:
    """Split ``total`` cells over subjects with 0.6x-1.4x variation, exact total, each >= 1."""
    if n_subjects == 0:
        return []
    w = rng.uniform(0.6, 1.4, n_subjects)
    raw = w / w.sum() * total
    counts = np.floor(raw).astype(int)
    order = np.argsort(-(raw - counts), kind="stable")
    counts[order[: total - counts.sum()]] += 1
    for i in np.flatnonzero(counts < 1):  # at least one cell each (taken from the largest)
        j = int(np.argmax(counts))
        counts[j] -= 1
        counts[i] += 1
    return [int(c) for c in counts]


def _cell_names(rng: np.random.Generator, subject: str, label: str, n: int) -> list[str]:
    """``UID_<subject>_<image>_<cell>_<label>.bmp`` names: 1-4 cells per microscope image."""
    names: list[str] = []
    image_no = int(rng.integers(1, 6))
    while len(names) < n:
        n_cells = min(n - len(names), 1 + int(rng.poisson(1.0)))
        for c in range(1, n_cells + 1):
            names.append(f"UID_{subject}_{image_no}_{c}_{label}.bmp")
        image_no += int(rng.integers(1, 5))
    return names


def _image_no(name: str) -> int:
    return int(name.split("_")[2])


def _render_subject(task: _SubjectTask) -> list[dict]:
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
                image_shift[no] = (rng.normal(0.0, 1.5) * _STAIN_BRIGHT_DIR
                                   + rng.normal(0.0, 1.0) * _STAIN_HUE_DIR)
            stain = np.asarray(task.profile.stain, np.float32) + image_shift[no]
            prof = dataclasses.replace(task.profile, stain=tuple(float(v) for v in stain))
            img = render_cell(rng, task.profile.label, prof, task.size)
            if not cv2.imwrite(dest, np.ascontiguousarray(img[:, :, ::-1])):  # OpenCV writes BGR
                raise OSError(f"could not write {dest}")
            records.append({"name": name, "path": dest, "split": task.split,
                            "label": task.profile.label, "subject": task.profile.subject})
        return records
    finally:
        cv2.setNumThreads(threads)


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"OUT {out} exists and is a file; the dataset needs a new or empty folder: "
                          "choose another path.")
    if out.is_dir() and any(out.iterdir()):
        raise ConfigError(f"OUT {out} exists and is not empty; the generator never writes into a "
                          f"non-empty folder: choose a new folder (e.g. {out}-2) or empty this one.")


def _check_args(subjects_all, subjects_hem, cells_per_subject, size, seed, prelim_subjects,
                final_subjects) -> tuple:
    subjects_all = _check_count(subjects_all, "subjects_all", "--subjects-all")
    subjects_hem = _check_count(subjects_hem, "subjects_hem", "--subjects-hem")
    cells_per_subject = _check_count(cells_per_subject, "cells_per_subject", "--cells-per-subject")
    size = _check_size(size)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed (--seed) must be a non-negative integer, got {seed!r}; pass e.g. --seed 0.")
    unseen = {}
    for key, given, flag in (("prelim", prelim_subjects, "--prelim-subjects"),
                             ("final", final_subjects, "--final-subjects")):
        if given is None:
            unseen[key] = (default_unseen_subjects(subjects_all), default_unseen_subjects(subjects_hem))
            continue
        try:
            a, hh = tuple(given)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}_subjects ({flag}) must be two counts (ALL, HEM), got {given!r}; "
                              f"pass e.g. {flag} 4 2.") from None
        unseen[key] = (_check_count(a, f"{key}_subjects (ALL)", flag, 0),
                       _check_count(hh, f"{key}_subjects (HEM)", flag, 0))
    return subjects_all, subjects_hem, cells_per_subject, size, int(seed), unseen


def _plan(out: Path, subjects_all: int, subjects_hem: int, cells_per_subject: int, size: int,
          seed: int, unseen: dict[str, tuple[int, int]]):
    """Who is in which set, file names and destinations; one seeded generator, no rendering."""
    plan_rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    root = out / ROOT_NAME
    tasks: list[_SubjectTask] = []
    subjects: dict[str, dict[str, list[str]]] = {s: {"all": [], "hem": []} for s in _SPLITS}
    for cls_code, (label, n_train) in enumerate((("all", subjects_all), ("hem", subjects_hem))):
        n_pre, n_fin = unseen["prelim"][cls_code], unseen["final"][cls_code]
        # Subject numbers are shuffled over the sets, so the number does not reveal the set.
        numbers = plan_rng.permutation(np.arange(1, n_train + n_pre + n_fin + 1))
        prefix = "" if label == "all" else "H"
        groups = {
            "train": numbers[:n_train],
            "prelim": numbers[n_train:n_train + n_pre],
            "final": numbers[n_train + n_pre:],
        }
        for group, nums in groups.items():
            counts = _split_counts(plan_rng, len(nums), len(nums) * cells_per_subject)
            for i, (num, n_cells) in enumerate(zip(nums, counts)):
                tok = f"{prefix}{int(num)}"
                # Training subjects are dealt round-robin in a random order: each subject sits in
                # exactly one fold and every fold gets both classes.
                split = f"fold_{i % 3}" if group == "train" else group
                prof_rng = np.random.default_rng(np.random.SeedSequence([seed, 2, cls_code, int(num)]))
                task = _SubjectTask(profile=make_subject_profile(prof_rng, tok, label), split=split,
                                    cell_seed=(seed, 3, cls_code, int(num)), size=size)
                folder = root / TRAIN_DIR / split / label
                task.files = [(n, str(folder / n)) for n in _cell_names(plan_rng, tok, label, n_cells)]
                tasks.append(task)
                subjects[split][label].append(tok)

    # Preliminary and final images are renamed N.bmp in a shuffled order, as in the real data.
    prelim_rows: list[tuple[str, str, int]] = []
    for split, folder in (("prelim", root / PRELIM_DIR), ("final", root / FINAL_DIR)):
        slots = [(ti, fi) for ti, t in enumerate(tasks) if t.split == split for fi in range(len(t.files))]
        order = plan_rng.permutation(len(slots))
        for pos, j in enumerate(order):
            ti, fi = slots[j]
            name = tasks[ti].files[fi][0]
            tasks[ti].files[fi] = (name, str(folder / f"{pos + 1}.bmp"))
            if split == "prelim":
                prelim_rows.append((name, f"{pos + 1}.bmp", 1 if tasks[ti].profile.label == "all" else 0))

    counts = {s: {"all": 0, "hem": 0} for s in _SPLITS}
    for t in tasks:
        counts[t.split][t.profile.label] += len(t.files)
    summary = SynthSummary(out=out, root=root, labels_csv=root / LABELS_CSV_DIR / LABELS_CSV_NAME,
                           info_path=out / INFO_NAME, seed=seed, size=size, counts=counts,
                           subjects=subjects, n_images=sum(len(t.files) for t in tasks))
    return tasks, prelim_rows, summary


def plan_dataset(
    out: str | os.PathLike = "OUT",
    subjects_all: int = DEFAULT_SUBJECTS_ALL,
    subjects_hem: int = DEFAULT_SUBJECTS_HEM,
    cells_per_subject: int = DEFAULT_CELLS_PER_SUBJECT,
    size: int = DEFAULT_SIZE,
    seed: int = DEFAULT_SEED,
    *,
    prelim_subjects: tuple[int, int] | None = None,
    final_subjects: tuple[int, int] | None = None,
) -> SynthSummary:
    """What :func:`generate_dataset` would write with these arguments, without writing anything.

    Cheap (no image is rendered): for a dashboard preview of the counts.

    Args:
        out, subjects_all, subjects_hem, cells_per_subject, size, seed, prelim_subjects,
        final_subjects: as for :func:`generate_dataset` (``out`` is not checked or created).

    Returns:
        The :class:`SynthSummary` that generation would return (``seconds`` = 0).

    Raises:
        ConfigError: for the same bad arguments as :func:`generate_dataset`.
    """
    args = _check_args(subjects_all, subjects_hem, cells_per_subject, size, seed, prelim_subjects,
                       final_subjects)
    return _plan(Path(out), *args)[2]


def generate_dataset(
    out: str | os.PathLike,
    subjects_all: int = DEFAULT_SUBJECTS_ALL,
    subjects_hem: int = DEFAULT_SUBJECTS_HEM,
    cells_per_subject: int = DEFAULT_CELLS_PER_SUBJECT,
    size: int = DEFAULT_SIZE,
    seed: int = DEFAULT_SEED,
    *,
    prelim_subjects: tuple[int, int] | None = None,
    final_subjects: tuple[int, int] | None = None,
    n_jobs: int | None = None,
    progress: ProgressFn | None = None,
) -> SynthSummary:
    """Write a synthetic C-NMC dataset in the Kaggle mirror layout (see the module docstring).

    Args:
        out: output folder; created if missing, must be empty if it exists.
        subjects_all: ALL subjects in the training folds (default 25).
        subjects_hem: HEM (healthy) subjects in the training folds (default 12).
        cells_per_subject: mean images per subject (default 40); each subject gets 0.6x-1.4x of
            it, and each class gets exactly ``subjects * cells_per_subject`` images per set.
        size: image side in pixels, 32-2048 (default 450, as the real images).
        seed: a non-negative integer; the same arguments give the same bytes (default 0).
        prelim_subjects: ``(n_all, n_hem)`` unseen subjects of the labelled preliminary set
            (default :func:`default_unseen_subjects` of each class count: 4 and 2 for the
            defaults); 0 is allowed.
        final_subjects: ``(n_all, n_hem)`` unseen subjects of the unlabelled final set (same default).
        n_jobs: worker processes (default: the CPU count, at most 8, and 1 for small jobs; 1
            renders in this process). The output does not depend on it.
        progress: called as ``progress(done, total)`` in images, at the start and after each subject.

    Returns:
        A :class:`SynthSummary` with the paths, counts and subjects per split and class.

    Raises:
        ConfigError: a count that is not a positive integer, a size out of range, a bad seed, or
            ``out`` existing and not empty (or being a file); nothing is written then.
        OSError: a file that cannot be written (disk full, permissions); what was written so far
            is left in ``out``.
    """
    import pandas as pd

    from .fileio import atomic_write_csv, atomic_write_json

    t0 = time.perf_counter()
    args = _check_args(subjects_all, subjects_hem, cells_per_subject, size, seed, prelim_subjects,
                       final_subjects)
    if n_jobs is not None:
        n_jobs = _check_count(n_jobs, "n_jobs", "--jobs")
    out = Path(out)
    _check_out(out)
    tasks, prelim_rows, summary = _plan(out, *args)

    root = summary.root
    for sub in ("fold_0", "fold_1", "fold_2"):
        for label in ("all", "hem"):
            (root / TRAIN_DIR / sub / label).mkdir(parents=True, exist_ok=True)
    (root / PRELIM_DIR).mkdir(parents=True, exist_ok=True)
    (root / FINAL_DIR).mkdir(parents=True, exist_ok=True)

    # Render: one task per subject. A subject's cells come from its own seeded generator, so the
    # bytes do not depend on the number of workers or the order in which they finish.
    total = summary.n_images
    if progress is not None:
        progress(0, total)
    if n_jobs is None:
        n_jobs = min(os.cpu_count() or 1, 8)
        if total * (size / _REF) ** 2 < 150:  # too little work to pay for starting workers
            n_jobs = 1
    if n_jobs == 1:
        results = map(_render_subject, tasks)
    else:
        from joblib import Parallel, delayed

        # Largest subjects first keeps the workers evenly busy at the end.
        order = sorted(range(len(tasks)), key=lambda i: -len(tasks[i].files))
        results = Parallel(n_jobs=n_jobs, return_as="generator_unordered")(
            delayed(_render_subject)(tasks[i]) for i in order
        )
    done = 0
    for recs in results:
        done += len(recs)
        if progress is not None:
            progress(done, total)

    prelim_rows.sort(key=lambda r: int(r[1][:-4]))
    atomic_write_csv(summary.labels_csv,
                     pd.DataFrame(prelim_rows, columns=["Patient_ID", "new_names", "labels"]))
    info = summary.to_dict()
    info.pop("seconds")  # keep the whole tree byte-identical for a seed
    info.update(generator="cnmc_core.synth", generator_version=GENERATOR_VERSION, synthetic=True,
                out=".", root=ROOT_NAME, labels_csv=str(summary.labels_csv.relative_to(out)),
                info_path=INFO_NAME, subjects_all=args[0], subjects_hem=args[1],
                cells_per_subject=args[2], prelim_subjects=list(args[5]["prelim"]),
                final_subjects=list(args[5]["final"]))
    atomic_write_json(summary.info_path, info)
    summary.seconds = time.perf_counter() - t0
    return summary
