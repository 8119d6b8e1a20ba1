"""Training configurations: presets in ``configs/``, overrides, ``--set key=value``, validation.

A configuration is a plain dict whose allowed keys, types and values are declared once in
:data:`SCHEMA` / :data:`STAGE_SCHEMA`; every check turns into one uniform message naming the key,
the rule and the value. Presets are JSON files in ``configs/`` (the paper's experiments with the
figures the paper reports, and small demo presets sized for a 2-core CPU).
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any, Iterable

from cnmc_core.contracts import BACKENDS, KFOLD_PROTOCOLS, PROTOCOLS
from cnmc_core.data.splits import check_fractions, check_kfold
from cnmc_core.exceptions import ConfigError
from cnmc_core.validation import check_param

__all__ = [
    "PRESETS_DIR",
    "OPTIMIZERS",
    "SCHEMA",
    "STAGE_SCHEMA",
    "RANGES",
    "STAGE_RANGES",
    "DEFAULTS",
    "list_presets",
    "load_preset",
    "validate_config",
    "apply_set",
    "resolve_config",
]

PRESETS_DIR = Path(__file__).resolve().parents[2] / "configs"
OPTIMIZERS = ("adam", "rmsprop", "sgd")
# key: (types, allowed values or None, description)
SCHEMA: dict[str, tuple[tuple[type, ...], tuple | None, str]] = {
    "name": ((str,), None, "preset name"),
    "description": ((str,), None, "what the experiment is"),
    "model": ((str,), None, "registered model name (cnmc_core.models.list_models())"),
    "model_args": ((dict,), None, "overrides of the model's architecture defaults"),
    "image_size": ((int,), None, "input side in pixels"),
    "weights": ((str,), None, "none, imagenet, or a path to a notop .h5 file"),
    "batch_size": ((int,), None, "images per batch"),
    "split_protocol": ((str,), PROTOCOLS, "how images are split into train/val/test"),
    "split_fractions": ((list,), None, "train/val/test shares"),
    "seed": ((int,), None, "random seed of split, balancing, init and shuffling"),
    "balance": ((bool,), None, "the paper's balancing of the training split"),
    "augment": ((bool,), None, "random flips and 90-degree rotations on the fly"),
    "clahe": ((bool,), None, "CLAHE on the Y channel before resizing"),
    "patience": ((int,), None, "early-stopping patience on val loss (epochs)"),
    "stages": ((list,), None, "training stages, each with its optimizer and learning rate"),
    "max_images_per_split": ((int, type(None)), None, "cap per split for quick runs (None: all)"),
    "data": ((str, type(None)), None, "dataset folder or manifest CSV"),
    "mixed_precision": ((bool,), None, "float16 compute on a GPU"),
    "jit_compile": ((bool,), None, "XLA compilation of the tensorflow train step (jax: always)"),
    "backend": ((str, type(None)), (None, *BACKENDS),
                "Keras backend the run trains on (null: the environment's KERAS_BACKEND)"),
    "paper_reported": ((dict, type(None)), None, "figures the paper reports for this experiment"),
    "kfold": ((dict, type(None)), None, "{k, fold} of a k-fold protocol: fold i test, i + 1 val"),
    "study": ((dict, type(None)), None, "the study a run belongs to: {id, preset, fold, seed}"),
    "launched_by": ((str, type(None)), None, "who launched the run: dashboard:NAME, cli:OSUSER"),
}
STAGE_SCHEMA: dict[str, tuple[tuple[type, ...], tuple | None, str]] = {
    "name": ((str,), None, "stage name"),
    "trainable": ((str, dict), None, "none | all | {from_layer|from_block: NAME} | {blocks: [...]}"),
    "optimizer": ((str,), OPTIMIZERS, "optimizer"),
    "learning_rate": ((float,), None, "learning rate"),
    "epochs": ((int,), None, "maximum epochs of the stage"),
}
# The values a number may take (cnmc_core.validation.check_param's rules); checked wherever a
# value enters a config (presets, --seed and the other named options, --set), before any run
# folder exists. The input size's range depends on the model: models.registry.check_model.
RANGES: dict[str, tuple] = {
    "image_size": ("int", 1, None),
    "batch_size": ("int", 1, 65536),
    "seed": ("seed",),
    "patience": ("int", 0, None),
    "max_images_per_split": ("int", 6, None),
}
STAGE_RANGES: dict[str, tuple] = {
    # NaN and infinity are never in range; above 1, every optimizer here diverges
    "learning_rate": ("float", 0, 1, "right"),
    "epochs": ("int", 1, 100_000),
}
DEFAULTS: dict[str, Any] = {
    "description": "",
    "model_args": {},
    "weights": "none",
    "batch_size": 32,
    "split_protocol": "subject",
    "split_fractions": [0.6, 0.2, 0.2],
    "seed": 0,
    "balance": False,
    "augment": False,
    "clahe": False,
    "patience": 5,
    "max_images_per_split": None,
    "data": None,
    "mixed_precision": False,
    "jit_compile": False,
    "backend": None,
    "paper_reported": None,
    "kfold": None,
    "study": None,
    "launched_by": None,
}


def list_presets(presets_dir: str | os.PathLike | None = None) -> list[str]:
    """Names of the presets (JSON files in ``configs/``), sorted."""
    folder = Path(presets_dir) if presets_dir else PRESETS_DIR
    return sorted(p.stem for p in folder.glob("*.json"))


def load_preset(name: str, presets_dir: str | os.PathLike | None = None) -> dict:
    """The preset ``name`` with defaults filled in and validated.

    Raises:
        ConfigError: unknown preset (the message lists the known ones) or an invalid file.
    """
    folder = Path(presets_dir) if presets_dir else PRESETS_DIR
    path = folder / f"{name}.json"
    if not isinstance(name, str) or "/" in name or not path.is_file():
        raise ConfigError(f"Unknown preset {name!r}; known presets: {', '.join(list_presets(folder))}.")
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"Preset file {path} is not valid JSON: {exc}.") from exc
    config = {**copy.deepcopy(DEFAULTS), **raw, "name": name}
    return validate_config(config, source=str(path))


def _type_ok(value: Any, types: tuple[type, ...]) -> bool:
    if isinstance(value, bool) and bool not in types:
        return False
    if float in types and isinstance(value, int) and not isinstance(value, bool):
        return True
    return isinstance(value, types)


def _type_names(types: tuple[type, ...]) -> str:
    return " or ".join("null" if t is type(None) else t.__name__ for t in types)


def _check_value(key: str, value: Any, spec, source: str, rule: tuple | None = None,
                 name: str | None = None) -> None:
    """The type and allowed values of ``key`` (from the schema), then its range (``rule``, a
    :data:`RANGES` entry): named ``name`` (a flag the user wrote) or ``key`` of ``source``."""
    types, allowed, _ = spec
    if not _type_ok(value, types):
        raise ConfigError(f"{source}: {key!r} must be {_type_names(types)}; got {value!r} ({type(value).__name__}).")
    if allowed is not None and value not in allowed:
        raise ConfigError(f"{source}: {key!r} must be one of {list(allowed)}; got {value!r}.")
    if rule is not None and value is not None:
        check_param(None if name else source, name or key, value, rule)


def validate_config(config: dict, source: str = "config") -> dict:
    """Check every key, type and allowed value; returns the config (floats normalised).

    Raises:
        ConfigError: the first problem, naming the key, the rule and the value.
    """
    unknown = sorted(set(config) - set(SCHEMA))
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {unknown}; allowed keys: {sorted(SCHEMA)}.")
    missing = [k for k in ("model", "image_size", "stages") if k not in config]
    if missing:
        raise ConfigError(f"{source}: missing key(s) {missing}.")
    for key, value in config.items():
        _check_value(key, value, SCHEMA[key], source, RANGES.get(key))
    if not config["stages"]:
        raise ConfigError(f"{source}: 'stages' must hold at least one stage.")
    for i, stage in enumerate(config["stages"]):
        where = f"{source}: stages[{i}]"
        if not isinstance(stage, dict):
            raise ConfigError(f"{where} must be an object with keys {sorted(STAGE_SCHEMA)}.")
        unknown = sorted(set(stage) - set(STAGE_SCHEMA))
        missing = sorted(set(STAGE_SCHEMA) - set(stage))
        if unknown or missing:
            raise ConfigError(f"{where}: unknown key(s) {unknown}, missing key(s) {missing}; "
                              f"a stage has exactly {sorted(STAGE_SCHEMA)}.")
        for key, value in stage.items():
            _check_value(f"stages.{i}.{key}", value, STAGE_SCHEMA[key], source, STAGE_RANGES.get(key))
        stage["learning_rate"] = float(stage["learning_rate"])
    check_fractions(config["split_fractions"], f"{source}: split_fractions")
    kfold = config.get("kfold")
    if config["split_protocol"] in KFOLD_PROTOCOLS:
        if not isinstance(kfold, dict) or set(kfold) != {"k", "fold"}:
            raise ConfigError(f"{source}: the {config['split_protocol']!r} protocol needs "
                              f"'kfold': {{'k': K, 'fold': i}}; got {kfold!r}.")
        check_kfold(kfold["k"], kfold["fold"], config["seed"],
                    names=(f"{source}: kfold.k", f"{source}: kfold.fold", f"{source}: seed"))
    elif kfold is not None:
        raise ConfigError(f"{source}: 'kfold' applies to the k-fold protocols "
                          f"{list(KFOLD_PROTOCOLS)} only; the protocol is "
                          f"{config['split_protocol']!r}: remove it.")
    return config


def _parse_value(text: str) -> Any:
    """``--set`` values are JSON when they parse (numbers, true/false, null, lists), else text."""
    lowered = text.strip()
    if lowered in ("True", "False"):
        return lowered == "True"
    try:
        return json.loads(lowered)
    except json.JSONDecodeError:
        return text


def apply_set(config: dict, assignments: Iterable[str]) -> dict:
    """Apply ``key=value`` assignments (dotted keys reach into stages and model_args).

    Examples: ``epochs`` is not a key (use ``stages.0.epochs=3``); ``balance=false``;
    ``stages.1.learning_rate=1e-4``; ``model_args.dropout=0.3``.

    Raises:
        ConfigError: malformed assignment, unknown key or a value of the wrong type.
    """
    config = copy.deepcopy(config)
    for item in assignments:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value; got {item!r}.")
        key, text = item.split("=", 1)
        key = key.strip()
        value = _parse_value(text)
        parts = key.split(".")
        if parts[0] not in SCHEMA:
            raise ConfigError(f"--set {key}: unknown key {parts[0]!r}; allowed keys: {sorted(SCHEMA)}.")
        if len(parts) == 1:
            _check_value(key, value, SCHEMA[key], "--set", RANGES.get(key))
            config[key] = value
        elif parts[0] == "stages" and len(parts) == 3:
            try:
                stage = config["stages"][int(parts[1])]
            except (ValueError, IndexError):
                raise ConfigError(f"--set {key}: the config has stages 0..{len(config['stages']) - 1}.") from None
            if parts[2] not in STAGE_SCHEMA:
                raise ConfigError(f"--set {key}: unknown stage key {parts[2]!r}; allowed: {sorted(STAGE_SCHEMA)}.")
            _check_value(key, value, STAGE_SCHEMA[parts[2]], "--set", STAGE_RANGES.get(parts[2]))
            stage[parts[2]] = value
        elif parts[0] == "model_args" and len(parts) == 2:
            config["model_args"][parts[1]] = value  # checked against the model: check_model
        else:
            raise ConfigError(f"--set {key}: only stages.N.KEY and model_args.KEY can be dotted.")
    return validate_config(config, source="--set")


def resolve_config(
    preset: str,
    data: str | None = None,
    split_protocol: str | None = None,
    epochs: int | None = None,
    image_size: int | None = None,
    weights: str | None = None,
    seed: int | None = None,
    sets: Iterable[str] = (),
    backend: str | None = None,
    presets_dir: str | os.PathLike | None = None,
) -> dict:
    """The full configuration of a run: a preset, then the named options, then ``--set``.

    ``epochs`` sets the maximum epochs of every stage.
    """
    config = load_preset(preset, presets_dir)
    named = {"data": data, "split_protocol": split_protocol, "image_size": image_size,
             "weights": weights, "seed": seed, "backend": backend}
    for key, value in named.items():
        if value is not None:
            flag = f"--{key.replace('_', '-')}"
            _check_value(key, value, SCHEMA[key], flag, RANGES.get(key), name=flag)
            config[key] = value
    if epochs is not None:
        check_param(None, "--epochs", epochs, STAGE_RANGES["epochs"])
        for stage in config["stages"]:
            stage["epochs"] = epochs
    return apply_set(config, sets)
