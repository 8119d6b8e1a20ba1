"""What explanations need to know about a model: its input size and tensor, images as a batch of
the right size, its spatial layers, the layer Grad-CAM explains by default, its output unit.
"""

from __future__ import annotations

from typing import Any

import cv2
import keras
import numpy as np
from keras import layers

from cnmc_core.exceptions import ConfigError, DataError

__all__ = [
    "input_size",
    "single_input",
    "as_batch",
    "to_model_size",
    "spatial_layer",
    "is_spatial",
    "list_feature_layers",
    "default_cam_layer",
    "output_dense",
]

_CONV_TYPES = (layers.Conv2D, layers.DepthwiseConv2D, layers.SeparableConv2D,
               layers.Conv2DTranspose)
_POOL_TYPES = (layers.MaxPooling2D, layers.AveragePooling2D)
_HEAD_START_TYPES = (layers.GlobalAveragePooling2D, layers.GlobalMaxPooling2D, layers.Flatten)


def input_size(model: keras.Model) -> tuple[int, int]:
    shape = model.inputs[0].shape
    if len(shape) != 4 or shape[1] is None or shape[2] is None:
        raise ConfigError(f"Model {model.name} must take fixed-size images (None, h, w, c); its "
                          f"input shape is {tuple(shape)}.")
    return int(shape[1]), int(shape[2])


def single_input(model: keras.Model):
    # A bare tensor (not a one-element list) as inputs, so that calling with an array does not
    # trigger Keras' "structure of inputs doesn't match" warning.
    if len(model.inputs) != 1:
        raise ConfigError(f"Model {model.name} must have one image input; it has "
                          f"{len(model.inputs)}.")
    return model.inputs[0]


def as_batch(images: Any) -> np.ndarray:
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


def to_model_size(batch: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    if batch.shape[1:3] == hw:
        return batch
    h, w = hw
    interp = cv2.INTER_AREA if batch.shape[1] > h else cv2.INTER_LINEAR
    return np.stack([cv2.resize(im, (w, h), interpolation=interp) for im in batch])


def spatial_layer(model: keras.Model, layer: str) -> layers.Layer:
    try:
        lyr = model.get_layer(layer)
    except ValueError:
        lyr = None
    if lyr is None or not is_spatial(lyr):
        names = [lyr.name for lyr in model.layers if is_spatial(lyr)]
        raise ConfigError(
            f"layer {layer!r} is not a layer with a 4-D (n, h, w, c) output in {model.name}; "
            f"use one of: {', '.join(names[-10:])}."
        )
    return lyr


def is_spatial(lyr: layers.Layer) -> bool:
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
        if lyr is not None and not isinstance(lyr, layers.InputLayer) and is_spatial(lyr):
            return lyr.name
    spatial = [lyr.name for lyr in model.layers if is_spatial(lyr)]
    if not spatial:
        raise ConfigError(f"Model {model.name} has no layer with a spatial (n, h, w, c) output to "
                          "explain.")
    return spatial[-1]


def output_dense(model: keras.Model) -> layers.Dense:
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
