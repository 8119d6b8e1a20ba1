"""The paper's balancing of a training split and its augmentations."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cnmc_core.data.balance import apply_transform, balance_training
from cnmc_core.exceptions import ConfigError


def test_balance_training_like_the_paper():
    train = pd.DataFrame({"image_id": [f"a{i}" for i in range(4432)] + [f"h{i}" for i in range(1964)],
                          "y": [1] * 4432 + [0] * 1964})
    bal = balance_training(train, seed=0)
    assert (bal["y"] == 1).sum() == 3198 and (bal["y"] == 0).sum() == 3198
    assert set(bal.loc[bal["y"] == 1, "transform"]) == {"none"}
    added = bal[(bal["y"] == 0) & (bal["transform"] != "none")]
    assert len(added) == 1234 and added["image_id"].is_unique  # each augmented once
    assert set(added["transform"]) == {"flip_h", "flip_v", "rot90", "rot180", "rot270"}
    assert bal.loc[bal["y"] == 1, "image_id"].is_unique
    pd.testing.assert_frame_equal(bal, balance_training(train, seed=0))


def test_apply_transform():
    image = np.arange(2 * 2 * 3).reshape(2, 2, 3)
    assert (apply_transform(image, "flip_h")[0, 0] == image[0, 1]).all()
    assert (apply_transform(image, "flip_v")[0, 0] == image[1, 0]).all()
    assert (apply_transform(apply_transform(image, "rot90"), "rot270") == image).all()
    with pytest.raises(ConfigError, match="transform must be one of"):
        apply_transform(image, "shear")
