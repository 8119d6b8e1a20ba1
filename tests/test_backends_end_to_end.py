"""Every Keras backend end to end: train (two stages) -> evaluate -> explain -> predict and
ensemble scoring under jax and torch, each in a subprocess (a process has one backend, fixed
when Keras is imported), and models moving between backends: a model saved under one backend
loads and gives the same P(ALL) (to 1e-4) and Grad-CAM maps under another.

The run in this process trains under the test process's backend (tensorflow unless
``KERAS_BACKEND`` says otherwise); ``tests/backend_check.py`` does the rest under the others.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from backend_check import fixed_images
from conftest import make_kaggle_tree

from cnmc_core.explain.cam import gradcam
from cnmc_core.models.io import load_model, predict_images
from cnmc_core.training.config import resolve_config
from cnmc_core.training.launch import start_run
from cnmc_core.training.loop import train_run

HERE = Path(__file__).resolve().parent
HOME_BACKEND = keras.backend.backend()
OTHERS = [b for b in ("jax", "torch") if b != HOME_BACKEND]
PACKAGES = {"tensorflow": ["tensorflow"], "jax": ["jax", "jaxlib"], "torch": ["torch"]}


@pytest.fixture(scope="module")
def home_run(tmp_path_factory):
    """A dataset, and a run trained under this process's backend (the foreign run of the others)."""
    root = tmp_path_factory.mktemp("backends")
    data = make_kaggle_tree(root / "data", n_all=8, n_hem=7, per_subject=4)
    config = resolve_config("demo_scratch", data=str(data), epochs=1, sets=["batch_size=8"])
    run = start_run(config, root / "artifacts", detach=False)
    train_run(run, log=None, artifacts=root / "artifacts", wait_in_queue=False)
    return {"root": root, "data": data, "run": run}


@pytest.fixture(scope="module", params=OTHERS)
def other(request, home_run):
    """``tests/backend_check.py`` run under one other backend: its result and output folder."""
    backend = request.param
    out = home_run["root"] / f"out-{backend}"
    out.mkdir()
    # TensorFlow made unimportable, as on a server without it: Keras then takes it as absent
    # (it would otherwise import it to seed it), and any import of ours fails the run.
    blocked = home_run["root"] / "no-tensorflow" / "tensorflow"
    blocked.mkdir(parents=True, exist_ok=True)
    (blocked / "__init__.py").write_text(
        'raise ImportError("TensorFlow is blocked: the jax and torch paths must not need it")\n')
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3",
           "PYTHONPATH": os.pathsep.join([str(blocked.parent), str(HERE.parent), str(HERE)])}
    proc = subprocess.run(
        [sys.executable, str(HERE / "backend_check.py"), str(out), str(home_run["data"]),
         str(home_run["root"] / "artifacts"), str(home_run["run"])],
        env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"under {backend}:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return backend, json.loads((out / "result.json").read_text()), out


def test_the_whole_path_runs_under_the_backend(other):
    backend, result, _ = other
    assert result["keras_backend"] == backend
    assert not result["tensorflow_imported"]  # the path needs no TensorFlow (blocked, see other)
    assert result["config_backend"] == backend  # the resolved config.json records it
    assert set(PACKAGES[backend]) <= set(result["versions"]) and "tensorflow" not in result["versions"]
    assert result["status"] == "completed"
    assert result["stages"] == ["fine_tune", "train"] and result["epochs"] == 2
    assert {"config.json", "status.json", "history.jsonl", "predictions.csv", "metrics.json",
            "model.keras", "log.txt"} <= set(result["files"])
    assert f"backend {backend} (" in result["log"] and "stage 2/2 fine_tune: rmsprop" in result["log"]
    if backend == "jax":
        assert "note: jit_compile=false does not apply under jax" in result["log"]
    # TensorBoard needs tf.summary: with TensorFlow blocked the run says so, and writes no tb/
    assert f"TensorBoard event files are not written under {backend}" in result["log"]
    assert "tb" not in result["files"]
    assert 0.0 <= result["val_f1"] <= 1.0 and result["evaluation_n"] > 0
    for method, maps in result["explained"].items():
        assert maps["finite"] and len(maps["shape"]) == 2 and maps["max"] <= 1.0, method
    assert len(result["activation_shape"]) == 3 and result["grid_dtype"] == "uint8"
    mine, foreign = result["scored"][result["run"]], result["scored"][result["foreign"]]
    # the mean ensemble of a run of each backend: the mean of its runs' P(ALL)
    assert len(mine) == len(foreign) == 2
    np.testing.assert_allclose(result["ensemble_final"], (np.asarray(mine) + np.asarray(foreign)) / 2, atol=1e-6)


def _here(model) -> dict:
    x = fixed_images(int(model.inputs[0].shape[1]))
    cam = gradcam(model, x, target="all")
    return {"probs": predict_images(model, x), "heatmaps": cam.heatmaps, "weights": cam.channel_weights,
            "logits": cam.logits, "heatmaps_pp": gradcam(model, x, target="hem", method="gradcam++").heatmaps}


def _same(there, here, what: str) -> None:
    np.testing.assert_allclose(there["probs"], here["probs"], atol=1e-4, err_msg=f"P(ALL), {what}")
    np.testing.assert_allclose(there["logits"], here["logits"], atol=1e-3, err_msg=f"logits, {what}")
    scale = float(np.abs(here["weights"]).max()) or 1.0
    np.testing.assert_allclose(there["weights"], here["weights"], atol=1e-3 * scale,
                               err_msg=f"Grad-CAM channel weights, {what}")
    np.testing.assert_allclose(there["heatmaps"], here["heatmaps"], atol=2e-3, err_msg=f"Grad-CAM, {what}")
    np.testing.assert_allclose(there["heatmaps_pp"], here["heatmaps_pp"], atol=2e-3,
                               err_msg=f"Grad-CAM++, {what}")


def test_models_move_between_backends(other, home_run):
    backend, result, out = other
    # saved here, loaded there
    there = np.load(out / f"{home_run['run'].name}.npz")
    _same(there, _here(load_model(home_run["run"] / "model.keras")),
          f"a {HOME_BACKEND} model under {backend}")
    # saved there, loaded here
    run = home_run["root"] / "artifacts" / "runs" / result["run"]
    there = np.load(out / f"{result['run']}.npz")
    _same(there, _here(load_model(run / "model.keras")), f"a {backend} model under {HOME_BACKEND}")
