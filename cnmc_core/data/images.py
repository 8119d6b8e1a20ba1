"""Images: decoding files and uploads to RGB ``uint8``, their headers and size limits.

One header reader, :func:`image_header`, serves files in datasets and uploads alike: Pillow's
``Image.open`` reads the header only (it is lazy), for BMP, PNG, JPEG and TIFF. It gives the
size that OpenCV will decode (for a TIFF the first ImageWidth tag, as libtiff reads it), checks
every frame of a multi-page TIFF, and runs Pillow's own decompression-bomb check at our
:data:`MAX_PIXELS`. Decoding stays OpenCV's ``cv2.imdecode``, on the same bytes whose header was
checked, and the decoded size must match the header's.

Safety of uploads (the Predict and Explain pages take files from a browser):

- only the bytes are used: no file name is ever opened, nothing is unpickled or ``eval``-ed;
- a file must be non-empty, at most :data:`MAX_UPLOAD_BYTES`, a BMP, PNG, JPEG or TIFF whose
  header declares at most :data:`MAX_PIXELS` pixels (read before decoding, so a small file
  cannot expand into gigabytes).

Files in datasets are read only if they are regular files (a FIFO named ``x.bmp`` is refused,
never opened). Every refusal is an :class:`ImageRefused` (a
:class:`~cnmc_core.exceptions.DataError`) whose message names the file and says what to do, and
whose ``reason`` is the short text the scan lists.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Sequence

import numpy as np

from cnmc_core.data.files import NotRegularFile, open_regular_file, read_regular_file
from cnmc_core.exceptions import DataError

__all__ = [
    "MAX_PIXELS",
    "MAX_FRAMES",
    "HEADER_FORMATS",
    "REASON_EMPTY",
    "REASON_TOO_LARGE",
    "REASON_UNDECODABLE",
    "ImageRefused",
    "image_header",
    "read_image",
    "to_rgb",
    "MAX_UPLOAD_BYTES",
    "UPLOAD_EXTENSIONS",
    "UploadedImage",
    "decode_upload",
    "check_uploads",
]

# Larger images are refused before decoding: a 450x450 cell never needs this much, and a huge
# file would stall the scan and the cache build.
MAX_PIXELS = 40_000_000
#: Most pages (IFDs) a TIFF may have: a cell image has one; walking a chain of thousands of
#: crafted pages would cost time for nothing.
MAX_FRAMES = 16
#: The formats read (Pillow's names); others are refused, whatever their file name says.
HEADER_FORMATS = ("BMP", "PNG", "JPEG", "TIFF")
REASON_EMPTY = "empty file"
REASON_TOO_LARGE = "image too large"
REASON_UNDECODABLE = "cannot be decoded as an image (corrupt, truncated or not an image)"
_SIGNATURES = (
    (b"BM", "BMP"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"II+\x00", "TIFF"),  # BigTIFF, which libtiff and Pillow read too
    (b"MM\x00+", "TIFF"),
)
# Pillow's limit is a module global; it is set and restored under this lock so that threads of
# a scan never see each other's value (and Pillow users elsewhere keep theirs).
_PILLOW_LOCK = threading.Lock()


class ImageRefused(DataError):
    """An image file or upload that is not used; ``reason`` is the short text a scan lists
    (:data:`REASON_TOO_LARGE`...), the message says which file, what is wrong and what to do."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


