"""Builders of the registered networks: the paper's CNN from scratch and the transfer backbones
(VGG16, ResNet50, MobileNetV2) cut at a layer, with the classifier head on top.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import keras
from keras import layers

from cnmc_core.exceptions import ConfigError
from cnmc_core.models.layers import ImageNetPreprocess

__all__ = ["build_scratch", "BACKBONE_INITS", "build_transfer"]


def _check_rate(name: str, value: Any) -> float:
    if not isinstance(value, (int, float)) or not 0.0 <= float(value) < 1.0:
        raise ConfigError(f"{name} must be a number in [0, 1); got {value!r}.")
    return float(value)


def _check_units(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer; got {value!r}.")
    return value


def build_scratch(name: str, image_size: int, weights_file: Path | None, *, head: str,
                   dense_units: int, dropout: float, filters=(32, 64, 128, 256),
                   pool_sizes=(2, 2, 3, 5), batch_norm: bool = False) -> keras.Model:
    """The paper's CNN from scratch (3.2): 4 x (Conv 3x3 same ReLU + MaxPool), Flatten, head.

    ``head``: ``d`` = Dense + Dropout (3.2.1, 3.2.3), ``dd`` = Dropout + Dense + Dropout (3.2.2),
    ``2x`` = Dense + Dense + Dropout (3.2.4; the paper does not say where its dropout was).
    ``batch_norm`` (not in the paper, off by default): Conv -> BatchNorm -> ReLU. The paper's
    network needs many epochs at 300 px to leave its initial plateau on these dark, low-contrast
    cells; the CPU demo presets turn this on so that a few epochs at 64 px learn (its value is
    checked by :func:`check_model`).
    """
    dense_units = _check_units("dense_units", dense_units)
    dropout = _check_rate("dropout", dropout)
    if len(filters) != len(pool_sizes):
        raise ConfigError(
            f"filters {filters} and pool_sizes {pool_sizes} must have the same length.")
    inp = keras.Input((image_size, image_size, 3), name="image")
    x = ImageNetPreprocess("unit", name="preprocess")(inp)  # the paper's Rescaling(1/255)
    for i, (nf, ps) in enumerate(zip(filters, pool_sizes), start=1):
        if batch_norm:
            x = layers.Conv2D(int(nf), 3, padding="same", use_bias=False, name=f"conv{i}")(x)
            x = layers.BatchNormalization(name=f"bn{i}")(x)
            x = layers.ReLU(name=f"relu{i}")(x)
        else:
            x = layers.Conv2D(int(nf), 3, padding="same", activation="relu", name=f"conv{i}")(x)
        x = layers.MaxPooling2D(int(ps), name=f"pool{i}")(x)
    x = layers.Flatten(name="head_flatten")(x)
    if head == "dd":
        x = layers.Dropout(dropout, name="head_dropout_in")(x)
    x = layers.Dense(dense_units, activation="relu", name="head_dense")(x)
    if head == "2x":
        x = layers.Dense(dense_units, activation="relu", name="head_dense2")(x)
    elif head not in ("d", "dd"):
        raise ConfigError(f"head must be 'd', 'dd' or '2x'; got {head!r}.")
    x = layers.Dropout(dropout, name="head_dropout")(x)
    out = layers.Dense(1, activation="sigmoid", name="head_output")(x)
    return keras.Model(inp, out, name=name)


_APPS = {
    "vgg16": ("VGG16", "caffe"),
    "resnet50": ("ResNet50", "caffe"),
    "mobilenetv2": ("MobileNetV2", "tf"),
}
#: ``init`` choices of the transfer models (random initialisation of the backbone's convolutions).
BACKBONE_INITS = ("keras", "he_normal")
#: VGG16's convolution blocks: (convolutions, filters) per block.
_VGG16_BLOCKS = ((2, 64), (2, 128), (3, 256), (3, 512), (3, 512))


def _vgg16_bn(source, x) -> keras.Model:
    """VGG16's convolutional base with BatchNorm after every convolution (VGG16-BN, as
    torchvision's ``vgg16_bn``), built on tensor ``x`` with Keras' layer names (``block4_conv3``,
    ``block4_pool`` ...), so cut layers and fine-tuning rules read the same; each convolution is
    ``blockB_convC`` (no bias) -> ``blockB_convC_bn`` -> ``blockB_convC_relu``. ``source`` is
    the model's input, ``x`` its preprocessed tensor."""
    for b, (n, filters) in enumerate(_VGG16_BLOCKS, start=1):
        for c in range(1, n + 1):
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False,
                              name=f"block{b}_conv{c}")(x)
            x = layers.BatchNormalization(name=f"block{b}_conv{c}_bn")(x)
            x = layers.ReLU(name=f"block{b}_conv{c}_relu")(x)
        x = layers.MaxPooling2D(2, name=f"block{b}_pool")(x)
    return keras.Model(source, x, name="vgg16_bn")


