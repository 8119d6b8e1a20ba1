"""Real and synthetic cells side by side: the picture that shows whether a person could mistake
the generator's cells for real ones (``python -m cnmc_core synth --figure OUT.png``).

Each row is one class and one source (real ALL, synthetic ALL, real HEM, synthetic HEM); each
cell is cropped to its cell and padded to a square, as the models see it, and drawn at the same
size. The real samples are C-NMC 2019 images (A. Gupta and R. Gupta, "ALL Challenge dataset of
ISBI 2019", The Cancer Imaging Archive, doi:10.7937/tcia.2019.dc64i46r, CC BY): the figure says
so in its caption line.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cnmc_core.contracts import CLASS_TITLES, IMAGE_EXTENSIONS
from cnmc_core.exceptions import ConfigError

__all__ = ["ATTRIBUTION", "side_by_side"]

ATTRIBUTION = ("real cells: C-NMC 2019 (Gupta & Gupta, TCIA, doi:10.7937/tcia.2019.dc64i46r, "
               "CC BY)")


def _pick(files: list[Path], n: int, seed: int) -> list[Path]:
    files = sorted(files)
    if len(files) < n:
        return files
    order = np.random.default_rng(seed).permutation(len(files))[:n]
    return [files[i] for i in sorted(order)]


def _class_files(root: Path, label: str) -> list[Path]:
    return [p for p in root.rglob(f"*_{label}.*") if p.suffix.lower() in IMAGE_EXTENSIONS]


def side_by_side(real_dir: str | os.PathLike, synthetic_root: str | os.PathLike, *,
                 per_row: int = 8, cell: int = 128, seed: int = 0) -> np.ndarray:
    """The figure as an RGB ``uint8`` array: four rows (real ALL, synthetic ALL, real HEM,
    synthetic HEM) of ``per_row`` cells each, drawn with seed ``seed``, labelled on the left.

    Raises:
        ConfigError: a folder without images of a class (the message names it).
    """
    import cv2

    from cnmc_core.data.summary import thumbnail

    real_dir, synthetic_root = Path(real_dir), Path(synthetic_root)
    rows = []
    label_w, gap = 190, 4
    for label in ("all", "hem"):
        for source, root in (("real", real_dir), ("synthetic", synthetic_root)):
            files = _pick(_class_files(root, label), per_row, seed)
            if not files:
                raise ConfigError(f"{root} holds no {label.upper()} image (files named "
                                  f"UID_..._{label}.*); give the real samples and a synthetic "
                                  "dataset made by `python -m cnmc_core synth OUT`.")
            row = np.full((cell, label_w + per_row * (cell + gap), 3), 255, np.uint8)
            text = f"{source} {CLASS_TITLES[label]}"
            cv2.putText(row, text, (6, cell // 2 + 6), cv2.FONT_HERSHEY_SIMPLEX, 0.55,
                        (20, 20, 20), 1, cv2.LINE_AA)
            for i, f in enumerate(files):
                x = label_w + i * (cell + gap)
                row[:, x:x + cell] = thumbnail(f, cell, crop=True)
            rows.append(row)
    caption = np.full((28, rows[0].shape[1], 3), 255, np.uint8)
    cv2.putText(caption, ATTRIBUTION, (6, 19), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (60, 60, 60), 1,
                cv2.LINE_AA)
    spacer = np.full((gap, rows[0].shape[1], 3), 255, np.uint8)
    return np.vstack([x for r in rows for x in (r, spacer)] + [caption])
