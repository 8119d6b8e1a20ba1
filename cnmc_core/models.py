"""Model registry: the paper's networks, built by name with their default configuration.

Every model takes raw RGB images of its input size with values 0-255 (uint8 or float) and returns
one sigmoid unit, P(ALL). The backbone's own preprocessing (rescaling, RGB->BGR and mean
subtraction) is a layer inside the graph, so a saved ``model.keras`` needs nothing else to predict
and loads with ``safe_mode=True`` (there is no ``Lambda`` layer anywhere).

Graphs are *flat*: a backbone is built with ``input_tensor=`` on our preprocessed tensor and cut
with ``get_layer(name).output`` in the same graph, so every convolution is a layer of the model
itself (Grad-CAM and layer freezing need that; a nested sub-model hides them).

Layer naming convention (it survives ``model.keras`` round trips, unlike Python attributes):

* ``image``: the input; ``preprocess``: the input scaling layer (no weights);
* ``head_*``: the classifier on top of the backbone, ending in ``head_output`` (Dense 1, sigmoid);
* everything else is the backbone ("base"), which stage 1 freezes (:func:`backbone_layer_names`).

The model's ``name`` is its registry name, so :func:`model_defaults(model.name) <model_defaults>`
works on a loaded model too.

Example::

    model = create_model("resnet50_conv4_v1", weights="imagenet")
    set_trainable(model, "none")           # stage 1: feature extraction
    set_trainable(model, model_defaults("resnet50_conv4_v1")["fine_tune"])  # stage 2
"""

from __future__ import annotations

import copy
import functools
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
from keras import layers  # noqa: E402

from .exceptions import ConfigError  # noqa: E402

__all__ = [
    "ModelSpec",
    "ImageNetPreprocess",
    "register_model",
    "create_model",
    "check_model",
    "list_models",
    "model_defaults",
    "backbone_layer_names",
    "head_layer_names",
    "set_trainable",
    "imagenet_weights_file",
    "keras_models_dir",
    "WEIGHTS_CHOICES",
    "FINE_TUNE_RULES",
    "MOBILENET_V2_SIZES",
    "BACKBONE_INITS",
]

#: Accepted forms of ``weights=``: these two strings, or the path of a backbone ``.h5`` file.
WEIGHTS_CHOICES = ("none", "imagenet")
#: Accepted forms of a fine-tuning rule (see :func:`set_trainable`).
FINE_TUNE_RULES = ('"none"', '"all"', '{"from_layer": NAME}', '{"blocks": [PREFIX, ...]}',
                   '{"from_block": PREFIX}')
#: Input sizes for which Keras publishes MobileNetV2 (alpha 1.0) ImageNet weights.
MOBILENET_V2_SIZES = (96, 128, 160, 192, 224)

_IMAGENET_FILES = {
    "vgg16": "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "resnet50": "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "mobilenetv2": "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{size}_no_top.h5",
}
# Keras' "caffe" preprocessing: BGR channel order, ImageNet mean subtracted, no scaling.
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
_HEAD_PREFIX = "head_"
_NON_BACKBONE = ("image", "preprocess")


