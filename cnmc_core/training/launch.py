"""Starting runs: the one check -> create -> launch path, and a launch form's choices turned
into a config.

:func:`start_run` (and :func:`start_runs` for several) checks a config completely
(:func:`check_config`: every value, the model and its arguments, the weights, the dataset and
the split) before anything is written, creates the run folder, and either starts its worker as
a detached process (queued) or returns the folder for the caller to train in the foreground
(:func:`cnmc_core.training.loop.train_run`). ``python -m cnmc_core train`` (with and without
``--detach``), the Train page and the demo's *Train the four demo models* all go through it.

The Train page calls :func:`form_defaults` to fill its form from a preset, and
:func:`build_run_config` + :func:`start_run` when the user presses Launch; every mistake comes
back as a :class:`~cnmc_core.exceptions.CnmcError` whose message says what to change.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd

from cnmc_core.data.manifest import resolve_manifest
from cnmc_core.exceptions import ConfigError
from cnmc_core.training.backend import check_backend_options, resolve_backend
from cnmc_core.training.config import load_preset, resolve_config, validate_config
from cnmc_core.training.pipeline import plan_split

__all__ = ["check_config", "start_runs", "start_run", "preset_models", "form_defaults",
           "build_run_config"]


def check_config(config: dict) -> pd.DataFrame:
    """Check, before any run folder exists, everything about a run that can fail early.

    Every key, type and range of the config (:func:`~cnmc_core.training.config.validate_config`:
    seed, learning rates, sizes...), the Keras backend (installed, and the options that apply
    under it: :func:`~cnmc_core.training.backend.check_backend_options`), the model name, its
    arguments and input size
    (:func:`~cnmc_core.models.registry.check_model`), the weights (an ImageNet file missing
    offline fails here, naming the file), the dataset, and the split with its cap per split (a
    split without both classes fails here).

    Args:
        config: a run config (as :func:`~cnmc_core.training.config.resolve_config` returns it);
            it is not changed.

    Returns:
        The images the run will use (``image_id``, ``split``, ``y``, ``subject``).

    Raises:
        ConfigError or DataError with the reason.
    """
    from cnmc_core.models.registry import check_model

    config = validate_config(copy.deepcopy(config), source="the run config")
    check_backend_options(config, resolve_backend(config))
    check_model(config["model"], config["image_size"], config["weights"], what="model_args",
                **config.get("model_args", {}))
    if not config.get("data"):
        raise ConfigError("No dataset: give --data ROOT (a C-NMC folder or a manifest CSV); "
                          "`python -m cnmc_core synth artifacts/demo-data` makes a synthetic one.")
    return plan_split(resolve_manifest(config["data"], verify=False), config)


def start_runs(configs: Iterable[dict], root: str | os.PathLike | None = None, *,
               detach: bool = True, actor=None) -> list[Path]:
    """Check who asks and every config, then create a run folder for each and start its worker.

    Nothing is created unless ``actor`` may launch runs and every config passes
    :func:`check_config`. The dataset path is recorded absolute (``~`` expanded), so that the
    run means the same from any folder; ``launched_by`` records the actor (any value the config
    carried is replaced); the backend is resolved (the config's, else this process's
    ``KERAS_BACKEND``): each worker is started with ``KERAS_BACKEND`` set to it.

    Args:
        configs: run configs (not changed).
        root: the artifacts folder (default ``$CNMC_ARTIFACTS`` or ``./artifacts``).
        detach: start each run's worker as a detached process (state ``queued``: the queue
            trains them one at a time, in this order); False only creates the folders, for the
            caller to train with :func:`~cnmc_core.training.loop.train_run`.
        actor: the :class:`~cnmc_core.auth.roles.Actor` launching (None: the local OS user);
            a viewer is refused.

    Returns:
        The run folders, in the order of ``configs``.

    Raises:
        AccessError: the actor may not launch runs; nothing was created. ConfigError /
        DataError: a check failed; nothing was created. RunError: the artifacts folder is not
        writable.
    """
    from cnmc_core.auth.roles import require
    from cnmc_core.workspace.layout import create_run
    from cnmc_core.workspace.queue import launch_run

    actor = require(actor, "launch")
    checked = []
    for config in configs:
        config = copy.deepcopy(config)
        config.pop("launched_by", None)
        if config.get("data"):
            config["data"] = str(Path(str(config["data"])).expanduser().resolve())
        check_config(config)
        config["backend"] = resolve_backend(config)
        config["launched_by"] = actor.launched_by
        checked.append(config)
    runs = []
    for config in checked:  # each launched as soon as it exists: none is left queued unstarted
        runs.append(create_run(config, root))
        if detach:
            launch_run(runs[-1], env={"KERAS_BACKEND": config["backend"]})
    return runs


def start_run(config: dict, root: str | os.PathLike | None = None, *, detach: bool = True,
              actor=None) -> Path:
    """:func:`start_runs` for one config: its run folder (queued with a detached worker, or
    ready for a foreground :func:`~cnmc_core.training.loop.train_run` with ``detach=False``).

    Raises:
        AccessError: ``actor`` may not launch runs. ConfigError / DataError: the check failed;
        nothing was created.
    """
    return start_runs([config], root, detach=detach, actor=actor)[0]


def preset_models() -> list[str]:
    """The model names the presets use (the registry's names, without importing Keras)."""
    from cnmc_core.training.config import list_presets

    return sorted({load_preset(name)["model"] for name in list_presets()})


def form_defaults(preset: str) -> dict[str, Any]:
    """The values a launch form starts with for ``preset``: ``model``, ``image_size``,
    ``weights``, ``split_protocol``, ``balance``, ``augment``, ``batch_size``, ``seed``,
    ``max_images_per_split`` (0 for all) and ``stages`` (``name``, ``optimizer``,
    ``learning_rate``, ``epochs``, ``trainable`` each), plus ``description`` and
    ``paper_reported``."""
    config = load_preset(preset)
    keys = ("model", "image_size", "weights", "split_protocol", "balance", "augment", "batch_size", "seed",
            "description", "paper_reported")
    out = {k: config.get(k) for k in keys}
    out["max_images_per_split"] = config.get("max_images_per_split") or 0
    out["stages"] = [dict(s) for s in config["stages"]]
    return out


def build_run_config(
    preset: str,
    *,
    data: str | os.PathLike | None,
    model: str | None = None,
    image_size: int | None = None,
    weights: str | None = None,
    split_protocol: str | None = None,
    balance: bool | None = None,
    augment: bool | None = None,
    batch_size: int | None = None,
    seed: int | None = None,
    max_images_per_split: int | None = None,
    epochs: Sequence[int] | None = None,
    learning_rates: Sequence[float] | None = None,
) -> dict:
    """The full config of a run: ``preset`` with the form's choices applied and validated.

    Args:
        data: the dataset folder or manifest CSV (required).
        epochs, learning_rates: one value per stage of the preset.
        max_images_per_split: a cap per split for quick runs; 0 or None means all images.
        The other arguments replace the preset's value when not None.

    Raises:
        ConfigError: no dataset, a wrong number of stage values, or any invalid value (the
            message names the field, the rule and the value).
    """
    if not data or not str(data).strip():
        raise ConfigError("No dataset: choose one on the Data page (or create the demo dataset on "
                          "the Home page) before launching a run.")
    data = str(Path(str(data).strip()).expanduser())
    if not os.path.exists(data):
        raise ConfigError(f"The dataset {data} does not exist; choose an existing folder on the Data page.")
    stages = load_preset(preset)["stages"]
    sets: list[str] = []
    for key, value in (("model", model), ("balance", balance), ("augment", augment), ("batch_size", batch_size)):
        if value is not None:
            sets.append(f"{key}={_literal(value)}")
    if max_images_per_split is not None:
        if isinstance(max_images_per_split, bool) or not isinstance(max_images_per_split, int) \
                or (max_images_per_split != 0 and max_images_per_split < 6) or max_images_per_split < 0:
            raise ConfigError("Max images per split must be 0 (use every image) or at least 6 (each split "
                              f"needs images of both classes); got {max_images_per_split!r}.")
        sets.append(f"max_images_per_split={_literal(max_images_per_split or None)}")
    for name, values in (("epochs", epochs), ("learning_rate", learning_rates)):
        if values is None:
            continue
        if len(values) != len(stages):
            raise ConfigError(f"The preset {preset} has {len(stages)} stage(s); got {len(values)} value(s) "
                              f"for {name}.")
        for i, value in enumerate(values):
            if name == "learning_rate" and not (isinstance(value, (int, float)) and value > 0):
                raise ConfigError(f"The learning rate of stage {i + 1} ({stages[i]['name']}) must be a "
                                  f"positive number such as 0.001; got {value!r}.")
            if name == "epochs" and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"The epochs of stage {i + 1} ({stages[i]['name']}) must be a whole "
                                  f"number of at least 1; got {value!r}.")
            sets.append(f"stages.{i}.{name}={_literal(value)}")
    if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1):
        raise ConfigError(f"The input size must be a positive whole number of pixels; got {image_size!r}.")
    if weights is not None:
        weights = str(weights).strip() or "none"
    return resolve_config(preset, data=data, split_protocol=split_protocol, image_size=image_size,
                          weights=weights, seed=seed, sets=sets)


def _literal(value) -> str:
    """A value as ``--set`` parses it back (JSON for numbers, booleans and null)."""
    import json

    if isinstance(value, str):
        return value
    return json.dumps(value)
