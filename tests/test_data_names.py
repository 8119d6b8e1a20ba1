"""cnmc_core.data.names: C-NMC file names (subject and label) and the preliminary-phase labels CSV."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pandas as pd
import pytest

from cnmc_core.data.names import find_labels_csv, parse_image_name, read_prelim_labels
from cnmc_core.exceptions import DataError


@pytest.mark.parametrize(
    "name, subject, label",
    [
        ("UID_1_3_1_all.bmp", "1", "all"),
        ("UID_h3_6_1_hem.bmp", "H3", "hem"),
        ("UID_H3_6_1_hem.bmp", "H3", "hem"),
        ("UID_51_180_2_all.bmp", "51", "all"),
        ("uid_H40_24_14_HEM.BMP", "H40", "hem"),
    ],
)
def test_parse_image_name(name, subject, label):
    parsed = parse_image_name(name)
    assert parsed["subject"] == subject and parsed["label"] == label


@pytest.mark.parametrize("name", ["1.bmp", "UID_1_3_all.bmp", "foo_1_2_3_all.bmp", "UID_1_3_1_xyz.bmp"])
def test_parse_image_name_rejects(name):
    assert parse_image_name(name) is None


def test_subject_3_and_h3_differ():
    assert parse_image_name("UID_3_1_1_all.bmp")["subject"] != parse_image_name("UID_h3_1_1_hem.bmp")["subject"]


def test_real_file_names_parse_like_the_real_manifest(real_samples):
    ref = pd.read_csv(real_samples / "MANIFEST.csv", dtype=str)
    for row in ref.itertuples():
        parsed = parse_image_name(Path(row.file).name)
        assert parsed is not None, row.file
        assert parsed["subject"] == row.subject_id_normalized.upper()
        assert parsed["label"] == row.label


def test_real_labels_csv(real_samples):
    labels = read_prelim_labels(real_samples / "C-NMC_test_prelim_phase_data_labels.csv")
    assert len(labels) == 1867
    assert set(labels["y"]) == {0, 1}
    assert (labels["label"].map({"all": 1, "hem": 0}) == labels["y"]).all()
    assert labels["subject"].nunique() == 28
    assert labels.iloc[0].to_dict() == {
        "new_name": "1.bmp", "image_id": "UID_57_29_1_all.bmp", "label": "all", "y": 1, "subject": "57",
    }


@pytest.mark.parametrize(
    "text, message",
    [
        ("Patient_ID,labels\nUID_1_1_1_all.bmp,1\n", r"lacks column\(s\) \['new_names'\]"),
        ("Patient_ID,new_names,labels\nUID_1_1_1_all.bmp,1.bmp,1\nUID_1_2_1_all.bmp,1.bmp,1\n",
         r"lists new_names \['1.bmp'\] more than once"),
    ],
)
def test_bad_labels_csv(tmp_path, text, message):
    path = tmp_path / "C-NMC_test_prelim_phase_data_labels.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=message):
        read_prelim_labels(path)


def test_labels_csv_unknown_label_rows_are_reported(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("Patient_ID,new_names,labels\nUID_1_1_1_all.bmp,1.bmp,1\nUID_1_2_1_all.bmp,2.bmp,7\n")
    labels = read_prelim_labels(path)
    assert len(labels) == 1
    assert labels.attrs["bad_rows"] == ["line 3: label '7' is not 0 (HEM) or 1 (ALL)"]


def test_find_labels_csv_one_copy_or_a_clear_error(tmp_path):
    first = tmp_path / "a" / "C-NMC_test_prelim_phase_data_labels.csv"
    others = [tmp_path / "notes.csv", tmp_path / "prelim_phase.csv"]  # not a labels CSV by name
    assert find_labels_csv(tmp_path, others) is None
    assert find_labels_csv(tmp_path, [*others, first]) == first
    second = tmp_path / "b" / "C-NMC_test_prelim_phase_data_labels.csv"
    with pytest.raises(DataError, match=r"Found 2 preliminary-phase labels CSVs under .*keep one copy"):
        find_labels_csv(tmp_path, [first, second])


def test_labels_csv_that_is_a_fifo_is_refused_not_waited_on(tmp_path):
    fifo = tmp_path / "C-NMC_test_prelim_phase_data_labels.csv"
    os.mkfifo(fifo)
    outcome = []

    def read():
        try:
            read_prelim_labels(fifo)
        except DataError as exc:
            outcome.append(str(exc))

    reader = threading.Thread(target=read, daemon=True)  # daemon: a hang cannot block pytest's exit
    reader.start()
    reader.join(timeout=20)
    if reader.is_alive():  # let the stuck reader go before failing
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    assert not reader.is_alive(), "read_prelim_labels blocked on a FIFO"
    assert outcome and "Cannot read labels CSV" in outcome[0] and "not a regular file (a FIFO)" in outcome[0]
