"""Tests of cnmc_core.explain: activations, Grad-CAM (checked against a known answer and finite
differences), every registered model end to end, zero maps, saved models, ensemble heatmaps."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from keras import layers  # noqa: E402

from cnmc_core.exceptions import ConfigError, DataError, RunError  # noqa: E402
from cnmc_core.explain.activations import activation_grid, activations, dead_channels
from cnmc_core.explain.cam import gradcam
from cnmc_core.explain.figure import overlay
from cnmc_core.explain.inputs import default_cam_layer, list_feature_layers
from cnmc_core.explain.maps import ensemble_heatmap
from cnmc_core.models.io import clear_model_cache, load_model_cached
from cnmc_core.models.layers import ImageNetPreprocess
from cnmc_core.models.registry import create_model, list_models, model_defaults

SIZE = 32
SQ = 8  # side of the bright square


def _square_data(n: int, seed: int):
    """Dim noise; label 1 iff a bright square sits somewhere in the top-left quadrant."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 60, size=(n, SIZE, SIZE, 3)).astype("float32")
    y = (np.arange(n) % 2).astype("float32")
    boxes = []
    for i in range(n):
        r, c = rng.integers(0, SIZE // 2 - SQ + 1, size=2)
        if y[i] == 1:
            x[i, r:r + SQ, c:c + SQ] = 255.0
        boxes.append((r, c))
    return x, y, boxes


@pytest.fixture(scope="module")
def square_model():
    """A tiny CNN trained so that its output depends only on the square's region."""
    keras.utils.set_random_seed(0)
    inp = keras.Input((SIZE, SIZE, 3), name="image")
    h = ImageNetPreprocess("unit", name="preprocess")(inp)
    h = layers.Conv2D(8, 3, padding="same", activation="relu", name="c1")(h)
    h = layers.MaxPooling2D(2, name="p1")(h)
    h = layers.Conv2D(16, 3, padding="same", activation="relu", name="c2")(h)
    h = layers.GlobalAveragePooling2D(name="head_gap")(h)
    out = layers.Dense(1, activation="sigmoid", name="head_output")(h)
    model = keras.Model(inp, out, name="square")
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="binary_crossentropy",
                  metrics=["accuracy"])
    x, y, _ = _square_data(512, seed=1)
    model.fit(x, y, epochs=8, batch_size=32, verbose=0)
    xt, yt, boxes = _square_data(64, seed=2)
    acc = float(np.mean((model.predict(xt, verbose=0)[:, 0] >= 0.5) == yt))
    assert acc >= 0.95, f"the toy model did not learn the task (accuracy {acc})"
    return model, xt, yt, boxes


def _square_box(corner: tuple[int, int], margin: int = 2) -> tuple[int, int, int, int]:
    r, c = corner
    return max(r - margin, 0), max(c - margin, 0), r + SQ + margin, c + SQ + margin


def _mass_in(heat: np.ndarray, r0: int, c0: int, r1: int, c1: int) -> float:
    return float(heat[r0:r1, c0:c1].sum() / max(heat.sum(), 1e-12))


