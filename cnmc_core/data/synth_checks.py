"""Argument checks of the synthetic generator (:mod:`cnmc_core.data.synth`), done before anything
is written: each message names the argument and its CLI flag, the rule, the value and the fix.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cnmc_core.data.synth_cells import check_render_size
from cnmc_core.exceptions import ConfigError

__all__ = [
    "IMAGE_FORMATS",
    "DEFAULT_FORMAT",
    "default_unseen_subjects",
    "check_count",
    "check_out",
    "check_image_format",
    "check_synth_args",
]

IMAGE_FORMATS = ("png", "bmp")
DEFAULT_FORMAT = "png"


def default_unseen_subjects(n_subjects: int) -> int:
    """Default number of unseen subjects of one class in the preliminary (and in the final) set:
    about one for every six training subjects, at least one."""
    return max(1, int(round(n_subjects / 6)))


def check_count(value, name: str, flag: str, minimum: int = 1) -> int:
    """``value`` as an int if it is an integer >= ``minimum``; else a ConfigError naming ``flag``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        rule = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ConfigError(f"{name} ({flag}) must be {rule}, got {value!r}; pass e.g. {flag} 10.")
    return int(value)


def check_out(out: Path) -> None:
    """Refuse an OUT that is a file or a non-empty folder (the generator never mixes datasets)."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"OUT {out} exists and is a file; the dataset needs a new or empty folder: "
                          "choose another path.")
    if out.is_dir() and any(out.iterdir()):
        raise ConfigError(f"OUT {out} exists and is not empty; the generator never writes into a "
                          f"non-empty folder: choose a new folder (e.g. {out}-2) or empty this one.")


def check_image_format(image_format) -> str:
    """``"png"`` or ``"bmp"`` (any case, a leading dot allowed); else a ConfigError."""
    fmt = str(image_format).strip().lower().lstrip(".") if isinstance(image_format, str) else None
    if fmt not in IMAGE_FORMATS:
        raise ConfigError(f"image_format (--format) must be one of {list(IMAGE_FORMATS)}, got "
                          f"{image_format!r}; pass --format png (the default: lossless, about 6x "
                          "smaller) or --format bmp (24-bit BMP, byte-faithful to C-NMC).")
    return fmt


def check_synth_args(subjects_all, subjects_hem, cells_per_subject, size, seed, prelim_subjects,
                     final_subjects, image_format=DEFAULT_FORMAT) -> tuple:
    """Check every generator argument; returns ``(subjects_all, subjects_hem, cells_per_subject,
    size, seed, unseen, image_format)`` with ``unseen = {"prelim": (a, h), "final": (a, h)}``.

    Raises:
        ConfigError: the first bad argument, named with its flag and a fix.
    """
    subjects_all = check_count(subjects_all, "subjects_all", "--subjects-all")
    subjects_hem = check_count(subjects_hem, "subjects_hem", "--subjects-hem")
    cells_per_subject = check_count(cells_per_subject, "cells_per_subject", "--cells-per-subject")
    size = check_render_size(size)
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
        unseen[key] = (check_count(a, f"{key}_subjects (ALL)", flag, 0),
                       check_count(hh, f"{key}_subjects (HEM)", flag, 0))
    fmt = check_image_format(image_format)
    return subjects_all, subjects_hem, cells_per_subject, size, int(seed), unseen, fmt
