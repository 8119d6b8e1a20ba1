"""What the Data page shows, computed here: a scan cached on disk, counts by source, class and
subject, a split preview with its subject-leak check, a sample gallery and the preprocessing
steps of one image.

The scan of a dataset folder is stored under ``artifacts/scans/<key>/`` (manifest, skipped
files, notes) with a signature of the folder's files (paths, sizes, mtimes), so a browser
reload or an app restart does not rescan, and a changed folder is rescanned.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from cnmc_core.contracts import CLASS_TITLES, IMAGE_EXTENSIONS
from cnmc_core.data.files import walk_tree
from cnmc_core.data.manifest import ScanResult, load_manifest, scan_dataset
from cnmc_core.exceptions import DataError
from cnmc_core.workspace.fileio import atomic_write_csv, atomic_write_json, read_json
from cnmc_core.workspace.paths import artifacts_dir

__all__ = [
    "CLASS_LABELS",
    "SCANS_DIR",
    "tree_signature",
    "scan_is_stored",
    "scan_cached",
    "class_counts",
    "subject_counts",
    "split_summary",
    "sample_images",
    "preprocessing_steps",
    "thumbnail",
]

#: Column and legend names of the classes (``label`` values), unlabelled images included.
CLASS_LABELS = {"all": CLASS_TITLES["all"], "hem": CLASS_TITLES["hem"], "": "unlabelled"}
SCANS_DIR = "scans"


def tree_signature(path: str | os.PathLike) -> str:
    """A hash of what a scan of ``path`` would walk, or of the file itself.

    Every regular file the scan sees (relative path, size, mtime) and every entry it lists as
    skipped by the walk (a folder that cannot be read, a FIFO...), from the same walk
    (:func:`~cnmc_core.data.files.walk_tree`): a folder that becomes readable changes the
    signature, so the stored scan is not reused. Only ``stat`` calls: about 0.1 s for the
    15,000 files of C-NMC.

    Raises:
        DataError: the path does not exist.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"{path} does not exist; give the folder that holds the images (or a manifest CSV).")
    digest = hashlib.sha1()
    if path.is_file():
        st = path.stat()
        digest.update(f"{path.name}|{st.st_size}|{st.st_mtime_ns}".encode())
        return digest.hexdigest()[:16]
    listing = walk_tree(path)
    entries = [f"{os.path.relpath(full, path)}|{st.st_size}|{st.st_mtime_ns}"
               for full, st in listing.files]
    entries += [f"{os.path.relpath(row['path'], path)}|skipped|{row['reason']}"
                for row in listing.skipped]
    for entry in sorted(entries):
        digest.update(entry.encode())
        digest.update(b"\n")
    return digest.hexdigest()[:16]


def _scan_folder(path: Path, root) -> Path:
    key = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:16]
    return artifacts_dir(root) / SCANS_DIR / key


def scan_is_stored(path: str | os.PathLike, root: str | os.PathLike | None = None,
                   signature: str | None = None) -> bool:
    """Whether :func:`scan_cached` would answer from the stored scan (a manifest CSV is always
    quick to read, so it counts as stored)."""
    path = Path(path).expanduser()
    if path.is_file():
        return True
    info_file = _scan_folder(path, root) / "info.json"
    if not info_file.is_file():
        return False
    try:
        info = read_json(info_file)
    except Exception:
        return False
    signature = signature or tree_signature(path)
    return info.get("signature") == signature and info.get("path") == str(path.resolve())


