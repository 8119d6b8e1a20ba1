"""Where a dataset comes from: the synthetic generator's marker file, and the provenance a run records.

:func:`cnmc_core.data.synth.generate_dataset` writes ``OUT/.synth_info.json`` (:data:`INFO_NAME`:
its parameters, counts and ``"synthetic": true``; a dot file, so dataset scanners skip it) as
the last file of a dataset. :func:`dataset_provenance` looks for it, so every run can record
whether it was trained and scored on synthetic cells or on real ones.
"""

from __future__ import annotations

import os
from pathlib import Path

from cnmc_core.exceptions import ConfigError

__all__ = [
    "INFO_NAME",
    "PROVENANCE_SYNTHETIC",
    "PROVENANCE_REAL",
    "find_synth_marker",
    "dataset_provenance",
    "dataset_record",
    "recorded_kind",
]

INFO_NAME = ".synth_info.json"
PROVENANCE_SYNTHETIC, PROVENANCE_REAL = "synthetic", "real"
_MARKER_LEVELS = 2  # the marker is looked for at the root and up to this many parents
_IMAGE_DEPTH = 4  # OUT/C-NMC_Leukemia/training_data/fold_0/all/<image>: OUT is 4 above the folder


def _marker_above(folder: Path, levels: int) -> Path | None:
    for candidate in [folder, *folder.parents][: levels + 1]:
        marker = candidate / INFO_NAME
        if marker.is_file():
            return marker
    return None


def _manifest_folders(csv_path: Path) -> list[Path]:
    """The distinct folders of the images a manifest CSV lists (relative paths: from the current
    folder, else from the CSV's folder)."""
    import pandas as pd

    try:
        paths = pd.read_csv(csv_path, usecols=["path"], dtype=str, keep_default_na=False)["path"]
    except (ValueError, OSError, pd.errors.ParserError):
        return []  # not a manifest: nothing to follow
    folders = []
    for parent in sorted({str(Path(p).parent) for p in paths if p}):
        folder = Path(parent)
        if not folder.is_absolute() and not folder.is_dir():
            folder = csv_path.parent / folder
        folders.append(folder)
    return folders


def find_synth_marker(root: str | os.PathLike) -> Path | None:
    """The generator's marker file (:data:`INFO_NAME`) of the dataset at ``root``, if any.

    For a folder: looked for in ``root`` and up to two parents, so ``OUT``,
    ``OUT/C-NMC_Leukemia`` and ``OUT/C-NMC_Leukemia/training_data`` all find
    ``OUT/.synth_info.json``. For a manifest CSV: looked for above the folders of the images it
    lists (up to four parents of each, the depth of the layout's image folders). Any other file
    is looked up from its folder.

    Raises:
        ConfigError: ``root`` does not exist.
    """
    path = Path(root).expanduser()
    if not path.exists():
        raise ConfigError(f"root {str(root)!r} does not exist; pass the dataset folder (or a "
                          "manifest CSV) whose provenance is wanted.")
    if path.is_file() and path.suffix.lower() == ".csv":
        for folder in _manifest_folders(path.resolve()):
            marker = _marker_above(folder.resolve(), _IMAGE_DEPTH)
            if marker is not None:
                return marker
        return _marker_above(path.resolve().parent, _MARKER_LEVELS)
    folder = path if path.is_dir() else path.parent
    return _marker_above(folder.resolve(), _MARKER_LEVELS)


def dataset_provenance(root: str | os.PathLike) -> str:
    """Whether a dataset was made by this generator: ``"synthetic"`` or ``"real"``.

    ``"synthetic"`` when :func:`find_synth_marker` finds the marker (even a damaged one: only the
    generator writes that name; a manifest with any synthetic image counts as synthetic);
    ``"real"`` otherwise, i.e. for anything not known to be synthetic. A run records this beside
    its dataset fingerprint, so no score on synthetic cells is mistaken for one on C-NMC.

    Args:
        root: a dataset folder (``OUT``, ``OUT/C-NMC_Leukemia`` or a folder in it), a manifest
            CSV, or a file in a dataset folder.

    Raises:
        ConfigError: ``root`` does not exist.
    """
    return PROVENANCE_SYNTHETIC if find_synth_marker(root) is not None else PROVENANCE_REAL


def dataset_record(root: str | os.PathLike) -> dict:
    """What a run records of the dataset it was trained on (its ``config.json`` ``provenance``).

    Returns:
        ``{"kind": "synthetic" | "real", "marker": path of the generator's marker or None,
        "generator", "generator_version", "generator_seed"}`` (the last three None for a real
        dataset). ``"real"`` means no generator marker was found (see
        :func:`dataset_provenance`). A marker that cannot be read still makes the dataset
        synthetic; ``"marker_error"`` then says what is wrong with it.

    Raises:
        ConfigError: ``root`` does not exist.
    """
    from cnmc_core.exceptions import CnmcError
    from cnmc_core.workspace.fileio import read_json

    marker = find_synth_marker(root)
    record: dict = {"kind": PROVENANCE_REAL, "marker": None, "generator": None,
                    "generator_version": None, "generator_seed": None}
    if marker is None:
        return record
    record.update(kind=PROVENANCE_SYNTHETIC, marker=str(marker))
    try:
        info = read_json(marker, expect=dict)
    except (OSError, CnmcError) as exc:
        record["marker_error"] = f"{marker} cannot be read ({exc})"
        return record
    record.update(generator=info.get("generator"), generator_version=info.get("generator_version"),
                  generator_seed=info.get("seed"))
    return record


def recorded_kind(config: dict) -> str:
    """``synthetic`` or ``real`` as a run's ``config.json`` records it (``provenance``: a string,
    or an object with ``kind``); ``unknown`` when it does not (a run trained before it was kept:
    :func:`cnmc_core.model_cards.run_provenance` then looks at the dataset, and says so)."""
    provenance = config.get("provenance") if isinstance(config, dict) else None
    if isinstance(provenance, dict):
        provenance = provenance.get("kind")
    return str(provenance) if provenance not in (None, "") else "unknown"
