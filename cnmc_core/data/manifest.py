"""The manifest: dataset discovery: find C-NMC images as distributed and describe them in a manifest.

Three layouts are recognised, searched recursively because the nesting varies between copies:

* the Kaggle mirror: ``C-NMC_Leukemia/training_data/fold_{0,1,2}/{all,hem}/``,
  ``validation_data/C-NMC_test_prelim_phase_data/{N}.bmp`` with
  ``validation_data/C-NMC_test_prelim_phase_data_labels.csv``, and
  ``testing_data/C-NMC_test_final_phase_data/{N}.bmp`` (unlabelled);
* the TCIA package: ``C-NMC_training_data/fold_*``, ``C-NMC_test_prelim_phase_data/[...]``;
* a plain ``ROOT/{all,hem}/*`` folder.

The manifest has one row per usable image with the columns of :data:`MANIFEST_COLUMNS`. Files
that cannot be used are never dropped silently: they are listed in :attr:`ScanResult.skipped`
with the reason, and counted in the summary; so are folders that cannot be read and entries that
are not regular files (a FIFO named ``x.bmp`` is listed, never opened: see
:mod:`cnmc_core.data.files`). File names and the labels CSV are read by :mod:`cnmc_core.data.names`.
"""

from __future__ import annotations

import hashlib
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd

from cnmc_core.contracts import IMAGE_EXTENSIONS, LABEL_TO_Y, MANIFEST_COLUMNS
from cnmc_core.data.files import walk_tree
from cnmc_core.data.images import ImageRefused, read_image
from cnmc_core.data.names import find_labels_csv, parse_image_name, read_prelim_labels
from cnmc_core.exceptions import DataError
from cnmc_core.workspace.fileio import atomic_write_csv

__all__ = [
    "ScanResult",
    "scan_dataset",
    "summarize_manifest",
    "save_manifest",
    "load_manifest",
    "manifest_fingerprint",
    "resolve_manifest",
]

_FOLD_RE = re.compile(r"^fold_([0-2])$", re.IGNORECASE)
_NUMBERED_RE = re.compile(r"^\d+$")


@dataclass
class ScanResult:
    """What :func:`scan_dataset` found.

    Attributes:
        root: the folder that was scanned.
        manifest: one row per usable image (columns :data:`MANIFEST_COLUMNS`).
        skipped: one row per file that was not used, with ``path`` and ``reason``.
        labels_csv: the preliminary-phase labels file that was read, if any.
        notes: remarks for the summary (e.g. labels listed in the CSV but not found on disk).
    """

    root: Path
    manifest: pd.DataFrame
    skipped: pd.DataFrame
    labels_csv: Path | None = None
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """A summary a person can read: images per source and class, subjects, skipped files."""
        lines = [f"Dataset {self.root}"]
        lines.append(summarize_manifest(self.manifest))
        if self.labels_csv is not None:
            lines.append(f"Preliminary-phase labels read from {self.labels_csv}")
        lines.extend(self.notes)
        if len(self.skipped):
            lines.append(f"Skipped {len(self.skipped)} file(s):")
            for reason, group in self.skipped.groupby("reason", sort=True):
                lines.append(f"  {len(group)} x {reason}")
                for path in group["path"].head(10):
                    lines.append(f"      {path}")
                if len(group) > 10:
                    lines.append(f"      ... and {len(group) - 10} more")
        else:
            lines.append("Skipped 0 files.")
        return "\n".join(lines)


def _classify_path(rel_parts: tuple[str, ...]) -> tuple[str, str | None]:
    """Source and folder label of a file from its folder names (relative to the root)."""
    source, folder_label = "unknown", None
    for part in rel_parts[:-1]:
        low = part.lower()
        if _FOLD_RE.match(low):
            source = low
        elif "prelim_phase" in low:
            source = "prelim"
        elif "final_phase" in low:
            source = "final"
        if low in LABEL_TO_Y:
            folder_label = low
    return source, folder_label


def _check_image(path: Path) -> tuple[int, int, str | None]:
    """Decode ``path``; returns (width, height, reason-or-None)."""
    try:
        image = read_image(path)
    except ImageRefused as exc:
        return 0, 0, exc.reason
    if not image.any():
        return image.shape[1], image.shape[0], "all-black image (no cell)"
    return image.shape[1], image.shape[0], None


