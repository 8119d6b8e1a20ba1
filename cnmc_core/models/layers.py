"""The project's own Keras layers, serialisable without ``Lambda`` (``safe_mode=True`` loads them):
the backbones' input preprocessing as a layer inside the graph.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import layers

from cnmc_core.exceptions import ConfigError

__all__ = ["ImageNetPreprocess"]

# Keras' "caffe" preprocessing: BGR channel order, ImageNet mean subtracted, no scaling.
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


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