def _frame_sizes(fp: BinaryIO, limit: int | None) -> tuple[str, list[tuple[int, int]]]:
    """Pillow's format and the size of every frame it sees, decoding nothing."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = limit
    fp.seek(0)
    im = Image.open(fp, formats=HEADER_FORMATS)  # lazy: reads the header only
    fmt = "JPEG" if im.format == "MPO" else str(im.format)
    sizes = [tuple(im.size)]
    # Only a TIFF's pages are walked: seeking reads the next IFD and decodes nothing, while an
    # animated PNG would decode its frames (OpenCV reads the first frame of any format).
    while fmt == "TIFF" and len(sizes) <= MAX_FRAMES:
        try:
            im.seek(len(sizes))
        except EOFError:
            break
        sizes.append(tuple(im.size))
    return fmt, sizes


def image_header(source: bytes | bytearray | memoryview | np.ndarray | str | os.PathLike,
                 name: str | None = None) -> tuple[str, int, int]:
    """``(format, width, height)`` of an image from its header, without decoding it.

    The size is the one OpenCV decodes: the first frame's. Every page of a TIFF is checked
    against :data:`MAX_PIXELS` too, and Pillow's decompression-bomb check runs at that limit.

    Args:
        source: the file's bytes (or a ``uint8`` array of them), or the path of a regular file
            (only what the header needs is read).
        name: how to call the file in messages (default: the path, or "the image").

    Returns:
        ``format`` (one of :data:`HEADER_FORMATS`), ``width`` and ``height`` in pixels, both > 0.

    Raises:
        ImageRefused: not a BMP, PNG, JPEG or TIFF, a damaged or truncated header, no size, a
            frame of more than :data:`MAX_PIXELS` pixels, or more than :data:`MAX_FRAMES` pages.
        OSError: ``source`` is a path that cannot be read or is not a regular file.
    """
    if isinstance(source, (str, os.PathLike)):
        with open_regular_file(source) as fh:
            return _checked_header(fh, name or str(source))
    if not isinstance(source, bytes):  # bytes are read in place; others are copied once
        source = source.tobytes() if isinstance(source, np.ndarray) else bytes(source)
    return _checked_header(io.BytesIO(source), name or "the image")


def _checked_header(fp: BinaryIO, label: str) -> tuple[str, int, int]:
    from PIL import Image, UnidentifiedImageError

    head = fp.read(8)
    fmt = next((f for sig, f in _SIGNATURES if head.startswith(sig)), None)
    if fmt is None:
        raise ImageRefused(f"{label} is not a BMP, PNG, JPEG or TIFF image (its content does not "
                           "start like one): use an image file in one of these formats.",
                           REASON_UNDECODABLE)
    with _PILLOW_LOCK:
        saved = Image.MAX_IMAGE_PIXELS
        try:
            with warnings.catch_warnings():
                # Pillow warns above its limit and raises above twice it: both are our refusal
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                # Pillow's remarks on a damaged file ("Corrupt EXIF data") are noise: the
                # refusal says what is wrong
                warnings.filterwarnings("ignore", category=UserWarning, module="PIL")
                try:
                    fmt, sizes = _frame_sizes(fp, MAX_PIXELS)
                except (Image.DecompressionBombError, Image.DecompressionBombWarning):
                    # read the first frame's size again, without the limit, for the message
                    fmt, sizes = _frame_sizes(fp, None)
                    sizes = sizes[:1]
        except Exception as exc:  # any failure to parse an untrusted header is a refusal
            detail = ("Pillow does not recognise it" if isinstance(exc, UnidentifiedImageError)
                      else f"{type(exc).__name__}: {exc}")
            raise ImageRefused(f"{label} cannot be decoded as a {fmt} image: its header is "
                               f"damaged or truncated ({detail}); replace it with a good copy.",
                               REASON_UNDECODABLE) from None
        finally:
            Image.MAX_IMAGE_PIXELS = saved
    if len(sizes) > MAX_FRAMES:
        raise ImageRefused(f"{label} is a {fmt} of more than {MAX_FRAMES} pages; a cell image has "
                           "one: save the cell as a single-page image.", REASON_TOO_LARGE)
    for page, (width, height) in enumerate(sizes):
        if width <= 0 or height <= 0:
            raise ImageRefused(f"{label}: the {fmt} header gives no image size ({width}x"
                               f"{height}); save it again as PNG or BMP.", REASON_UNDECODABLE)
        if width * height > MAX_PIXELS:
            where = f" (page {page + 1})" if page else ""
            raise ImageRefused(f"{label} is {width}x{height} pixels{where}, more than the limit "
                               f"of {MAX_PIXELS:,}; C-NMC images are 450x450: use a single cell "
                               "image (resize this one or remove it).", REASON_TOO_LARGE)
    return fmt, sizes[0][0], sizes[0][1]


def _decode(data: bytes, label: str) -> tuple[np.ndarray, str]:
    """Check the header, then decode with OpenCV: the RGB image and its format."""
    import cv2  # imported here so that importing the module stays cheap

    fmt, width, height = image_header(data, label)  # bytes: read in place, not copied
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise ImageRefused(f"{label} cannot be decoded as a {fmt} image (corrupt or truncated); "
                           "replace it with a good copy or remove it.", REASON_UNDECODABLE)
    # What was checked is what was decoded (the two readers could disagree on a crafted file);
    # either order of the sides, as an orientation tag may turn the image.
    if sorted(image.shape[:2]) != sorted((height, width)):
        raise ImageRefused(f"{label}: its {fmt} header says {width}x{height} pixels but it decodes "
                           f"to {image.shape[1]}x{image.shape[0]} (a damaged or crafted file); "
                           "save it again and use that copy.", REASON_UNDECODABLE)
    return to_rgb(image), fmt


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as RGB ``uint8`` (H, W, 3).

    Handles BMP, PNG, JPEG and TIFF; grayscale is expanded to three channels, an alpha channel is
    composited onto black (the C-NMC background), 16-bit images are scaled to 8 bits. The file is
    read once; its header is checked (:func:`image_header`) before those same bytes are decoded.

    Raises:
        ImageRefused: the file is missing, not a regular file, empty, too large, or cannot be
            decoded as an image; ``reason`` says which in a few words.
    """
    path = Path(path)
    try:
        data = read_regular_file(path)
    except NotRegularFile as exc:
        raise ImageRefused(f"{path} is {exc.strerror}: only image files are read; remove it or "
                           "point at the image itself.", exc.strerror) from exc
    except OSError as exc:
        why = exc.strerror or str(exc)
        raise ImageRefused(f"Cannot read {path}: {why}.", f"unreadable ({why})") from exc
    if not data:
        raise ImageRefused(f"{path} is empty (0 bytes); remove it or replace it with the image.",
                           REASON_EMPTY)
    return _decode(data, str(path))[0]


