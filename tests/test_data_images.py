"""cnmc_core.data.images: one header reader (Pillow, lazily) for files and uploads, every refusal
with a message and a reason, decoding only what passed; crafted files that used to slip through."""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import threading
import time
import warnings
import zlib
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from conftest import cell_image
from PIL import Image

from cnmc_core import predict as I
from cnmc_core.data import images as images_mod
from cnmc_core.data.images import (
    MAX_FRAMES,
    MAX_PIXELS,
    REASON_EMPTY,
    REASON_TOO_LARGE,
    REASON_UNDECODABLE,
    ImageRefused,
    image_header,
    read_image,
)
from cnmc_core.exceptions import ConfigError, DataError

REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- crafted files
def encode(ext: str, image=None) -> bytes:
    image = cell_image(size=120, radius=40, seed=1) if image is None else image
    ok, buf = cv2.imencode(f".{ext}", cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image)
    assert ok
    return buf.tobytes()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_file(width: int, height: int, rows: int = 4) -> bytes:
    """A PNG with a valid IHDR (CRCs right) and a little compressed data: what a bomb looks like."""
    raw = b"".join(b"\0" + b"\x40" * min(width, 64) for _ in range(rows))
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b""))


def bmp_header(width: int, height: int) -> bytes:
    """A BMP header (24-bit, uncompressed) declaring ``width`` x ``height``, without the pixels."""
    return (b"BM" + struct.pack("<IHHI", 54 + 3 * width * height, 0, 0, 54)
            + struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 0, 0, 0, 0))


def tiff_file(widths: list[int], height: int, data_width: int) -> bytes:
    """An 8-bit grey TIFF with one IFD holding an ImageWidth tag per entry of ``widths`` (a
    crafted file: the spec allows one) and ``data_width`` x ``height`` bytes of pixels."""
    tags = [(256, 4, w) for w in widths] + [(257, 4, height), (258, 3, 8), (259, 3, 1), (262, 3, 1),
                                            (273, 4, 0), (277, 3, 1), (278, 4, height),
                                            (279, 4, data_width * height)]
    data_at = 8 + 2 + 12 * len(tags) + 4
    entries = b"".join(struct.pack("<HHI", tag, kind, 1)
                       + (struct.pack("<HH", value, 0) if kind == 3 else
                          struct.pack("<I", data_at if tag == 273 else value))
                       for tag, kind, value in tags)
    return (b"II*\0" + struct.pack("<I", 8) + struct.pack("<H", len(tags)) + entries
            + struct.pack("<I", 0) + b"\x40" * (data_width * height))


def tiff_pages(*sizes: tuple[int, int]) -> bytes:
    """A real multi-page TIFF (Pillow writes it) with one black page per ``(width, height)``."""
    pages = [Image.new("L", size) for size in sizes]
    buf = io.BytesIO()
    pages[0].save(buf, "TIFF", save_all=True, append_images=pages[1:])
    return buf.getvalue()


@pytest.fixture(scope="module")
def big_jpeg() -> bytes:
    """A real 7000x7000 JPEG (49 Mpx, over the limit; black, so only about 0.6 MB)."""
    return encode("jpg", np.zeros((7000, 7000), np.uint8))


# --------------------------------------------------------------------------- the header reader
@pytest.mark.parametrize("ext", ["png", "bmp", "jpg", "tif"])
def test_decode_upload_reads_every_accepted_format(ext, tmp_path):
    up = images_mod.decode_upload(f"cell.{ext}", encode(ext))
    assert up.image.shape == (120, 120, 3) and up.image.dtype == np.uint8
    fmt = {"png": "PNG", "bmp": "BMP", "jpg": "JPEG", "tif": "TIFF"}[ext]
    assert image_header(encode(ext)) == (fmt, 120, 120) and up.meta["format"] == fmt
    (tmp_path / f"cell.{ext}").write_bytes(encode(ext))  # from a path: the same answer
    assert image_header(tmp_path / f"cell.{ext}") == (fmt, 120, 120)
    if ext != "jpg":  # lossless: the same pixels, in RGB order
        np.testing.assert_array_equal(up.image, cell_image(size=120, radius=40, seed=1))


def test_real_samples_pass_the_header_and_decode(real_samples):
    for path in sorted((real_samples / "all").iterdir())[:5] + sorted((real_samples / "hem").iterdir())[:5]:
        fmt, width, height = image_header(path)
        assert fmt == "BMP" and read_image(path).shape == (height, width, 3)


def test_tiff_with_two_image_widths_is_checked_at_the_width_libtiff_decodes():
    # The incident: widths 40000 then 100, height 10000, 1.1 MB. The old walker took the last
    # width (100x10000 passed) and libtiff decoded the first (40000x10000: the server grew to
    # 3.85 GB). Pillow reads the first, as libtiff does.
    bomb = tiff_file([40000, 100], 10000, 100)
    with pytest.raises(ImageRefused, match="bomb.tif is 40000x10000 pixels, more than the limit") as info:
        images_mod.decode_upload("bomb.tif", bomb)
    assert info.value.reason == REASON_TOO_LARGE
    # the other order is a 100x10000 image, and it decodes at the size the header gave
    fine = tiff_file([100, 40000], 10000, 100)
    assert image_header(fine) == ("TIFF", 100, 10000)
    assert images_mod.decode_upload("fine.tif", fine).image.shape == (10000, 100, 3)


