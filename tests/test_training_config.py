"""Presets, overrides and --set type checks."""

from __future__ import annotations

import pytest

from cnmc_core.exceptions import ConfigError
from cnmc_core.models.registry import list_models
from cnmc_core.training.config import (
    apply_set,
    list_presets,
    load_preset,
    resolve_config,
)

DEMO = ("demo_scratch", "demo_vgg16", "demo_resnet50_v1", "demo_resnet50_v2")


def test_every_preset_loads_and_names_a_registered_model():
    names = list_presets()
    assert set(DEMO) <= set(names)
    for name in names:
        config = load_preset(name)
        assert config["model"] in list_models(), name
        if name.startswith("paper_"):
            assert config["paper_reported"]["protocol"].startswith("paper"), name
            assert config["split_protocol"] == "paper" and config["balance"], name
        else:
            assert config["weights"] == "none" and config["image_size"] <= 96, name


def test_paper_presets_carry_the_paper_numbers():
    best = load_preset("paper_scratch_dd256")
    assert best["image_size"] == 300 and best["batch_size"] == 32
    assert best["stages"][0]["learning_rate"] == 1e-3 and best["paper_reported"]["test_weighted_f1"] == 0.9076
    vgg = load_preset("paper_vgg16_block4")
    assert [s["learning_rate"] for s in vgg["stages"]] == [1e-3, 1e-5]
    assert vgg["stages"][1]["trainable"] == {"blocks": ["block2", "block3", "block4"]}
    assert load_preset("paper_resnet50_conv4_v2")["stages"][0]["optimizer"] == "rmsprop"
    assert load_preset("paper_resnet50_conv4_v1")["paper_reported"]["test_weighted_f1"] == 0.9416


def test_resolve_config_options_and_sets():
    config = resolve_config("demo_scratch", data="/d", epochs=2, seed=5, split_protocol="paper",
                            sets=["stages.0.learning_rate=1e-4", "balance=false", "model_args.dropout=0.3"])
    assert config["data"] == "/d" and config["seed"] == 5 and config["split_protocol"] == "paper"
    assert config["stages"][0]["epochs"] == 2 and config["stages"][0]["learning_rate"] == 1e-4
    assert config["balance"] is False and config["model_args"] == {"batch_norm": True, "dropout": 0.3,
                                                                   "pool_sizes": [2, 2, 2, 2]}


@pytest.mark.parametrize(
    "sets, message",
    [
        (["epochs=3"], "unknown key 'epochs'"),
        (["balance=maybe"], "'balance' must be bool; got 'maybe'"),
        (["batch_size=3.5"], "'batch_size' must be int; got 3.5"),
        (["stages.0.learning_rate=fast"], "'stages.0.learning_rate' must be float; got 'fast'"),
        (["stages.4.epochs=1"], "the config has stages 0..0"),
        (["stages.0.momentum=1"], "unknown stage key 'momentum'"),
        (["split_protocol=random"], "'split_protocol' must be one of \\['subject', 'paper', 'official', 'subject-kfold', 'image-kfold'\\]"),
        (["seed"], "--set expects key=value"),
        (["image_size=0"], r"The 'image_size' parameter of --set must be an int in the range \[1, inf\]\. "
                           "Got 0 instead"),
        (["seed=-1"], r"The 'seed' parameter of --set must be an int in the range \[0, 4294967295\]\. "
                      r"Got -1 instead\. Use a whole number"),
        ([f"seed={2**32}"], r"range \[0, 4294967295\]\. Got 4294967296 instead"),
        (["stages.0.learning_rate=NaN"], r"The 'stages.0.learning_rate' parameter of --set must be a "
                                         r"float in the range \(0, 1\]\. Got nan instead"),
        (["stages.0.learning_rate=Infinity"], r"\(0, 1\]\. Got inf instead"),
        (["stages.0.learning_rate=-Infinity"], r"\(0, 1\]\. Got -inf instead"),
        (["stages.0.learning_rate=0"], r"\(0, 1\]\. Got 0 instead"),
        (["stages.0.epochs=0"], r"'stages.0.epochs' parameter of --set must be an int in the range \[1,"),
        (["patience=-1"], r"'patience' parameter of --set must be an int in the range \[0, inf\]"),
        (["max_images_per_split=3"], r"'max_images_per_split' parameter .* \[6, inf\]\. Got 3"),
        (["batch_size=0"], r"'batch_size' parameter .* \[1, 65536\]\. Got 0"),
    ],
)
def test_bad_sets(sets, message):
    with pytest.raises(ConfigError, match=message):
        apply_set(load_preset("demo_scratch"), sets)


def test_unknown_preset_lists_known_ones():
    with pytest.raises(ConfigError, match="Unknown preset 'nope'; known presets: demo_resnet50_v1"):
        load_preset("nope")
    with pytest.raises(ConfigError, match="Unknown preset"):
        load_preset("../configs/demo_scratch")


@pytest.mark.parametrize("kwargs, message", [
    ({"seed": -1}, r"The '--seed' parameter must be an int in the range \[0, 4294967295\]\. Got -1"),
    ({"seed": 2**32}, r"The '--seed' parameter .* Got 4294967296 instead"),
    ({"epochs": 0}, r"The '--epochs' parameter must be an int in the range \[1, 100000\]\. Got 0"),
    ({"image_size": 0}, r"The '--image-size' parameter must be an int in the range \[1, inf\]"),
])
def test_named_options_are_checked_under_their_flag(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        resolve_config("demo_scratch", data="/d", **kwargs)


def test_a_preset_file_with_a_bad_value_is_named(tmp_path):
    (tmp_path / "bad.json").write_text(
        '{"model": "scratch_dd256", "image_size": 64, "stages": [{"name": "t", "trainable": "all", '
        '"optimizer": "adam", "learning_rate": 2.0, "epochs": 1}]}')
    with pytest.raises(ConfigError, match=r"'stages.0.learning_rate' parameter of .*bad\.json must be"):
        load_preset("bad", tmp_path)


def test_kfold_runs_need_their_fold():
    config = resolve_config("demo_scratch", split_protocol="subject-kfold",
                            sets=['kfold={"k": 5, "fold": 4}'])
    assert config["kfold"] == {"k": 5, "fold": 4}
    with pytest.raises(ConfigError, match="the 'subject-kfold' protocol needs 'kfold'"):
        resolve_config("demo_scratch", split_protocol="subject-kfold")
    with pytest.raises(ConfigError, match=r"kfold.fold' parameter must be an int in the range \[0, 4\]"):
        resolve_config("demo_scratch", split_protocol="image-kfold", sets=['kfold={"k": 5, "fold": 5}'])
    with pytest.raises(ConfigError, match="applies to the k-fold protocols"):
        resolve_config("demo_scratch", sets=['kfold={"k": 5, "fold": 0}'])