def to_rgb(image: np.ndarray) -> np.ndarray:
    """An image as decoded by OpenCV (``IMREAD_UNCHANGED``: BGR, BGRA, gray; 8 or 16 bit) as RGB
    ``uint8`` (H, W, 3); alpha is composited onto black, the C-NMC background."""
    import cv2

    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        image = cv2.normalize(image, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        alpha = image[:, :, 3:4].astype(np.float32) / 255.0
        bgr = (image[:, :, :3].astype(np.float32) * alpha + 0.5).astype(np.uint8)
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    if image.shape[2] == 1:
        return cv2.cvtColor(image[:, :, 0], cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(np.ascontiguousarray(image[:, :, :3]), cv2.COLOR_BGR2RGB)


#: Largest upload accepted, in bytes (a C-NMC BMP is about 600 KB).
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
#: File name endings the uploader offers (the content is checked, not the name).
UPLOAD_EXTENSIONS = ("bmp", "png", "jpg", "jpeg", "tif", "tiff")


@dataclass
class UploadedImage:
    """One accepted upload: its name, content hash, and RGB pixels (uint8, as decoded)."""

    name: str
    sha1: str
    image: np.ndarray
    n_bytes: int
    meta: dict = field(default_factory=dict)


def decode_upload(name: str, data: bytes, max_bytes: int = MAX_UPLOAD_BYTES) -> UploadedImage:
    """Check and decode one uploaded file (bytes only) into an RGB uint8 image.

    The header is read first (:func:`image_header`); nothing is decoded unless it passes.

    Raises:
        DataError: empty, larger than ``max_bytes``, not a BMP/PNG/JPEG/TIFF, more pixels than
            the limit, undecodable (corrupt or truncated), or all black (no cell to crop); an
            :class:`ImageRefused` for those the header or the decoder refuses.
    """
    label = str(name) or "the file"
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DataError(f"{label}: expected the file's bytes.")
    data = bytes(data)
    if len(data) == 0:
        raise ImageRefused(f"{label} is empty (0 bytes): upload the image file itself.",
                           REASON_EMPTY)
    if len(data) > max_bytes:
        raise ImageRefused(f"{label} is {len(data) / 2**20:.1f} MB, more than the limit of "
                           f"{max_bytes / 2**20:.0f} MB: upload a single cell image (C-NMC "
                           "images are 450x450, under 1 MB).", REASON_TOO_LARGE)
    rgb, fmt = _decode(data, label)
    if not (rgb > 0).any():
        raise DataError(f"{label} is all black: there is no cell to crop. Upload an image of a "
                        "cell on a black background, as in C-NMC.")
    return UploadedImage(name=label, sha1=hashlib.sha1(data).hexdigest(), image=rgb,
                         n_bytes=len(data), meta={"format": fmt, "width": int(rgb.shape[1]),
                                                  "height": int(rgb.shape[0])})


def check_uploads(files: Sequence[tuple[str, bytes]], max_bytes: int = MAX_UPLOAD_BYTES,
                  max_files: int = 200) -> tuple[list[UploadedImage], list[str], list[str]]:
    """Decode many uploads; a bad file never stops the rest.

    Returns:
        ``(accepted, refusals, notes)``: the decoded images, one message per refused file (what
        is wrong and what to do), and notes (files beyond ``max_files`` left out, files with the
        same content as an earlier one kept once).
    """
    accepted, refused, notes, seen = [], [], [], {}
    files = list(files)
    if len(files) > max_files:
        notes.append(f"{len(files)} files uploaded; only the first {max_files} are scored. "
                     "Score the rest in another batch.")
        files = files[:max_files]
    for name, data in files:
        try:
            up = decode_upload(name, data, max_bytes)
        except DataError as exc:
            refused.append(str(exc))
            continue
        if up.sha1 in seen:
            notes.append(f"{name} has the same content as {seen[up.sha1]}; it is scored once.")
            continue
        seen[up.sha1] = name
        accepted.append(up)
    return accepted, refused, notes