def scan_cached(path: str | os.PathLike, root: str | os.PathLike | None = None,
                progress: Callable[[int, int], None] | None = None) -> tuple[ScanResult, bool]:
    """Scan a dataset folder (or read a manifest CSV), reusing the stored scan when the
    folder's files have not changed.

    Args:
        path: a C-NMC folder in any supported layout, or a manifest CSV.
        root: the artifacts folder (default :func:`~cnmc_core.workspace.artifacts_dir`).
        progress: ``progress(done, total)`` while images are verified (a fresh scan only).

    Returns:
        ``(scan result, whether it came from the stored scan)``.

    Raises:
        DataError: the path does not exist, holds no C-NMC image, or the scan fails.
    """
    path = Path(path).expanduser()
    signature = tree_signature(path)
    if path.is_file():
        if path.suffix.lower() != ".csv":
            raise DataError(f"{path} is a file but not a manifest CSV; give the dataset folder instead.")
        manifest = load_manifest(path)
        return ScanResult(root=path, manifest=manifest, skipped=pd.DataFrame(columns=["path", "reason"])), False
    folder = _scan_folder(path, root)
    info_file = folder / "info.json"
    if info_file.is_file():
        try:
            info = read_json(info_file)
            if info.get("signature") == signature and info.get("path") == str(path.resolve()):
                manifest = load_manifest(folder / "manifest.csv")
                skipped = pd.read_csv(folder / "skipped.csv", dtype=str, keep_default_na=False)
                labels = info.get("labels_csv")
                return ScanResult(root=path, manifest=manifest, skipped=skipped,
                                  labels_csv=Path(labels) if labels else None,
                                  notes=list(info.get("notes", []))), True
        except Exception:  # a damaged stored scan: scan again
            pass
    result = scan_dataset(path, progress=progress)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_csv(folder / "manifest.csv", result.manifest)
    atomic_write_csv(folder / "skipped.csv", result.skipped)
    # info.json last: its presence with the right signature marks a complete stored scan
    atomic_write_json(info_file, {"path": str(path.resolve()), "signature": signature,
                                  "labels_csv": str(result.labels_csv) if result.labels_csv else None,
                                  "notes": result.notes})
    return result, False


def class_counts(manifest: pd.DataFrame) -> pd.DataFrame:
    """Images by source (rows, plus ``total``) and class (columns ALL, HEM, unlabelled, total)."""
    labels = manifest["label"].fillna("").map(lambda v: CLASS_LABELS.get(v, v))
    table = pd.crosstab(manifest["source"], labels)
    for column in CLASS_LABELS.values():
        if column not in table.columns:
            table[column] = 0
    table = table[[c for c in CLASS_LABELS.values() if c != "unlabelled" or table[c].any()]]
    table["total"] = table.sum(axis=1)
    table.loc["total"] = table.sum(axis=0)
    table.index.name = "source"
    table.columns.name = None
    return table.astype(int)


def subject_counts(manifest: pd.DataFrame) -> pd.DataFrame:
    """One row per labelled subject: ``subject``, ``class``, ``images``, ``sources``; sorted by
    class then number of images (descending). Images without a subject are one row ``(none)``."""
    labelled = manifest[manifest["y"] >= 0]
    if labelled.empty:
        return pd.DataFrame(columns=["subject", "class", "images", "sources"])
    frame = labelled.assign(subject=labelled["subject"].replace("", "(none)"),
                            cls=labelled["label"].map(CLASS_LABELS))
    out = (frame.groupby(["subject", "cls"], sort=False)
           .agg(images=("image_id", "size"), sources=("source", lambda s: ", ".join(sorted(set(s)))))
           .reset_index().rename(columns={"cls": "class"}))
    return out.sort_values(["class", "images", "subject"], ascending=[True, False, True]).reset_index(drop=True)


def split_summary(manifest: pd.DataFrame, protocol: str, seed: int = 0,
                  fractions=(0.6, 0.2, 0.2)) -> tuple[pd.DataFrame, dict]:
    """Images and subjects per split and class under ``protocol``, and its leak check.

    Returns:
        ``(table, leak)``: ``table`` has rows train/val/test and columns ``ALL (cancer)``,
        ``HEM (normal)``, ``images``, ``subjects``; ``leak`` is ``{"shared_train_test": n,
        "shared_train_val": n, "test_images_of_train_subjects": n}`` (subjects with cells on
        both sides; all 0 for a subject-disjoint split).

    Raises:
        ConfigError / DataError: unknown protocol, or the dataset cannot be split that way
        (the message says why and what to do).
    """
    from cnmc_core.contracts import DATA_SPLITS as SPLITS
    from cnmc_core.data.splits import make_split

    split = make_split(manifest, protocol, seed=seed, fractions=tuple(fractions))
    merged = split.merge(manifest[["image_id", "label", "subject"]], on="image_id")
    table = pd.crosstab(merged["split"], merged["label"].map(CLASS_LABELS))
    table["images"] = table.sum(axis=1)
    with_subject = merged[merged["subject"] != ""]
    table["subjects"] = with_subject.groupby("split")["subject"].nunique()
    table = table.reindex(list(SPLITS)).fillna(0).astype(int)
    table.index.name = "split"
    table.columns.name = None
    subjects = {s: set(with_subject.loc[with_subject["split"] == s, "subject"]) for s in SPLITS}
    shared_test = subjects["train"] & subjects["test"]
    leak = {
        "shared_train_test": len(shared_test),
        "shared_train_val": len(subjects["train"] & subjects["val"]),
        "test_images_of_train_subjects": int(((with_subject["split"] == "test")
                                              & with_subject["subject"].isin(shared_test)).sum()),
    }
    return table, leak


