"""Dataset discovery: layouts, subject parsing, labels CSV, bad input by message."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import cell_image, make_kaggle_tree, write_image

from cnmc_core.contracts import MANIFEST_COLUMNS
from cnmc_core.data.images import read_image
from cnmc_core.data.manifest import (
    load_manifest,
    manifest_fingerprint,
    save_manifest,
    scan_dataset,
)
from cnmc_core.exceptions import DataError


def test_scan_plain_layout_on_real_samples(real_samples):
    result = scan_dataset(real_samples)
    m = result.manifest
    assert list(m.columns) == MANIFEST_COLUMNS
    assert len(m) == 40 and (m["y"] == 1).sum() == 20
    assert set(m["source"]) == {"unknown"}
    assert "H3" in set(m["subject"]) and (m["width"] == 450).all()
    row = m.set_index("image_id").loc["UID_h3_6_1_hem.bmp"]
    assert row["subject"] == "H3" and row["y"] == 0
    # the README and MANIFEST are not images: listed, never dropped silently
    assert set(result.skipped["reason"]) == {"not an image file (.csv)", "not an image file (.md)"}
    assert "40 images" in result.summary()


def test_scan_kaggle_layout(tmp_path):
    make_kaggle_tree(tmp_path)
    result = scan_dataset(tmp_path)
    m = result.manifest.set_index("image_id")
    counts = m["source"].value_counts().to_dict()
    assert counts == {"fold_0": 6, "fold_1": 4, "fold_2": 4, "prelim": 3, "final": 2}
    # renamed prelim files get their real id, subject and label from the CSV
    assert m.loc["UID_H50_1_1_hem.bmp", "subject"] == "H50" and m.loc["UID_H50_1_1_hem.bmp", "y"] == 0
    assert m.loc["UID_50_1_1_all.bmp", "path"].endswith("1.bmp")
    # final-phase images are listed unlabelled
    final = result.manifest[result.manifest["source"] == "final"]
    assert set(final["y"]) == {-1} and set(final["label"]) == {""}
    assert result.labels_csv.name == "C-NMC_test_prelim_phase_data_labels.csv"


def test_scan_tcia_layout_nested(tmp_path, real_samples):
    # the TCIA package nests the prelim folder a varying number of times
    src = sorted((real_samples / "all").iterdir())[:2] + sorted((real_samples / "hem").iterdir())[:2]
    for i, f in enumerate(src):
        label = "all" if "_all" in f.name else "hem"
        dest = tmp_path / "TCIA" / "C-NMC_training_data" / f"fold_{i % 3}" / label / f.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(f, dest)
    prelim = tmp_path / "TCIA" / "C-NMC_test_prelim_phase_data" / "C-NMC_test_prelim_phase_data"
    prelim.mkdir(parents=True)
    shutil.copy(src[0], prelim / "7.bmp")
    (tmp_path / "TCIA" / "C-NMC_test_prelim_phase_data" / "C-NMC_test_prelim_phase_data_labels.csv").write_text(
        "Patient_ID,new_names,labels\nUID_90_1_1_all.bmp,7.bmp,1\n")
    m = scan_dataset(tmp_path).manifest.set_index("image_id")
    assert len(m) == 5
    assert m.loc["UID_90_1_1_all.bmp", "source"] == "prelim"
    assert m.loc[src[0].name, "source"] == "fold_0"


@pytest.mark.parametrize("ext", [".png", ".jpg", ".tif"])
def test_other_formats_sizes_and_channels(tmp_path, ext):
    import cv2

    rgb = cell_image(size=600, radius=100)
    write_image(tmp_path / "all" / f"UID_1_1_1_all{ext}", rgb)
    write_image(tmp_path / "hem" / f"UID_H1_1_1_hem{ext}", cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    m = scan_dataset(tmp_path).manifest
    assert len(m) == 2 and set(m["width"]) == {600}
    assert read_image(tmp_path / "hem" / f"UID_H1_1_1_hem{ext}").shape == (600, 600, 3)


def test_rgba_is_composited_on_black(tmp_path):
    import cv2

    rgba = np.zeros((50, 50, 4), np.uint8)
    rgba[10:20, 10:20] = (200, 100, 50, 255)
    rgba[30:40, 30:40] = (200, 100, 50, 0)  # transparent: background
    cv2.imwrite(str(tmp_path / "x.png"), rgba)
    image = read_image(tmp_path / "x.png")
    assert image.shape == (50, 50, 3)
    assert tuple(image[15, 15]) == (50, 100, 200)  # BGR file read back as RGB
    assert not image[35, 35].any()


def test_bad_files_are_listed_and_counted(tmp_path):
    write_image(tmp_path / "all" / "UID_1_1_1_all.bmp", cell_image())
    write_image(tmp_path / "hem" / "UID_H1_1_1_hem.bmp", cell_image())
    (tmp_path / "all" / "UID_1_2_1_all.bmp").write_bytes(b"")  # empty
    (tmp_path / "all" / "UID_1_3_1_all.bmp").write_bytes(b"this is not an image")
    good = (tmp_path / "all" / "UID_1_1_1_all.bmp").read_bytes()
    (tmp_path / "all" / "UID_1_4_1_all.bmp").write_bytes(good[: len(good) // 3])  # truncated
    write_image(tmp_path / "hem" / "UID_H1_2_1_hem.bmp", np.zeros((40, 40, 3), np.uint8))  # all black
    (tmp_path / "notes.txt").write_text("hello")
    write_image(tmp_path / "hem" / "UID_2_9_1_all.bmp", cell_image())  # name and folder disagree
    result = scan_dataset(tmp_path)
    assert sorted(result.manifest["image_id"]) == ["UID_1_1_1_all.bmp", "UID_H1_1_1_hem.bmp"]
    reasons = dict(zip(result.skipped["path"].map(lambda p: Path(p).name), result.skipped["reason"]))
    assert reasons["UID_1_2_1_all.bmp"] == "empty file"
    assert reasons["UID_1_3_1_all.bmp"].startswith("cannot be decoded")
    assert reasons["UID_1_4_1_all.bmp"].startswith("cannot be decoded")
    assert reasons["UID_H1_2_1_hem.bmp"] == "all-black image (no cell)"
    assert reasons["notes.txt"] == "not an image file (.txt)"
    assert reasons["UID_2_9_1_all.bmp"] == "name says all but folder says hem"
    summary = result.summary()
    assert "Skipped 6 file(s)" in summary and "UID_1_3_1_all.bmp" in summary


def test_symlink_loop_does_not_hang(tmp_path):
    write_image(tmp_path / "all" / "UID_1_1_1_all.bmp", cell_image())
    os.symlink(tmp_path, tmp_path / "all" / "loop")
    assert len(scan_dataset(tmp_path).manifest) == 1


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda p: p / "missing", "does not exist"),
        (lambda p: (p / "f.txt").write_text("x") and p / "f.txt", "is not a folder"),
        (lambda p: p, "No C-NMC image found under"),
    ],
)
def test_bad_roots(tmp_path, setup, message):
    root = setup(tmp_path)
    with pytest.raises(DataError, match=message):
        scan_dataset(root)


def test_empty_tree_names_the_layouts(tmp_path):
    (tmp_path / "readme.md").write_text("x")
    with pytest.raises(DataError) as err:
        scan_dataset(tmp_path)
    text = str(err.value)
    assert "Kaggle mirror" in text and "TCIA" in text and "{all,hem}" in text and "readme.md" in text


def test_duplicate_image_ids(tmp_path):
    write_image(tmp_path / "a" / "all" / "UID_1_1_1_all.bmp", cell_image())
    write_image(tmp_path / "b" / "all" / "UID_1_1_1_all.bmp", cell_image())
    with pytest.raises(DataError, match=r"Image id 'UID_1_1_1_all.bmp' occurs 2 times .* remove the extra copies"):
        scan_dataset(tmp_path)


def test_manifest_round_trip_and_fingerprint(tmp_path):
    make_kaggle_tree(tmp_path / "data")
    manifest = scan_dataset(tmp_path / "data").manifest
    save_manifest(manifest, tmp_path / "m.csv")
    back = load_manifest(tmp_path / "m.csv")
    pd.testing.assert_frame_equal(back[MANIFEST_COLUMNS], manifest[MANIFEST_COLUMNS], check_dtype=False)
    assert manifest_fingerprint(back) == manifest_fingerprint(manifest)
    moved = manifest.assign(path=manifest["path"].str.replace("data", "elsewhere"))
    assert manifest_fingerprint(moved) == manifest_fingerprint(manifest)
    assert manifest_fingerprint(manifest.iloc[1:]) != manifest_fingerprint(manifest)


def test_load_manifest_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist; create it with `python -m cnmc_core scan"):
        load_manifest(tmp_path / "none.csv")
    (tmp_path / "bad.csv").write_text("image_id,path\na,b\n")
    with pytest.raises(DataError, match=r"lacks column\(s\) \['label', 'y', 'subject', 'source'\]"):
        load_manifest(tmp_path / "bad.csv")


def test_images_over_the_pixel_limit_are_skipped_whatever_their_format(tmp_path):
    # A 7000x7000 JPEG used to pass (only BMP and PNG headers were read for datasets) while the
    # same-size PNG was refused: every format's header is read now, before decoding.
    import cv2

    write_image(tmp_path / "all" / "UID_1_1_1_all.bmp", cell_image())
    write_image(tmp_path / "hem" / "UID_H1_1_1_hem.bmp", cell_image())
    big = np.zeros((7000, 7000), np.uint8)
    big[3000:4000, 3000:4000] = 120  # a cell, so only the size can refuse it
    for ext in (".jpg", ".png"):
        assert cv2.imwrite(str(tmp_path / "all" / f"UID_2_1_1_all{ext}"), big)
        result = scan_dataset(tmp_path)
        reasons = dict(zip(result.skipped["path"].map(lambda p: Path(p).name), result.skipped["reason"]))
        assert reasons == {f"UID_2_1_1_all{ext}": "image too large"}, ext
        assert sorted(result.manifest["image_id"]) == ["UID_1_1_1_all.bmp", "UID_H1_1_1_hem.bmp"]
        os.remove(tmp_path / "all" / f"UID_2_1_1_all{ext}")


def test_a_fifo_named_like_an_image_is_listed_not_opened(tmp_path):
    import threading

    write_image(tmp_path / "all" / "UID_1_1_1_all.bmp", cell_image())
    write_image(tmp_path / "hem" / "UID_H1_1_1_hem.bmp", cell_image())
    os.mkfifo(tmp_path / "all" / "UID_1_2_1_all.bmp")  # used to hang the scan forever
    os.mkfifo(tmp_path / "C-NMC_test_prelim_phase_data_labels.csv")  # nor is a FIFO read as the CSV
    results = []
    scanner = threading.Thread(target=lambda: results.append(scan_dataset(tmp_path)), daemon=True)
    scanner.start()
    scanner.join(timeout=60)
    if scanner.is_alive():  # free the stuck scan before failing
        for name in ("all/UID_1_2_1_all.bmp", "C-NMC_test_prelim_phase_data_labels.csv"):
            os.close(os.open(tmp_path / name, os.O_WRONLY | os.O_NONBLOCK))
    assert not scanner.is_alive(), "the scan blocked on a FIFO"
    result = results[0]
    assert sorted(result.manifest["image_id"]) == ["UID_1_1_1_all.bmp", "UID_H1_1_1_hem.bmp"]
    reasons = dict(zip(result.skipped["path"].map(lambda p: Path(p).name), result.skipped["reason"]))
    assert reasons == {"UID_1_2_1_all.bmp": "not a regular file (a FIFO)",
                       "C-NMC_test_prelim_phase_data_labels.csv": "not a regular file (a FIFO)"}
    assert result.labels_csv is None
    assert "Skipped 2 file(s)" in result.summary() and "not a regular file (a FIFO)" in result.summary()


def test_a_folder_that_cannot_be_read_is_listed_with_its_reason(tmp_path):
    from conftest import CHECK_LOCKED, run_unprivileged

    write_image(tmp_path / "all" / "UID_1_1_1_all.bmp", cell_image())
    write_image(tmp_path / "hem" / "UID_H1_1_1_hem.bmp", cell_image())
    locked = tmp_path / "fold_more"
    write_image(locked / "all" / "UID_2_1_1_all.bmp", cell_image())
    code = CHECK_LOCKED + """
import json
from cnmc_core.data.manifest import scan_dataset
result = scan_dataset(sys.argv[2])
print(json.dumps({"ids": sorted(result.manifest["image_id"]), "skipped": result.skipped.to_dict("records"),
                  "summary": result.summary()}))
"""
    locked.chmod(0)
    try:
        out = json.loads(run_unprivileged(code, str(locked), str(tmp_path)))
    finally:
        locked.chmod(0o755)
    # its image used to vanish without a word
    assert out["ids"] == ["UID_1_1_1_all.bmp", "UID_H1_1_1_hem.bmp"]
    assert [row["path"] for row in out["skipped"]] == [str(locked)]
    assert out["skipped"][0]["reason"].startswith("folder cannot be read (Permission denied)")
    assert "Skipped 1 file(s)" in out["summary"] and str(locked) in out["summary"]
    assert len(scan_dataset(tmp_path).manifest) == 3  # readable again: found
