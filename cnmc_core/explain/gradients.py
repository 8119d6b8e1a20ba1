"""The gradient Grad-CAM needs: d score / d feature maps of a layer, through the autodiff of the
Keras backend in use (TensorFlow's ``GradientTape``, ``jax.grad``, torch's autograd), behind one
function, :func:`feature_gradients`.

The score is the *logit* ``z`` of the sigmoid output for class ALL and ``-z`` for HEM (see
:mod:`cnmc_core.explain.cam`): recomputed from the input of the output layer and that layer's
kernel and bias, so no model needs rebuilding.

- tensorflow: one forward pass under a ``GradientTape`` to the layer's output and the output
  layer's input, compiled as a ``tf.function`` traced once per model and layer.
- jax and torch: the model split at the layer, a model from the image to the feature maps and
  a *head* from (image, feature maps) to the output layer's input (Keras builds a functional
  model from an intermediate tensor; the image input carries the paths that bypass the layer,
  such as ResNet's shortcuts), and the head differentiated with respect to the feature maps:
  ``jax.grad`` of a ``stateless_call`` (compiled with ``jax.jit`` once per model, layer and
  batch shape; the weights are arguments, not constants) or ``torch.autograd.grad``.

The functions are cached per model (weak keys: an entry goes with its model).
"""

from __future__ import annotations

import threading
import weakref
from typing import Callable

import keras
import numpy as np
from keras import layers

from cnmc_core.explain.inputs import (
    input_size,
    output_dense,
    single_input,
    spatial_layer,
)

__all__ = ["TARGET_MODES", "feature_gradients"]

#: How each target is scored: 0 ALL (``z``), 1 HEM (``-z``), 2 the predicted class per image.
TARGET_MODES = {"all": 0, "hem": 1, "predicted": 2}
_FUNCTIONS: "weakref.WeakKeyDictionary[keras.Model, dict]" = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()
GradientFn = Callable[[np.ndarray, int], tuple]


