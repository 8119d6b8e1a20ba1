"""C-NMC names: the file-name pattern that carries subject and label, and the preliminary-phase
labels CSV that gives renamed files (``N.bmp``) their original name back.

``UID_<subject>_<image>_<cell>_<all|hem>.bmp``: the subject is the second token, upper-cased
(``h3`` is ``H3``); the ``H`` of healthy subjects is kept, so ``3`` and ``H3`` are different
people. The CSV (``C-NMC_test_prelim_phase_data_labels.csv``) has the columns
:data:`PRELIM_CSV_COLUMNS`: the original name, the new name and the label (1 ALL, 0 HEM).
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import pandas as pd

from cnmc_core.contracts import LABEL_TO_Y
from cnmc_core.data.files import read_regular_file
from cnmc_core.exceptions import DataError

__all__ = ["PRELIM_CSV_COLUMNS", "parse_image_name", "read_prelim_labels", "find_labels_csv"]

PRELIM_CSV_COLUMNS = ("Patient_ID", "new_names", "labels")
_NAME_RE = re.compile(r"^UID_([A-Za-z]*\d+)_(\d+)_(\d+)_(all|hem)$", re.IGNORECASE)


def parse_image_name(name: str) -> dict | None:
    """Parse a C-NMC file name ``UID_<subject>_<image>_<cell>_<all|hem>.<ext>``.

    The subject is the second token, upper-cased (``h3`` is ``H3``); the ``H`` of healthy
    subjects is kept, so ``3`` and ``H3`` are different people.

    Returns:
        ``{"subject", "image_no", "cell_no", "label"}`` or ``None`` when the name does not follow
        the pattern.
    """
    stem = Path(name).stem
    match = _NAME_RE.match(stem)
    if not match:
        return None
    subject, image_no, cell_no, label = match.groups()
    return {
        "subject": subject.upper(),
        "image_no": int(image_no),
        "cell_no": int(cell_no),
        "label": label.lower(),
    }


def read_prelim_labels(path: str | os.PathLike) -> pd.DataFrame:
    """Read the preliminary-phase labels CSV (``Patient_ID,new_names,labels``).

    Returns:
        A frame with columns ``new_name`` (``N.bmp``), ``image_id`` (the original file name),
        ``label`` (``all``/``hem``), ``y`` and ``subject``; rows whose label is not 0 or 1 or
        whose original name cannot be parsed are dropped and reported in ``attrs["bad_rows"]``.

    Raises:
        DataError: an unreadable file (or not a regular file), missing columns, or a file name
            listed twice.
    """
    path = Path(path)
    try:
        # read through read_regular_file: a FIFO given as the CSV is refused, not waited on
        frame = pd.read_csv(io.BytesIO(read_regular_file(path)), dtype=str, keep_default_na=False)
    except Exception as exc:  # pandas raises several types for unreadable CSVs
        raise DataError(f"Cannot read labels CSV {path}: {exc}.") from exc
    frame.columns = [c.strip() for c in frame.columns]
    missing = [c for c in PRELIM_CSV_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(
            f"Labels CSV {path} lacks column(s) {missing}; expected the columns "
            f"{list(PRELIM_CSV_COLUMNS)} of C-NMC_test_prelim_phase_data_labels.csv "
            f"(found {list(frame.columns)})."
        )
    for column in ("new_names", "Patient_ID"):
        values = frame[column].str.strip()
        dup = values[values.duplicated(keep=False)]
        if len(dup):
            raise DataError(
                f"Labels CSV {path} lists {column} {sorted(set(dup))[:5]} more than once; "
                "each file must appear once: fix or re-download the CSV."
            )
    rows, bad = [], []
    for rownum, rec in enumerate(frame.itertuples(index=False), start=2):
        original = rec.Patient_ID.strip()
        label_code = rec.labels.strip()
        parsed = parse_image_name(original)
        if label_code not in ("0", "1"):
            bad.append(f"line {rownum}: label {label_code!r} is not 0 (HEM) or 1 (ALL)")
            continue
        if parsed is None:
            bad.append(f"line {rownum}: Patient_ID {original!r} is not a C-NMC file name")
            continue
        y = int(label_code)
        if LABEL_TO_Y[parsed["label"]] != y:
            bad.append(
                f"line {rownum}: Patient_ID {original!r} says {parsed['label']} but label is {y}"
            )
            continue
        rows.append(
            {
                "new_name": rec.new_names.strip(),
                "image_id": original,
                "label": parsed["label"],
                "y": y,
                "subject": parsed["subject"],
            }
        )
    result = pd.DataFrame(rows, columns=["new_name", "image_id", "label", "y", "subject"])
    result.attrs["bad_rows"] = bad
    return result


def find_labels_csv(root: Path, files: list[Path]) -> Path | None:
    """The preliminary-phase labels CSV among ``files`` (a ``.csv`` whose name holds "prelim"
    and "label"), or None.

    Raises:
        DataError: more than one such CSV under ``root``.
    """
    candidates = [
        f for f in files
        if f.suffix.lower() == ".csv" and "prelim" in f.name.lower() and "label" in f.name.lower()
    ]
    if len(candidates) > 1:
        raise DataError(
            f"Found {len(candidates)} preliminary-phase labels CSVs under {root}: "
            f"{[str(c) for c in candidates]}; keep one copy."
        )
    return candidates[0] if candidates else None
