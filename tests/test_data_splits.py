"""Split protocols and grouped k-fold."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cnmc_core.contracts import protocol_info
from cnmc_core.data.splits import (
    check_fractions,
    check_split,
    grouped_kfold,
    load_split,
    make_split,
    save_split,
)
from cnmc_core.exceptions import ConfigError, DataError


def fake_manifest(n_all_subjects=20, n_hem_subjects=14, seed=0, with_prelim=True) -> pd.DataFrame:
    """A manifest of C-NMC shape: ALL subjects with more cells, HEM subjects fewer; folds by subject."""
    rng = np.random.default_rng(seed)
    rows = []
    for y, n_subj, prefix in ((1, n_all_subjects, ""), (0, n_hem_subjects, "H")):
        for s in range(n_subj):
            subject = f"{prefix}{s + 1}"
            for i in range(int(rng.integers(10, 40)) if y else int(rng.integers(5, 25))):
                name = f"UID_{subject}_{i}_1_{'all' if y else 'hem'}.bmp"
                rows.append({"image_id": name, "path": f"/x/{name}", "label": "all" if y else "hem", "y": y,
                             "subject": subject, "source": f"fold_{s % 3}"})
    if with_prelim:
        for y, subject in ((1, "99"), (0, "H99")):
            for i in range(6):
                name = f"UID_{subject}_{i}_1_{'all' if y else 'hem'}.bmp"
                rows.append({"image_id": name, "path": f"/x/{name}", "label": "all" if y else "hem", "y": y,
                             "subject": subject, "source": "prelim"})
    rows.append({"image_id": "final_1.bmp", "path": "/x/1.bmp", "label": "", "y": -1, "subject": "", "source": "final"})
    return pd.DataFrame(rows)


def _joined(manifest, split):
    return split.merge(manifest, on="image_id")


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_subject_split_is_disjoint_and_stratified(seed):
    manifest = fake_manifest()
    split = make_split(manifest, "subject", seed=seed)
    j = _joined(manifest, split)
    assert set(split["split"]) == {"train", "val", "test"}
    assert j.groupby("subject")["split"].nunique().max() == 1  # no subject in two splits
    for y in (0, 1):  # 60/20/20 of the subjects of each class
        subj = j[j["y"] == y].groupby("split")["subject"].nunique()
        total = subj.sum()
        assert abs(subj["train"] / total - 0.6) < 0.1 and abs(subj["test"] / total - 0.2) < 0.1
    assert "final_1.bmp" not in set(split["image_id"])  # unlabelled images are left out
    assert len(split) == (manifest["y"] >= 0).sum()


def test_split_is_deterministic_for_a_seed():
    manifest = fake_manifest()
    for protocol in ("subject", "paper", "official"):
        a = make_split(manifest, protocol, seed=3)
        b = make_split(manifest.sample(frac=1, random_state=1), protocol, seed=3)  # row order must not matter
        pd.testing.assert_frame_equal(a, b)
    assert not make_split(manifest, "subject", seed=3).equals(make_split(manifest, "subject", seed=4))


def test_paper_split_by_image_keeps_class_ratios():
    manifest = fake_manifest()
    split = make_split(manifest, "paper", seed=0)
    j = _joined(manifest, split)
    assert set(j["source"]) <= {"fold_0", "fold_1", "fold_2"}  # over the training folds only
    ratio = (j["y"] == 1).mean()
    for name in ("train", "val", "test"):
        part = j[j["split"] == name]
        assert abs((part["y"] == 1).mean() - ratio) < 0.02
        assert abs(len(part) / len(j) - {"train": 0.6, "val": 0.2, "test": 0.2}[name]) < 0.01
    # the leak it is flagged for: subjects shared between train and test
    assert j.groupby("subject")["split"].nunique().max() > 1
    assert protocol_info("paper").leaky and "leaky" in protocol_info("paper").label()
    assert not protocol_info("subject").leaky


def test_paper_split_counts_match_the_paper():
    # 7,272 ALL and 3,389 HEM images give the paper's 6,396 / 2,132 / 2,133
    rows = [{"image_id": f"a{i}", "y": 1} for i in range(7272)] + [{"image_id": f"h{i}", "y": 0} for i in range(3389)]
    manifest = pd.DataFrame(rows).assign(path="", label="", subject="", source="fold_0")
    manifest["subject"] = manifest["image_id"]
    counts = make_split(manifest, "paper", seed=0)["split"].value_counts()
    assert abs(counts["train"] - 6396) <= 2 and abs(counts["val"] - 2132) <= 2 and abs(counts["test"] - 2133) <= 2


def test_official_split():
    manifest = fake_manifest()
    j = _joined(manifest, make_split(manifest, "official"))
    assert set(j.loc[j["split"] == "train", "source"]) == {"fold_0", "fold_1"}
    assert set(j.loc[j["split"] == "val", "source"]) == {"fold_2"}
    assert set(j.loc[j["split"] == "test", "source"]) == {"prelim"}


@pytest.mark.parametrize(
    "manifest, protocol, err",
    [
        (fake_manifest(with_prelim=False), "official", "official split needs labelled prelim images for test"),
        (fake_manifest().query("y != 0"), "subject", "has only ALL images"),
        (fake_manifest(n_all_subjects=2, with_prelim=False), "subject", "needs at least 3 ALL subjects"),
        (fake_manifest().assign(subject=""), "subject", "needs the subject of every image"),
        (fake_manifest(), "random", "The split protocol must be one of"),
    ],
)
def test_split_errors(manifest, protocol, err):
    with pytest.raises((DataError, ConfigError), match=err):
        make_split(manifest, protocol)


@pytest.mark.parametrize("fractions, err", [
    ((0.5, 0.5, 0.5), r"The 'fractions' parameter must sum to 1. Got \(0.5, 0.5, 0.5\) \(sum 1.5\)"),
    ((float("nan"), 0.5, 0.5), r"must be a float in the range \(0, 1\). Got nan instead"),  # looped forever
    ((float("inf"), 0.5, 0.5), r"must be a float in the range \(0, 1\). Got inf instead"),
    ((0.0, 0.5, 0.5), r"Got 0.0 instead. Give three shares \(train, val, test\) above 0"),
    ((-0.2, 0.6, 0.6), r"Got -0.2 instead"),
    ((0.6, 0.4), r"must be three numbers. Got \(0.6, 0.4\) instead"),
    (0.6, r"must be three numbers. Got 0.6 instead"),
    (("0.6", "0.2", "0.2"), r"must be a float .* Got '0.6' instead"),
])
def test_bad_fractions(fractions, err):
    with pytest.raises(ConfigError, match=err):
        make_split(fake_manifest(), "subject", fractions=fractions)


@pytest.mark.parametrize("seed", [-1, 2**32, 1.5, True, "0"])
def test_bad_seeds(seed):
    with pytest.raises(ConfigError, match=r"The 'seed' parameter must be an int in the range \[0, 4294967295\]"):
        make_split(fake_manifest(), "paper", seed=seed)
    with pytest.raises(ConfigError, match=r"The 'seed' parameter must be an int"):
        grouped_kfold(fake_manifest(), k=3, fold=0, seed=seed)


def test_check_fractions_accepts_shares_summing_to_one():
    assert check_fractions([0.6, 0.2, 0.2]) == (0.6, 0.2, 0.2)
    assert check_fractions(np.array([1, 1, 1]) / 3) == pytest.approx((1 / 3,) * 3)
    assert make_split(fake_manifest(), "subject", seed=2**32 - 1)["split"].nunique() == 3


def test_grouped_kfold_covers_every_subject_once_as_test():
    manifest = fake_manifest()
    tests = []
    for fold in range(5):
        split = grouped_kfold(manifest, k=5, fold=fold, seed=0)
        j = _joined(manifest, split)
        assert j.groupby("subject")["split"].nunique().max() == 1
        tests.append(set(j.loc[j["split"] == "test", "subject"]))
    assert set().union(*tests) == set(manifest.loc[manifest["y"] >= 0, "subject"])
    assert sum(len(t) for t in tests) == len(set().union(*tests))  # disjoint test folds
    with pytest.raises(ConfigError, match=r"The 'fold' parameter must be an int in the range \[0, 4\]. "
                                          r"Got 5 instead. Number the folds 0 to 4"):
        grouped_kfold(manifest, k=5, fold=5)
    with pytest.raises(ConfigError, match=r"The 'k' parameter must be an int in the range \[3, inf\]. Got 2"):
        grouped_kfold(manifest, k=2, fold=0)


@pytest.mark.parametrize("protocol", ["subject-kfold", "image-kfold"])
def test_kfold_protocols_score_every_image_once_with_the_next_fold_as_val(protocol):
    manifest = fake_manifest()
    labelled = set(manifest.loc[manifest["y"] >= 0, "image_id"])
    tests, vals = [], []
    for fold in range(4):
        split = make_split(manifest, protocol, seed=3, kfold={"k": 4, "fold": fold})
        assert set(split["image_id"]) == labelled  # the same pool for both protocols
        tests.append(set(split.loc[split["split"] == "test", "image_id"]))
        vals.append(set(split.loc[split["split"] == "val", "image_id"]))
        j = _joined(manifest, split)
        if protocol == "subject-kfold":
            assert j.groupby("subject")["split"].nunique().max() == 1
    assert set().union(*tests) == labelled and sum(map(len, tests)) == len(labelled)
    assert all(vals[i] == tests[(i + 1) % 4] for i in range(4))  # fold i + 1 is val
    # the same seed gives the same folds; another seed other folds
    again = make_split(manifest, protocol, seed=3, kfold={"k": 4, "fold": 0})
    assert set(again.loc[again["split"] == "test", "image_id"]) == tests[0]
    other = make_split(manifest, protocol, seed=4, kfold={"k": 4, "fold": 0})
    assert set(other.loc[other["split"] == "test", "image_id"]) != tests[0]


def test_image_kfold_is_leaky_and_subject_kfold_is_not():
    assert protocol_info("image-kfold").leaky and "leaky" in protocol_info("image-kfold").label()
    assert not protocol_info("subject-kfold").leaky
    manifest = fake_manifest()
    j = _joined(manifest, make_split(manifest, "image-kfold", kfold={"k": 5, "fold": 0}))
    assert j.groupby("subject")["split"].nunique().max() > 1  # subjects cross the folds


@pytest.mark.parametrize("protocol, kfold, message", [
    ("subject-kfold", None, "needs kfold="),
    ("image-kfold", {"k": 4}, "needs kfold="),
    ("subject", {"k": 4, "fold": 0}, "applies to the k-fold protocols"),
    ("subject-kfold", {"k": 2, "fold": 0}, "'k' parameter must be an int in the range"),
])
def test_kfold_arguments_are_checked(protocol, kfold, message):
    with pytest.raises(ConfigError, match=message):
        make_split(fake_manifest(), protocol, kfold=kfold)


def test_check_split_refuses_shared_subjects():
    manifest = fake_manifest()
    leaky = make_split(manifest, "paper", seed=0)
    with pytest.raises(DataError, match="appear in more than one split"):
        check_split(manifest, leaky, "subject")


def test_split_file_round_trip(tmp_path):
    manifest = fake_manifest()
    split = make_split(manifest, "subject")
    save_split(split, tmp_path / "s.csv")
    pd.testing.assert_frame_equal(load_split(tmp_path / "s.csv", manifest), split)
    with pytest.raises(DataError, match="not in the dataset"):
        load_split(tmp_path / "s.csv", manifest.iloc[:10])
