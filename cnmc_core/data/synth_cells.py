"""One synthetic cell: the signature of a subject and the rendering of its cells (see
:mod:`cnmc_core.data.synth` for the dataset they make up and what the cells look like).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

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
STAIN_BRIGHT_DIR = np.array([0.66, 0.36, 0.60], np.float32)
_STAIN_HUE_DIR = np.array([0.55, 0.0, -0.55], np.float32)
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
    stain = _BASE_RGB + bright * STAIN_BRIGHT_DIR + hue * _STAIN_HUE_DIR
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
    size = check_render_size(size)
    k = size / REFERENCE_SIZE

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
    stain = np.asarray(profile.stain, np.float32) + rng.normal(0.0, 2.5) * STAIN_BRIGHT_DIR
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
                image_shift[no] = (rng.normal(0.0, 1.5) * STAIN_BRIGHT_DIR
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
