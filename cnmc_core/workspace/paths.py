"""Where the workspace lives: ``artifacts/`` (runs, ensembles, caches, demo data).

The root is resolved in one place, :func:`artifacts_root`: the folder given (``--runs-dir``,
``--artifacts``, a ``root`` argument), else ``$CNMC_ARTIFACTS``, else ``artifacts/`` in the
current directory. Resolving never creates anything, so reading a read-only workspace (listing
its runs) works; the functions that return a folder to write in (:func:`artifacts_dir`,
:func:`runs_dir`, :func:`cache_dir`...) create it, and a folder that cannot be created is a
:class:`~cnmc_core.exceptions.ConfigError` that says which folder, why, and what to do.
"""

from __future__ import annotations

import os
from pathlib import Path

from cnmc_core.exceptions import ConfigError

__all__ = [
    "ARTIFACTS_ENV",
    "artifacts_root",
    "artifacts_dir",
    "workspace_dir",
    "runs_dir",
    "ensembles_dir",
    "studies_dir",
    "cache_dir",
    "demo_data_dir",
]

#: The environment variable that chooses the workspace.
ARTIFACTS_ENV = "CNMC_ARTIFACTS"
_FIX = "point $CNMC_ARTIFACTS (or --runs-dir / --artifacts) at a folder"


def artifacts_root(root: str | os.PathLike | None = None) -> Path:
    """The artifacts folder, resolved but not created.

    Args:
        root: the folder given by the caller; None means ``$CNMC_ARTIFACTS`` when it is set and
            not empty, else ``./artifacts``.

    Returns:
        The folder (it may not exist yet: an empty workspace).

    Raises:
        ConfigError: the folder, or one of its parents, exists and is not a folder (a file).
    """
    if root is not None:
        path, source = Path(root), "the artifacts folder given"
    elif os.environ.get(ARTIFACTS_ENV):
        path, source = Path(os.environ[ARTIFACTS_ENV]), f"${ARTIFACTS_ENV}"
    else:
        path, source = Path("artifacts"), "the default artifacts folder"
    path = path.expanduser()
    # the nearest part of the path that exists must be a folder, else nothing can live below it
    probe = path
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        what = "is a file, not a folder" if probe == path else f"is below {probe}, which is a file"
        raise ConfigError(f"The artifacts folder {path} ({source}) {what}: {_FIX}, or move the "
                          "file away.")
    return path


def _create(path: Path, root: Path) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        where = "the artifacts folder" if path == root else f"{path.name}/ in the artifacts folder"
        raise ConfigError(
            f"Cannot create {where} {root if path == root else path}: {exc.strerror or exc}. "
            f"This needs a writable workspace: make {root} writable, or {_FIX} you can write "
            "to.") from None
    return path


def artifacts_dir(root: str | os.PathLike | None = None) -> Path:
    """The artifacts folder (:func:`artifacts_root`), created if missing, for writing in.

    Raises:
        ConfigError: it is a file, or it cannot be created (read-only parent, full disk).
    """
    path = artifacts_root(root)
    return _create(path, path)


def workspace_dir(name: str, root: str | os.PathLike | None = None, create: bool = True) -> Path:
    """``<artifacts>/<name>`` (``runs``, ``ensembles``, ``cache``, ``manifests``, ``scans``...).

    Args:
        name: the subfolder.
        root: as for :func:`artifacts_root`.
        create: create the folder (and the artifacts folder) when missing; False only resolves
            it, for readers.

    Raises:
        ConfigError: the artifacts folder is a file, or (``create``) the folder cannot be created
            (a read-only workspace: the message says to make it writable or to point elsewhere).
    """
    base = artifacts_root(root)
    path = base / name
    return _create(path, base) if create else path


def runs_dir(root: str | os.PathLike | None = None, create: bool = True) -> Path:
    """``artifacts/runs``: one folder per training run (see :func:`workspace_dir`)."""
    return workspace_dir("runs", root, create)


def ensembles_dir(root: str | os.PathLike | None = None, create: bool = True) -> Path:
    """``artifacts/ensembles``: one folder per saved ensemble (see :func:`workspace_dir`)."""
    return workspace_dir("ensembles", root, create)


def studies_dir(root: str | os.PathLike | None = None, create: bool = True) -> Path:
    """``artifacts/studies``: one folder per study (its runs live in ``runs/``; see
    :func:`workspace_dir`)."""
    return workspace_dir("studies", root, create)


def cache_dir(root: str | os.PathLike | None = None) -> Path:
    """``artifacts/cache``: preprocessed image arrays keyed by a fingerprint (created)."""
    return workspace_dir("cache", root)


def demo_data_dir(root: str | os.PathLike | None = None) -> Path:
    """``artifacts/demo-data``: where the synthetic demo dataset is written by default (not
    created)."""
    return artifacts_root(root) / "demo-data"