def feature_gradients(model: keras.Model, layer: str, x: np.ndarray, target: str = "all",
                      compiled: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Feature maps of ``layer``, the gradient of the target's score with respect to them, and
    the logits, for one batch.

    Args:
        model: a flat Keras model ending in ``Dense(1, sigmoid)``.
        layer: the name of a layer with a spatial output (:func:`spatial_layer` checks it).
        x: ``(n, h, w, 3)`` images at the model's input size, in its input dtype.
        target: ``"all"``, ``"hem"`` or ``"predicted"`` (:data:`TARGET_MODES`).
        compiled: tensorflow: a ``tf.function`` (else eager); jax: ``jax.jit`` (else op by op);
            torch runs eagerly either way.

    Returns:
        ``(maps (n, h', w', k), grads (n, h', w', k), logits (n,))`` as NumPy arrays; the
        gradient is zeros where the output does not depend on the layer.

    Raises:
        ConfigError: an unknown layer or one without a spatial output, or a model without a
            sigmoid output unit.
    """
    lyr = spatial_layer(model, layer)
    dense = output_dense(model)
    backend = keras.backend.backend()
    key = (backend, lyr.name, bool(compiled))
    with _LOCK:
        fn = _FUNCTIONS.setdefault(model, {}).get(key)
    if fn is None:
        build = {"tensorflow": _tensorflow_function, "jax": _jax_function}.get(backend, _torch_function)
        fn = build(model, lyr, dense, bool(compiled))
        with _LOCK:
            _FUNCTIONS.setdefault(model, {})[key] = fn
    feats, grads, z = fn(np.asarray(x), TARGET_MODES[target])
    return tuple(np.asarray(keras.ops.convert_to_numpy(a)) for a in (feats, grads, z))


def _split(model: keras.Model, lyr: layers.Layer, dense: layers.Dense):
    """(image -> feature maps, (image, feature maps) -> the output layer's input)."""
    inp = single_input(model)
    return keras.Model(inp, lyr.output), keras.Model([inp, lyr.output], dense.input)


def _tensorflow_function(model: keras.Model, lyr: layers.Layer, dense: layers.Dense,
                         compiled: bool) -> GradientFn:
    import tensorflow as tf

    grad_model = keras.Model(single_input(model), [lyr.output, dense.input])
    in_dtype = model.inputs[0].dtype
    # Integer inputs cannot be watched; watch the variables instead (a list of variables, not
    # the model: the closure must not keep the model alive, see _FUNCTIONS).
    watched = None if tf.as_dtype(in_dtype).is_floating else [v.value for v in model.weights]

    def run(x, mode):
        with tf.GradientTape() as tape:
            # Watching the input records every op downstream of it, so the gradient reaches the
            # feature map even when every layer is frozen (frozen variables are not watched).
            tape.watch(x if watched is None else watched)
            feats, pre = grad_model(x, training=False)
            kernel = dense.kernel.value
            z = tf.matmul(tf.cast(pre, kernel.dtype), kernel)[:, 0]
            if dense.use_bias:
                z = z + dense.bias.value[0]
            ones = tf.ones_like(z)
            predicted = tf.stop_gradient(tf.where(z >= 0, ones, -ones))
            sign = tf.where(tf.equal(mode, 0), ones, tf.where(tf.equal(mode, 1), -ones, predicted))
            score = tf.reduce_sum(sign * z)
        grads = tape.gradient(score, feats)
        if grads is None:  # the head does not depend on this layer
            grads = tf.zeros_like(feats)
        return feats, grads, z

    if compiled:
        h, w = input_size(model)
        channels = model.inputs[0].shape[-1]
        run = tf.function(run, reduce_retracing=True, input_signature=[
            tf.TensorSpec([None, h, w, channels], in_dtype), tf.TensorSpec([], tf.int32)])

    def call(x: np.ndarray, mode: int):
        return run(tf.convert_to_tensor(x, dtype=in_dtype), tf.constant(mode, dtype=tf.int32))

    return call


def _jax_function(model: keras.Model, lyr: layers.Layer, dense: layers.Dense,
                  compiled: bool) -> GradientFn:
    import jax
    import jax.numpy as jnp

    feat_model, head = _split(model, lyr, dense)

    def score(feats, x, head_vars, kernel, bias, mode):
        pre, _ = head.stateless_call(*head_vars, [x, feats], training=False)
        z = jnp.matmul(pre.astype(kernel.dtype), kernel)[:, 0]
        if bias is not None:
            z = z + bias[0]
        predicted = jax.lax.stop_gradient(jnp.where(z >= 0, 1.0, -1.0)).astype(z.dtype)
        sign = jnp.where(mode == 0, 1.0, jnp.where(mode == 1, -1.0, predicted)).astype(z.dtype)
        return jnp.sum(sign * z), z

    def run(x, mode, feat_vars, head_vars, kernel, bias):
        feats, _ = feat_model.stateless_call(*feat_vars, x, training=False)
        grads, z = jax.grad(score, has_aux=True)(feats, x, head_vars, kernel, bias, mode)
        return feats, grads, z

    run = jax.jit(run) if compiled else run

    def values(m: keras.Model) -> tuple[list, list]:
        return [v.value for v in m.trainable_variables], [v.value for v in m.non_trainable_variables]

    def call(x: np.ndarray, mode: int):
        bias = dense.bias.value if dense.use_bias else None
        return run(jnp.asarray(x), jnp.int32(mode), values(feat_model), values(head),
                   dense.kernel.value, bias)

    return call


def _torch_function(model: keras.Model, lyr: layers.Layer, dense: layers.Dense,
                    compiled: bool) -> GradientFn:
    import torch

    feat_model, head = _split(model, lyr, dense)

    def call(x: np.ndarray, mode: int):
        x = keras.ops.convert_to_tensor(x)  # on Keras' device
        with torch.no_grad():
            feats = feat_model(x, training=False)
        feats = feats.detach().requires_grad_(True)
        with torch.enable_grad():
            pre = head([x, feats], training=False)
            kernel = dense.kernel.value
            z = torch.matmul(pre.to(kernel.dtype), kernel)[:, 0]
            if dense.use_bias:
                z = z + dense.bias.value[0]
            if mode == 2:
                sign = torch.where(z >= 0, 1.0, -1.0).detach().to(z.dtype)
            else:
                sign = torch.full_like(z, 1.0 if mode == 0 else -1.0)
            (grads,) = torch.autograd.grad((sign * z).sum(), feats, allow_unused=True)
        if grads is None:  # the head does not depend on this layer
            grads = torch.zeros_like(feats)
        return feats.detach(), grads, z.detach()

    return call
