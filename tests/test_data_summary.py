"""cnmc_core.data.summary: the stored scan, counts by source, class and subject, the split preview
and the preprocessing steps the Data page shows."""

from __future__ import annotations

import numpy as np
import pytest

from cnmc_core.exceptions import ConfigError, DataError


# --------------------------------------------------------------------------- data view
def test_scan_is_stored_and_reused_until_the_folder_changes(tmp_path):
    from conftest import cell_image, make_kaggle_tree, write_image

    from cnmc_core.data.summary import scan_cached, scan_is_stored

    data = make_kaggle_tree(tmp_path / "data")
    root = tmp_path / "artifacts"
    assert not scan_is_stored(data, root)
    first, cached = scan_cached(data, root)
    assert not cached and scan_is_stored(data, root)
    again, cached = scan_cached(data, root)
    assert cached and again.manifest.equals(first.manifest) and again.labels_csv == first.labels_csv
    write_image(data / "C-NMC_Leukemia" / "training_data" / "fold_0" / "all" / "UID_9_1_1_all.bmp", cell_image(seed=9))
    assert not scan_is_stored(data, root)
    third, cached = scan_cached(data, root)
    assert not cached and len(third.manifest) == len(first.manifest) + 1


def test_scan_keeps_skipped_files_and_refuses_missing_paths(tmp_path):
    from conftest import make_kaggle_tree

    from cnmc_core.data.summary import scan_cached

    data = make_kaggle_tree(tmp_path / "data")
    (data / "notes.txt").write_text("hello")
    (data / "C-NMC_Leukemia" / "training_data" / "fold_0" / "all" / "UID_1_9_1_all.bmp").write_bytes(b"")
    result, _ = scan_cached(data, tmp_path / "a")
    again, cached = scan_cached(data, tmp_path / "a")
    assert cached and len(again.skipped) == len(result.skipped) == 2
    assert set(again.skipped["path"]) == set(result.skipped["path"])
    with pytest.raises(DataError, match="does not exist"):
        scan_cached(tmp_path / "nowhere", tmp_path / "a")


def test_counts_split_summary_and_samples(workspace):
    from cnmc_core.data.manifest import scan_dataset
    from cnmc_core.data.summary import (
        class_counts,
        sample_images,
        split_summary,
        subject_counts,
    )

    manifest = scan_dataset(workspace["data"]).manifest
    counts = class_counts(manifest)
    assert counts.loc["total", "total"] == len(manifest)
    assert counts.loc["total", "ALL (cancer)"] == (manifest["y"] == 1).sum()
    assert counts.loc["final", "unlabelled"] == 2
    subjects = subject_counts(manifest)
    assert subjects["images"].sum() == (manifest["y"] >= 0).sum()
    assert set(subjects["class"]) == {"ALL (cancer)", "HEM (normal)"}
    table, leak = split_summary(manifest, "subject")
    assert leak == {"shared_train_test": 0, "shared_train_val": 0, "test_images_of_train_subjects": 0}
    assert table["images"].sum() == (manifest["y"] >= 0).sum()
    table, leak = split_summary(manifest, "paper")
    assert leak["shared_train_test"] > 0 and leak["test_images_of_train_subjects"] > 0
    samples = sample_images(manifest, per_class=3, seed=1)
    assert list(samples["label"]) == ["all"] * 3 + ["hem"] * 3
    assert sample_images(manifest, per_class=3, seed=1).equals(samples)


def test_split_summary_explains_an_impossible_split(tmp_path):
    from conftest import cell_image, write_image

    from cnmc_core.data.manifest import scan_dataset
    from cnmc_core.data.summary import split_summary

    for i in range(4):
        write_image(tmp_path / "all" / f"a{i}.png", cell_image(seed=i))
        write_image(tmp_path / "hem" / f"h{i}.png", cell_image(seed=10 + i))
    manifest = scan_dataset(tmp_path).manifest
    with pytest.raises(DataError, match="subject"):
        split_summary(manifest, "subject")


def test_preprocessing_steps(workspace, tmp_path):
    from conftest import write_image

    from cnmc_core.data.manifest import scan_dataset
    from cnmc_core.data.summary import preprocessing_steps, thumbnail

    path = scan_dataset(workspace["data"]).manifest["path"].iloc[0]
    steps = preprocessing_steps(path, 64)
    assert [t.split()[0] for t, _ in steps] == ["raw", "crop", "CLAHE", "resized"]
    raw, crop, clahe, resized = (img for _, img in steps)
    assert crop.shape[0] == crop.shape[1] <= raw.shape[0] and clahe.shape == crop.shape
    assert resized.shape == (64, 64, 3) and resized.dtype == np.uint8
    assert thumbnail(path, 32).shape == (32, 32, 3)
    black = write_image(tmp_path / "black.png", np.zeros((20, 20, 3), np.uint8))
    with pytest.raises(DataError, match="all black"):
        preprocessing_steps(black, 64)
    with pytest.raises(ConfigError, match=r"The 'size' parameter must be an int in the range \[16, 1024\]. Got 3"):
        preprocessing_steps(path, 3)


def test_a_stored_scan_is_not_reused_once_a_locked_folder_opens(tmp_path):
    import json

    from conftest import CHECK_LOCKED, cell_image, run_unprivileged, write_image

    data = tmp_path / "data"
    write_image(data / "all" / "UID_1_1_1_all.bmp", cell_image())
    write_image(data / "hem" / "UID_H1_1_1_hem.bmp", cell_image())
    locked = data / "more"  # empty: only the walk's report of it tells the two states apart
    locked.mkdir()
    code = CHECK_LOCKED + """
import json, os
from cnmc_core.data.summary import scan_cached, tree_signature
data, art = sys.argv[2], sys.argv[3]
first, _ = scan_cached(data, art)
signature = tree_signature(data)
os.chmod(sys.argv[1], 0o755)  # its owner may, without any capability
second, cached = scan_cached(data, art)
print(json.dumps({"first": len(first.manifest), "skipped": first.skipped["path"].tolist(),
                  "changed": tree_signature(data) != signature, "cached": cached,
                  "second": len(second.manifest)}))
"""
    locked.chmod(0)
    try:
        out = json.loads(run_unprivileged(code, str(locked), str(data), str(tmp_path / "art")))
    finally:
        locked.chmod(0o755)
    # the stored scan listed the folder as unreadable: it must not be shown once it opens
    assert out == {"first": 2, "skipped": [str(locked)], "changed": True, "cached": False, "second": 2}


def test_tree_signature_stats_a_fifo_without_opening_it(tmp_path):
    import os

    from cnmc_core.data.summary import tree_signature

    (tmp_path / "a.bmp").write_bytes(b"BM")
    before = tree_signature(tmp_path)
    os.mkfifo(tmp_path / "b.bmp")
    assert tree_signature(tmp_path) != before  # returns (a FIFO is listed, never read)
