"""Where the workspace lives: ``artifacts/`` (runs, ensembles, caches, demo data).

The root is ``$CNMC_ARTIFACTS`` when set, else ``artifacts/`` in the current directory. Every
function takes an explicit ``root`` too, so tests and the dashboard can point elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "artifacts_dir",
    "runs_dir",
    "ensembles_dir",
    "studies_dir",
    "cache_dir",
    "demo_data_dir",
    "artifacts_root",
]


def artifacts_dir(root: str | os.PathLike | None = None) -> Path:
    """The artifacts folder (created if missing)."""
    path = Path(root) if root is not None else Path(os.environ.get("CNMC_ARTIFACTS", "artifacts"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _sub(name: str, root) -> Path:
    path = artifacts_dir(root) / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def runs_dir(root: str | os.PathLike | None = None) -> Path:
    """``artifacts/runs``: one folder per training run."""
    return _sub("runs", root)


def ensembles_dir(root: str | os.PathLike | None = None) -> Path:
    """``artifacts/ensembles``: one folder per saved ensemble."""
    return _sub("ensembles", root)


def studies_dir(root: str | os.PathLike | None = None) -> Path:
    """``artifacts/studies``: one folder per study (its runs live in ``runs/``)."""
    return _sub("studies", root)


def cache_dir(root: str | os.PathLike | None = None) -> Path:
    """``artifacts/cache``: preprocessed image arrays keyed by a fingerprint."""
    return _sub("cache", root)


def demo_data_dir(root: str | os.PathLike | None = None) -> Path:
    """``artifacts/demo-data``: where the synthetic demo dataset is written by default."""
    return artifacts_dir(root) / "demo-data"


def artifacts_root(path: str | os.PathLike | None = None) -> Path:
    """The artifacts folder that ``path`` names, without creating anything: ``path`` itself, or
    its parent when it is a ``runs`` or ``ensembles`` folder; default ``$CNMC_ARTIFACTS`` or
    ``./artifacts``."""
    if path is None:
        return Path(os.environ.get("CNMC_ARTIFACTS", "artifacts"))
    path = Path(path)
    return path.parent if path.name in ("runs", "ensembles", "studies") else path