# --------------------------------------------------------------------------------------------
# Preprocessing as a serialisable layer (no Lambda: safe_mode=True must load it)
# --------------------------------------------------------------------------------------------
@keras.saving.register_keras_serializable(package="cnmc")
class ImageNetPreprocess(layers.Layer):
    """A backbone's ``preprocess_input`` as a layer, for raw RGB input in 0-255.

    Args:
        mode: ``"caffe"`` (VGG16, ResNet50: RGB->BGR, then subtract the ImageNet mean per
            channel), ``"tf"`` (MobileNetV2: scale to [-1, 1]) or ``"unit"`` (scale to [0, 1]).
    """

    MODES = ("caffe", "tf", "unit")

    def __init__(self, mode: str = "caffe", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if mode not in self.MODES:
            raise ConfigError(f"ImageNetPreprocess mode must be one of {self.MODES}; got {mode!r}.")
        self.mode = mode

    def call(self, inputs):  # noqa: D102 - Keras API
        x = keras.ops.cast(inputs, self.compute_dtype)
        if self.mode == "caffe":
            x = keras.ops.flip(x, axis=-1)
            return x - keras.ops.convert_to_tensor(_CAFFE_MEAN_BGR, dtype=self.compute_dtype)
        if self.mode == "tf":
            return x / 127.5 - 1.0
        return x / 255.0

    def compute_output_shape(self, input_shape):  # noqa: D102 - Keras API
        return input_shape

    def get_config(self) -> dict:  # noqa: D102 - Keras API
        return {**super().get_config(), "mode": self.mode}


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelSpec:
    """A registered model: its builder and the defaults of the paper's experiment.

    Attributes:
        name: registry name (also the built model's ``name``).
        family: ``scratch_cnn``, ``vgg16``, ``resnet50`` or ``mobilenetv2``.
        builder: ``builder(name, image_size, weights_file, **arch) -> keras.Model``.
        description: one line for menus.
        image_size: default square input size in pixels.
        min_image_size: smallest size the architecture accepts (the smoke tests use it).
        arch: the builder's keyword arguments with defaults: exactly the keys ``create_model``
            accepts as overrides.
        fine_tune: rule of the fine-tuning stage (:func:`set_trainable`).
        stages: training stages in order, each ``{"name", "trainable", "optimizer",
            "learning_rate"}``; ``trainable`` is a :func:`set_trainable` rule.
        weights: default ``weights=`` for training (``"imagenet"`` or ``"none"``).
        batch_size: the paper's batch size.
        params: parameter count of the built model at ``params_at`` px (checked by the tests;
            where the paper prints a summary of the same network, it is the paper's figure).
        params_at: the input size ``params`` refers to (GAP heads do not depend on it).
        paper: what the paper reports: ``section`` and ``weighted_f1`` on its own (leaky,
            random-by-image) test split, ``None`` where it gives none.
    """

    name: str
    family: str
    builder: Callable[..., Any]
    description: str
    image_size: int
    min_image_size: int
    arch: Mapping[str, Any]
    fine_tune: Any
    stages: tuple
    weights: str = "none"
    batch_size: int = 32
    params: int | None = None
    params_at: int | None = None
    paper: Mapping[str, Any] = field(default_factory=dict)


_REGISTRY: dict[str, ModelSpec] = {}
# Short names accepted by create_model/model_defaults; not listed (they would duplicate tests).
_ALIASES = {"scratch_cnn": "scratch_dd256"}


def register_model(spec: ModelSpec) -> ModelSpec:
    """Add ``spec`` to the registry (a new model is then covered by the smoke tests).

    Raises:
        ConfigError: the name is already registered.
    """
    if spec.name in _REGISTRY or spec.name in _ALIASES:
        raise ConfigError(f"Model {spec.name!r} is already registered; choose another name.")
    _REGISTRY[spec.name] = spec
    return spec


def list_models() -> list[str]:
    """Names of the registered models, sorted."""
    return sorted(_REGISTRY)


def _spec(name: str) -> ModelSpec:
    key = _ALIASES.get(name, name)
    if key not in _REGISTRY:
        raise ConfigError(
            f"Unknown model {name!r}. Known models: {', '.join(list_models())} "
            f"(aliases: {', '.join(f'{a}={t}' for a, t in _ALIASES.items())})."
        )
    return _REGISTRY[key]


def model_defaults(name: str) -> dict:
    """The default configuration of model ``name`` as a plain JSON-able dict (a copy).

    Keys: ``name``, ``family``, ``description``, ``image_size``, ``min_image_size``, ``weights``,
    ``arch`` (overridable builder arguments), ``fine_tune``, ``stages``, ``batch_size``,
    ``early_stopping_patience``, ``monitor``, ``imagenet_file`` (for ``weights="imagenet"`` at the
    default size, ``None`` for scratch models), ``params``, ``params_at`` and ``paper``.

    Raises:
        ConfigError: unknown name (the message lists the known ones).
    """
    spec = _spec(name)
    return copy.deepcopy({
        "name": spec.name,
        "family": spec.family,
        "description": spec.description,
        "image_size": spec.image_size,
        "min_image_size": spec.min_image_size,
        "weights": spec.weights,
        "arch": dict(spec.arch),
        "fine_tune": spec.fine_tune,
        "stages": [dict(s) for s in spec.stages],
        "batch_size": spec.batch_size,
        "early_stopping_patience": 5,
        "monitor": "val_loss",
        "imagenet_file": (None if spec.family == "scratch_cnn"
                          else _imagenet_file_name(spec.family, spec.image_size)),
        "params": spec.params,
        "params_at": spec.params_at,
        "paper": dict(spec.paper),
    })


# --------------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------------
def keras_models_dir() -> Path:
    """The folder where Keras caches application weights: ``$KERAS_HOME/models`` or
    ``~/.keras/models`` (read at call time, so a changed ``KERAS_HOME`` is honoured)."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "models"


def _imagenet_file_name(family: str, image_size: int) -> str:
    if family == "mobilenetv2":
        # Keras itself falls back to the 224 weights for other sizes; so do we, loudly.
        size = image_size if image_size in MOBILENET_V2_SIZES else 224
        return _IMAGENET_FILES[family].format(size=size)
    return _IMAGENET_FILES[family]


def imagenet_weights_file(family: str, image_size: int = 224) -> Path:
    """The cached ImageNet "notop" weights file of a backbone family, checked to exist.

    Args:
        family: ``vgg16``, ``resnet50`` or ``mobilenetv2``.
        image_size: input size; selects the MobileNetV2 file (published for 96, 128, 160, 192
            and 224 px; other sizes use the 224 file, as Keras does, with a warning).

    Returns:
        The path of the file in :func:`keras_models_dir`.

    Raises:
        ConfigError: the family has no ImageNet weights, or the file is not in the cache (never
            a download: this machine may be offline).
    """
    if family not in _IMAGENET_FILES:
        raise ConfigError(
            f"weights='imagenet' is not available for model family {family!r}: it is trained from "
            "scratch. Use weights='none'."
        )
    name = _imagenet_file_name(family, image_size)
    if family == "mobilenetv2" and image_size not in MOBILENET_V2_SIZES:
        warnings.warn(
            f"MobileNetV2 ImageNet weights exist for {MOBILENET_V2_SIZES} px only; using {name} "
            f"for a {image_size} px input.", stacklevel=3,
        )
    folder = keras_models_dir()
    path = folder / name
    if not path.is_file():
        raise ConfigError(
            f"weights='imagenet' needs the file {name} in {folder} (the Keras cache: "
            "$KERAS_HOME/models or ~/.keras/models), and it is not there. Copy it there from a "
            "machine with internet access (Keras downloads it to that folder), or pass "
            "weights='/path/to/" + name + "', or use weights='none' for random initialisation."
        )
    return path


def _resolve_weights(spec: ModelSpec, weights: Any, image_size: int) -> Path | None:
    """Validate ``weights`` before building anything; returns the file to load or None."""
    if weights is None or (isinstance(weights, str) and weights.lower() == "none"):
        return None
    if spec.family == "scratch_cnn":
        raise ConfigError(
            f"weights={weights!r} is not allowed for {spec.name}: the scratch CNN has no "
            "pretrained weights. Use weights='none'."
        )
    if isinstance(weights, str) and weights.lower() == "imagenet":
        return imagenet_weights_file(spec.family, image_size)
    if not isinstance(weights, (str, os.PathLike)):
        raise ConfigError(
            f"weights must be 'none', 'imagenet' or the path of an .h5 file; got {weights!r}."
        )
    path = Path(weights).expanduser()
    if path.suffix.lower() not in {".h5", ".hdf5"} or str(path).endswith(".weights.h5"):
        raise ConfigError(
            f"weights={str(weights)!r}: expected 'none', 'imagenet' or the path of a Keras "
            f"applications 'notop' .h5 file of the {spec.family} backbone "
            f"(like {_imagenet_file_name(spec.family, image_size)})."
        )
    if not path.is_file():
        raise ConfigError(f"weights file {path} does not exist; check the path or use "
                          "weights='none'.")
    return path


# --------------------------------------------------------------------------------------------
# Builders
# --------------------------------------------------------------------------------------------
def _check_rate(name: str, value: Any) -> float:
    if not isinstance(value, (int, float)) or not 0.0 <= float(value) < 1.0:
        raise ConfigError(f"{name} must be a number in [0, 1); got {value!r}.")
    return float(value)


def _check_units(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer; got {value!r}.")
    return value


def _build_scratch(name: str, image_size: int, weights_file: Path | None, *, head: str,
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


def _build_transfer(name: str, image_size: int, weights_file: Path | None, *, family: str,
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


def check_model(name: str, image_size: int | None = None, weights: Any = "none",
                what: str = "override", **overrides: Any) -> tuple[ModelSpec, int, Path | None, dict]:
    """Check a model request without building it: what :func:`create_model` and the training
    config check (before any run folder exists) both run.

    Checks the name, the override keys, the input size, the weights (an ImageNet file missing
    offline fails here, naming it) and that ``init`` re-draws only random weights. Values of the
    other overrides (``dropout``, ``head`` ...) are checked by the builder.

    Args:
        what: how the overrides are called in messages (``override``, ``model_args``).

    Returns:
        ``(spec, image_size, weights_file or None, arch)`` with ``arch`` the builder's arguments.

    Raises:
        ConfigError: with the reason and the allowed values.
    """
    spec = _spec(name)
    unknown = sorted(set(overrides) - set(spec.arch))
    if unknown:
        raise ConfigError(f"Unknown {what} {unknown} for model {spec.name}; allowed: "
                          f"{', '.join(sorted(spec.arch))}.")
    size = spec.image_size if image_size is None else image_size
    if isinstance(size, bool) or not isinstance(size, int) or size < spec.min_image_size:
        raise ConfigError(
            f"image_size must be an integer >= {spec.min_image_size} for {spec.name}; got {size!r}."
        )
    weights_file = _resolve_weights(spec, weights, size)
    arch = {**spec.arch, **overrides}
    init = arch.get("init", "keras")
    if "init" in spec.arch and init not in BACKBONE_INITS:
        raise ConfigError(f"init must be one of {', '.join(BACKBONE_INITS)}; got {init!r}.")
    batch_norm = arch.get("batch_norm", False)
    if "batch_norm" in spec.arch and not isinstance(batch_norm, bool):
        raise ConfigError(f"batch_norm must be true or false; got {batch_norm!r}.")
    if spec.family == "vgg16" and batch_norm and weights_file is not None:
        raise ConfigError(f"batch_norm=true builds VGG16-BN, for which Keras has no pretrained "
                          f"weights ({weights_file.name} is plain VGG16): use it with weights=none "
                          "only, or set batch_norm=false (for a preset: --set "
                          "model_args.batch_norm=false).")
    if init != "keras" and weights_file is not None:
        raise ConfigError(f"init={init!r} re-draws the backbone's kernels and would overwrite the "
                          f"pretrained weights ({weights_file.name}): use it with weights=none only, or set "
                          "init=keras (for a preset: --set model_args.init=keras).")
    return spec, size, weights_file, arch


def create_model(name: str, image_size: int | None = None, weights: Any = "none",
                 **overrides: Any) -> keras.Model:
    """Build the registered model ``name`` (uncompiled).

    Args:
        name: a name from :func:`list_models` (or an alias such as ``scratch_cnn``).
        image_size: square input size in pixels; default: the model's ``image_size``.
        weights: ``"none"`` (random init), ``"imagenet"`` (from the Keras cache, checked before
            building, never downloaded) or the path of a Keras applications "notop" ``.h5`` file
            of the backbone. Scratch models accept ``"none"`` only.
        **overrides: values for keys of the model's ``arch`` defaults (e.g. ``dropout=0.3``).

    Returns:
        A flat ``keras.Model`` named ``name`` from ``(None, s, s, 3)`` raw RGB 0-255 to ``(None,
        1)`` P(ALL).

    Raises:
        ConfigError: unknown name or override key, bad value, too small ``image_size``, or
            weights not allowed or not found (see :func:`check_model`).
    """
    spec, size, weights_file, arch = check_model(name, image_size, weights, **overrides)
    return spec.builder(spec.name, size, weights_file, **arch)


# --------------------------------------------------------------------------------------------
# Freezing
# --------------------------------------------------------------------------------------------
def head_layer_names(model: keras.Model) -> list[str]:
    """Names of the classifier layers (``head_*``), in graph order."""
    return [lyr.name for lyr in model.layers if lyr.name.startswith(_HEAD_PREFIX)]


def backbone_layer_names(model: keras.Model) -> list[str]:
    """Names of the backbone ("base") layers in graph order: all but input, preprocess, head."""
    return [
        lyr.name for lyr in model.layers
        if lyr.name not in _NON_BACKBONE and not lyr.name.startswith(_HEAD_PREFIX)
        and not isinstance(lyr, layers.InputLayer)
    ]


def _in_block(layer_name: str, block: str) -> bool:
    # "block_1" must not match "block_10_expand": the block prefix ends at an underscore.
    return layer_name == block or layer_name.startswith(block + "_")


def _block_examples(names: list[str]) -> str:
    prefixes: list[str] = []
    for n in names:
        parts = n.split("_")
        p = "_".join(parts[:2]) if len(parts) > 2 and parts[1].isdigit() else parts[0]
        if p not in prefixes:
            prefixes.append(p)
    return ", ".join(prefixes[:12])


def _count(weights) -> int:
    n = 0
    for w in weights:
        size = 1
        for d in w.shape:
            size *= int(d)
        n += size
    return n


def set_trainable(model: keras.Model, rule: Any, train_bn: bool = False) -> dict:
    """Set which layers train; BatchNormalization layers stay frozen (inference mode) unless
    ``train_bn`` (for random initialisation, where there are no ImageNet statistics to keep).

    Args:
        model: a model from :func:`create_model` (or loaded from its ``model.keras``).
        rule: ``"none"`` (backbone frozen, head trainable: feature extraction), ``"all"``,
            ``{"from_layer": NAME}`` (backbone layers from NAME on), ``{"blocks": [PREFIX, ...]}``
            (backbone layers named PREFIX or PREFIX_*, e.g. VGG's ``block2``-``block4``) or
            ``{"from_block": PREFIX}`` (from the first layer of that block on, e.g. MobileNetV2's
            ``block_10``). The head is always trainable.

    Returns:
        ``{"trainable_layers": [...], "trainable_params": n, "non_trainable_params": m}``.
        Recompile the model after calling this (Keras fixes trainability at compile time).

    Raises:
        ConfigError: malformed rule or a layer/block that is not in the backbone.
    """
    base = backbone_layer_names(model)
    if isinstance(rule, str) and rule in ("none", "all"):
        train = set(base) if rule == "all" else set()
    elif isinstance(rule, Mapping) and len(rule) == 1:
        (kind, value), = rule.items()
        if kind == "from_layer":
            if value not in base:
                raise ConfigError(
                    f"fine-tune rule {{'from_layer': {value!r}}}: no backbone layer of "
                    f"{model.name} has that name; some that do: {', '.join(base[-10:])}."
                )
            train = set(base[base.index(value):])
        elif kind == "blocks":
            if isinstance(value, str) or not isinstance(value, (list, tuple)) or not value:
                raise ConfigError(f"fine-tune rule 'blocks' needs a non-empty list; got {value!r}.")
            train = set()
            for block in value:
                hit = {n for n in base if _in_block(n, str(block))}
                if not hit:
                    raise ConfigError(
                        f"fine-tune rule {{'blocks': {list(value)!r}}}: block {block!r} is not in "
                        f"the backbone of {model.name}; blocks there: {_block_examples(base)}."
                    )
                train |= hit
        elif kind == "from_block":
            first = next((n for n in base if _in_block(n, str(value))), None)
            if first is None:
                raise ConfigError(
                    f"fine-tune rule {{'from_block': {value!r}}}: no such block in the backbone "
                    f"of {model.name}; blocks there: {_block_examples(base)}."
                )
            train = set(base[base.index(first):])
        else:
            raise ConfigError(
                f"Unknown fine-tune rule key {kind!r}; allowed rules: {', '.join(FINE_TUNE_RULES)}."
            )
    else:
        raise ConfigError(
            f"Invalid fine-tune rule {rule!r}; allowed rules: {', '.join(FINE_TUNE_RULES)}."
        )

    head = set(head_layer_names(model))
    model.trainable = True
    for lyr in model.layers:
        on = lyr.name in head or lyr.name in train
        if isinstance(lyr, layers.BatchNormalization) and not train_bn:
            # In Keras 3 a frozen BN layer also runs in inference mode: with small batches of a
            # new domain, updating ImageNet statistics would wreck the pretrained features.
            on = False
        lyr.trainable = on
    trainable = [lyr.name for lyr in model.layers if lyr.trainable and lyr.weights]
    return {
        "trainable_layers": trainable,
        "trainable_params": _count(model.trainable_weights),
        "non_trainable_params": _count(model.non_trainable_weights),
    }


# --------------------------------------------------------------------------------------------
# The paper's models
# --------------------------------------------------------------------------------------------
def _stages(ft_rule: Any, fe_opt: str = "adam", fe_lr: float = 1e-3, ft_opt: str = "adam",
            ft_lr: float = 1e-5) -> tuple:
    """Two-stage transfer learning: feature extraction (base frozen) then fine-tuning."""
    return (
        {"name": "feature_extraction", "trainable": "none", "optimizer": fe_opt,
         "learning_rate": fe_lr},
        {"name": "fine_tune", "trainable": ft_rule, "optimizer": ft_opt, "learning_rate": ft_lr},
    )


_SCRATCH_STAGES = ({"name": "train", "trainable": "all", "optimizer": "adam",
                    "learning_rate": 1e-3},)
# The paper does not give its dropout rate; 0.5 is the common choice and changes no parameter count.
_DROPOUT = 0.5

for _name, _head, _units, _sec, _f1, _params, _desc in (
    ("scratch_d256", "d", 256, "3.2.1", None, 2_027_329, "Dense 256 + Dropout"),
    ("scratch_dd256", "dd", 256, "3.2.2", 0.9076, 2_027_329,
     "Dropout + Dense 256 + Dropout (the paper's best scratch CNN)"),
    ("scratch_d128", "d", 128, "3.2.3", 0.8605, 1_207_873, "Dense 128 + Dropout"),
    ("scratch_2x256", "2x", 256, "3.2.4", None, 2_093_121, "Dense 256 + Dense 256 + Dropout"),
):
    register_model(ModelSpec(
        name=_name, family="scratch_cnn", builder=_build_scratch,
        description=f"CNN from scratch, 4 conv blocks + Flatten + {_desc}",
        image_size=300, min_image_size=60,  # pools 2*2*3*5 = 60
        arch={"head": _head, "dense_units": _units, "dropout": _DROPOUT,
              "filters": (32, 64, 128, 256), "pool_sizes": (2, 2, 3, 5), "batch_norm": False},
        fine_tune="all", stages=_SCRATCH_STAGES, weights="none",
        params=_params, params_at=300, paper={"section": _sec, "weighted_f1": _f1},
    ))

for _name, _family, _cut, _units, _head, _ft, _st, _sec, _f1, _params, _desc in (
    ("vgg16_block4", "vgg16", "block4_pool", 256, "dense_dropout",
     {"blocks": ["block2", "block3", "block4"]}, None, "3.3.1.3", 0.9183, 7_766_849,
     "VGG16 to block4_pool + GAP + Dense 256 + Dropout; blocks 2-4 fine-tuned"),
    ("vgg16_full", "vgg16", "block5_pool", 256, "dense_dropout",
     {"from_layer": "block5_conv1"}, None, "3.3.1.1-2", None, 14_846_273,
     "VGG16 to block5_pool + GAP + Dense 256 + Dropout; last 3 convs fine-tuned"),
    ("resnet50_conv4_v1", "resnet50", "conv4_block6_out", 256, "dense_dropout", "all", None,
     "3.3.2.1.3", 0.9416, 8_851_841,
     "ResNet50 to conv4_block6_out + GAP + Dense 256 + Dropout; whole base fine-tuned"),
    ("resnet50_conv4_v2", "resnet50", "conv4_block6_out", 512, "dense", "all",
     ("rmsprop", 5e-5, "rmsprop", 1e-5), "3.3.2.1.4", 0.9451, 9_114_497,
     "ResNet50 to conv4_block6_out + GAP + Dense 512, RMSprop; whole base fine-tuned"),
    ("resnet50_full", "resnet50", "conv5_block3_out", 256, "dense_dropout",
     {"from_layer": "conv5_block3_1_conv"}, None, "3.3.2 (3.1.1.2)", 0.8628, 24_112_513,
     "ResNet50 to conv5_block3_out + GAP + Dense 256 + Dropout; last 3 convs fine-tuned"),
    ("mobilenetv2_full", "mobilenetv2", "out_relu", 256, "dropout", {"from_block": "block_10"},
     None, "3.3.3.1.2", 0.8717, 2_259_265,
     "MobileNetV2 to out_relu + GAP + Dropout; blocks 10-16 fine-tuned"),
    # "Remove the last block" as for VGG16/ResNet50: keep the 14x14 (at 224 px) stage, i.e. cut
    # just before block 13's stride-2 depthwise conv. block_13_expand_relu (576 channels) is the
    # standard 1/16-resolution feature point (SSDLite, DeepLabV3); block_12_add has only 96.
    ("mobilenetv2_block13", "mobilenetv2", "block_13_expand_relu", 256, "dropout",
     {"from_block": "block_10"}, None, "3.3.3.2", None, 616_833,
     "MobileNetV2 to block_13_expand_relu + GAP + Dropout; blocks 10-13 fine-tuned"),
):
    register_model(ModelSpec(
        name=_name, family=_family, builder=functools.partial(_build_transfer, family=_family),
        description=_desc, image_size=224, min_image_size=32,
        arch={"cut_layer": _cut, "dense_units": _units, "dropout": _DROPOUT, "head": _head,
              "init": "keras", **({"batch_norm": False} if _family == "vgg16" else {})},
        fine_tune=_ft, stages=_stages(_ft, *(_st or ())), weights="imagenet",
        params=_params, params_at=224, paper={"section": _sec, "weighted_f1": _f1},
    ))
