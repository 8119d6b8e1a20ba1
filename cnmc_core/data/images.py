"""Images: decoding files and uploads to RGB ``uint8``, their headers and size limits.

Safety of uploads (the Predict and Explain pages take files from a browser):

- only the bytes are used: no file name is ever opened, nothing is unpickled or ``eval``-ed;
- a file must be non-empty, at most :data:`MAX_UPLOAD_BYTES`, start with the signature of a BMP,
  PNG, JPEG or TIFF, and declare at most :data:`MAX_PIXELS` pixels in its header (read before
  decoding, so a small file cannot expand into gigabytes);
- decoding is OpenCV's ``cv2.imdecode`` on the bytes.

Every refusal is a :class:`~cnmc_core.exceptions.DataError` whose message names the file and
says what to do.
"""

from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from cnmc_core.exceptions import DataError

__all__ = [
    "MAX_PIXELS",
    "read_image",
    "to_rgb",
    "MAX_UPLOAD_BYTES",
    "UPLOAD_EXTENSIONS",
    "UploadedImage",
    "image_size_from_header",
    "decode_upload",
    "check_uploads",
]

# Larger images are refused before decoding: a 450x450 cell never needs this much, and a huge
# file would stall the scan and the cache build.
MAX_PIXELS = 40_000_000


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as RGB ``uint8`` (H, W, 3).

    Handles BMP, PNG, JPEG and TIFF; grayscale is expanded to three channels, an alpha channel is
    composited onto black (the C-NMC background), 16-bit images are scaled to 8 bits.

    Raises:
        DataError: the file is missing, empty, too large, or cannot be decoded as an image.
    """
    path = Path(path)
    import cv2  # imported here so that importing the module stays cheap

    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise DataError(f"Cannot read {path}: {exc.strerror or exc}.") from exc
    if data.size == 0:
        raise DataError(f"{path} is empty (0 bytes); remove it or replace it with the image.")
    width, height = _header_size(data)
    if width * height > MAX_PIXELS:
        raise DataError(
            f"{path} is {width}x{height} pixels, more than the limit of {MAX_PIXELS:,}; "
            "C-NMC images are 450x450: resize or remove it."
        )
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise DataError(
            f"{path} cannot be decoded as an image (corrupt, truncated or not an image file); "
            "replace it with a good copy or remove it."
        )
    return to_rgb(image)


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


def _header_size(data: np.ndarray) -> tuple[int, int]:
    """Width and height from a BMP or PNG header without decoding (0, 0 when unknown)."""
    head = data[:32].tobytes()
    if head[:2] == b"BM" and len(head) >= 26:
        width = int.from_bytes(head[18:22], "little", signed=True)
        height = int.from_bytes(head[22:26], "little", signed=True)
        return abs(width), abs(height)
    if head[:8] == b"\x89PNG\r\n\x1a\n" and len(head) >= 24:
        return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    return 0, 0


#: Largest upload accepted, in bytes (a C-NMC BMP is about 600 KB).
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
#: File name endings the uploader offers (the content is checked, not the name).
UPLOAD_EXTENSIONS = ("bmp", "png", "jpg", "jpeg", "tif", "tiff")
_SIGNATURES = (
    (b"BM", "BMP"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)


@dataclass
class UploadedImage:
    """One accepted upload: its name, content hash, and RGB pixels (uint8, as decoded)."""

    name: str
    sha1: str
    image: np.ndarray
    n_bytes: int
    meta: dict = field(default_factory=dict)


def _format(data: bytes) -> str | None:
    for sig, fmt in _SIGNATURES:
        if data.startswith(sig):
            return fmt
    return None


def _jpeg_size(data: bytes) -> tuple[int, int]:
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            i += 1
            continue
        marker = data[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7 or marker == 0xFF:
            i += 1 if marker == 0xFF else 2
            continue
        if i + 4 > n:
            break
        length = int.from_bytes(data[i + 2:i + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC) and i + 9 <= n:
            height = int.from_bytes(data[i + 5:i + 7], "big")
            width = int.from_bytes(data[i + 7:i + 9], "big")
            return width, height
        if length < 2:
            break
        i += 2 + length
    return 0, 0


def _tiff_size(data: bytes) -> tuple[int, int]:
    end = "<" if data[:2] == b"II" else ">"
    try:
        (offset,) = struct.unpack_from(end + "I", data, 4)
        (count,) = struct.unpack_from(end + "H", data, offset)
        width = height = 0
        for k in range(count):
            tag, typ, _, value = struct.unpack_from(end + "HHI4s", data, offset + 2 + 12 * k)
            if tag in (256, 257):
                number = struct.unpack_from(end + ("H" if typ == 3 else "I"), value)[0]
                if tag == 256:
                    width = number
                else:
                    height = number
        return width, height
    except struct.error:
        return 0, 0


def image_size_from_header(data: bytes) -> tuple[str | None, int, int]:
    """``(format, width, height)`` read from the first bytes, without decoding.

    ``format`` is ``BMP``, ``PNG``, ``JPEG``, ``TIFF`` or None (not an image we accept); the
    size is ``(0, 0)`` when the header does not give it.
    """
    fmt = _format(data)
    if fmt == "BMP" and len(data) >= 26:
        return fmt, abs(int.from_bytes(data[18:22], "little", signed=True)), \
            abs(int.from_bytes(data[22:26], "little", signed=True))
    if fmt == "PNG" and len(data) >= 24:
        return fmt, int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if fmt == "JPEG":
        return (fmt, *_jpeg_size(data))
    if fmt == "TIFF":
        return (fmt, *_tiff_size(data))
    return fmt, 0, 0


def decode_upload(name: str, data: bytes, max_bytes: int = MAX_UPLOAD_BYTES) -> UploadedImage:
    """Check and decode one uploaded file (bytes only) into an RGB uint8 image.

    Raises:
        DataError: empty, larger than ``max_bytes``, not a BMP/PNG/JPEG/TIFF, more pixels than
            the limit, undecodable (corrupt or truncated), or all black (no cell to crop).
    """
    import cv2

    label = str(name) or "the file"
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DataError(f"{label}: expected the file's bytes.")
    data = bytes(data)
    if len(data) == 0:
        raise DataError(f"{label} is empty (0 bytes): upload the image file itself.")
    if len(data) > max_bytes:
        raise DataError(f"{label} is {len(data) / 2**20:.1f} MB, more than the limit of "
                        f"{max_bytes / 2**20:.0f} MB: upload a single cell image (C-NMC images "
                        "are 450x450, under 1 MB).")
    fmt, width, height = image_size_from_header(data)
    if fmt is None:
        raise DataError(f"{label} is not a BMP, PNG, JPEG or TIFF image (its content does not "
                        "start like one): upload an image file.")
    if width <= 0 or height <= 0:
        raise DataError(f"{label}: the {fmt} header gives no image size (a damaged or unusual "
                        "file); save it again as PNG or BMP and upload that.")
    if width * height > MAX_PIXELS:
        raise DataError(f"{label} is {width}x{height} pixels, more than the limit of "
                        f"{MAX_PIXELS:,}: upload one cell image (C-NMC images are 450x450).")
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        raise DataError(f"{label} cannot be decoded as a {fmt} image (corrupt or truncated): "
                        "upload a good copy.")
    rgb = to_rgb(image)
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
