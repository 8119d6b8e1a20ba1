"""Training end to end through the CLI on a tiny dataset: every file of the run folder."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from conftest import make_kaggle_tree
from run_fixtures import tensorboard_scalars
from sklearn.metrics import f1_score, roc_auc_score

from cnmc_core.cli.main import main
from cnmc_core.contracts import RUN_FILES
from cnmc_core.workspace.layout import read_history
from cnmc_core.workspace.listing import list_experiments
from cnmc_core.workspace.status import read_status


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    make_kaggle_tree(root, n_all=6, n_hem=6, per_subject=4)
    return root


def test_train_demo_preset_end_to_end(tiny_data, tmp_path, capsys):
    art = tmp_path / "art"
    rc = main(["train", "--preset", "demo_scratch", "--data", str(tiny_data), "--epochs", "2",
               "--artifacts", str(art), "--set", "batch_size=8", "--seed", "3"])
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
    # TensorBoard's reader finds every epoch's loss under RUN/tb/ (tensorboard --logdir artifacts/runs)
    for sub, column in (("train", "loss"), ("validation", "val_loss")):
        scalars = tensorboard_scalars(run_dir / "tb" / sub)
        assert [scalars[e] for e in history["epoch"]] == pytest.approx(list(history[column]), rel=1e-5)

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

    from cnmc_core.models.io import load_model

    model = load_model(run_dir / "model.keras")
    assert model.input_shape == (None, 32, 32, 3)

    # re-score on the prelim images of the same tree
    assert main(["evaluate", str(run_dir), "--data", str(tiny_data), "--source", "prelim", "--artifacts", str(art)]) == 0
    ev_dir = capsys.readouterr().out.strip().splitlines()[-1]
    ev = json.loads(open(f"{ev_dir}/metrics.json").read())
    ev_preds = pd.read_csv(f"{ev_dir}/predictions.csv")
    assert len(ev_preds) == 3 and ev["test"]["n"] == 3 and ev["source"] == "prelim"

    runs = list_experiments(art)
    assert runs.loc[0, "state"] == "completed" and runs.loc[0, "val_weighted_f1"] == pytest.approx(metrics["val"]["weighted_f1"])
    assert main(["runs", "--artifacts", str(art)]) == 0
    assert "completed" in capsys.readouterr().out


def test_same_seed_repeats(tiny_data, tmp_path, capsys):
    probs = []
    for k in range(2):
        art = tmp_path / f"a{k}"
        assert main(["train", "--preset", "demo_scratch", "--data", str(tiny_data), "--epochs", "1",
                     "--artifacts", str(art), "--set", "batch_size=8"]) == 0
        run_dir = capsys.readouterr().out.strip().splitlines()[-1]
        probs.append(pd.read_csv(f"{run_dir}/predictions.csv")["prob"].to_numpy())
    np.testing.assert_allclose(probs[0], probs[1], atol=1e-5)


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
               "--artifacts", str(tmp_path / "art")])
    err = capsys.readouterr().err
    assert rc == 2 and re.search(r"batch_norm=true builds VGG16-BN.*no pretrained weights "
                                 r"\(vgg16_weights_tf_dim_ordering_tf_kernels_notop\.h5 is plain "
                                 r"VGG16\).*--set model_args\.batch_norm=false", err), err
    assert not (tmp_path / "art" / "runs").exists() or not list((tmp_path / "art" / "runs").iterdir())


@pytest.mark.parametrize("name, cls", [("adam", "Adam"), ("rmsprop", "RMSprop"), ("sgd", "SGD")])
def test_optimizers_come_from_keras_by_name(name, cls):
    from cnmc_core.training.config import OPTIMIZERS
    from cnmc_core.training.loop import optimizer

    assert name in OPTIMIZERS
    opt = optimizer(name, 1e-4)
    assert type(opt).__name__ == cls
    assert float(opt.learning_rate) == pytest.approx(1e-4)
    assert optimizer(name, 1e-4) is not opt  # a fresh one per stage


@pytest.mark.parametrize("line, noise", [
    ("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR", True),
    ("I0000 00:00:1796156431.315867   27710 port.cc:153] oneDNN custom operations are on. You may", True),
    ("I0000 00:00:1796156431.352230   27710 cpu_feature_guard.cc:227] This TensorFlow binary is", True),
    ("To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow with", True),
    ("E0000 00:00:1796156482.798815   29166 some_kernel.cc:12] a real error", False),
    ("F0000 00:00:1796156482.798815   29166 port.cc:1] Check failed: fatal", False),
    ("Traceback (most recent call last):", False),
    ("MemoryError: out of memory", False),
])
def test_startup_noise_is_only_tensorflows_startup_lines(line, noise):
    from cnmc_core.training.backend import STARTUP_NOISE

    assert bool(STARTUP_NOISE.match(line)) is noise


def test_import_backend_keeps_tensorflows_startup_lines_off_stderr():
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys; from cnmc_core.training.backend import import_backend; import_backend(); "
            "import tensorflow as tf; tf.constant(1.0) + 1; print('after', file=sys.stderr)")
    env = {"PATH": "/usr/bin:/bin", "TF_CPP_MIN_LOG_LEVEL": "3"}
    repo = Path(__file__).resolve().parents[1]
    quiet = subprocess.run([sys.executable, "-c", code], cwd=repo, env=env, capture_output=True,
                           text=True, timeout=300)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr.strip().splitlines() == ["after"]  # the descriptor is back, nothing else
    plain = subprocess.run([sys.executable, "-c", "import tensorflow"], cwd=repo, env=env,
                           capture_output=True, text=True, timeout=300)
    assert "oneDNN custom operations" in plain.stderr  # what it keeps off: still printed without it
