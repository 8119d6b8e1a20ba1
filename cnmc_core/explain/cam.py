"""Explanations: intermediate activations, Grad-CAM / Grad-CAM++ heatmaps, ensemble heatmaps.

Computation only (numpy arrays in, numpy arrays out); pages and the CLI do the display. Works on
any flat Keras model with a single ``Dense(1)`` sigmoid output, in particular those of
:mod:`cnmc_core.models`, freshly built or loaded from a run's ``model.keras``.

Grad-CAM explains the *logit* ``z`` of the sigmoid output, not the probability: for class ALL the
score is ``z``, for HEM it is ``-z``. ``p`` or ``1 - p`` saturate for confident predictions (their
gradient vanishes like ``p (1 - p)``) and give blank or noisy maps. The logit is recomputed from
the input of the output layer and that layer's kernel and bias, so no model needs rebuilding.
The gradient goes through the autodiff of the Keras backend in use (tensorflow, jax or torch:
:func:`cnmc_core.explain.gradients.feature_gradients`); the rest is NumPy.

Images are raw RGB, 0-255 (what the models take); images of another size than the model's input
are resized for the forward pass and every heatmap comes back at the image's own size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cv2
import keras
import numpy as np

from cnmc_core.exceptions import ConfigError
from cnmc_core.explain.gradients import feature_gradients
from cnmc_core.explain.inputs import (
    as_batch,
    default_cam_layer,
    input_size,
    output_dense,
    spatial_layer,
    to_model_size,
)
from cnmc_core.explain.maps import CAM_METHODS, CAM_TARGETS, normalise_maps

__all__ = ["CamResult", "gradcam"]



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
        compiled: compile the gradient computation once per model and layer and cache it
            (:func:`~cnmc_core.explain.gradients.feature_gradients`: a ``tf.function`` under
            tensorflow, ResNet50 at 224 px on 2 cores ~0.1 s per heatmap instead of ~0.6 s
            eager, after a first call that costs a few seconds; ``jax.jit`` under jax; torch
            runs eagerly either way). False runs eagerly.

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
    batch = as_batch(images)
    out_h, out_w = batch.shape[1:3]
    x_all = to_model_size(batch, input_size(model))
    layer = layer or default_cam_layer(model)
    spatial_layer(model, layer)  # both checked before any batch runs
    output_dense(model)
    in_dtype = keras.backend.standardize_dtype(model.inputs[0].dtype)

    cams, weights_all, logits = [], [], []
    for start in range(0, len(x_all), max(1, int(batch_size))):
        x = np.asarray(x_all[start:start + batch_size], dtype=in_dtype)
        feats, grads, z = feature_gradients(model, layer, x, target, compiled)
        a, g = feats.astype("float64"), grads.astype("float64")
        if method == "gradcam":
            w = g.mean(axis=(1, 2))
        else:
            g2, g3 = g ** 2, g ** 3
            denom = 2.0 * g2 + a.sum(axis=(1, 2), keepdims=True) * g3
            alpha = np.where(np.abs(denom) > 0, g2 / np.where(denom == 0, 1.0, denom), 0.0)
            w = (alpha * np.maximum(g, 0.0)).sum(axis=(1, 2))
        cams.append(np.einsum("nhwk,nk->nhw", a, w))
        weights_all.append(w)
        logits.append(z.astype("float64"))

    small, zero = normalise_maps(np.concatenate(cams))
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
