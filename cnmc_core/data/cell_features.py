"""Eight hand features of one segmented cell, and the split of the real samples used to judge them.

The features are the yardstick of the synthetic generator's realism (the ``synth --report`` verb,
``benchmarks/bench_synth.py`` and the tests all use these, so they measure the same thing). Each
is computed on the cell as C-NMC distributes it: an RGB image with the cell on pure black; the
cell mask is ``grey > 0`` (the paper's threshold), cropped to its bounding box.

=================  ===========================================================================
``area``           cell pixels, in pixels of a 450 px image (scaled by ``(450 / side)^2``)
``circularity``    ``4 pi A / P^2`` of the largest outer contour (1 = disc; clefts lower it)
``solidity``       contour area over convex-hull area (notches and lobes lower it)
``grey_sd``        standard deviation of the grey level over the interior (the mask more than
                   10 px at 450 px from the edge, so the bright segmentation halo is left out)
``bright_frac``    fraction of the interior brighter than its mean + 2 sd, after a 1 px blur:
                   light spots such as nucleoli
``lap_sd``         standard deviation of the grey Laplacian over the interior: fine grain
``mean_r``         mean red over the mask
``mean_b``         mean blue over the mask
=================  ===========================================================================

The real samples (``../shared/real-samples``: 20 ALL from 18 subjects, 20 HEM from 15) are split
into two halves by subject with :func:`real_sample_halves` (rule: :func:`split_subjects`, per
class; deterministic, never dependent on file order), so a figure can say whether it was measured on
the half the generator was calibrated on (``fit``) or on the other one (``held_out``).
"""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path

import numpy as np

from cnmc_core.exceptions import DataError

__all__ = [
    "FEATURE_NAMES",
    "FIT_HALF",
    "HELD_OUT_HALF",
    "cell_features",
    "features_of_files",
    "split_subjects",
    "real_sample_halves",
]

FEATURE_NAMES = ("area", "circularity", "solidity", "grey_sd", "bright_frac", "lap_sd",
                 "mean_r", "mean_b")
FIT_HALF, HELD_OUT_HALF = "fit", "held_out"
_REFERENCE = 450.0


def cell_features(image: np.ndarray) -> dict[str, float]:
    """The eight hand features of one cell image (see the module docstring).

    Args:
        image: ``(H, W, 3)`` RGB ``uint8``, one cell on black.

    Returns:
        ``{name: value}`` for every name of :data:`FEATURE_NAMES`.

    Raises:
        DataError: not an RGB image, or no pixel above 0 (no cell).
    """
    import cv2

    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise DataError(f"cell_features expects an (H, W, 3) uint8 RGB image; got shape "
                        f"{image.shape} {image.dtype}. Read it with cnmc_core.data.read_image.")
    grey_full = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    rows = np.flatnonzero((grey_full > 0).any(axis=1))
    cols = np.flatnonzero((grey_full > 0).any(axis=0))
    if rows.size == 0:
        raise DataError("cell_features: the image is all black (no pixel above 0): there is no cell.")
    k = image.shape[1] / _REFERENCE
    # Crop with a 2 px black frame, so contours and the distance to the edge are not clipped.
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    rgb = np.pad(image[y0:y1, x0:x1], ((2, 2), (2, 2), (0, 0)))
    grey = np.pad(grey_full[y0:y1, x0:x1], 2)
    mask = (grey > 0).astype(np.uint8)

    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    contour = max(contours, key=cv2.contourArea)
    c_area = float(cv2.contourArea(contour))
    perimeter = float(cv2.arcLength(contour, True))
    hull_area = float(cv2.contourArea(cv2.convexHull(contour)))

    inside = mask > 0
    g = grey.astype(np.float32)
    dist = cv2.distanceTransform(mask, cv2.DIST_L2, 5)
    interior = dist > max(2.0, 10.0 * k)
    if interior.sum() < 10:  # a tiny image: fall back to the whole mask
        interior = inside
    blur = cv2.GaussianBlur(g, (0, 0), max(1.0 * k, 0.5))
    gi = blur[interior]
    bright = float((gi > gi.mean() + 2.0 * gi.std()).mean()) if gi.std() > 0 else 0.0
    lap = cv2.Laplacian(g, cv2.CV_32F, ksize=3)
    px = rgb[inside].astype(np.float64)
    return {
        "area": float(inside.sum()) / (k * k),
        "circularity": 4.0 * math.pi * c_area / perimeter**2 if perimeter > 0 else 0.0,
        "solidity": c_area / hull_area if hull_area > 0 else 0.0,
        "grey_sd": float(g[interior].std()),
        "bright_frac": bright,
        "lap_sd": float(lap[interior].std()),
        "mean_r": float(px[:, 0].mean()),
        "mean_b": float(px[:, 2].mean()),
    }


