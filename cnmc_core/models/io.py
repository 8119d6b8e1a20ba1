"""Saving and loading models: ``model.keras`` written through a temporary file, loaded safely
(``safe_mode=True``) and cached, and P(ALL) of a batch of images.
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

__all__ = ["load_model_cached", "clear_model_cache", "predict_images", "save_model"]

_CACHE: "OrderedDict[tuple, keras.Model]" = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 4


def load_model_cached(path: str | os.PathLike) -> keras.Model:
    """Load a ``model.keras`` once: later calls return the same model while the file is unchanged.

    The key is the resolved path, its modification time (ns) and size, so a retrained run's
    model is reloaded. At most the 4 most recently used models stay in memory. Loading uses
    ``safe_mode=True`` and ``compile=False`` (explanations need no optimizer).

    Raises:
        RunError: the file is missing or cannot be loaded as a Keras model.
    """
    p = Path(path).expanduser().resolve()
    try:
        st = p.stat()
    except OSError as exc:
        raise RunError(f"model file {p} does not exist ({exc.strerror}); train the run first or "
                       "check the run folder.") from None
    key = (str(p), st.st_mtime_ns, st.st_size)
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
        try:
            model = keras.models.load_model(p, safe_mode=True, compile=False)
        except Exception as exc:  # noqa: BLE001 - any load failure is a broken run artefact
            raise RunError(f"cannot load model file {p}: {type(exc).__name__}: {exc}") from exc
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


def predict_images(model, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """P(ALL) for uint8 images (N, S, S, 3), as a float array."""
    probs = model.predict(images.astype(np.float32), batch_size=batch_size, verbose=0)
    return np.asarray(probs, dtype=np.float64).reshape(-1)


def save_model(model, run_dir: Path) -> None:
    """Save ``model.keras`` through a temporary file, so a partial file never looks complete."""
    tmp = run_dir / ".model.partial.keras"
    try:
        model.save(tmp)
        os.replace(tmp, run_dir / MODEL)
    finally:
        if tmp.exists():
            tmp.unlink()