@pytest.mark.parametrize("method", ["gradcam", "gradcam++"])
def test_gradcam_mass_falls_on_the_evidence(square_model, method):
    model, xt, yt, boxes = square_model
    pos = np.flatnonzero(yt == 1)[:16]
    assert default_cam_layer(model) == "c2"
    res = gradcam(model, xt[pos], target="all", method=method)
    assert res.heatmaps.shape == (len(pos), SIZE, SIZE)
    np.testing.assert_allclose(res.probs, model.predict(xt[pos], verbose=0)[:, 0], atol=1e-5)
    masses = [_mass_in(h, *_square_box(boxes[i])) for h, i in zip(res.heatmaps, pos)]
    quadrant = [_mass_in(h, 0, 0, SIZE // 2, SIZE // 2) for h in res.heatmaps]
    # The square plus a 2 px margin covers ~14% of the image; the quadrant 25%.
    assert np.median(masses) > 0.5, masses
    assert np.median(quadrant) > 0.7, quadrant
    # For HEM the square is evidence against: it must get less of the map than for ALL.
    hem = gradcam(model, xt[pos], target="hem", method=method)
    hem_mass = [0.0 if z else _mass_in(h, *_square_box(boxes[i]))
                for h, z, i in zip(hem.heatmaps, hem.zero_flags, pos)]
    assert np.median(hem_mass) < np.median(masses)
    assert hem.target == ["hem"] * len(pos)


def test_predicted_target_follows_the_prediction(square_model):
    model, xt, yt, _ = square_model
    res = gradcam(model, xt[:8], target="predicted")
    assert res.target == ["all" if p >= 0.5 else "hem" for p in res.probs]


def test_channel_weights_match_finite_differences():
    keras.utils.set_random_seed(3)
    dt = "float64"  # float64 so that central differences are accurate to ~1e-8
    inp = keras.Input((10, 10, 3), name="image", dtype=dt)
    a = layers.Conv2D(4, 3, padding="same", activation="tanh", name="conv_a", dtype=dt)(inp)
    conv_b = layers.Conv2D(3, 3, padding="same", activation="tanh", name="conv_b", dtype=dt)
    gap = layers.GlobalAveragePooling2D(name="head_gap", dtype=dt)
    hidden = layers.Dense(5, activation="tanh", name="head_dense", dtype=dt)
    final = layers.Dense(1, activation="sigmoid", name="head_output", dtype=dt)
    model = keras.Model(inp, final(hidden(gap(conv_b(a)))), name="fd")

    # The same tail, fed with the feature map directly, returning the logit.
    t_in = keras.Input((10, 10, 4), dtype=dt)
    tail = keras.Model(t_in, hidden(gap(conv_b(t_in))))
    kernel = keras.ops.convert_to_numpy(final.kernel)[:, 0]
    bias = float(keras.ops.convert_to_numpy(final.bias)[0])

    def logit(feats):
        return keras.ops.convert_to_numpy(tail(feats)) @ kernel + bias

    x = np.random.default_rng(4).uniform(0, 255, size=(2, 10, 10, 3)) / 255.0
    feats = activations(model, x[0], "conv_a")[None].astype(dt)
    feats = np.concatenate([feats, activations(model, x[1], "conv_a")[None].astype(dt)])
    eps = 1e-4
    k = feats.shape[-1]
    fd = np.zeros((2, k))
    for ch in range(k):
        bump = np.zeros_like(feats)
        bump[..., ch] = eps  # the same shift everywhere in channel ch: sum_ij dz/dA_ijk
        fd[:, ch] = (logit(feats + bump) - logit(feats - bump)) / (2 * eps) / (10 * 10)
    for target, sign in (("all", 1.0), ("hem", -1.0)):
        res = gradcam(model, x, layer="conv_a", target=target)
        np.testing.assert_allclose(res.channel_weights, sign * fd, rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(res.logits, logit(feats), rtol=1e-4, atol=1e-5)


def _smoke_size(name: str) -> int:
    return max(64, model_defaults(name)["min_image_size"])


@pytest.mark.parametrize("name", list_models())
def test_every_model_yields_finite_heatmaps_for_both_classes(name):
    size = _smoke_size(name)
    model = create_model(name, image_size=size, weights="none")
    layer = default_cam_layer(model)
    assert layer in [lyr.name for lyr in model.layers]
    # Images of another size than the model's input: the heatmaps come back at the images' size.
    imgs = np.random.default_rng(0).integers(0, 256, size=(2, 72, 80, 3)).astype("uint8")
    for target in ("all", "hem"):
        res = gradcam(model, imgs, target=target)
        assert res.layer == layer
        assert res.heatmaps.shape == (2, 72, 80) and res.heatmaps.dtype == np.float32
        assert np.all(np.isfinite(res.heatmaps))
        assert res.heatmaps.min() >= 0 and res.heatmaps.max() <= 1
        assert np.all(res.heatmaps[res.zero_flags] == 0)
        assert np.all(np.isfinite(res.probs)) and res.channel_weights.shape[0] == 2
    feats = list_feature_layers(model)
    assert feats, "no conv/pool layers found"
    maps = activations(model, imgs[0], feats[0])
    assert maps.ndim == 3 and np.all(np.isfinite(maps))


@pytest.mark.parametrize("name, layer", [
    ("vgg16_block4", "block4_conv3"), ("vgg16_full", "block5_conv3"),
    ("resnet50_conv4_v1", "conv4_block6_out"), ("resnet50_full", "conv5_block3_out"),
    ("scratch_dd256", "conv4"), ("mobilenetv2_block13", "block_13_expand_relu"),
    ("mobilenetv2_full", "out_relu"),
])
def test_default_cam_layer_is_the_last_block_kept(name, layer):
    assert default_cam_layer(create_model(name, image_size=_smoke_size(name))) == layer


def test_all_zero_maps_give_zeros_and_a_flag_never_nan(square_model):
    model, xt, _, _ = square_model
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    out = clone.get_layer("head_output")
    out.kernel.assign(np.zeros(out.kernel.shape, "float32"))  # no gradient reaches the map
    for method in ("gradcam", "gradcam++"):
        res = gradcam(clone, xt[:3], method=method)
        assert res.zero_flags.all() and not np.isnan(res.heatmaps).any()
        assert (res.heatmaps == 0).all()
    assert overlay(xt[0], res.heatmaps[0]).dtype == np.uint8
    combo = ensemble_heatmap({"a": np.zeros((4, 4)), "b": np.zeros((8, 8))}, {"a": 1, "b": 3})
    assert combo.shape == (8, 8) and (combo == 0).all()


def test_saved_model_explains_the_same_and_is_cached(square_model, tmp_path):
    model, xt, _, _ = square_model
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = load_model_cached(path)
    assert load_model_cached(str(path)) is loaded  # second call: no reload
    want = gradcam(model, xt[:4], target="hem")
    got = gradcam(loaded, xt[:4], target="hem")
    assert got.layer == want.layer
    np.testing.assert_allclose(got.heatmaps, want.heatmaps, atol=1e-5)
    np.testing.assert_allclose(got.probs, want.probs, atol=1e-6)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # "retrained": reload
    assert load_model_cached(path) is not loaded
    clear_model_cache()
    with pytest.raises(RunError, match="does not exist"):
        load_model_cached(tmp_path / "missing.keras")
    (tmp_path / "bad.keras").write_text("not a model")
    with pytest.raises(RunError, match="cannot load model file"):
        load_model_cached(tmp_path / "bad.keras")


def test_frozen_models_are_explained_too(square_model):
    """Frozen layers are not watched by the tape; Grad-CAM must not depend on trainability."""
    model, xt, _, _ = square_model
    want = gradcam(model, xt[:2])
    model.trainable = False
    try:
        for compiled in (False, True):
            got = gradcam(model, xt[:2], compiled=compiled)
            np.testing.assert_allclose(got.heatmaps, want.heatmaps, atol=1e-5)
            np.testing.assert_allclose(got.channel_weights, want.channel_weights, rtol=1e-4,
                                       atol=1e-7)
    finally:
        model.trainable = True


def test_compiled_and_eager_agree_for_every_target(square_model):
    model, xt, _, _ = square_model
    for target in ("all", "hem", "predicted"):
        a = gradcam(model, xt[:6], target=target, method="gradcam++", compiled=True)
        b = gradcam(model, xt[:6], target=target, method="gradcam++", compiled=False)
        np.testing.assert_allclose(a.heatmaps, b.heatmaps, atol=1e-5)
        assert a.target == b.target


def test_activations_and_grid(square_model):
    model, xt, _, _ = square_model
    assert list_feature_layers(model) == ["c1", "p1", "c2"]
    maps = activations(model, xt[0], "c1")
    assert maps.shape == (SIZE, SIZE, 8)
    maps[..., 3] = 0.0  # a dead channel
    assert dead_channels(maps)[3]
    grid = activation_grid(maps, cols=4, separator=1)
    assert grid.dtype == np.uint8 and grid.shape == (2 * 32 + 1, 4 * 32 + 3, 3)
    dead_cell = grid[0:32, 3 * 33:3 * 33 + 32]
    assert (dead_cell[..., 0] > dead_cell[..., 1]).any()  # red marker over the grey
    assert (dead_cell == 128).any()
    dead = dead_channels(maps)
    i = int(np.flatnonzero(~dead)[0])
    r, c = divmod(i, 4)
    live = grid[r * 33:r * 33 + 32, c * 33:c * 33 + 32, 0]
    assert live.min() == 0 and live.max() == 255  # each channel stretched to 0-255 on its own
    assert (grid[32, :] == 255).all()  # separator line
    small = activation_grid(np.random.rand(3, 3, 5), colormap=2, max_channels=4)
    assert small.shape == (2 * 33 + 1, 2 * 33 + 1, 3)  # 3x3 maps enlarged to 33 px cells


def test_ensemble_heatmap_weights_and_grid():
    a = np.zeros((4, 4)); a[0, 0] = 2.0  # noqa: E702 - normalised to 1 first
    b = np.zeros((8, 8)); b[7, 7] = 0.5  # noqa: E702
    out = ensemble_heatmap({"a": a, "b": b}, {"a": 3.0, "b": 1.0})
    assert out.shape == (8, 8) and out.min() >= 0 and out.max() <= 1
    assert out[0, 0] == pytest.approx(0.75) and out[7, 7] == pytest.approx(0.25)
    assert ensemble_heatmap([a, b], [3, 1], normalize=True)[0, 0] == pytest.approx(1.0)
    assert ensemble_heatmap([a, b], size=(2, 2)).shape == (2, 2)
    with pytest.raises(ConfigError, match="exactly the members"):
        ensemble_heatmap({"a": a, "b": b}, {"a": 1.0})
    with pytest.raises(ConfigError, match="non-negative"):
        ensemble_heatmap([a, b], [1.0, -1.0])
    with pytest.raises(ConfigError, match="one value per member"):
        ensemble_heatmap([a, b], [1.0])


def test_overlay_and_argument_errors(square_model):
    model, xt, _, _ = square_model
    heat = np.zeros((8, 8), "float32"); heat[:4, :4] = 1.0  # noqa: E702
    img = np.full((32, 32, 3), 100, "uint8")
    out = overlay(img, heat, alpha=0.5)
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    assert not np.array_equal(out[0, 0], out[31, 31])
    assert np.array_equal(overlay(img, heat, alpha=0.0), img)
    with pytest.raises(ConfigError, match="alpha"):
        overlay(img, heat, alpha=2)
    with pytest.raises(ConfigError, match="target must be one of"):
        gradcam(model, xt[:1], target="cancer")
    with pytest.raises(ConfigError, match="method must be one of"):
        gradcam(model, xt[:1], method="scorecam")
    with pytest.raises(ConfigError, match="'nope'.*use one of: .*c2"):
        gradcam(model, xt[:1], layer="nope")
    with pytest.raises(DataError, match="RGB image"):
        gradcam(model, np.zeros((2, 2)))
