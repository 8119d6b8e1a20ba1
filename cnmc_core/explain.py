"""Explanations: intermediate activations, Grad-CAM / Grad-CAM++ heatmaps, ensemble heatmaps.

Computation only (numpy arrays in, numpy arrays out); pages and the CLI do the display. Works on
any flat Keras model with a single ``Dense(1)`` sigmoid output, in particular those of
:mod:`cnmc_core.models`, freshly built or loaded from a run's ``model.keras``.

Grad-CAM explains the *logit* ``z`` of the sigmoid output, not the probability: for class ALL the
score is ``z``, for HEM it is ``-z``. ``p`` or ``1 - p`` saturate for confident predictions (their
gradient vanishes like ``p (1 - p)``) and give blank or noisy maps. The logit is recomputed from
the input of the output layer and that layer's kernel and bias, so no model needs rebuilding.

Images are raw RGB, 0-255 (what the models take); images of another size than the model's input
are resized for the forward pass and every heatmap comes back at the image's own size.
"""

from __future__ import annotations

import math
import os
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import layers  # noqa: E402

from . import models as _models  # noqa: E402,F401  (registers the custom layers for loading)
from .exceptions import ConfigError, DataError, RunError  # noqa: E402

__all__ = [
    "CamResult",
    "list_feature_layers",
    "activations",
    "activation_grid",
    "dead_channels",
    "default_cam_layer",
    "gradcam",
    "overlay",
    "ensemble_heatmap",
    "load_model_cached",
    "clear_model_cache",
    "CAM_TARGETS",
    "CAM_METHODS",
]

CAM_TARGETS = ("all", "hem", "predicted")
CAM_METHODS = ("gradcam", "gradcam++")
_CONV_TYPES = (layers.Conv2D, layers.DepthwiseConv2D, layers.SeparableConv2D,
               layers.Conv2DTranspose)
_POOL_TYPES = (layers.MaxPooling2D, layers.AveragePooling2D)
_HEAD_START_TYPES = (layers.GlobalAveragePooling2D, layers.GlobalMaxPooling2D, layers.Flatten)
# A heatmap whose maximum is below this is "all zero": normalising it would amplify float noise.
_ZERO_TOL = 1e-12


@dataclass
class CamResult:
    """The result of :func:`gradcam` for ``n`` images.

    Attributes:
        heatmaps: ``(n, h, w)`` float32 in [0, 1], at the images' size (each map divided by its
            own maximum); all-zero maps stay zeros and are flagged in ``zero_flags``.
        probs: ``(n,)`` P(ALL) predicted by the model.
        logits: ``(n,)`` the pre-sigmoid value ``z``.
        layer: the name of the explained layer.
        target: ``n`` class names explained, ``"all"`` or ``"hem"``.
        zero_flags: ``(n,)`` bool, True where the map had no positive evidence at all.
        channel_weights: ``(n, k)`` the weight of each of the layer's ``k`` channels.
        method: ``"gradcam"`` or ``"gradcam++"``.
    """

    heatmaps: np.ndarray
    probs: np.ndarray
    logits: np.ndarray
    layer: str
    target: list
    zero_flags: np.ndarray
    channel_weights: np.ndarray
    method: str


# --------------------------------------------------------------------------------------------
# Inputs and layers
# --------------------------------------------------------------------------------------------
def _input_hw(model: keras.Model) -> tuple[int, int]:
    shape = model.inputs[0].shape
    if len(shape) != 4 or shape[1] is None or shape[2] is None:
        raise ConfigError(f"Model {model.name} must take fixed-size images (None, h, w, c); its "
                          f"input shape is {tuple(shape)}.")
    return int(shape[1]), int(shape[2])


def _single_input(model: keras.Model):
    # A bare tensor (not a one-element list) as inputs, so that calling with an array does not
    # trigger Keras' "structure of inputs doesn't match" warning.
    if len(model.inputs) != 1:
        raise ConfigError(f"Model {model.name} must have one image input; it has "
                          f"{len(model.inputs)}.")
    return model.inputs[0]