def scan_dataset(
    root: str | os.PathLike,
    labels_csv: str | os.PathLike | None = None,
    verify: bool = True,
    n_threads: int = 4,
    progress: Callable[[int, int], None] | None = None,
) -> ScanResult:
    """Find every image under ``root`` and build the manifest.

    Args:
        root: the dataset folder (any of the three layouts; searched recursively).
        labels_csv: the preliminary-phase labels CSV; by default the one found under ``root``.
        verify: decode every image to catch corrupt, empty or all-black files (default True).
        n_threads: threads that decode images (OpenCV releases the GIL).
        progress: optional ``progress(done, total)`` callback while images are verified.

    Returns:
        A :class:`ScanResult`.

    Raises:
        DataError: missing root, no image found, a bad labels CSV, or an image id found twice.
    """
    root = Path(root).expanduser()
    if not root.exists():
        raise DataError(f"Dataset root {root} does not exist; give the folder that holds the images.")
    if not root.is_dir():
        raise DataError(f"Dataset root {root} is not a folder; give the folder that holds the images.")
    listing = walk_tree(root)
    files = [path for path, _ in listing.files]
    csv_path = Path(labels_csv) if labels_csv is not None else find_labels_csv(root, files)
    prelim = read_prelim_labels(csv_path) if csv_path is not None else None
    prelim_by_name = (
        {row.new_name: row for row in prelim.itertuples(index=False)} if prelim is not None else {}
    )

    rows, skipped = [], list(listing.skipped)
    for path in files:
        rel = path.relative_to(root).parts
        suffix = path.suffix.lower()
        if suffix not in IMAGE_EXTENSIONS:
            if path != csv_path and not path.name.startswith("."):
                skipped.append({"path": str(path), "reason": f"not an image file ({suffix or 'no extension'})"})
            continue
        source, folder_label = _classify_path(rel)
        parsed = parse_image_name(path.name)
        row = {"path": str(path), "source": source}
        if parsed is not None:
            if folder_label is not None and folder_label != parsed["label"]:
                skipped.append({
                    "path": str(path),
                    "reason": f"name says {parsed['label']} but folder says {folder_label}",
                })
                continue
            row.update(image_id=path.name, label=parsed["label"], subject=parsed["subject"])
        elif source == "prelim" and _NUMBERED_RE.match(path.stem):
            info = prelim_by_name.get(path.name)
            if info is None:
                skipped.append({
                    "path": str(path),
                    "reason": "preliminary-phase image without a row in the labels CSV"
                    + ("" if prelim is not None else " (no labels CSV found)"),
                })
                continue
            row.update(image_id=info.image_id, label=info.label, subject=info.subject)
        elif source == "final":
            row.update(image_id=f"final_{path.name}", label="", subject="")
        elif folder_label is not None:
            # A plain {all,hem} folder with names that are not C-NMC's: the label comes from the
            # folder, the subject is unknown (the subject split will refuse such images).
            row.update(image_id=path.name, label=folder_label, subject="")
        else:
            skipped.append({
                "path": str(path),
                "reason": "no label: not in an all/hem folder, not a C-NMC file name, "
                "not a preliminary or final-phase image",
            })
            continue
        rows.append(row)

    if not rows:
        looked = (
            "Kaggle mirror (training_data/fold_*/{all,hem}, validation_data/"
            "C-NMC_test_prelim_phase_data, testing_data/C-NMC_test_final_phase_data), TCIA "
            "package (C-NMC_training_data/fold_*, C-NMC_test_prelim_phase_data) and a plain "
            "ROOT/{all,hem}/ folder"
        )
        extra = (f" ({len(skipped)} other file(s) skipped, e.g. {skipped[0]['path']}: "
                 f"{skipped[0]['reason']})" if skipped else "")
        raise DataError(
            f"No C-NMC image found under {root}{extra}. Looked recursively for the {looked}, "
            f"with extensions {', '.join(IMAGE_EXTENSIONS)}. Point ROOT at the dataset folder."
        )

    manifest = pd.DataFrame(rows)
    manifest["width"] = 0
    manifest["height"] = 0
    if verify:
        bad_idx = []
        total = len(manifest)
        done = 0
        with ThreadPoolExecutor(max_workers=max(1, n_threads)) as pool:
            for idx, (w, h, reason) in enumerate(pool.map(_check_image, map(Path, manifest["path"]))):
                manifest.iat[idx, manifest.columns.get_loc("width")] = w
                manifest.iat[idx, manifest.columns.get_loc("height")] = h
                if reason is not None:
                    bad_idx.append(idx)
                    skipped.append({"path": manifest.at[idx, "path"], "reason": reason})
                done += 1
                if progress is not None and (done % 50 == 0 or done == total):
                    progress(done, total)
        manifest = manifest.drop(index=bad_idx).reset_index(drop=True)

    dup = manifest[manifest["image_id"].duplicated(keep=False)]
    if len(dup):
        first = dup["image_id"].iloc[0]
        paths = dup.loc[dup["image_id"] == first, "path"].tolist()
        raise DataError(
            f"Image id {first!r} occurs {len(paths)} times under {root}: {paths} "
            f"({dup['image_id'].nunique()} duplicated id(s) in all). Each image must appear once: "
            "remove the extra copies, or scan a narrower folder."
        )

    manifest["y"] = manifest["label"].map(LABEL_TO_Y).fillna(-1).astype(int)
    manifest = manifest[MANIFEST_COLUMNS].sort_values(["source", "image_id"], kind="stable")
    manifest = manifest.reset_index(drop=True)
    skipped_frame = pd.DataFrame(skipped, columns=["path", "reason"])

    notes = []
    if prelim is not None:
        found = set(manifest.loc[manifest["source"] == "prelim", "image_id"])
        missing = len(set(prelim["image_id"]) - found)
        if missing:
            notes.append(f"Labels CSV lists {missing} image(s) not found on disk (not an error).")
        bad_rows = prelim.attrs.get("bad_rows", [])
        if bad_rows:
            notes.append(f"Labels CSV: {len(bad_rows)} row(s) ignored: " + "; ".join(bad_rows[:5]))
    return ScanResult(root=root, manifest=manifest, skipped=skipped_frame,
                      labels_csv=csv_path, notes=notes)


