"""Which layers train in a stage: the backbone/head split by layer names, and the fine-tuning
rules (``none``, ``all``, ``from_layer``, ``blocks``, ``from_block``).
"""

from __future__ import annotations

from typing import Any, Mapping

import keras
from keras import layers

from cnmc_core.exceptions import ConfigError

__all__ = ["FINE_TUNE_RULES", "head_layer_names", "backbone_layer_names", "set_trainable"]

#: Accepted forms of a fine-tuning rule (see :func:`set_trainable`).
FINE_TUNE_RULES = ('"none"', '"all"', '{"from_layer": NAME}', '{"blocks": [PREFIX, ...]}',
                   '{"from_block": PREFIX}')
_HEAD_PREFIX = "head_"
_NON_BACKBONE = ("image", "preprocess")


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
