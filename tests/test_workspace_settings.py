"""cnmc_core.workspace.settings: the chosen dataset and protocol survive a reload."""

from __future__ import annotations

import json

import pytest

from cnmc_core.exceptions import ConfigError


# --------------------------------------------------------------------------- settings
def test_settings_round_trip_and_checks(tmp_path):
    from cnmc_core.workspace.settings import (
        chosen_dataset,
        chosen_protocol,
        load_settings,
        save_settings,
        set_chosen_dataset,
        set_chosen_protocol,
    )

    assert chosen_dataset(tmp_path) is None and chosen_protocol(tmp_path) == "subject"
    set_chosen_dataset(tmp_path / "data", tmp_path)
    set_chosen_protocol("paper", tmp_path)
    assert chosen_dataset(tmp_path) == str((tmp_path / "data").resolve())
    assert chosen_protocol(tmp_path) == "paper"
    assert json.loads((tmp_path / "workspace.json").read_text()) == load_settings(tmp_path)
    with pytest.raises(ConfigError, match="split protocol must be one of"):
        set_chosen_protocol("random", tmp_path)
    with pytest.raises(ConfigError, match="Unknown workspace setting 'colour'"):
        save_settings(tmp_path, colour="red")
    (tmp_path / "workspace.json").write_text("{broken")
    assert load_settings(tmp_path) == {} and chosen_protocol(tmp_path) == "subject"


def test_demo_dataset_is_the_default_choice(tmp_path):
    from cnmc_core.workspace.settings import chosen_dataset

    (tmp_path / "demo-data").mkdir()
    assert chosen_dataset(tmp_path) is None  # a half-written demo dataset is not chosen
    (tmp_path / "demo-data" / ".synth_info.json").write_text("{}")
    assert chosen_dataset(tmp_path) == str((tmp_path / "demo-data").resolve())