def test_every_page_of_a_tiff_is_checked():
    with pytest.raises(ImageRefused, match=r"is 7000x7000 pixels \(page 2\), more than the limit"):
        image_header(tiff_pages((50, 40), (7000, 7000)), "two.tif")
    assert image_header(tiff_pages((50, 40), (30, 20))) == ("TIFF", 50, 40)  # OpenCV decodes page 1
    with pytest.raises(ImageRefused, match=f"more than {MAX_FRAMES} pages") as info:
        image_header(tiff_pages(*[(8, 8)] * (MAX_FRAMES + 1)), "many.tif")
    assert info.value.reason == REASON_TOO_LARGE


@pytest.mark.parametrize("name, data", [
    ("big.png", png_file(7000, 7000)),
    ("big.bmp", bmp_header(7000, 7000)),
    ("huge.png", png_file(100_000, 100_000)),  # above twice the limit: Pillow's bomb error
    ("edge.png", png_file(MAX_PIXELS // 1000 + 1, 1000)),  # just above: Pillow's bomb warning
])
def test_over_the_limit_is_refused_with_its_size(name, data):
    pillow_limit = Image.MAX_IMAGE_PIXELS
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(ImageRefused, match=f"{name} is \\d+x\\d+ pixels, more than the limit of "
                                               f"{MAX_PIXELS:,}") as info:
            images_mod.decode_upload(name, data)
    assert info.value.reason == REASON_TOO_LARGE
    assert not [w for w in caught if issubclass(w.category, Image.DecompressionBombWarning)]
    assert Image.MAX_IMAGE_PIXELS == pillow_limit  # set to ours while reading, then put back
    assert image_header(png_file(MAX_PIXELS // 1000, 1000))[1:] == (MAX_PIXELS // 1000, 1000)  # at it: fine


def test_big_jpeg_upload_is_refused_quickly(big_jpeg):
    start = time.perf_counter()
    with pytest.raises(ImageRefused, match="big.jpg is 7000x7000 pixels, more than the limit"):
        images_mod.decode_upload("big.jpg", big_jpeg)
    refused = time.perf_counter() - start
    start = time.perf_counter()
    assert cv2.imdecode(np.frombuffer(big_jpeg, np.uint8), cv2.IMREAD_UNCHANGED).shape == (7000, 7000)
    decoded = time.perf_counter() - start
    # a header read costs milliseconds, decoding 49 Mpx a few tenths of a second (measured on the
    # same machine at the same time, so a loaded machine slows both)
    assert refused < decoded / 3, (refused, decoded)


_MEMORY = """
import json, resource, sys
from pathlib import Path
from cnmc_core.data.images import DataError, decode_upload, image_header
image_header(Path(sys.argv[1]).read_bytes())  # warm: Pillow's plugins loaded
out = {}
for path in sys.argv[2:]:
    data = Path(path).read_bytes()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        decode_upload(Path(path).name, data)
        out[Path(path).name] = "accepted"
    except DataError as exc:
        grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
        out[Path(path).name] = [str(exc), grown / 1024]
print(json.dumps(out))
"""


def test_refusals_allocate_nothing_like_the_image(tmp_path, big_jpeg):
    # In a fresh interpreter, peak memory (ru_maxrss) is measured around each refusal: decoding
    # would take 49 MB (the JPEG) and 400 MB to 1.6 GB (the TIFF).
    (tmp_path / "small.png").write_bytes(encode("png"))
    (tmp_path / "big.jpg").write_bytes(big_jpeg)
    (tmp_path / "bomb.tif").write_bytes(tiff_file([40000, 100], 10000, 100))
    proc = subprocess.run([sys.executable, "-c", _MEMORY, str(tmp_path / "small.png"),
                           str(tmp_path / "big.jpg"), str(tmp_path / "bomb.tif")],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    for name in ("big.jpg", "bomb.tif"):
        message, grown_mb = out[name]
        assert "more than the limit" in message and grown_mb < 20, (name, message, grown_mb)


@pytest.mark.parametrize("ext", ["png", "bmp", "jpg", "tif"])
def test_truncated_headers_are_refused_with_the_name(ext):
    whole = encode(ext)
    for cut in (3, 9, 17, 26, 40):
        with pytest.raises(ImageRefused, match=f"cut.{ext} (is not a|cannot be decoded|: the)") as info:
            images_mod.decode_upload(f"cut.{ext}", whole[:cut])
        assert info.value.reason == REASON_UNDECODABLE, (cut, str(info.value))


@pytest.mark.parametrize("first, second", [((3000, 3000), (100, 100)), ((100, 100), (3000, 3000))])
def test_png_with_two_headers_is_refused(first, second):
    # Pillow takes the last IHDR; libpng refuses a second one before allocating: never decoded big
    data = png_file(100, 100, rows=100)
    extra = _chunk(b"IHDR", struct.pack(">IIBBBBB", *first, 8, 0, 0, 0, 0))
    crafted = data[:8] + extra + _chunk(b"IHDR", struct.pack(">IIBBBBB", *second, 8, 0, 0, 0, 0)) + data[33:]
    with pytest.raises(ImageRefused) as info:
        images_mod.decode_upload("twice.png", crafted)
    assert info.value.reason == REASON_UNDECODABLE


def test_header_reads_from_threads_agree_and_leave_pillow_as_it_was():
    before = Image.MAX_IMAGE_PIXELS
    files = [encode("png"), encode("bmp"), png_file(7000, 7000), tiff_file([40000, 100], 10000, 1)]
    expected = [("PNG", 120, 120), ("BMP", 120, 120), REASON_TOO_LARGE, REASON_TOO_LARGE]
    results, errors = [], []

    def work():
        for _ in range(30):
            got = []
            for data in files:
                try:
                    got.append(image_header(data))
                except ImageRefused as exc:
                    got.append(exc.reason)
            (results if got == expected else errors).append(got)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 120
    assert Image.MAX_IMAGE_PIXELS == before


def test_a_fifo_is_refused_without_being_opened(tmp_path):
    fifo = tmp_path / "x.bmp"
    os.mkfifo(fifo)
    with pytest.raises(ImageRefused, match="x.bmp is not a regular file \\(a FIFO\\)") as info:
        read_image(fifo)  # opening it would block until a writer came: it returns at once
    assert info.value.reason == "not a regular file (a FIFO)"
    with pytest.raises(OSError, match="not a regular file"):
        image_header(fifo)
    with pytest.raises(ImageRefused) as info:
        read_image(tmp_path / "missing.bmp")
    assert info.value.reason.startswith("unreadable (No such file")
    (tmp_path / "empty.bmp").write_bytes(b"")
    with pytest.raises(ImageRefused, match="empty.bmp is empty") as info:
        read_image(tmp_path / "empty.bmp")
    assert info.value.reason == REASON_EMPTY


# --------------------------------------------------------------------------- uploads
@pytest.mark.parametrize("name, data, message", [
    ("empty.png", b"", "is empty"),
    ("notes.png", b"just some text", "is not a BMP, PNG, JPEG or TIFF"),
    ("model.pkl", b"\x80\x04\x95pickle", "is not a BMP, PNG, JPEG or TIFF"),
    ("bomb.png", png_file(100_000, 100_000), "more than the limit"),
    ("cut.png", encode("png")[:60], "cannot be decoded"),
    ("black.png", encode("png", np.zeros((50, 50, 3), np.uint8)), "all black"),
])
def test_decode_upload_refuses_with_a_message(name, data, message):
    with pytest.raises(DataError, match=message) as info:
        images_mod.decode_upload(name, data)
    assert name in str(info.value)


def test_decode_upload_size_limit():
    with pytest.raises(DataError, match="more than the limit of"):
        images_mod.decode_upload("big.bmp", encode("bmp"), max_bytes=1000)


def test_check_uploads_keeps_going_and_drops_duplicates():
    good = encode("png")
    accepted, refused, notes = images_mod.check_uploads(
        [("a.png", good), ("b.txt", b"hello"), ("c.png", good), ("d.bmp", encode("bmp"))])
    assert [u.name for u in accepted] == ["a.png", "d.bmp"]
    assert len(refused) == 1 and "b.txt" in refused[0]
    assert "c.png has the same content as a.png" in notes[0]
    accepted, _, notes = images_mod.check_uploads([("a.png", good), ("d.bmp", encode("bmp"))], max_files=1)
    assert len(accepted) == 1 and "only the first 1" in notes[0]


@pytest.mark.parametrize("p, t, shown", [(0.4996, 0.5, "0.4996"), (0.5, 0.5, "0.500"),
                                         (0.123, 0.5, "0.123"), (0.7349, 0.735, "0.7349")])
def test_format_prob_never_hides_the_side_of_the_threshold(p, t, shown):
    assert I.format_prob(p, t) == shown


def test_results_frame_and_csv():
    frame = I.results_frame(["=cmd.png", "b.png"], {"A": [0.2, 0.9], "B": [0.4, 0.7]},
                            np.array([0.3, 0.8]), 0.5, "mean")
    # the columns that decide come first, the members after them
    assert frame.columns.tolist() == ["file", "P(ALL) mean", "predicted", "threshold",
                                      "P(ALL) A", "P(ALL) B"]
    single = I.results_frame(["a.png"], {"A": [0.7]}, None, 0.5, "A")
    assert single.columns.tolist() == ["file", "P(ALL) A", "predicted", "threshold"]
    assert frame["predicted"].tolist() == ["HEM", "ALL"]
    assert frame["file"][0] == "'=cmd.png"  # never a formula in a spreadsheet
    back = pd.read_csv(__import__("io").BytesIO(I.results_csv(frame)))
    assert back["P(ALL) mean"].tolist() == [0.3, 0.8]
    with pytest.raises(ConfigError):
        I.results_frame(["a"], {"A": [0.1], "B": [0.2]})