def sample_images(manifest: pd.DataFrame, per_class: int = 6, seed: int = 0) -> pd.DataFrame:
    """Up to ``per_class`` labelled images of each class (ALL first), drawn with ``seed``."""
    parts = []
    for label in ("all", "hem"):
        pool = manifest[manifest["label"] == label]
        if len(pool):
            parts.append(pool.sample(n=min(per_class, len(pool)), random_state=seed))
    if not parts:
        return manifest.head(0)
    return pd.concat(parts, ignore_index=True)


def preprocessing_steps(path: str | os.PathLike, size: int = 224,
                        clahe_clip: float = 2.0) -> list[tuple[str, np.ndarray]]:
    """The preprocessing of one image, step by step, as ``(title, RGB uint8 image)``:
    the raw image, the crop to the cell padded to a square, CLAHE on the Y channel of the crop,
    and the crop resized to ``size`` (the model's input, without CLAHE as in the paper's best
    runs).

    Raises:
        DataError: unreadable or all-black image (the message names the file).
    """
    from cnmc_core.data.images import read_image
    from cnmc_core.data.preprocess import check_input_size as _check_size
    from cnmc_core.data.preprocess import clahe_y, crop_to_cell, resize

    size = _check_size(size)
    path = Path(path)
    if path.suffix.lower() not in IMAGE_EXTENSIONS:
        raise DataError(f"{path} is not an image file ({', '.join(IMAGE_EXTENSIONS)}).")
    raw = read_image(path)
    try:
        crop = crop_to_cell(raw)
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from exc
    return [
        (f"raw {raw.shape[1]}x{raw.shape[0]}", raw),
        (f"crop to the cell, padded square {crop.shape[1]}x{crop.shape[0]}", crop),
        (f"CLAHE on Y (clip {clahe_clip:g}, 8x8 tiles)", clahe_y(crop, clip_limit=clahe_clip)),
        (f"resized to {size}x{size} (model input)", resize(crop, size)),
    ]


def thumbnail(source: str | os.PathLike | np.ndarray, size: int = 160,
              crop: bool = False) -> np.ndarray:
    """An image (a file or an RGB array) fitted to ``size`` pixels for display (RGB uint8).

    Args:
        source: an image file or an RGB ``uint8`` array.
        size: the side of the result's longer edge.
        crop: first crop to the cell and pad to a square (:func:`cnmc_core.data.preprocess.
            crop_to_cell`), as the models see it; the result is then ``size`` x ``size``.

    Shrinking uses area interpolation; enlarging by 2x or more uses nearest-neighbour so that a
    small model input stays sharp, less than that bilinear.

    Raises:
        DataError: unreadable image, or no cell to crop (the message names the file).
    """
    import cv2

    from cnmc_core.data.images import read_image
    from cnmc_core.data.preprocess import crop_to_cell

    image = source if isinstance(source, np.ndarray) else read_image(source)
    if crop:
        try:
            image = crop_to_cell(image)
        except DataError as exc:
            raise DataError(f"{source if not isinstance(source, np.ndarray) else 'the image'}: "
                            f"{exc}") from exc
    h, w = image.shape[:2]
    scale = size / max(h, w)
    if scale == 1:
        return image
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_NEAREST if scale >= 2 else cv2.INTER_LINEAR
    return cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))),
                      interpolation=interp)
