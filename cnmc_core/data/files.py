"""Files of a dataset tree: the walk that finds them, and reading one only if it is a file.

Two dangers of a folder the user points at, both handled here once for every reader:

- a folder that cannot be read (no permission, vanished, a broken link to a folder) would make
  ``os.walk`` leave out its images without a word: the walk records it with the reason;
- a FIFO, socket or device named like an image (``mkfifo x.bmp``) would block ``open`` forever,
  or read without end: only regular files are opened, anything else is reported with its kind.

Every entry that is not used is a ``{"path", "reason"}`` row, as :attr:`~cnmc_core.data.manifest.
ScanResult.skipped` lists them.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

__all__ = ["TreeListing", "NotRegularFile", "file_kind", "not_regular_reason", "walk_tree",
           "open_regular_file", "read_regular_file"]

_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def file_kind(mode: int) -> str | None:
    """What a ``st_mode`` is when it is not a regular file (``"a FIFO"``...), else None."""
    if stat.S_ISREG(mode):
        return None
    for test, kind in _KINDS:
        if test(mode):
            return kind
    return "not a file"


def not_regular_reason(kind: str) -> str:
    """The reason listed for an entry of that kind (``"not a regular file (a FIFO)"``)."""
    return f"not a regular file ({kind})"


class NotRegularFile(OSError):
    """Raised instead of opening a FIFO, socket, device or folder; ``strerror`` is the reason
    (:func:`not_regular_reason`)."""

    def __init__(self, kind: str, path: str):
        super().__init__(errno.EINVAL, not_regular_reason(kind), path)


@dataclass
class TreeListing:
    """What :func:`walk_tree` found.

    Attributes:
        files: every regular file, in sorted order, with its ``os.stat`` result (links followed).
        skipped: ``{"path", "reason"}`` for every folder that could not be read and every entry
            that is not a regular file or could not be looked at.
    """

    files: list[tuple[Path, os.stat_result]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)


def walk_tree(root: str | os.PathLike) -> TreeListing:
    """Every regular file under ``root``, following links to folders once (loops are cut).

    Never opens a file: each entry is looked at with ``os.stat`` only, so a FIFO or device is
    listed, not read.

    Args:
        root: the folder to walk.

    Returns:
        A :class:`TreeListing`; nothing is left out without a row in ``skipped``.
    """
    listing = TreeListing()

    def unreadable(error: OSError) -> None:
        # os.walk calls this for a folder it cannot list: without it the folder's files would
        # vanish from the scan without a word
        listing.skipped.append({"path": str(error.filename or root), "reason":
                                f"folder cannot be read ({error.strerror or error}): its files "
                                "were not searched; give read access (chmod u+rx) and scan again"})

    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True, onerror=unreadable):
        try:
            st = os.stat(dirpath)
        except OSError as exc:
            dirnames[:] = []
            unreadable(exc)
            continue
        key = (st.st_dev, st.st_ino)
        if key in seen:  # a symlink loop or a second link to a folder already walked
            dirnames[:] = []
            continue
        seen.add(key)
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            try:
                st = os.stat(path)
            except OSError as exc:  # a broken link, or a file removed while we walk
                listing.skipped.append({"path": str(path), "reason":
                                        f"cannot be read ({exc.strerror or exc})"})
                continue
            kind = file_kind(st.st_mode)
            if kind is not None:
                listing.skipped.append({"path": str(path), "reason": not_regular_reason(kind)})
                continue
            listing.files.append((path, st))
    return listing


def open_regular_file(path: str | os.PathLike) -> BinaryIO:
    """Open ``path`` for reading in binary if it is a regular file; nothing else is opened.

    ``os.stat`` is asked first, so a FIFO or device is refused without opening it; the file is
    then opened non-blocking and checked again with ``fstat``, so one swapped in between is
    refused too instead of blocking the reader.

    Raises:
        NotRegularFile: ``path`` is a FIFO, socket, device or folder (never opened).
        OSError: the file cannot be read (``strerror`` says why).
    """
    path = os.fspath(path)
    kind = file_kind(os.stat(path).st_mode)
    if kind is None:
        # O_NONBLOCK: opening a FIFO swapped in after the stat returns at once instead of
        # waiting for a writer (it changes nothing for a regular file)
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
        fh = open(fd, "rb", closefd=True)
        kind = file_kind(os.fstat(fd).st_mode)
        if kind is None:
            return fh
        fh.close()
    raise NotRegularFile(kind, path)


def read_regular_file(path: str | os.PathLike) -> bytes:
    """The bytes of ``path`` if it is a regular file (see :func:`open_regular_file`).

    Raises:
        OSError: as :func:`open_regular_file`, or a read error.
    """
    with open_regular_file(path) as fh:
        return fh.read()
