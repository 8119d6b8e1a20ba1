"""Saving and loading models: ``model.keras`` written through a temporary file; loaded in one
place (:func:`load_model`: ``safe_mode=True``, the project's layers passed explicitly), cached
for explanations and predictions; and P(ALL) of a batch of images (:func:`predict_images`).

Every ``.keras`` file the project reads goes through :func:`load_model`, whichever process
reads it: a fresh ``python -m cnmc_core evaluate`` needs no import of its own to find the
project's layers, and a model saved when a layer lived in another module still loads.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path

import keras
import numpy as np

from cnmc_core.contracts import MODEL
from cnmc_core.exceptions import RunError
from cnmc_core.models.layers import ImageNetPreprocess

__all__ = ["CUSTOM_OBJECTS", "load_model", "load_model_cached", "clear_model_cache",
           "predict_images", "save_model"]

#: The project's own layers, by the name a saved file gives them (``registered_name``, which
#: does not change when a module is renamed) and by their class name.
CUSTOM_OBJECTS = {
    "cnmc>ImageNetPreprocess": ImageNetPreprocess,
    "ImageNetPreprocess": ImageNetPreprocess,
}

_CACHE: "OrderedDict[tuple, keras.Model]" = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 4


def _stat(path: Path) -> os.stat_result:
    try:
        return path.stat()
    except OSError as exc:
        raise RunError(f"model file {path} does not exist ({exc.strerror}); train the run first or "
                       "check the run folder.") from None


def load_model(path: str | os.PathLike) -> keras.Model:
    """Load a ``.keras`` model file: the only place the project does.

    Loading uses ``safe_mode=True`` (no ``Lambda`` or other code in a file runs), the project's
    layers from :data:`CUSTOM_OBJECTS` and ``compile=False`` (scoring and explaining need no
    optimizer).

    Raises:
        RunError: the file is missing or is not a loadable Keras model (the message names it).
    """
    p = Path(path).expanduser()
    _stat(p)
    try:
        return keras.models.load_model(p, custom_objects=CUSTOM_OBJECTS, compile=False,
                                       safe_mode=True)
    except Exception as exc:  # noqa: BLE001 - any load failure is a broken run artefact
        raise RunError(f"cannot load model file {p}: {type(exc).__name__}: {exc}; retrain the "
                       "run, or delete it if it is damaged.") from exc


def load_model_cached(path: str | os.PathLike) -> keras.Model:
    """:func:`load_model` once: later calls return the same model while the file is unchanged.

    The key is the resolved path, its modification time (ns) and size, so a retrained run's
    model is reloaded. At most the 4 most recently used models stay in memory.

    Raises:
        RunError: the file is missing or cannot be loaded as a Keras model.
    """
    p = Path(path).expanduser().resolve()
    st = _stat(p)
    key = (str(p), st.st_mtime_ns, st.st_size)
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
        model = load_model(p)
        for old in [k for k in _CACHE if k[0] == key[0]]:  # stale versions of the same file
            del _CACHE[old]
        _CACHE[key] = model
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
        return model


def clear_model_cache() -> None:
    """Forget every cached model (frees their memory once no one else holds them)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def predict_images(model: keras.Model, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """P(ALL) of each image, as a float64 array of shape ``(N,)``.

    Args:
        model: a model of the registry (raw RGB 0-255 in, one sigmoid unit out).
        images: ``(N, S, S, 3)`` images, uint8 or float; ``N`` may be 0.
        batch_size: images per forward pass.

    Batches go through ``predict_on_batch`` (the model's compiled predict step, traced once per
    batch shape) and are cast to float32 one at a time, so a large uint8 array is never copied
    whole as floats; ``model.predict`` would also build a ``tf.data`` pipeline on every call.
    """
    images = np.asarray(images)
    if len(images) == 0:
        return np.zeros(0, dtype=np.float64)
    out = []
    for start in range(0, len(images), batch_size):
        batch = images[start:start + batch_size].astype(np.float32)
        out.append(np.asarray(model.predict_on_batch(batch), dtype=np.float64).reshape(-1))
    return np.concatenate(out)


def save_model(model: keras.Model, run_dir: Path) -> None:
    """Save ``model.keras`` through a temporary file, so a partial file never looks complete."""
    tmp = run_dir / ".model.partial.keras"
    try:
        model.save(tmp)
        os.replace(tmp, run_dir / MODEL)
    finally:
        if tmp.exists():
            tmp.unlink()
