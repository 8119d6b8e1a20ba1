"""Explain: where the models look. Grad-CAM / Grad-CAM++ heatmaps of each chosen model side by
side with their combination, and the activation grid of a chosen layer.

The image comes from the test set, from an error set picked on the Errors page, or from an
upload (checked and decoded from its bytes only; nothing uploaded is unpickled).
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pandas as pd
import streamlit as st

from cnmc_core.data.images import MAX_UPLOAD_BYTES, UPLOAD_EXTENSIONS, decode_upload
from cnmc_core.ensemble.members import data_source, image_paths, leaf_runs
from cnmc_core.exceptions import CnmcError
from cnmc_core.predict import format_prob
from page_common import model_members, page_link, use_app_navigation

HANDOFF_KEY = "cnmc_error_set"  # written by the Errors page
DISPLAY = 240  # px of each panel
MAX_RUNS = 4


@st.cache_data(show_spinner="Finding the image files...", max_entries=8, ttl=3600)
def load_image_paths(source: str) -> dict[str, str]:
    return image_paths(source)


@st.cache_data(show_spinner=False, max_entries=64)
def load_predictions(path: str, signature: tuple) -> pd.DataFrame:
    from cnmc_core.ensemble.align import load_predictions as load

    return load(path).frame


@st.cache_data(show_spinner=False, max_entries=64)
def read_file_image(path: str) -> np.ndarray:
    from cnmc_core.data.images import read_image

    return read_image(path)


@st.cache_resource(show_spinner=False, max_entries=4)
def feature_layers(model_path: str, mtime: int) -> list[str]:
    from cnmc_core.explain.inputs import list_feature_layers
    from cnmc_core.models.io import load_model_cached

    return list_feature_layers(load_model_cached(model_path))


@st.cache_data(show_spinner=False, max_entries=64)
def explain(paths: tuple[str, ...], image: np.ndarray, method: str, target: str,
            weights: tuple | None, signature: tuple):
    from cnmc_core.explain.members import explain_selection

    return explain_selection(list(paths), image, method=method, target=target,
                             weights=None if weights is None else list(weights))


@st.cache_data(show_spinner=False, max_entries=16)
def activation_grid_of(path: str, image: np.ndarray, layer: str, max_channels: int,
                       signature: tuple):
    import cv2

    from cnmc_core.explain.activations import activation_grid, activations
    from cnmc_core.models.io import load_model_cached
    from cnmc_core.predict import prepare_for_run

    model = load_model_cached(os.path.join(path, "model.keras"))
    maps = activations(model, prepare_for_run(image, path), layer)
    return activation_grid(maps, max_channels=max_channels, colormap=cv2.COLORMAP_VIRIDIS), \
        maps.shape


def big(image: np.ndarray, side: int = DISPLAY) -> np.ndarray:
    import cv2

    interp = cv2.INTER_NEAREST if image.shape[0] * 2 <= side else cv2.INTER_LINEAR
    return cv2.resize(image, (side, side), interpolation=interp)


# ------------------------------------------------------------------------------ the page
use_app_navigation()
st.title("Explain")
st.caption("Grad-CAM shows which parts of the cell pushed a model towards a class (red: strong "
           "evidence). Heatmaps explain the logit, so confident predictions still give maps.")

_, signature, members, usable = model_members(
    "No completed run with a saved model yet. Train a run (Train page), then explain its "
    "predictions here.")
labels = dict(zip(members["member_id"], members["label"]))
paths_by_id = dict(zip(members["member_id"], members["path"]))
handoff = st.session_state.get(HANDOFF_KEY)

# ---------------------------------------------------------------------------- models
runs = usable[usable["kind"] == "run"]
ensembles = usable[usable["kind"] == "ensemble"]
kinds = ["Runs"] + (["A saved ensemble"] if len(ensembles) else [])
kind = st.radio("Explain with", kinds, horizontal=True, key="explain_kind") if len(kinds) > 1 \
    else kinds[0]
weights = None
if kind == "Runs":
    default = runs["member_id"].tolist()[:3]
    if handoff:
        wanted = [os.path.basename(p) for p in handoff.get("member_paths", [])]
        default = [m for m in wanted if m in set(runs["member_id"])][:MAX_RUNS] or default
    chosen = st.multiselect("Models", runs["member_id"].tolist(), default=default,
                            format_func=lambda m: labels[m], max_selections=MAX_RUNS,
                            key="explain_runs",
                            help="Each model's map is shown side by side; the last panel "
                                 "combines them with equal weights.")
    if not chosen:
        st.warning("Choose at least one model to explain.")
        st.stop()
    model_paths = tuple(paths_by_id[m] for m in chosen)
else:
    ens = st.selectbox("Ensemble", ensembles["member_id"].tolist(),
                       format_func=lambda m: labels[m], key="explain_ensemble")
    model_paths = (paths_by_id[ens],)
    try:
        parts = leaf_runs(model_paths[0])
    except CnmcError as exc:
        st.error(f"This ensemble cannot be explained: {exc}")
        st.stop()
    st.caption("Its runs: " + ", ".join(f"{labels.get(p.name, p.name)} (weight {w:.2f})"
                                        for p, w in parts))

# ---------------------------------------------------------------------------- the image
sources = ["From the test set", "From an error set (Errors page)", "Upload an image"]
src = st.radio("Image", sources, horizontal=True, key="explain_source",
               index=1 if handoff else 0)
image, image_name, truth = None, None, None
if src == sources[2]:
    up = st.file_uploader("A cell image (BMP, PNG, JPEG or TIFF, at most "
                          f"{MAX_UPLOAD_BYTES // 2**20} MB)", type=list(UPLOAD_EXTENSIONS),
                          key="explain_upload", max_upload_size=MAX_UPLOAD_BYTES // 2**20)
    if up is None:
        st.info("Upload an image of one cell on a black background, as in C-NMC.")
        st.stop()
    try:
        decoded = decode_upload(up.name, up.getvalue())
    except CnmcError as exc:
        st.error(str(exc))
        st.stop()
    image, image_name = decoded.image, decoded.name
else:
    first = model_paths[0]
    try:
        source = data_source(first)
        files = load_image_paths(source) if source else {}
    except CnmcError as exc:
        st.error(f"The images of this run cannot be found: {exc} Upload an image instead.")
        st.stop()
    if not files:
        st.error("This run does not record its dataset, so its test images cannot be shown. "
                 "Upload an image instead.")
        st.stop()
    frame = load_predictions(first, signature)
    if src == sources[1]:
        if not handoff or not handoff.get("image_ids"):
            st.info("No error set yet: on the Errors page, click a bar or choose a set, then "
                    "'Explain these images'.")
            page_link("pages/4_Errors.py", "Go to Errors", icon=":material/error_outline:")
            st.stop()
        split = handoff.get("split", "test")
        st.caption(f"Error set: images {handoff['title']} ({split}, "
                   f"{len(handoff['image_ids']):,} images).")
        ids = [i for i in handoff["image_ids"] if i in files]
    else:
        split = "test"
        cls_filter = st.segmented_control("Class", ["both", "hem", "all"], default="both",
                                          required=True, key="explain_class",
                                          format_func=lambda c: {"both": "Both", "hem": "HEM",
                                                                 "all": "ALL"}[c])
        rows = frame[frame["split"] == "test"]
        if cls_filter in ("hem", "all"):
            rows = rows[rows["y"] == (1 if cls_filter == "all" else 0)]
        ids = [i for i in rows["image_id"].astype(str) if i in files]
    if not ids:
        st.warning("None of these images is on disk any more; choose another set or upload one.")
        st.stop()
    y_of = dict(zip(frame.loc[frame["split"] == split, "image_id"].astype(str),
                    frame.loc[frame["split"] == split, "y"]))
    image_name = st.selectbox(
        f"Image ({len(ids):,})", ids,
        key="explain_image_errors" if src == sources[1] else "explain_image_test",
        format_func=lambda i: f"{i} (true {'ALL' if y_of.get(i) == 1 else 'HEM'})"
        if i in y_of else i)
    truth = {1: "ALL", 0: "HEM"}.get(y_of.get(image_name))
    try:
        image = read_file_image(files[image_name])
    except CnmcError as exc:
        st.error(f"{exc}")
        st.stop()

# ---------------------------------------------------------------------------- options
o1, o2 = st.columns(2)
method_choice = o1.segmented_control(
    "Method", ["gradcam", "gradcam++", "both"], default="gradcam", required=True,
    key="explain_method", format_func=lambda m: {"gradcam": "Grad-CAM",
                                                 "gradcam++": "Grad-CAM++", "both": "Both"}[m])
target_choice = o2.segmented_control(
    "Class explained", ["predicted", "all", "hem", "both"], default="predicted", required=True,
    key="explain_target", format_func=lambda t: {"predicted": "Predicted class",
                                                 "all": "ALL", "hem": "HEM",
                                                 "both": "Both classes"}[t])
methods = ["gradcam", "gradcam++"] if method_choice == "both" else [method_choice]
targets = ["all", "hem"] if target_choice == "both" else [target_choice]

from cnmc_core.explain.figure import overlay

combos = [(m, t) for m in methods for t in targets]
bar = st.progress(0.0, text="Loading the models and computing the heatmaps...")
results = []
try:
    for k, (method, target) in enumerate(combos):
        results.append((method, target, explain(model_paths, image, method, target, weights,
                                                signature)))
        bar.progress((k + 1) / len(combos), text=f"Heatmaps {k + 1} of {len(combos)}")
except CnmcError as exc:
    bar.empty()
    st.error(f"The heatmaps could not be computed: {exc}")
    st.stop()
bar.empty()

title = f"**{image_name}**" + (f" · true class **{truth}**" if truth else "")
first = results[0][2]
if first.ensemble_prob is not None:
    title += f" · combined P(ALL) **{format_prob(first.ensemble_prob)}**"
elif first.members:
    title += f" · P(ALL) **{format_prob(first.members[0].prob)}**"
st.markdown(title)
for method, target, ex in results:
    name = {"gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++"}[method]
    cls = ex.members[0].target.upper() if ex.members else target.upper()
    head = f"{name} for class {cls}" + (" (the predicted class)" if target == "predicted" else "")
    st.subheader(head)
    panels = [(big(ex.members[0].image), "the cell as the models see it (cropped)")]
    for m in ex.members:
        note = " · no positive evidence (map all zero)" if m.zero else ""
        panels.append((big(overlay(m.image, m.heatmap)),
                       f"{labels.get(m.name, m.name)} · P(ALL) {format_prob(m.prob)} · weight "
                       f"{m.weight:.2f}{note}"))
    if ex.ensemble_heatmap is not None:
        base = max((m.image for m in ex.members), key=lambda a: a.shape[0])
        panels.append((big(overlay(base, ex.ensemble_heatmap)),
                       f"combined (weighted) · P(ALL) {format_prob(ex.ensemble_prob)}"))
    cols = st.columns(max(len(panels), 4))
    for col, (img, caption) in zip(cols, panels):
        col.image(img, caption=caption, width="stretch")
    st.caption(f"Layer: {', '.join(sorted({m.layer for m in ex.members}))}. Red: evidence for "
               f"{cls}; blue: none.")

# ---------------------------------------------------------------------------- activations
st.subheader("Activations of a layer")
run_ids = [p.name for p, _ in leaf_runs(model_paths[0])] if kind != "Runs" else \
    [os.path.basename(p) for p in model_paths]
a1, a2, a3 = st.columns([2, 2, 1])
act_run = a1.selectbox("Model", run_ids, format_func=lambda m: labels.get(m, m),
                       key="explain_act_run")
act_path = paths_by_id.get(act_run) or next(str(p) for p, _ in leaf_runs(model_paths[0])
                                             if p.name == act_run)
model_file = os.path.join(act_path, "model.keras")
try:
    layers = feature_layers(model_file, os.stat(model_file).st_mtime_ns)
except (CnmcError, OSError) as exc:
    st.error(f"The model of this run cannot be loaded: {exc}")
    st.stop()
if not layers:
    st.info("This model has no convolution layer to show.")
    st.stop()
layer = a2.selectbox("Layer", layers, key=f"explain_layer_{act_run}",
                     help="The paper showed the first convolution layers.")
max_channels = a3.number_input("Channels", 1, 256, 32, key="explain_channels")
with st.spinner("Computing the activations..."):
    try:
        grid, shape = activation_grid_of(act_path, image, layer, int(max_channels), signature)
    except CnmcError as exc:
        st.error(f"The activations could not be computed: {exc}")
        st.stop()
st.image(grid, caption=f"{layer}: {shape[-1]} channels of {shape[0]}x{shape[1]}, the first "
         f"{min(int(max_channels), shape[-1])} shown, each scaled to its own range; a grey tile "
         "with a red cross is a dead (constant) channel.", width=min(900, max(560, grid.shape[1])))