def summarize_manifest(manifest: pd.DataFrame) -> str:
    """Images per source and class, and subjects per class, as aligned text."""
    table = (
        manifest.assign(label=manifest["label"].replace("", "unlabelled"))
        .pivot_table(index="source", columns="label", values="image_id", aggfunc="count", fill_value=0)
    )
    table["total"] = table.sum(axis=1)
    table.loc["total"] = table.sum(axis=0)
    labelled = manifest[manifest["y"] >= 0]
    with_subject = labelled[labelled["subject"] != ""]
    subjects = with_subject.groupby("label")["subject"].nunique().to_dict()
    lines = [
        f"{len(manifest)} images ({len(labelled)} labelled)",
        table.to_string(),
        "subjects: " + ", ".join(f"{k} {v}" for k, v in sorted(subjects.items()))
        + (f"; {int((labelled['subject'] == '').sum())} labelled image(s) without a subject"
           if (labelled["subject"] == "").any() else ""),
    ]
    return "\n".join(lines)


def save_manifest(manifest: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write the manifest CSV atomically."""
    return atomic_write_csv(path, manifest)


def load_manifest(path: str | os.PathLike) -> pd.DataFrame:
    """Read a manifest CSV written by :func:`save_manifest`, checking its columns.

    Raises:
        DataError: missing file or columns, or duplicate image ids.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"Manifest {path} does not exist; create it with `python -m cnmc_core scan ROOT --out {path}`.")
    frame = pd.read_csv(path, dtype={"subject": str, "label": str, "image_id": str, "path": str},
                        keep_default_na=False)
    required = ["image_id", "path", "label", "y", "subject", "source"]
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise DataError(f"Manifest {path} lacks column(s) {missing}; recreate it with `python -m cnmc_core scan`.")
    dup = frame["image_id"][frame["image_id"].duplicated()]
    if len(dup):
        raise DataError(f"Manifest {path} lists image id(s) {dup.head(5).tolist()} twice; recreate it with `scan`.")
    frame["y"] = frame["y"].astype(int)
    return frame


def manifest_fingerprint(manifest: pd.DataFrame) -> str:
    """A short stable hash of which images, labels and subjects a manifest holds.

    Paths are left out so that the same dataset at another location has the same fingerprint.
    """
    cols = manifest[["image_id", "y", "subject", "source"]].sort_values("image_id")
    digest = hashlib.sha256(cols.to_csv(index=False).encode()).hexdigest()
    return digest[:16]


def resolve_manifest(source: str | os.PathLike, verify: bool = True,
                     progress: Callable[[int, int], None] | None = None) -> pd.DataFrame:
    """A manifest from a dataset folder (scanned) or a manifest CSV (read).

    Raises:
        DataError: the path does not exist, or the scan or read fails.
    """
    source = Path(source).expanduser()
    if source.is_file() and source.suffix.lower() == ".csv":
        return load_manifest(source)
    return scan_dataset(source, verify=verify, progress=progress).manifest