def features_of_files(paths: list[str | os.PathLike]) -> np.ndarray:
    """The features of several image files, one row each, columns in :data:`FEATURE_NAMES` order.

    Raises:
        DataError: a file that cannot be read, or an image without a cell.
    """
    from cnmc_core.data.images import read_image

    rows = []
    for path in paths:
        feats = cell_features(read_image(path))
        rows.append([feats[n] for n in FEATURE_NAMES])
    return np.array(rows, np.float64).reshape(len(rows), len(FEATURE_NAMES))


def split_subjects(images_per_subject: dict[str, int]) -> dict[str, str]:
    """Deal the subjects of one class into two halves of about equal image counts.

    The rule: subjects in the order of ``sha256(subject upper-cased)``; each goes to the half
    with fewer images so far (``fit`` on a tie). It depends on the subject tokens and their image
    counts only, never on file order, and a subject's images always stay together.

    Args:
        images_per_subject: images per subject token (one class).

    Returns:
        ``{subject: "fit" | "held_out"}``.
    """
    def key(subject: str) -> str:
        return hashlib.sha256(subject.strip().upper().encode()).hexdigest()

    counts = {FIT_HALF: 0, HELD_OUT_HALF: 0}
    out: dict[str, str] = {}
    for subject in sorted(images_per_subject, key=key):
        half = FIT_HALF if counts[FIT_HALF] <= counts[HELD_OUT_HALF] else HELD_OUT_HALF
        out[subject] = half
        counts[half] += images_per_subject[subject]
    return out


def real_sample_halves(folder: str | os.PathLike) -> dict[str, list[tuple[Path, int, str]]]:
    """The real samples of ``folder/{all,hem}/*.bmp`` split by subject into two halves.

    Args:
        folder: the real-samples folder (``../shared/real-samples``).

    Returns:
        ``{"fit": [...], "held_out": [...]}``, each a sorted list of ``(path, y, subject)``.

    Raises:
        DataError: the folder lacks ``all/`` or ``hem/``, or a file name is not a C-NMC name.
    """
    from cnmc_core.data.names import parse_image_name

    folder = Path(folder)
    halves: dict[str, list[tuple[Path, int, str]]] = {FIT_HALF: [], HELD_OUT_HALF: []}
    for label, y in (("all", 1), ("hem", 0)):
        sub = folder / label
        if not sub.is_dir():
            raise DataError(f"real samples folder {folder} has no {label}/ subfolder; point it at "
                            "the folder that holds all/ and hem/ (../shared/real-samples).")
        found: list[tuple[Path, str]] = []
        for path in sorted(sub.glob("*.bmp")):
            parsed = parse_image_name(path.name)
            if parsed is None:
                raise DataError(f"{path.name} in {sub} is not a C-NMC file name "
                                "(UID_<subject>_<image>_<cell>_<all|hem>.bmp); remove or rename it.")
            found.append((path, parsed["subject"]))
        per_subject: dict[str, int] = {}
        for _, subject in found:
            per_subject[subject] = per_subject.get(subject, 0) + 1
        half_of = split_subjects(per_subject)
        for path, subject in found:
            halves[half_of[subject]].append((path, y, subject))
    return halves