def build_transfer(name: str, image_size: int, weights_file: Path | None, *, family: str,
                    cut_layer: str, dense_units: int, dropout: float, head: str,
                    init: str = "keras", batch_norm: bool = False) -> keras.Model:
    """A Keras application cut at ``cut_layer`` + GAP + head, as one flat graph.

    ``head``: ``dense_dropout`` = Dense(ReLU) + Dropout, ``dense`` = Dense(ReLU),
    ``dropout`` = Dropout only; then Dense(1, sigmoid). Weights are loaded into the full
    backbone (the notop files hold every block) before it is cut.

    ``init`` (random initialisation only): ``keras`` keeps the application's own initialisers
    (Glorot uniform); ``he_normal`` redraws every convolution kernel of the backbone from He et
    al.'s (2015) ReLU initialisation. VGG16 has no BatchNorm: from Glorot init it sits at
    chance for many epochs on these dark, low-contrast cells, from He init it leaves chance in a
    few. Refused with ImageNet weights, which it would overwrite (see :func:`check_model`, which
    also checks the values of ``init`` and ``batch_norm``).

    ``batch_norm`` (VGG16 only, random initialisation only: Keras publishes no ImageNet weights
    for it): VGG16-BN, BatchNorm after every convolution (:func:`_vgg16_bn`). From random init
    it learns in a few CPU epochs where plain VGG16 sits at chance; the CPU demo preset uses it.
    """
    dense_units = _check_units("dense_units", dense_units)
    dropout = _check_rate("dropout", dropout)
    if head not in ("dense_dropout", "dense", "dropout"):
        raise ConfigError(f"head must be 'dense_dropout', 'dense' or 'dropout'; got {head!r}.")
    app_name, mode = _APPS[family]
    inp = keras.Input((image_size, image_size, 3), name="image")
    x = ImageNetPreprocess(mode, name="preprocess")(inp)
    if batch_norm:
        base = _vgg16_bn(inp, x)
    else:
        with warnings.catch_warnings():
            # MobileNetV2 warns about non-ImageNet sizes even with weights=None: not our concern.
            warnings.simplefilter("ignore", UserWarning)
            base = getattr(keras.applications, app_name)(
                include_top=False, weights=str(weights_file) if weights_file else None,
                input_tensor=x,
            )
    try:
        features = base.get_layer(cut_layer).output
    except ValueError:
        known = [lyr.name for lyr in base.layers if lyr.name.endswith(("_out", "_pool", "_relu"))]
        raise ConfigError(
            f"cut_layer {cut_layer!r} is not a layer of {app_name}; candidates include "
            f"{', '.join(known[-8:])}."
        ) from None
    h = layers.GlobalAveragePooling2D(name="head_gap")(features)
    if head in ("dense_dropout", "dense"):
        h = layers.Dense(dense_units, activation="relu", name="head_dense")(h)
    if head in ("dense_dropout", "dropout"):
        h = layers.Dropout(dropout, name="head_dropout")(h)
    out = layers.Dense(1, activation="sigmoid", name="head_output")(h)
    model = keras.Model(inp, out, name=name)
    if init != "keras":  # after the head is built, so that the head's draws do not change
        initializer = keras.initializers.get(init)
        for layer in base.layers:
            if isinstance(layer, layers.DepthwiseConv2D):  # (kh, kw, C, 1): fan-in is kh * kw
                kh, kw, channels, mult = layer.kernel.shape
                drawn = initializer((kh, kw, mult, channels))
                layer.kernel.assign(keras.ops.transpose(drawn, (0, 1, 3, 2)))
            elif isinstance(layer, layers.Conv2D):
                layer.kernel.assign(initializer(layer.kernel.shape))
    return model
