"""Atomic file writes and safe names.

Files that another process may read while we write them (``status.json``, ``metrics.json``,
``predictions.csv``, manifests, splits) are written to a temporary file in the same folder and
moved over the target with :func:`os.replace`, which is atomic on POSIX: a reader sees the old
file or the new one, never half of one. The file gets the mode ``open()`` would give a new file
(0o666 less the umask), like every other file of the workspace.
"""

from __future__ import annotations

import errno
import json
import os
import re
import secrets
from pathlib import Path
from typing import IO, Any, Callable

from cnmc_core.exceptions import CnmcError

__all__ = [
    "SAFE_NAME_RE",
    "atomic_write",
    "atomic_write_text",
    "atomic_write_json",
    "atomic_write_csv",
    "json_kind",
    "read_json",
    "check_name",
    "json_safe",
]

SAFE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def _create_temp(path: Path, file_mode: int = 0o666) -> tuple[int, Path]:
    """A new file beside ``path``, created as ``open()`` would create it: mode 0o666 less the
    umask (``mkstemp`` gives 0o600, so files replaced through it were private while every other
    file of the workspace was not); ``file_mode`` 0o600 for a private file."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            return os.open(tmp, flags, file_mode), tmp
        except FileExistsError:  # 48 random bits taken: try another name
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary name", str(path.parent))


def atomic_write(path: str | os.PathLike, write: Callable[[IO], None], mode: str = "w",
                 private: bool = False) -> Path:
    """Write ``path`` atomically: ``write(fh)`` fills a temporary file that then replaces it.

    The file gets the mode a new file gets from ``open()``: 0o666 less the process umask (0o644
    with the usual umask 022).

    Args:
        path: the target file; its folder must exist.
        write: called with an open file handle (text or binary according to ``mode``).
        mode: ``"w"`` for text (UTF-8), ``"wb"`` for bytes.
        private: give the file mode 0o600 (owner only), whatever the umask, from the moment it
            exists (the users file holds password hashes).

    Returns:
        The target path. On any error the target is left as it was and the temporary file removed.
    """
    path = Path(path)
    fd, tmp = _create_temp(path, 0o600 if private else 0o666)
    try:
        if private:
            os.fchmod(fd, 0o600)
        kwargs = {"encoding": "utf-8", "newline": ""} if "b" not in mode else {}
        with os.fdopen(fd, mode, **kwargs) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str, private: bool = False) -> Path:
    """Replace ``path`` atomically with ``text`` (UTF-8); ``private``: mode 0o600."""
    return atomic_write(path, lambda fh: fh.write(text), private=private)


def atomic_write_json(path: str | os.PathLike, obj: Any, private: bool = False) -> Path:
    """Replace ``path`` atomically with ``obj`` as indented JSON (NaN written as ``null``);
    ``private``: mode 0o600."""
    text = json.dumps(json_safe(obj), indent=2, sort_keys=False, allow_nan=False)
    return atomic_write_text(path, text + "\n", private=private)


def atomic_write_csv(path: str | os.PathLike, frame) -> Path:
    """Replace ``path`` atomically with a pandas DataFrame written as CSV without its index."""
    return atomic_write(path, lambda fh: frame.to_csv(fh, index=False, lineterminator="\n"))


_JSON_KINDS = ((dict, "a JSON object"), (list, "a JSON array"), (str, "a string"),
               (bool, "true or false"), ((int, float), "a number"), (type(None), "null"))


def json_kind(value: Any) -> str:
    """How a JSON value is named in messages: ``a JSON object``, ``a JSON array``, ``null``..."""
    for types, name in _JSON_KINDS:
        if isinstance(value, types):
            return name
    return type(value).__name__


def read_json(path: str | os.PathLike, expect: type | None = None,
              error: type[CnmcError] = CnmcError) -> Any:
    """Read a JSON file, checking its encoding and, with ``expect``, the type it holds.

    Args:
        path: the file.
        expect: the type the top-level value must have (``dict`` for a config or a status);
            None accepts any JSON value.
        error: the :class:`CnmcError` subclass raised for a damaged file (``RunError`` for the
            files of a run folder).

    Returns:
        The parsed value.

    Raises:
        OSError: the file cannot be opened (``FileNotFoundError`` when it is missing).
        CnmcError: (``error``) the file is not UTF-8 text, not valid JSON, or holds another type
            than ``expect``; the message names the file, what is wrong and what to do.
    """
    path = Path(path)
    with open(path, "rb") as fh:
        data = fh.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{path} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset "
                    f"{exc.start}); delete or restore the file.") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{path} is not valid JSON ({exc}); delete or restore the file.") from exc
    if expect is not None and not isinstance(value, expect):
        want = json_kind(expect()) if expect in (dict, list, str) else expect.__name__
        raise error(f"{path} holds {json_kind(value)}, not {want}; delete or restore the file.")
    return value


def check_name(name: str, what: str = "name", error: type[CnmcError] = CnmcError) -> str:
    """Return ``name`` if it is a safe single folder name, else raise :class:`CnmcError`.

    Safe means letters, digits, ``.``, ``_`` and ``-`` only, starting with a letter or digit,
    at most 128 characters: no ``..``, no ``/``, no absolute path, nothing that escapes a folder.
    """
    if not isinstance(name, str) or not SAFE_NAME_RE.match(name) or name in {".", ".."}:
        raise error(
            f"Invalid {what} {name!r}: use 1-128 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit (no '/', no '..', no absolute path)."
        )
    return name


def json_safe(obj: Any) -> Any:
    """Convert numpy scalars/arrays and non-finite floats to plain JSON values."""
    import math

    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy is a hard dependency
        np = None
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if np is not None:
        if isinstance(obj, np.ndarray):
            return json_safe(obj.tolist())
        if isinstance(obj, np.generic):
            obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj
