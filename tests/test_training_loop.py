"""Training end to end through the CLI on a tiny dataset: every file of the run folder."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from conftest import make_kaggle_tree
from sklearn.metrics import f1_score, roc_auc_score

from cnmc_core.cli.main import main
from cnmc_core.contracts import RUN_FILES
from cnmc_core.workspace.layout import read_history
from cnmc_core.workspace.listing import list_runs
from cnmc_core.workspace.status import read_status


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    make_kaggle_tree(root, n_all=6, n_hem=6, per_subject=4)
    return root


def test_train_demo_preset_end_to_end(tiny_data, tmp_path, capsys):
    art = tmp_path / "art"
    rc = main(["train", "--preset", "demo_scratch", "--data", str(tiny_data), "--epochs", "2",
               "--runs-dir", str(art), "--set", "batch_size=8", "--seed", "3"])
    out = capsys.readouterr().out
    assert rc == 0, out
    run_dir = art / "runs" / out.strip().splitlines()[-1].split("/")[-1]
    assert out.strip().splitlines()[-1] == str(run_dir)
    assert "[train] epoch 1/2" in out
    for name in RUN_FILES:
        assert (run_dir / name).is_file(), name

    config = json.loads((run_dir / "config.json").read_text())
    assert config["split_protocol"] == "subject" and config["seed"] == 3
    assert config["dataset_fingerprint"] and config["versions"]["tensorflow"]
    assert config["weights"] == "none" and config["stages"][0]["epochs"] == 2

    status = read_status(run_dir)
    assert status["state"] == "completed" and status["pid"] and status["epoch"] == 2

    history = read_history(run_dir)
    assert list(history["epoch"]) == [1, 2] and set(history["stage"]) == {"train"}
    assert {"loss", "val_loss", "accuracy", "val_accuracy"} <= set(history.columns)

    preds = pd.read_csv(run_dir / "predictions.csv", keep_default_na=False)
    assert list(preds.columns) == ["image_id", "split", "y", "prob", "subject"]
    assert set(preds["split"]) == {"val", "test"} and preds["image_id"].is_unique
    assert preds["prob"].between(0, 1).all()

    metrics = json.loads((run_dir / "metrics.json").read_text())
    for split in ("val", "test"):
        part = preds[preds["split"] == split]
        pred = (part["prob"] >= 0.5).astype(int)
        assert metrics[split]["weighted_f1"] == pytest.approx(f1_score(part["y"], pred, average="weighted"))
        assert metrics[split]["roc_auc"] == pytest.approx(roc_auc_score(part["y"], part["prob"]))
        assert metrics[split]["ci"]["unit"] == "subject"
        assert set(metrics[split]) >= {"accuracy", "hem", "all", "confusion", "threshold"}
    assert metrics["split_protocol"] == "subject"

    import keras

    model = keras.models.load_model(run_dir / "model.keras", safe_mode=True)
    assert model.input_shape == (None, 64, 64, 3)

    # re-score on the prelim images of the same tree
    assert main(["evaluate", str(run_dir), "--data", str(tiny_data), "--source", "prelim", "--runs-dir", str(art)]) == 0
    ev_dir = capsys.readouterr().out.strip().splitlines()[-1]
    ev = json.loads(open(f"{ev_dir}/metrics.json").read())
    ev_preds = pd.read_csv(f"{ev_dir}/predictions.csv")
    assert len(ev_preds) == 3 and ev["test"]["n"] == 3 and ev["source"] == "prelim"

    runs = list_runs(art)
    assert runs.loc[0, "state"] == "completed" and runs.loc[0, "val_weighted_f1"] == pytest.approx(metrics["val"]["weighted_f1"])
    assert main(["runs", "--runs-dir", str(art)]) == 0
    assert "completed" in capsys.readouterr().out


def test_same_seed_repeats(tiny_data, tmp_path, capsys):
    probs = []
    for k in range(2):
        art = tmp_path / f"a{k}"
        assert main(["train", "--preset", "demo_scratch", "--data", str(tiny_data), "--epochs", "1",
                     "--runs-dir", str(art), "--set", "batch_size=8"]) == 0
        run_dir = capsys.readouterr().out.strip().splitlines()[-1]
        probs.append(pd.read_csv(f"{run_dir}/predictions.csv")["prob"].to_numpy())
    np.testing.assert_allclose(probs[0], probs[1], atol=1e-5)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--preset", "nope"], "Unknown preset 'nope'"),
        (["--preset", "demo_scratch", "--set", "model=nonet"], "Unknown model 'nonet'. Known models:"),
        (["--preset", "demo_scratch", "--set", "batch_size=big"], "'batch_size' must be int"),
        (["--preset", "demo_scratch", "--set", "model_args.wings=2"], "Unknown model_args \\['wings'\\]"),
        (["--preset", "demo_vgg16", "--weights", "imagenet"], "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"),
        (["--preset", "demo_scratch"], "No dataset: give --data ROOT"),
        (["--preset", "demo_scratch", "--data", "EMPTY"], "No C-NMC image found"),
        (["--preset", "demo_scratch", "--data", "NOHEMVAL", "--split", "official"],
         "The val split has only ALL images"),
    ],
)
def test_bad_input_fails_before_training(argv, message, tiny_data, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-empty"))
    (tmp_path / "empty").mkdir()
    # fold_2 of this tree has no HEM subject: the official protocol's val split lacks a class
    make_kaggle_tree(tmp_path / "nohemval", n_all=3, n_hem=2)
    argv = [a.replace("EMPTY", str(tmp_path / "empty")).replace("NOHEMVAL", str(tmp_path / "nohemval"))
            for a in argv]
    rc = main(["train", *argv, "--runs-dir", str(tmp_path / "art")])
    err = capsys.readouterr().err
    assert rc == 2 and re.search(message, err), err
    assert not (tmp_path / "art" / "runs").exists() or not list((tmp_path / "art" / "runs").iterdir())


def test_vgg16_bn_demo_with_imagenet_weights_fails_before_training(tiny_data, tmp_path, capsys,
                                                                    monkeypatch):
    """demo_vgg16 is VGG16-BN (no ImageNet weights exist for it): with the plain VGG16 file
    present, asking for ImageNet weights is refused before any run folder exists, naming the
    file and the fix."""
    home = tmp_path / "keras"
    (home / "models").mkdir(parents=True)
    (home / "models" / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5").write_bytes(b"x")
    monkeypatch.setenv("KERAS_HOME", str(home))
    rc = main(["train", "--preset", "demo_vgg16", "--weights", "imagenet", "--data", str(tiny_data),
               "--runs-dir", str(tmp_path / "art")])
    err = capsys.readouterr().err
    assert rc == 2 and re.search(r"batch_norm=true builds VGG16-BN.*no pretrained weights "
                                 r"\(vgg16_weights_tf_dim_ordering_tf_kernels_notop\.h5 is plain "
                                 r"VGG16\).*--set model_args\.batch_norm=false", err), err
    assert not (tmp_path / "art" / "runs").exists() or not list((tmp_path / "art" / "runs").iterdir())


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
