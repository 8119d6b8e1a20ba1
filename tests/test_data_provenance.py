"""Tests of dataset provenance (:mod:`cnmc_core.data.provenance`): the synth marker file."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import cell_image, write_image

from cnmc_core.data.manifest import save_manifest, scan_dataset
from cnmc_core.data.provenance import (
    INFO_NAME,
    PROVENANCE_REAL,
    PROVENANCE_SYNTHETIC,
    dataset_provenance,
    find_synth_marker,
)
from cnmc_core.data.synth import ROOT_NAME, generate_dataset
from cnmc_core.exceptions import ConfigError


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    out = tmp_path_factory.mktemp("prov") / "ds"
    generate_dataset(out, subjects_all=2, subjects_hem=2, cells_per_subject=2, size=40, seed=1,
                     prelim_subjects=(1, 1), final_subjects=(0, 0), n_jobs=1)
    return out


def test_synthetic_at_root_and_two_levels_below(synthetic):
    marker = synthetic / INFO_NAME
    assert marker.is_file()
    for folder in (synthetic, synthetic / ROOT_NAME, synthetic / ROOT_NAME / "training_data"):
        assert find_synth_marker(folder) == marker.resolve()
        assert dataset_provenance(folder) == PROVENANCE_SYNTHETIC
    assert dataset_provenance(str(synthetic / ROOT_NAME)) == "synthetic"  # a str works too


def test_real_dataset(tmp_path):
    root = tmp_path / "real"
    write_image(root / "all" / "UID_1_1_1_all.bmp", cell_image())
    write_image(root / "hem" / "UID_H1_1_1_hem.bmp", cell_image(seed=1))
    assert find_synth_marker(root) is None
    assert dataset_provenance(root) == PROVENANCE_REAL == "real"
    assert dataset_provenance(root / "all") == "real"


def test_marker_three_levels_up_is_not_seen(tmp_path):
    # the search stops two parents above the root given: a marker far above is someone else's
    (tmp_path / INFO_NAME).write_text("{}")
    deep = tmp_path / "a" / "b" / "c"
    deep.mkdir(parents=True)
    assert dataset_provenance(deep) == "real"
    assert dataset_provenance(tmp_path / "a" / "b") == "synthetic"


def test_damaged_marker_still_synthetic(tmp_path):
    (tmp_path / INFO_NAME).write_text("not json")
    assert dataset_provenance(tmp_path) == "synthetic"


def test_manifest_csv_follows_image_paths(synthetic, tmp_path):
    manifest = scan_dataset(synthetic / ROOT_NAME).manifest
    (tmp_path / "manifests").mkdir()
    elsewhere = tmp_path / "manifests" / "m.csv"
    save_manifest(manifest, elsewhere)
    assert dataset_provenance(elsewhere) == "synthetic"
    real = tmp_path / "realdata"
    write_image(real / "all" / "UID_1_1_1_all.bmp", cell_image())
    real_csv = tmp_path / "manifests" / "real.csv"
    save_manifest(scan_dataset(real).manifest, real_csv)
    assert dataset_provenance(real_csv) == "real"
    # a CSV that is not a manifest is looked up from its folder only
    other = tmp_path / "other.csv"
    pd.DataFrame({"x": [1]}).to_csv(other, index=False)
    assert dataset_provenance(other) == "real"


def test_missing_root(tmp_path):
    with pytest.raises(ConfigError) as info:
        dataset_provenance(tmp_path / "nowhere")
    text = str(info.value)
    assert "root" in text and "does not exist" in text and "dataset folder" in text
