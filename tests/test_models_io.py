"""cnmc_core.models.io: the one model loader (fresh processes, renamed modules, damaged files),
the cache, and the one batch predictor."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest

from cnmc_core.exceptions import RunError
from cnmc_core.models.io import (
    clear_model_cache,
    load_model,
    load_model_cached,
    predict_images,
    save_model,
)
from cnmc_core.models.registry import create_model

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A scratch CNN saved as a run's model.keras, and its predictions on 5 images."""
    folder = tmp_path_factory.mktemp("model")
    keras.utils.set_random_seed(0)
    model = create_model("scratch_dd256", image_size=64, filters=[8, 8, 8, 8], dense_units=8)
    save_model(model, folder)
    images = np.random.default_rng(0).integers(0, 256, (5, 64, 64, 3), dtype=np.uint8)
    expected = np.asarray(model(images.astype("float32"), training=False)).reshape(-1)
    return folder / "model.keras", images, expected


def _fresh_python(code: str, *args: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a new interpreter that has imported nothing of the project."""
    return subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300, env={"TF_CPP_MIN_LOG_LEVEL": "3",
                                                       "PATH": "/usr/bin:/bin"})


_LOAD_AND_PREDICT = """
import sys, numpy as np, keras
from cnmc_core.models.io import load_model, predict_images
if len(sys.argv) > 3:  # forget the registration that importing the layers module makes
    keras.saving.get_custom_objects().pop("cnmc>ImageNetPreprocess")
    try:
        keras.models.load_model(sys.argv[1], safe_mode=True, compile=False)
    except TypeError as exc:
        assert "Could not locate class 'ImageNetPreprocess'" in str(exc), exc
    else:
        raise AssertionError("Keras found the layer by the module named in the file")
model = load_model(sys.argv[1])
images = np.load(sys.argv[2])
print(model.name, " ".join(f"{p:.6f}" for p in predict_images(model, images)))
"""


def test_a_fresh_process_loads_and_predicts(saved, tmp_path):
    path, images, expected = saved
    np.save(tmp_path / "images.npy", images)
    proc = _fresh_python(_LOAD_AND_PREDICT, str(path), str(tmp_path / "images.npy"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    name, *probs = proc.stdout.split()
    assert name == "scratch_dd256"
    np.testing.assert_allclose([float(p) for p in probs], expected, atol=1e-5)


def test_a_model_saved_when_the_layer_lived_elsewhere_still_loads(saved, tmp_path):
    """The file names the layer's module as it was when it was saved; a module that moved since
    must not matter, nor whether anything registered the layer: the loader passes the project's
    layers explicitly (Keras alone fails as issue 12 reported: 'Could not locate class')."""
    path, images, expected = saved
    old = tmp_path / "old.keras"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(old, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "config.json":
                config = json.loads(data)
                layers = [lyr for lyr in config["config"]["layers"]
                          if lyr["class_name"] == "ImageNetPreprocess"]
                assert layers and layers[0]["module"] == "cnmc_core.models.layers"
                for lyr in layers:
                    lyr["module"] = "cnmc_core.nets"  # a module that does not exist (any more)
                data = json.dumps(config).encode()
            dst.writestr(item, data)
    np.save(tmp_path / "images.npy", images)
    proc = _fresh_python(_LOAD_AND_PREDICT, str(old), str(tmp_path / "images.npy"), "unregister")
    assert proc.returncode == 0, proc.stderr[-3000:]
    np.testing.assert_allclose([float(p) for p in proc.stdout.split()[1:]], expected, atol=1e-5)


@pytest.mark.parametrize("content", [b"", b"not a zip at all", b"PK\x03\x04 truncated"])
def test_a_damaged_file_is_a_run_error_naming_it(tmp_path, content):
    path = tmp_path / "model.keras"
    path.write_bytes(content)
    with pytest.raises(RunError, match=f"cannot load model file {path}: .*retrain the run"):
        load_model(path)
    with pytest.raises(RunError, match="cannot load model file"):
        load_model_cached(path)


def test_a_missing_file_says_what_to_do(tmp_path):
    with pytest.raises(RunError, match=r"model.keras does not exist .*train the run first"):
        load_model(tmp_path / "model.keras")


def test_the_cache_reloads_a_changed_file(saved, tmp_path):
    path, _, _ = saved
    clear_model_cache()
    first = load_model_cached(path)
    assert load_model_cached(path) is first
    copy = tmp_path / "model.keras"
    copy.write_bytes(path.read_bytes())
    other = load_model_cached(copy)
    assert other is not first
    os.utime(copy, ns=(1, 1))  # same bytes, another modification time: reloaded
    assert load_model_cached(copy) is not other
    clear_model_cache()


@pytest.mark.parametrize("n, batch_size", [(0, 4), (1, 4), (5, 2), (5, 64)])
def test_predict_images_matches_the_model_in_any_batching(saved, n, batch_size):
    path, images, expected = saved
    model = load_model(path)
    probs = predict_images(model, images[:n], batch_size=batch_size)
    assert probs.dtype == np.float64 and probs.shape == (n,)
    np.testing.assert_allclose(probs, expected[:n], atol=1e-6)
