"""Builders of the registered networks: the paper's CNN from scratch and the transfer backbones
(VGG16, ResNet50, MobileNetV2) cut at a layer, with the classifier head on top.

The values a builder accepts are declared here once, as data (:data:`SCRATCH_ARGS`,
:data:`TRANSFER_ARGS`); :func:`cnmc_core.models.registry.check_model` checks a request against
them before anything is built or written, so a builder takes its arguments as checked.
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path

import keras
from keras import layers

from cnmc_core.models.layers import ImageNetPreprocess

__all__ = ["BACKBONE_INITS", "SCRATCH_ARGS", "TRANSFER_ARGS", "build_scratch", "backbone_names",
           "build_transfer"]

#: ``init`` choices of the transfer models (random initialisation of the backbone's convolutions).
BACKBONE_INITS = ("keras", "he_normal")
# A rule per builder argument: ("int"|"float", low, high[, closed]) and ("choice", options) as
# cnmc_core.validation.check_param reads them, ("bool",), ("ints", low, high) for a non-empty
# list of ints in range, ("layer",) for a layer of the model's backbone.
_DENSE_UNITS = ("int", 1, 16384)
_DROPOUT = ("float", 0, 1, "left")  # a rate of 1 drops everything
#: What :func:`build_scratch` accepts.
SCRATCH_ARGS = {
    "head": ("choice", ("d", "dd", "2x")),
    "dense_units": _DENSE_UNITS,
    "dropout": _DROPOUT,
    "filters": ("ints", 1, 4096),
    "pool_sizes": ("ints", 1, 64),
    "batch_norm": ("bool",),
}
#: What :func:`build_transfer` accepts (``batch_norm`` for VGG16 only).
TRANSFER_ARGS = {
    "cut_layer": ("layer",),
    "dense_units": _DENSE_UNITS,
    "dropout": _DROPOUT,
    "head": ("choice", ("dense_dropout", "dense", "dropout")),
    "init": ("choice", BACKBONE_INITS),
    "batch_norm": ("bool",),
}


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

    Every value is taken as :func:`~cnmc_core.models.registry.check_model` checked it
    (:data:`SCRATCH_ARGS`, filters and pool sizes of the same length, an input of at least the
    product of the pool sizes).
    """
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
    x = layers.Dropout(dropout, name="head_dropout")(x)
    out = layers.Dense(1, activation="sigmoid", name="head_output")(x)
    return keras.Model(inp, out, name=name)


_APPS = {
    "vgg16": ("VGG16", "caffe"),
    "resnet50": ("ResNet50", "caffe"),
    "mobilenetv2": ("MobileNetV2", "tf"),
}
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


def _backbone(family: str, source, x, weights_file: Path | None, batch_norm: bool) -> keras.Model:
    """The backbone of ``family`` built on tensor ``x`` (``source`` is the model's input)."""
    if batch_norm:
        return _vgg16_bn(source, x)
    with warnings.catch_warnings():
        # MobileNetV2 warns about non-ImageNet sizes even with weights=None: not our concern.
        warnings.simplefilter("ignore", UserWarning)
        return getattr(keras.applications, _APPS[family][0])(
            include_top=False, weights=str(weights_file) if weights_file else None,
            input_tensor=x,
        )


@functools.lru_cache(maxsize=8)
def backbone_names(family: str, batch_norm: bool = False) -> tuple[str, ...]:
    """The layer names of a backbone, in graph order (what ``cut_layer`` may name).

    Built once per process, without weights, at 32 px (names do not depend on the size). The
    build draws initial weights, so Python's and NumPy's random states are restored afterwards:
    asking for the names does not change the weights a seeded run draws next.
    """
    import random

    import numpy as np

    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        inp = keras.Input((32, 32, 3))
        base = _backbone(family, inp, inp, None, batch_norm)
        return tuple(lyr.name for lyr in base.layers)
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)


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
    few. Refused with ImageNet weights, which it would overwrite.

    ``batch_norm`` (VGG16 only, random initialisation only: Keras publishes no ImageNet weights
    for it): VGG16-BN, BatchNorm after every convolution (:func:`_vgg16_bn`). From random init
    it learns in a few CPU epochs where plain VGG16 sits at chance; the CPU demo preset uses it.

    Every value is taken as :func:`~cnmc_core.models.registry.check_model` checked it
    (:data:`TRANSFER_ARGS`, ``cut_layer`` one of :func:`backbone_names`, and the combinations
    with pretrained weights).
    """
    inp = keras.Input((image_size, image_size, 3), name="image")
    x = ImageNetPreprocess(_APPS[family][1], name="preprocess")(inp)
    base = _backbone(family, inp, x, weights_file, batch_norm)
    features = base.get_layer(cut_layer).output
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
