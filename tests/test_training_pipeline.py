"""cnmc_core.training.pipeline: the images a run uses (split, cap)."""

from __future__ import annotations

import pandas as pd
import pytest

from cnmc_core.exceptions import DataError
from cnmc_core.training.pipeline import plan_split


def one_hem_in_val() -> pd.DataFrame:
    """A manifest whose official val split (fold_2) holds 19 ALL images and 1 HEM image."""
    rows = []

    def add(source, subject, y, n):
        for i in range(n):
            rows.append({"image_id": f"UID_{subject}_{source}{i}_1_{'all' if y else 'hem'}.bmp",
                         "path": f"/nowhere/{source}{i}.bmp", "label": "all" if y else "hem", "y": y,
                         "subject": subject, "source": source, "width": 450, "height": 450})

    add("fold_0", "1", 1, 5)
    add("fold_0", "H1", 0, 5)
    add("fold_2", "2", 1, 19)
    add("fold_2", "H2", 0, 1)
    add("prelim", "3", 1, 3)
    add("prelim", "H3", 0, 3)
    return pd.DataFrame(rows)


def test_plan_split_applies_the_protocol_then_the_cap():
    config = {"split_protocol": "official", "seed": 0, "split_fractions": [0.6, 0.2, 0.2],
              "max_images_per_split": None}
    split = plan_split(one_hem_in_val(), config)
    counts = split.groupby(["split", "y"]).size().to_dict()
    assert counts == {("test", 0): 3, ("test", 1): 3, ("train", 0): 5, ("train", 1): 5,
                      ("val", 0): 1, ("val", 1): 19}
    assert set(split.columns) == {"image_id", "split", "y", "subject"}
    # a cap of 6 keeps 30% of each class: round(0.3) = 0 HEM images left in val
    with pytest.raises(DataError, match="The val split has a single class after sampling; use "
                                        "more images"):
        plan_split(one_hem_in_val(), {**config, "max_images_per_split": 6})


def test_cap_keeps_both_classes_and_the_ratio():
    from cnmc_core.training.pipeline import _cap

    split = pd.DataFrame({"image_id": [f"i{k}" for k in range(300)],
                          "split": ["train"] * 200 + ["val"] * 100,
                          "y": ([1] * 140 + [0] * 60) + ([1] * 70 + [0] * 30),
                          "subject": "s"})
    capped = _cap(split, 50, seed=0)
    counts = capped.groupby(["split", "y"]).size()
    assert counts[("train", 1)] == 35 and counts[("train", 0)] == 15
    assert counts[("val", 1)] == 35 and counts[("val", 0)] == 15
    assert set(capped.columns) == set(split.columns)
    assert _cap(split, None, seed=0) is split
