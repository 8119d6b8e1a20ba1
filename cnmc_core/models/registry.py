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
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import keras

from cnmc_core.exceptions import ConfigError
from cnmc_core.models.builders import backbone_names
from cnmc_core.validation import check_param, check_scalar

__all__ = [
    "WEIGHTS_CHOICES",
    "MOBILENET_V2_SIZES",
    "MAX_IMAGE_SIZE",
    "ModelSpec",
    "register_model",
    "list_models",
    "model_defaults",
    "keras_models_dir",
    "imagenet_file_name",
    "imagenet_weights_file",
    "check_model",
    "create_model",
]

#: Accepted forms of ``weights=``: these two strings, or the path of a backbone ``.h5`` file.
WEIGHTS_CHOICES = ("none", "imagenet")
#: Input sizes for which Keras publishes MobileNetV2 (alpha 1.0) ImageNet weights.
MOBILENET_V2_SIZES = (96, 128, 160, 192, 224)
#: The largest input side accepted: C-NMC images are 450x450 (some copies 600x600), so a larger
#: input only upsamples them, and its cache and batches grow with the square of the side.
MAX_IMAGE_SIZE = 600
_IMAGENET_FILES = {
    "vgg16": "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "resnet50": "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
    "mobilenetv2": "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{size}_no_top.h5",
}


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
        arg_rules: the rule of every ``arch`` key (see ``cnmc_core.models.builders``), which
            :func:`check_model` applies before anything is built.
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
    arg_rules: Mapping[str, tuple]
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
        ConfigError: the name is already registered, or an ``arch`` key has no rule (every
            value a user can override is checked before a run starts).
    """
    if spec.name in _REGISTRY or spec.name in _ALIASES:
        raise ConfigError(f"Model {spec.name!r} is already registered; choose another name.")
    unruled = sorted(set(spec.arch) - set(spec.arg_rules))
    if unruled:
        raise ConfigError(f"Model {spec.name!r}: no rule for the argument(s) {unruled} in "
                          "arg_rules; declare what each accepts.")
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
                          else imagenet_file_name(spec.family, spec.image_size)),
        "params": spec.params,
        "params_at": spec.params_at,
        "paper": dict(spec.paper),
    })


def keras_models_dir() -> Path:
    """The folder where Keras caches application weights: ``$KERAS_HOME/models`` or
    ``~/.keras/models`` (read at call time, so a changed ``KERAS_HOME`` is honoured)."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "models"


def imagenet_file_name(family: str, image_size: int) -> str:
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
    name = imagenet_file_name(family, image_size)
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
            f"(like {imagenet_file_name(spec.family, image_size)})."
        )
    if not path.is_file():
        raise ConfigError(f"weights file {path} does not exist; check the path or use "
                          "weights='none'.")
    return path


def _check_arg(spec: ModelSpec, key: str, value: Any, rule: tuple, name: str, arch: dict) -> None:
    """One builder argument against its rule (``cnmc_core.models.builders``); ``name`` is how
    the user wrote it (``dropout``, ``model_args.dropout``)."""
    kind = rule[0]
    if kind == "bool":
        if not isinstance(value, bool):  # 1 == True: a choice check would let 1 through
            raise ConfigError(f"The {name!r} parameter of {spec.name} must be true or false. "
                              f"Got {value!r} instead.")
    elif kind == "ints":
        if isinstance(value, str) or not isinstance(value, (list, tuple)) or not value:
            raise ConfigError(f"The {name!r} parameter of {spec.name} must be a non-empty list "
                              f"of ints in the range [{rule[1]}, {rule[2]}]. Got {value!r} instead.")
        for i, item in enumerate(value):
            check_scalar(item, f"{name}[{i}]", "int", low=rule[1], high=rule[2], owner=spec.name)
    elif kind == "layer":
        known = backbone_names(spec.family, bool(arch.get("batch_norm", False)))
        if value not in known:
            ends = [n for n in known if n.endswith(("_out", "_pool", "_relu"))]
            raise ConfigError(f"The {name!r} parameter of {spec.name} must be a layer of its "
                              f"{spec.family} backbone (block ends include {', '.join(ends[-8:])}). "
                              f"Got {value!r} instead.")
    else:
        check_param(spec.name, name, value, rule)


def check_model(name: str, image_size: int | None = None, weights: Any = "none",
                what: str = "override", **overrides: Any) -> tuple[ModelSpec, int, Path | None, dict]:
    """Check a model request without building it: what :func:`create_model` and the training
    config check (before any run folder exists) both run, the one place each value is checked.

    Checks the name, the override keys and every value against the model's ``arg_rules``
    (``dropout`` in [0, 1), ``head`` one of the builder's, ``filters`` a non-empty list, a
    ``cut_layer`` that is a layer of the backbone...), the input size (from the architecture's
    smallest to :data:`MAX_IMAGE_SIZE`), the weights (an ImageNet file missing offline fails
    here, naming it) and the combinations that pretrained weights forbid.

    Args:
        name: a registered model name or alias.
        image_size: the input side in pixels (default: the model's).
        weights: as :func:`create_model` takes it.
        what: how the overrides are called in messages: ``override`` (keyword arguments) or
            ``model_args`` (a run config's, named ``model_args.KEY``).
        **overrides: values for keys of the model's ``arch``.

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
    arch = {**spec.arch, **overrides}
    prefix = "model_args." if what == "model_args" else ""
    for key in sorted(overrides, key=lambda k: k != "batch_norm"):  # cut_layer reads batch_norm
        _check_arg(spec, key, overrides[key], spec.arg_rules[key], prefix + key, arch)
    smallest = spec.min_image_size
    if "pool_sizes" in arch:
        if len(arch["filters"]) != len(arch["pool_sizes"]):
            raise ConfigError(f"{prefix}filters {list(arch['filters'])} and {prefix}pool_sizes "
                              f"{list(arch['pool_sizes'])} of {spec.name} must have the same "
                              "length: one pooling size per convolution block.")
        smallest = math.prod(int(p) for p in arch["pool_sizes"])  # each pooling divides the side
    size = spec.image_size if image_size is None else image_size
    if smallest > MAX_IMAGE_SIZE:
        raise ConfigError(f"The {prefix}pool_sizes {list(arch['pool_sizes'])} of {spec.name} "
                          f"need an input of at least {smallest} px (their product), more than "
                          f"the largest accepted, {MAX_IMAGE_SIZE}: use smaller pooling sizes.")
    check_scalar(size, "image_size", "int", low=smallest, high=MAX_IMAGE_SIZE, owner=spec.name,
                 fix=f"Choose an input side from {smallest} (what the architecture needs) to "
                 f"{MAX_IMAGE_SIZE} px (C-NMC images are 450x450; the paper used 224-300).")
    weights_file = _resolve_weights(spec, weights, size)
    if spec.family == "vgg16" and arch.get("batch_norm") and weights_file is not None:
        raise ConfigError(f"batch_norm=true builds VGG16-BN, for which Keras has no pretrained "
                          f"weights ({weights_file.name} is plain VGG16): use it with weights=none "
                          "only, or set batch_norm=false (for a preset: --set "
                          "model_args.batch_norm=false).")
    init = arch.get("init", "keras")
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
