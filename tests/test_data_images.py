"""cnmc_core.data.images: uploads checked and decoded from their bytes only, every refusal with a
message."""

from __future__ import annotations

import struct

import cv2
import numpy as np
import pandas as pd
import pytest
from conftest import cell_image

from cnmc_core import predict as I
from cnmc_core.data import images as images_mod
from cnmc_core.exceptions import ConfigError, DataError


# --------------------------------------------------------------------------- uploads
def encode(ext: str, image=None) -> bytes:
    image = cell_image(size=120, radius=40, seed=1) if image is None else image
    ok, buf = cv2.imencode(f".{ext}", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    assert ok
    return buf.tobytes()


@pytest.mark.parametrize("ext", ["png", "bmp", "jpg", "tif"])
def test_decode_upload_reads_every_accepted_format(ext):
    up = images_mod.decode_upload(f"cell.{ext}", encode(ext))
    assert up.image.shape == (120, 120, 3) and up.image.dtype == np.uint8
    assert images_mod.image_size_from_header(encode(ext))[1:] == (120, 120)
    if ext != "jpg":  # lossless: the same pixels, in RGB order
        np.testing.assert_array_equal(up.image, cell_image(size=120, radius=40, seed=1))


def png_header(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + b"\0" * 4


@pytest.mark.parametrize("name, data, message", [
    ("empty.png", b"", "is empty"),
    ("notes.png", b"just some text", "is not a BMP, PNG, JPEG or TIFF"),
    ("model.pkl", b"\x80\x04\x95pickle", "is not a BMP, PNG, JPEG or TIFF"),
    ("bomb.png", png_header(100_000, 100_000), "more than the limit"),
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
