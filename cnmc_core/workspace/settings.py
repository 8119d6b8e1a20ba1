"""Workspace settings that must survive a browser reload: ``artifacts/workspace.json``.

The dashboard keeps nothing that matters in a browser session: the chosen dataset and the
chosen split protocol live in this file, written atomically, so a reload, a second tab or a
restart of the app sees the same choice. The CLI ignores the file (it takes ``--data``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cnmc_core.exceptions import ConfigError
from cnmc_core.workspace.fileio import atomic_write_json, read_json
from cnmc_core.workspace.paths import artifacts_dir, artifacts_root

__all__ = [
    "SETTINGS_FILE",
    "load_settings",
    "save_settings",
    "chosen_dataset",
    "set_chosen_dataset",
    "chosen_protocol",
    "set_chosen_protocol",
]

SETTINGS_FILE = "workspace.json"
_KEYS = {"dataset": (str, type(None)), "split_protocol": (str,)}


def _path(root) -> Path:
    return artifacts_root(root) / SETTINGS_FILE


def load_settings(root: str | os.PathLike | None = None) -> dict[str, Any]:
    """The settings dict (empty when the file is missing or damaged: defaults apply)."""
    path = _path(root)
    if not path.is_file():
        return {}
    try:
        data = read_json(path)
    except Exception:  # a damaged file must not break the dashboard: defaults apply
        return {}
    return data if isinstance(data, dict) else {}


def save_settings(root: str | os.PathLike | None = None, **fields: Any) -> dict[str, Any]:
    """Merge ``fields`` into the settings and replace the file atomically.

    Raises:
        ConfigError: an unknown key or a value of the wrong type.
    """
    for key, value in fields.items():
        if key not in _KEYS:
            raise ConfigError(f"Unknown workspace setting {key!r}; known: {sorted(_KEYS)}.")
        if not isinstance(value, _KEYS[key]):
            raise ConfigError(f"Workspace setting {key!r} must be {' or '.join(t.__name__ for t in _KEYS[key])}; "
                              f"got {value!r}.")
    settings = {**load_settings(root), **fields}
    atomic_write_json(artifacts_dir(root) / SETTINGS_FILE, settings)
    return settings


def chosen_dataset(root: str | os.PathLike | None = None) -> str | None:
    """The dataset chosen on the Data page: a folder or manifest CSV path, or None.

    When nothing was chosen and the demo dataset exists, the demo dataset is the choice.
    A chosen path that no longer exists is still returned (the page says it is missing).
    """
    from cnmc_core.demo import demo_data_root, demo_dataset_exists

    value = load_settings(root).get("dataset")
    if value:
        return str(value)
    if demo_dataset_exists(root):
        return str(demo_data_root(root).resolve())
    return None


def set_chosen_dataset(path: str | os.PathLike | None, root: str | os.PathLike | None = None, *,
                       actor=None) -> str | None:
    """Record ``path`` (made absolute) as the chosen dataset; None clears the choice.

    Raises:
        AccessError: ``actor`` (None: the local OS user) may not change the workspace's settings
        (a viewer).
    """
    from cnmc_core.auth.roles import require

    require(actor, "configure")
    value = None if path is None else str(Path(path).expanduser().resolve())
    save_settings(root, dataset=value)
    return value


def chosen_protocol(root: str | os.PathLike | None = None) -> str:
    """The split protocol chosen on the Data page (``subject`` by default)."""
    from cnmc_core.contracts import SPLIT_PROTOCOLS

    value = load_settings(root).get("split_protocol")
    return value if value in SPLIT_PROTOCOLS else "subject"


def set_chosen_protocol(name: str, root: str | os.PathLike | None = None, *, actor=None) -> str:
    """Record the split protocol; an unknown name raises ConfigError listing the known ones,
    an ``actor`` that may not change the workspace's settings (a viewer) AccessError."""
    from cnmc_core.auth.roles import require
    from cnmc_core.contracts import protocol_info

    require(actor, "configure")
    protocol_info(name)
    save_settings(root, split_protocol=name)
    return name
