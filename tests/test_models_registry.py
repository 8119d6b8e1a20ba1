"""Tests of cnmc_core.models: registry, every registered model end to end, weights, freezing.

Every model is built with weights="none" at its smallest input size, so nothing is downloaded and
the file runs in about a minute on 2 CPU cores. A new model is tested by being registered.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import h5py  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from cnmc_core.exceptions import ConfigError  # noqa: E402
from cnmc_core.models.freezing import (
    backbone_layer_names,
    head_layer_names,
    set_trainable,
)
from cnmc_core.models.registry import (
    create_model,
    imagenet_weights_file,
    list_models,
    model_defaults,
)


def _smoke_size(name: str) -> int:
    # 64 px keeps the scratch CNN (needs >= 60) and every backbone (>= 32) tiny but valid.
    return max(64, model_defaults(name)["min_image_size"])


@pytest.mark.parametrize("name", list_models())
def test_every_model_builds_predicts_and_round_trips(name, tmp_path):
    size = _smoke_size(name)
    model = create_model(name, image_size=size, weights="none")
    assert model.name == name
    assert model.inputs[0].shape[1:] == (size, size, 3)
    # No nested sub-model: every conv layer must be reachable from the input (Grad-CAM, freezing).
    assert not any(isinstance(lyr, keras.Model) for lyr in model.layers)
    assert model.get_layer("head_output").activation.__name__ == "sigmoid"
    assert set(backbone_layer_names(model)).isdisjoint(head_layer_names(model))

    defaults = model_defaults(name)
    if defaults["params_at"] != 300:  # GAP heads: the count does not depend on the input size
        assert model.count_params() == defaults["params"]

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(2, size, size, 3)).astype("uint8")
    p = model.predict(x, verbose=0)
    assert p.shape == (2, 1)
    assert np.all(np.isfinite(p)) and np.all((p >= 0) & (p <= 1))

    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True, compile=False)
    assert loaded.name == name
    np.testing.assert_allclose(loaded.predict(x, verbose=0), p, rtol=1e-5, atol=1e-6)
    assert backbone_layer_names(loaded) == backbone_layer_names(model)


def test_best_scratch_cnn_has_paper_parameter_count():
    model = create_model("scratch_dd256", image_size=300)
    assert model.count_params() == 2_027_329
    assert [lyr.name for lyr in model.layers if "dropout" in lyr.name] == [
        "head_dropout_in", "head_dropout"]
    assert create_model("scratch_cnn").name == "scratch_dd256"  # alias


def test_preprocessing_matches_keras_preprocess_input():
    from cnmc_core.models.layers import ImageNetPreprocess

    x = np.random.default_rng(1).uniform(0, 255, size=(2, 4, 4, 3)).astype("float32")
    for mode, ref in (("caffe", keras.applications.vgg16.preprocess_input),
                      ("tf", keras.applications.mobilenet_v2.preprocess_input)):
        got = keras.ops.convert_to_numpy(ImageNetPreprocess(mode)(x))
        np.testing.assert_allclose(got, ref(x.copy()), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"name": "resnet99"}, r"Unknown model 'resnet99'.*resnet50_conv4_v1.*vgg16_block4"),
        ({"name": "vgg16_block4", "dropuot": 0.3}, r"'dropuot'.*allowed: batch_norm, cut_layer, dense_units"),
        ({"name": "vgg16_block4", "dropout": 1.5},
         r"The 'dropout' parameter of vgg16_block4 must be a float in the range \[0, 1\). Got 1.5"),
        ({"name": "vgg16_block4", "image_size": 16},
         r"The 'image_size' parameter of vgg16_block4 must be an int in the range \[32, 600\]"),
        ({"name": "scratch_dd256", "image_size": 40}, r"range \[60, 600\]. Got 40 instead"),
        ({"name": "scratch_dd256", "image_size": 100_000}, r"range \[60, 600\]. Got 100000 instead"),
        ({"name": "scratch_dd256", "weights": "imagenet"}, r"scratch.*weights='none'"),
        ({"name": "vgg16_block4", "weights": "/nonexistent/x.h5"}, r"does not exist"),
        ({"name": "vgg16_block4", "weights": "foo"}, r"'none', 'imagenet' or the path"),
        ({"name": "vgg16_block4", "cut_layer": "block9_pool"},
         r"The 'cut_layer' parameter of vgg16_block4 must be a layer of its vgg16 backbone.*"
         r"block4_pool.*Got 'block9_pool' instead"),
        ({"name": "vgg16_block4", "batch_norm": True, "cut_layer": "block4_conv3_bn"},
         None),  # a layer of VGG16-BN only: allowed with batch_norm
        ({"name": "vgg16_block4", "cut_layer": "block4_conv3_bn"}, r"'cut_layer'.*vgg16 backbone"),
        ({"name": "vgg16_block4", "init": "glorot"},
         r"The 'init' parameter of vgg16_block4 must be one of \{'keras', 'he_normal'\}"),
        ({"name": "vgg16_block4", "batch_norm": "yes"}, r"'batch_norm' parameter.*true or false"),
        ({"name": "scratch_dd256", "batch_norm": 1}, r"'batch_norm' parameter.*true or false. Got 1"),
        ({"name": "scratch_dd256", "head": "evil"}, r"'head' parameter.*one of \{'d', 'dd', '2x'\}"),
        ({"name": "vgg16_block4", "head": "d"}, r"one of \{'dense_dropout', 'dense', 'dropout'\}"),
        ({"name": "scratch_dd256", "dense_units": 0}, r"'dense_units' parameter.*\[1, 16384\]"),
        ({"name": "scratch_dd256", "filters": []}, r"'filters' parameter.*non-empty list.*Got \[\]"),
        ({"name": "scratch_dd256", "filters": [32, "x", 64, 64]}, r"'filters\[1\]' parameter"),
        ({"name": "scratch_dd256", "filters": [8, 8]}, r"filters \[8, 8\] and pool_sizes"),
        ({"name": "scratch_dd256", "filters": [8, 8], "pool_sizes": [2, 2], "image_size": 3},
         r"range \[4, 600\]. Got 3"),
        ({"name": "scratch_dd256", "filters": [8], "pool_sizes": [64], "image_size": 64}, None),
        ({"name": "scratch_dd256", "filters": [8, 8], "pool_sizes": [64, 64]},
         r"at least 4096 px.*smaller pooling sizes"),
        ({"name": "resnet50_conv4_v1", "batch_norm": True}, r"'batch_norm'.*allowed: cut_layer, dense_units, dropout, head, init\."),
    ],
)
def test_create_model_errors(kwargs, match):
    if match is None:  # an edge that is allowed: it builds
        assert create_model(**kwargs).count_params() > 0
        return
    with pytest.raises(ConfigError, match=match):
        create_model(**kwargs)


@pytest.mark.parametrize("name, file_name", [
    ("vgg16_block4", "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    ("resnet50_conv4_v2", "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    ("mobilenetv2_full", "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"),
])
def test_missing_imagenet_file_is_a_clear_error(name, file_name, tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(ConfigError) as err:
        create_model(name, weights="imagenet")
    msg = str(err.value)
    assert file_name in msg and str(tmp_path / "models") in msg and "weights='none'" in msg


def test_mobilenet_imagenet_file_depends_on_size(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(ConfigError, match=r"1\.0_128_no_top\.h5"):
        imagenet_weights_file("mobilenetv2", 128)
    with pytest.warns(UserWarning, match="using .*_224_no_top"), \
            pytest.raises(ConfigError, match=r"1\.0_224_no_top\.h5"):
        imagenet_weights_file("mobilenetv2", 100)


def _write_notop_h5(path, backbone: keras.Model) -> None:
    """Save ``backbone`` in the legacy Keras applications .h5 layout (what the notop files use)."""
    from keras.src.legacy.saving import legacy_h5_format

    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, backbone)


def test_weights_load_from_keras_cache_and_from_a_path(tmp_path, monkeypatch):
    size = 96
    src = keras.applications.MobileNetV2(include_top=False, weights=None,
                                         input_shape=(size, size, 3))
    name = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_96_no_top.h5"
    cached = tmp_path / "home" / "models" / name
    _write_notop_h5(cached, src)
    explicit = tmp_path / "elsewhere" / name
    _write_notop_h5(explicit, src)
    want_first = keras.ops.convert_to_numpy(src.get_layer("Conv1").kernel)
    want_cut = keras.ops.convert_to_numpy(src.get_layer("block_13_expand").kernel)
    want_bn = keras.ops.convert_to_numpy(src.get_layer("block_5_project_BN").moving_variance)

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "home"))
    for weights in ("imagenet", str(explicit)):
        model = create_model("mobilenetv2_block13", image_size=size, weights=weights)
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(model.get_layer("Conv1").kernel), want_first)
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(model.get_layer("block_13_expand").kernel), want_cut)
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(model.get_layer("block_5_project_BN").moving_variance),
            want_bn)


def test_he_normal_init_redraws_backbone_kernels_only(tmp_path):
    """``init='he_normal'``: every conv kernel (depthwise too) has He's std sqrt(2 / fan_in);
    the head keeps its own initialiser; with pretrained weights it is refused."""
    for name, size in (("vgg16_block4", 32), ("mobilenetv2_block13", 96)):
        keras.utils.set_random_seed(0)
        glorot = create_model(name, image_size=size)
        keras.utils.set_random_seed(0)
        he = create_model(name, image_size=size, init="he_normal")
        checked = 0
        for layer in he.layers:
            if isinstance(layer, keras.layers.DepthwiseConv2D):
                kernel = keras.ops.convert_to_numpy(layer.kernel)
                fan_in = kernel.shape[0] * kernel.shape[1]  # depth multiplier 1: one input channel
            elif isinstance(layer, keras.layers.Conv2D):
                kernel = keras.ops.convert_to_numpy(layer.kernel)
                fan_in = int(np.prod(kernel.shape[:3]))
            else:
                continue
            if kernel.size < 2000:
                continue  # too few draws for a std check
            # he_normal draws from a normal truncated at 2 std, rescaled to keep the std
            assert abs(kernel.std() / np.sqrt(2.0 / fan_in) - 1) < 0.1, layer.name
            checked += 1
        assert checked >= 5
        np.testing.assert_array_equal(
            keras.ops.convert_to_numpy(he.get_layer("head_output").kernel),
            keras.ops.convert_to_numpy(glorot.get_layer("head_output").kernel))
    first = keras.ops.convert_to_numpy(he.get_layer("Conv1").kernel)
    assert not np.allclose(first, keras.ops.convert_to_numpy(glorot.get_layer("Conv1").kernel))

    src = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    path = tmp_path / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
    _write_notop_h5(path, src)
    with pytest.raises(ConfigError, match=r"init='he_normal'.*overwrite the pretrained.*weights=none"):
        create_model("vgg16_block4", image_size=32, weights=str(path), init="he_normal")


def test_vgg16_bn_keeps_keras_names_and_refuses_imagenet_weights(tmp_path):
    """VGG16-BN: BatchNorm after each of the block's convolutions, Keras' layer names (cut layer,
    fine-tuning blocks and the Grad-CAM layer read the same), no pretrained weights."""
    from cnmc_core.explain.inputs import default_cam_layer

    model = create_model("vgg16_block4", image_size=32, batch_norm=True)
    names = [lyr.name for lyr in model.layers]
    assert names[:5] == ["image", "preprocess", "block1_conv1", "block1_conv1_bn", "block1_conv1_relu"]
    convs = [lyr for lyr in model.layers if isinstance(lyr, keras.layers.Conv2D)]
    bns = [lyr for lyr in model.layers if isinstance(lyr, keras.layers.BatchNormalization)]
    assert len(convs) == len(bns) == 10 and not any(c.use_bias for c in convs)
    assert "block4_pool" in names and "block5_conv1" not in names
    assert default_cam_layer(model) == "block4_conv3_relu"
    # the same parameters as plain VGG16 minus the conv biases, plus 4 BN weights per channel
    plain = create_model("vgg16_block4", image_size=32)
    channels = sum(c.filters for c in convs)
    assert model.count_params() == plain.count_params() - channels + 4 * channels
    info = set_trainable(model, model_defaults("vgg16_block4")["fine_tune"])
    assert "block2_conv1" in info["trainable_layers"] and "block1_conv1" not in info["trainable_layers"]
    assert not any(lyr.trainable for lyr in bns)  # BatchNorm kept in inference mode
    assert model.predict(np.zeros((2, 32, 32, 3), np.float32), verbose=0).shape == (2, 1)

    src = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    path = tmp_path / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
    _write_notop_h5(path, src)
    with pytest.raises(ConfigError, match=r"VGG16-BN.*no pretrained.*weights=none"):
        create_model("vgg16_block4", image_size=32, weights=str(path), batch_norm=True)


def _trainable_names(model):
    return {lyr.name for lyr in model.layers if lyr.trainable and lyr.weights}


def test_set_trainable_rules_on_vgg16_block4():
    model = create_model("vgg16_block4", image_size=32)
    head = {"head_dense", "head_output"}

    info = set_trainable(model, "none")
    assert _trainable_names(model) == head
    assert info["trainable_params"] == 131_328 + 257

    set_trainable(model, {"blocks": ["block2", "block3", "block4"]})
    trainable = _trainable_names(model)
    assert head <= trainable and "block2_conv1" in trainable and "block4_conv3" in trainable
    assert "block1_conv1" not in trainable and "block1_conv2" not in trainable
    # The paper's summary: 38,720 non-trainable parameters (block 1).
    assert model.count_params() - sum(int(np.prod(w.shape)) for w in model.trainable_weights) \
        == 38_720

    set_trainable(model, {"from_layer": "block4_conv1"})
    assert _trainable_names(model) == head | {"block4_conv1", "block4_conv2", "block4_conv3"}

    set_trainable(model, "all")
    assert len(model.trainable_weights) == len(model.weights)


def test_set_trainable_keeps_batchnorm_frozen_and_block_prefixes_exact():
    model = create_model("mobilenetv2_full", image_size=32)
    set_trainable(model, {"from_block": "block_10"})
    trainable = _trainable_names(model)
    assert "block_10_expand" in trainable and "block_16_project" in trainable
    assert "block_9_project" not in trainable and "block_1_project" not in trainable
    assert not any(isinstance(lyr, keras.layers.BatchNormalization) and lyr.trainable
                   for lyr in model.layers)
    set_trainable(model, {"blocks": ["block_1"]})  # must not catch block_10..block_16
    assert {n for n in _trainable_names(model) if n.startswith("block")} == {
        "block_1_expand", "block_1_depthwise", "block_1_project"}

    model = create_model("resnet50_conv4_v1", image_size=32)
    set_trainable(model, "all")
    assert not any(isinstance(lyr, keras.layers.BatchNormalization) and lyr.trainable
                   for lyr in model.layers)
    assert "conv2_block1_1_conv" in _trainable_names(model)


@pytest.mark.parametrize("rule, match", [
    ("some", r"Invalid fine-tune rule 'some'.*\"none\", \"all\""),
    ({"from_layer": "block9_conv1"}, r"'from_layer': 'block9_conv1'.*some that do: .*block4_pool"),
    ({"blocks": ["block2", "block7"]}, r"block 'block7' is not in.*blocks there: block1, block2"),
    ({"blocks": "block2"}, r"needs a non-empty list"),
    ({"from_block": "block_10"}, r"'from_block': 'block_10'.*block1"),
    ({"until": "x"}, r"Unknown fine-tune rule key 'until'"),
])
def test_set_trainable_errors(rule, match):
    model = create_model("vgg16_block4", image_size=32)
    with pytest.raises(ConfigError, match=match):
        set_trainable(model, rule)


def test_defaults_carry_the_papers_training_settings():
    assert model_defaults("resnet50_conv4_v2")["stages"] == [
        {"name": "feature_extraction", "trainable": "none", "optimizer": "rmsprop",
         "learning_rate": 5e-5},
        {"name": "fine_tune", "trainable": "all", "optimizer": "rmsprop", "learning_rate": 1e-5},
    ]
    vgg = model_defaults("vgg16_block4")
    assert vgg["fine_tune"] == {"blocks": ["block2", "block3", "block4"]}
    assert vgg["stages"][0]["learning_rate"] == 1e-3 and vgg["weights"] == "imagenet"
    scratch = model_defaults("scratch_dd256")
    assert scratch["image_size"] == 300 and scratch["weights"] == "none"
    assert scratch["stages"] == [{"name": "train", "trainable": "all", "optimizer": "adam",
                                  "learning_rate": 1e-3}]
    # A copy: editing it does not change the registry.
    scratch["arch"]["dropout"] = 0.1
    assert model_defaults("scratch_dd256")["arch"]["dropout"] == 0.5


def test_every_argument_a_model_takes_has_a_rule():
    from cnmc_core.models.builders import SCRATCH_ARGS, TRANSFER_ARGS
    from cnmc_core.models.registry import ModelSpec, register_model

    for name in list_models():
        rules = SCRATCH_ARGS if model_defaults(name)["family"] == "scratch_cnn" else TRANSFER_ARGS
        assert set(model_defaults(name)["arch"]) <= set(rules), name
    spec = ModelSpec(name="unruled", family="scratch_cnn", builder=lambda *a, **k: None,
                     description="", image_size=64, min_image_size=60, arch={"wings": 2},
                     arg_rules={}, fine_tune="all", stages=())
    with pytest.raises(ConfigError, match=r"no rule for the argument\(s\) \['wings'\]"):
        register_model(spec)
    assert "unruled" not in list_models()


def test_checking_a_cut_layer_does_not_change_a_seeded_models_weights():
    """A cut_layer override is checked against the backbone's layer names, which builds the
    backbone once; that build must not shift the random draws of the model built next."""
    from cnmc_core.models.builders import backbone_names

    def first_kernel(**overrides):
        keras.utils.set_random_seed(0)
        backbone_names.cache_clear()
        model = create_model("vgg16_block4", image_size=32, **overrides)
        return keras.ops.convert_to_numpy(model.get_layer("block1_conv1").kernel)

    plain = first_kernel()
    checked = first_kernel(cut_layer="block4_pool")  # same layer as the default, but checked
    np.testing.assert_array_equal(plain, checked)
    assert "block4_pool" in backbone_names("vgg16") and "block4_conv3_bn" in backbone_names("vgg16", True)
