"""The paper's networks, registered on import: the four scratch-CNN heads (3.2.1-3.2.4) and the
transfer models (VGG16, ResNet50, MobileNetV2, whole and with their last block removed).
"""

from __future__ import annotations

import functools
from typing import Any

from cnmc_core.models.builders import (
    SCRATCH_ARGS,
    TRANSFER_ARGS,
    build_scratch,
    build_transfer,
)
from cnmc_core.models.registry import ModelSpec, register_model

__all__ = []


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
        name=_name, family="scratch_cnn", builder=build_scratch,
        description=f"CNN from scratch, 4 conv blocks + Flatten + {_desc}",
        image_size=300, min_image_size=60,  # pools 2*2*3*5 = 60
        arch={"head": _head, "dense_units": _units, "dropout": _DROPOUT,
              "filters": (32, 64, 128, 256), "pool_sizes": (2, 2, 3, 5), "batch_norm": False},
        arg_rules=SCRATCH_ARGS, fine_tune="all", stages=_SCRATCH_STAGES, weights="none",
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
        name=_name, family=_family, builder=functools.partial(build_transfer, family=_family),
        description=_desc, image_size=224, min_image_size=32,
        arch={"cut_layer": _cut, "dense_units": _units, "dropout": _DROPOUT, "head": _head,
              "init": "keras", **({"batch_norm": False} if _family == "vgg16" else {})},
        arg_rules=TRANSFER_ARGS, fine_tune=_ft, stages=_stages(_ft, *(_st or ())), weights="imagenet",
        params=_params, params_at=224, paper={"section": _sec, "weighted_f1": _f1},
    ))