def _as_batch(images: Any) -> np.ndarray:
    """Stack ``images`` into ``(n, h, w, 3)`` float32; one ``(h, w, 3)`` image is a batch of 1."""
    if isinstance(images, (list, tuple)):
        shapes = {np.shape(im) for im in images}
        if len(shapes) != 1:
            raise DataError(f"images must all have the same shape; got {sorted(shapes)}. "
                            "Explain images of different sizes in separate calls.")
        arr = np.stack([np.asarray(im) for im in images])
    else:
        arr = np.asarray(images)
    if arr.ndim == 3:
        arr = arr[None]
    if arr.ndim == 4 and arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.shape[0] == 0:
        raise DataError(f"images must be an RGB image (h, w, 3) or a batch (n, h, w, 3); got shape "
                        f"{arr.shape}.")
    return arr.astype("float32", copy=False)


def _to_model_size(batch: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    if batch.shape[1:3] == hw:
        return batch
    h, w = hw
    interp = cv2.INTER_AREA if batch.shape[1] > h else cv2.INTER_LINEAR
    return np.stack([cv2.resize(im, (w, h), interpolation=interp) for im in batch])


def _get_layer(model: keras.Model, layer: str) -> layers.Layer:
    try:
        lyr = model.get_layer(layer)
    except ValueError:
        lyr = None
    if lyr is None or not _is_4d(lyr):
        names = [lyr.name for lyr in model.layers if _is_4d(lyr)]
        raise ConfigError(
            f"layer {layer!r} is not a layer with a 4-D (n, h, w, c) output in {model.name}; "
            f"use one of: {', '.join(names[-10:])}."
        )
    return lyr


def _is_4d(lyr: layers.Layer) -> bool:
    try:
        return len(lyr.output.shape) == 4 and not isinstance(lyr, layers.InputLayer)
    except (AttributeError, ValueError):  # a layer used several times has no single output
        return False


def list_feature_layers(model: keras.Model) -> list[str]:
    """Names of the convolution and (local) pooling layers of ``model``, in graph order."""
    return [lyr.name for lyr in model.layers if isinstance(lyr, _CONV_TYPES + _POOL_TYPES)]


def _producer(model: keras.Model, tensor) -> layers.Layer | None:
    for lyr in model.layers:
        try:
            if lyr.output is tensor:
                return lyr
        except (AttributeError, ValueError):
            continue
    return None


def default_cam_layer(model: keras.Model) -> str:
    """The layer Grad-CAM explains by default: the last spatial feature map kept by the model.

    That is the input of the head's GlobalAveragePooling/Flatten, or, when that input is a
    pooling layer, the layer before it (the finer map of the last conv block): ``block4_conv3``
    for VGG16 cut at block 4, ``conv4_block6_out`` for ResNet50 cut at conv4, ``conv4`` for the
    scratch CNN, ``out_relu`` / ``block_13_expand_relu`` for MobileNetV2. Without such a head,
    the last layer with a 4-D output.

    Raises:
        ConfigError: the model has no layer with a spatial output.
    """
    start = next((lyr for lyr in model.layers if isinstance(lyr, _HEAD_START_TYPES)
                  and len(lyr.input.shape) == 4), None)
    if start is not None:
        lyr = _producer(model, start.input)
        while lyr is not None and isinstance(lyr, _POOL_TYPES):
            lyr = _producer(model, lyr.input)
        if lyr is not None and not isinstance(lyr, layers.InputLayer) and _is_4d(lyr):
            return lyr.name
    spatial = [lyr.name for lyr in model.layers if _is_4d(lyr)]
    if not spatial:
        raise ConfigError(f"Model {model.name} has no layer with a spatial (n, h, w, c) output to "
                          "explain.")
    return spatial[-1]


def _output_dense(model: keras.Model) -> layers.Dense:
    lyr = None
    try:
        lyr = model.get_layer("head_output")
    except ValueError:
        lyr = model.layers[-1]
    act = getattr(getattr(lyr, "activation", None), "__name__", None)
    if not isinstance(lyr, layers.Dense) or lyr.units != 1 or act not in ("sigmoid", "linear"):
        raise ConfigError(
            f"Model {model.name} must end in Dense(1, activation='sigmoid') (P(ALL)) to be "
            f"explained; its last layer is {type(lyr).__name__} {lyr.name!r}."
        )
    return lyr


# --------------------------------------------------------------------------------------------
# Intermediate activations
# --------------------------------------------------------------------------------------------
def activations(model: keras.Model, image: np.ndarray, layer: str) -> np.ndarray:
    """The feature maps of ``layer`` for one image.

    Args:
        model: a flat Keras model.
        image: one raw RGB image ``(h, w, 3)``, 0-255 (resized to the model's input if needed).
        layer: a layer name, e.g. from :func:`list_feature_layers`.

    Returns:
        ``(h', w', c)`` float32 activations.

    Raises:
        ConfigError: unknown layer or one without a spatial output. DataError: bad image shape.
    """
    batch = _as_batch(image)
    if batch.shape[0] != 1:
        raise DataError(f"activations() takes one image; got a batch of {batch.shape[0]}.")
    lyr = _get_layer(model, layer)
    feat = keras.Model(_single_input(model), lyr.output)
    out = feat(_to_model_size(batch, _input_hw(model)), training=False)
    return np.asarray(keras.ops.convert_to_numpy(out)[0], dtype="float32")


def dead_channels(maps: np.ndarray, tol: float = 1e-6) -> np.ndarray:
    """``(c,)`` bool: channels of ``maps`` ``(h, w, c)`` that are constant (e.g. all zero after
    ReLU), within ``tol`` relative to their magnitude."""
    maps = np.asarray(maps, dtype="float64")
    lo, hi = maps.min(axis=(0, 1)), maps.max(axis=(0, 1))
    return (hi - lo) <= tol * np.maximum(1.0, np.abs(hi))


def activation_grid(maps: np.ndarray, max_channels: int = 64, cols: int | None = None,
                    cell_size: int | None = None, separator: int = 1,
                    colormap: int | None = None) -> np.ndarray:
    """Tile the channels of ``maps`` ``(h, w, c)`` into one RGB image.

    Each channel is scaled to 0-255 on its own (min to 0, max to 255), so weak channels stay
    visible. Dead (constant) channels are drawn flat grey with a red diagonal cross, so they are
    not mistaken for dark but active ones. Cells are separated by white lines.

    Args:
        maps: activations ``(h, w, c)``, e.g. from :func:`activations`.
        max_channels: draw the first ``max_channels`` channels only.
        cols: cells per row; default ``ceil(sqrt(n))``.
        cell_size: side of a cell in pixels; default the map size, enlarged by an integer factor
            to at least 32 px (nearest neighbour, so pixels stay sharp).
        separator: width of the separating lines in pixels.
        colormap: an OpenCV colormap (e.g. ``cv2.COLORMAP_VIRIDIS``) or None for grey.

    Returns:
        ``(H, W, 3)`` uint8 RGB image.

    Raises:
        DataError: ``maps`` is not 3-D or has no channel.
    """
    maps = np.nan_to_num(np.asarray(maps, dtype="float64"))
    if maps.ndim != 3 or maps.shape[-1] == 0:
        raise DataError(f"maps must be (h, w, c) activations; got shape {maps.shape}.")
    n = int(min(maps.shape[-1], max(1, max_channels)))
    cols = int(cols) if cols else int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / cols))
    h, w = maps.shape[:2]
    if cell_size is None:
        factor = max(1, int(math.ceil(32 / max(h, w))))
        ch, cw = h * factor, w * factor
    else:
        ch = cw = int(cell_size)
    sep = max(0, int(separator))
    grid = np.full((rows * ch + (rows - 1) * sep, cols * cw + (cols - 1) * sep, 3), 255, "uint8")
    dead = dead_channels(maps[..., :n])
    for i in range(n):
        r, c = divmod(i, cols)
        y, x = r * (ch + sep), c * (cw + sep)
        if dead[i]:
            cell = np.full((ch, cw, 3), 128, "uint8")
            cv2.line(cell, (0, 0), (cw - 1, ch - 1), (220, 40, 40), max(1, min(ch, cw) // 16))
            cv2.line(cell, (0, ch - 1), (cw - 1, 0), (220, 40, 40), max(1, min(ch, cw) // 16))
        else:
            m = maps[..., i]
            g = np.round((m - m.min()) / (m.max() - m.min()) * 255).astype("uint8")
            g = cv2.resize(g, (cw, ch), interpolation=cv2.INTER_NEAREST)
            if colormap is None:
                cell = np.repeat(g[..., None], 3, axis=-1)
            else:
                cell = cv2.cvtColor(cv2.applyColorMap(g, colormap), cv2.COLOR_BGR2RGB)
        grid[y:y + ch, x:x + cw] = cell
    for i in range(n, rows * cols):  # unused cells of the last row
        r, c = divmod(i, cols)
        y, x = r * (ch + sep), c * (cw + sep)
        grid[y:y + ch, x:x + cw] = 0
    return grid


# --------------------------------------------------------------------------------------------
# Grad-CAM
# --------------------------------------------------------------------------------------------
def _normalise(cams: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Divide each map by its max; maps without a positive value become zeros and are flagged."""
    cams = np.nan_to_num(cams, nan=0.0, posinf=0.0, neginf=0.0)
    cams = np.maximum(cams, 0.0)
    peak = cams.reshape(len(cams), -1).max(axis=1) if cams.size else np.zeros(len(cams))
    zero = ~(peak > _ZERO_TOL)
    out = np.zeros_like(cams, dtype="float32")
    ok = ~zero
    out[ok] = cams[ok] / peak[ok].reshape(-1, *([1] * (cams.ndim - 1)))
    return out, zero


_TARGET_MODE = {"all": 0, "hem": 1, "predicted": 2}
# Compiled Grad-CAM functions per model and layer. Weak keys: an entry goes with its model (the
# function holds the model's layers, and layers hold no reference back to the model).
_CAM_FUNCTIONS: "weakref.WeakKeyDictionary[keras.Model, dict]" = weakref.WeakKeyDictionary()
_CAM_LOCK = threading.Lock()


def _cam_function(model: keras.Model, lyr: layers.Layer, dense: layers.Dense, compiled: bool):
    """``fn(x, mode) -> (feature maps, d score / d feature maps, logits)`` for a batch ``x``.

    ``mode`` 0 explains ALL (score ``z``), 1 HEM (``-z``), 2 the predicted class per image.
    Compiled with ``tf.function`` the first call traces the graph (seconds for ResNet50) and
    later calls run several times faster than eager Keras; so the function is cached per model.
    """
    key = (lyr.name, bool(compiled))
    with _CAM_LOCK:
        per_model = _CAM_FUNCTIONS.setdefault(model, {})
        if key in per_model:
            return per_model[key]
    grad_model = keras.Model(_single_input(model), [lyr.output, dense.input])
    in_dtype = model.inputs[0].dtype
    # Integer inputs cannot be watched; watch the variables instead (a list of variables, not
    # the model: the closure must not keep the model alive, see _CAM_FUNCTIONS).
    watched = None if tf.as_dtype(in_dtype).is_floating else [v.value for v in model.weights]

    def run(x, mode):
        with tf.GradientTape() as tape:
            # Watching the input records every op downstream of it, so the gradient reaches the
            # feature map even when every layer is frozen (frozen variables are not watched).
            tape.watch(x if watched is None else watched)
            feats, pre = grad_model(x, training=False)
            kernel = dense.kernel.value
            z = tf.matmul(tf.cast(pre, kernel.dtype), kernel)[:, 0]
            if dense.use_bias:
                z = z + dense.bias.value[0]
            ones = tf.ones_like(z)
            predicted = tf.stop_gradient(tf.where(z >= 0, ones, -ones))
            sign = tf.where(tf.equal(mode, 0), ones, tf.where(tf.equal(mode, 1), -ones, predicted))
            score = tf.reduce_sum(sign * z)
        grads = tape.gradient(score, feats)
        if grads is None:  # the head does not depend on this layer
            grads = tf.zeros_like(feats)
        return feats, grads, z

    if compiled:
        h, w = _input_hw(model)
        channels = model.inputs[0].shape[-1]
        run = tf.function(run, reduce_retracing=True, input_signature=[
            tf.TensorSpec([None, h, w, channels], in_dtype), tf.TensorSpec([], tf.int32)])
    with _CAM_LOCK:
        _CAM_FUNCTIONS.setdefault(model, {})[key] = run
    return run


def gradcam(model: keras.Model, images: Any, layer: str | None = None, target: str = "all",
            method: str = "gradcam", batch_size: int = 16, compiled: bool = True) -> CamResult:
    """Grad-CAM (or Grad-CAM++) heatmaps of ``images`` for class ALL, HEM or the predicted one.

    Args:
        model: a flat Keras model ending in ``Dense(1, sigmoid)``; built or loaded from
            ``model.keras``.
        images: one raw RGB image ``(h, w, 3)`` or a batch ``(n, h, w, 3)`` / list of same-size
            images, values 0-255.
        layer: the layer to explain; default :func:`default_cam_layer`.
        target: ``"all"`` (score ``z``), ``"hem"`` (score ``-z``) or ``"predicted"`` (per image,
            ALL where ``P(ALL) >= 0.5``).
        method: ``"gradcam"`` (channel weight = mean gradient) or ``"gradcam++"`` (weights from
            the positive gradients with the second/third-order terms of Chattopadhay et al.).
        batch_size: images per forward/backward pass.
        compiled: run the gradient computation as a ``tf.function``, traced once per model and
            layer and cached (ResNet50 at 224 px on 2 cores: ~0.1 s per heatmap instead of
            ~0.6 s eager, after a first call that costs a few seconds). False runs eagerly.

    Returns:
        A :class:`CamResult`; heatmaps at the images' size, never NaN.

    Raises:
        ConfigError: bad ``target``/``method``/``layer`` or a model without a sigmoid unit.
        DataError: images of a wrong shape.
    """
    if target not in CAM_TARGETS:
        raise ConfigError(f"target must be one of {CAM_TARGETS}; got {target!r}.")
    if method not in CAM_METHODS:
        raise ConfigError(f"method must be one of {CAM_METHODS}; got {method!r}.")
    batch = _as_batch(images)
    out_h, out_w = batch.shape[1:3]
    x_all = _to_model_size(batch, _input_hw(model))
    layer = layer or default_cam_layer(model)
    lyr = _get_layer(model, layer)
    dense = _output_dense(model)
    fn = _cam_function(model, lyr, dense, compiled)
    mode = tf.constant(_TARGET_MODE[target], dtype=tf.int32)
    in_dtype = model.inputs[0].dtype

    cams, weights_all, logits = [], [], []
    for start in range(0, len(x_all), max(1, int(batch_size))):
        x = tf.convert_to_tensor(np.asarray(x_all[start:start + batch_size], dtype=in_dtype))
        feats, grads, z = fn(x, mode)
        a = keras.ops.convert_to_numpy(feats).astype("float64")
        g = keras.ops.convert_to_numpy(grads).astype("float64")
        if method == "gradcam":
            w = g.mean(axis=(1, 2))
        else:
            g2, g3 = g ** 2, g ** 3
            denom = 2.0 * g2 + a.sum(axis=(1, 2), keepdims=True) * g3
            alpha = np.where(np.abs(denom) > 0, g2 / np.where(denom == 0, 1.0, denom), 0.0)
            w = (alpha * np.maximum(g, 0.0)).sum(axis=(1, 2))
        cams.append(np.einsum("nhwk,nk->nhw", a, w))
        weights_all.append(w)
        logits.append(keras.ops.convert_to_numpy(z).astype("float64"))

    small, zero = _normalise(np.concatenate(cams))
    heat = np.stack([
        np.clip(cv2.resize(m, (out_w, out_h), interpolation=cv2.INTER_LINEAR), 0.0, 1.0)
        for m in small
    ]).astype("float32")
    z = np.concatenate(logits)
    probs = 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))
    if target == "predicted":
        targets = ["all" if v >= 0 else "hem" for v in z]
    else:
        targets = [target] * len(z)
    return CamResult(heatmaps=heat, probs=probs.astype("float32"), logits=z.astype("float32"),
                     layer=layer, target=targets, zero_flags=zero,
                     channel_weights=np.concatenate(weights_all).astype("float32"),
                     method=method)


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.4,
            colormap: int = cv2.COLORMAP_JET) -> np.ndarray:
    """Blend a heatmap in [0, 1] over an image.

    Args:
        image: RGB ``(h, w, 3)`` or grey ``(h, w)``; uint8, or float in 0-255 (a float image whose
            maximum is at most 1 is taken as 0-1).
        heatmap: ``(h', w')`` in [0, 1]; resized to the image if needed. NaN count as 0.
        alpha: weight of the coloured heatmap, in [0, 1].
        colormap: an OpenCV colormap.

    Returns:
        ``(h, w, 3)`` uint8 RGB.

    Raises:
        ConfigError: ``alpha`` outside [0, 1]. DataError: wrong shapes.
    """
    if not 0.0 <= float(alpha) <= 1.0:
        raise ConfigError(f"alpha must be in [0, 1]; got {alpha!r}.")
    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    if img.ndim != 3 or img.shape[-1] != 3:
        raise DataError(f"image must be (h, w, 3) or (h, w); got shape {np.shape(image)}.")
    img = img.astype("float32")
    if not np.issubdtype(np.asarray(image).dtype, np.integer) and img.size and img.max() <= 1.0:
        img = img * 255.0
    hm = np.nan_to_num(np.asarray(heatmap, dtype="float32"))
    if hm.ndim != 2:
        raise DataError(f"heatmap must be 2-D (h, w); got shape {hm.shape}.")
    if hm.shape != img.shape[:2]:
        hm = cv2.resize(hm, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_LINEAR)
    hm8 = np.round(np.clip(hm, 0.0, 1.0) * 255).astype("uint8")
    colour = cv2.cvtColor(cv2.applyColorMap(hm8, colormap), cv2.COLOR_BGR2RGB).astype("float32")
    out = (1.0 - alpha) * img + alpha * colour
    return np.clip(np.round(out), 0, 255).astype("uint8")


def ensemble_heatmap(heatmaps_by_member: Mapping[str, np.ndarray] | Sequence[np.ndarray],
                     weights: Mapping[str, float] | Sequence[float] | None = None,
                     size: tuple[int, int] | None = None, normalize: bool = False) -> np.ndarray:
    """Weighted combination of the members' heatmaps of one image.

    Each member's map is first scaled to [0, 1] by its own maximum (an all-zero map stays zero),
    then resized (bilinear) to a common grid, then averaged with the weights scaled to sum 1.
    The result is 1 only where every weighted member puts its maximum.

    Args:
        heatmaps_by_member: ``{member: (h_i, w_i)}`` or a list of 2-D maps.
        weights: ``{member: w}`` (same keys) or a list (same order); default equal. Non-negative,
            not all zero.
        size: ``(h, w)`` of the common grid; default the largest member map.
        normalize: rescale the result so that its maximum is 1 (when it is not all zero).

    Returns:
        ``(h, w)`` float32 in [0, 1].

    Raises:
        ConfigError: no members, weights that do not match the members, negative or all-zero
            weights. DataError: a map that is not 2-D.
    """
    if isinstance(heatmaps_by_member, Mapping):
        names = list(heatmaps_by_member)
        maps = [heatmaps_by_member[k] for k in names]
    else:
        maps = list(heatmaps_by_member)
        names = list(range(len(maps)))
    if not maps:
        raise ConfigError("ensemble_heatmap needs at least one member heatmap.")
    if weights is None:
        w = np.ones(len(maps))
    elif isinstance(weights, Mapping):
        if set(weights) != set(names):
            raise ConfigError(
                f"weights must name exactly the members {sorted(map(str, names))}; got "
                f"{sorted(map(str, weights))}."
            )
        w = np.array([float(weights[k]) for k in names])
    else:
        w = np.asarray(list(weights), dtype="float64")
        if w.shape != (len(maps),):
            raise ConfigError(f"weights must have one value per member ({len(maps)}); got "
                              f"{len(w)}.")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ConfigError(
            f"weights must be finite, non-negative and not all zero; got {w.tolist()}.")
    w = w / w.sum()
    arrays = []
    for name, m in zip(names, maps):
        m = np.asarray(m, dtype="float32")
        if m.ndim != 2 or m.size == 0:
            raise DataError(f"heatmap of member {name!r} must be 2-D; got shape {m.shape}.")
        arrays.append(m)
    if size is None:
        size = max((m.shape for m in arrays), key=lambda s: s[0] * s[1])
    h, w_px = int(size[0]), int(size[1])
    total = np.zeros((h, w_px), dtype="float64")
    normed, _ = _normalise(np.stack([
        cv2.resize(m, (w_px, h), interpolation=cv2.INTER_LINEAR) for m in arrays]))
    for weight, m in zip(w, normed):
        total += weight * m
    total = np.clip(total, 0.0, 1.0)
    if normalize and total.max() > _ZERO_TOL:
        total = total / total.max()
    return total.astype("float32")


# --------------------------------------------------------------------------------------------
# Model cache
# --------------------------------------------------------------------------------------------
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
