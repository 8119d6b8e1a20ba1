"""Explain: where the models look. Grad-CAM / Grad-CAM++ heatmaps of each chosen model side by
side with their combination, and the activation grid of a chosen layer.

The image comes from the test set, from an error set picked on the Errors page, or from an
upload (checked and decoded from its bytes only; nothing uploaded is unpickled). The models are
loaded for the maps once asked (a click, an error set from Errors or an upload). The maps, the
combined P(ALL) and the class explained come from ``cnmc_core.explain.members.explain_images``,
the same path as the Predict page's. Beside each model: what data it was trained on and its test
(or pooled out-of-fold) AUC with CI and protocol; a model trained on synthetic cells is warned
about when it explains an uploaded image.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from cnmc_core.contracts import class_title
from cnmc_core.data.images import (
    MAX_UPLOAD_BYTES,
    UPLOAD_EXTENSIONS,
    decode_upload,
    read_image,
)
from cnmc_core.ensemble.members import data_source, image_paths
from cnmc_core.exceptions import CnmcError
from cnmc_core.explain.members import (
    activation_view,
    explain_images,
    leaf_weights,
    run_feature_layers,
)
from cnmc_core.predict import format_prob
from page_common import choose_models, model_cards, model_members, page_link, synthetic_warnings
from page_gate import page_start

HANDOFF_KEY = "cnmc_error_set"  # written by the Errors page
EXPLAINING_KEY = "explain_asked"  # set once the user asked for heatmaps in this session
DISPLAY = 240  # px of each panel
MAX_RUNS = 4
SOURCES = ["From the test set", "From an error set (Errors page)", "Upload an image"]
METHOD_NAMES = {"gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++", "both": "Both"}
TARGET_NAMES = {"predicted": "Predicted class", "all": "ALL", "hem": "HEM", "both": "Both classes"}


@st.cache_data(show_spinner="Finding the image files...", max_entries=8, ttl=3600)
def load_image_paths(source: str) -> dict[str, str]:
    return image_paths(source)


@st.cache_data(show_spinner=False, max_entries=64)
def load_predictions(path: str, signature: tuple) -> pd.DataFrame:
    from cnmc_core.ensemble.align import load_predictions as load

    return load(path).frame


@st.cache_data(show_spinner=False, max_entries=64)
def read_file_image(path: str) -> np.ndarray:
    return read_image(path)


@st.cache_data(show_spinner=False, max_entries=8)
def feature_layers(run_path: str, signature: tuple) -> list[str]:
    return run_feature_layers(run_path)


@st.cache_data(show_spinner=False, max_entries=64)
def explain(paths: tuple[str, ...], image: np.ndarray, method: str, target: str,
            signature: tuple):
    return explain_images(list(paths), [image], method=method, target=target)[0]


@st.cache_data(show_spinner=False, max_entries=16)
def activation_grid_of(path: str, image: np.ndarray, layer: str, max_channels: int,
                       signature: tuple):
    return activation_view(path, image, layer, max_channels)


def choose_image(model_paths: tuple[str, ...], signature: tuple, handoff: dict | None):
    """The image to explain: ``(RGB image, its name, its true class or None)``; stops the page
    when there is none."""
    src = st.radio("Image", SOURCES, horizontal=True, key="explain_source",
                   index=1 if handoff else 0)
    if src == SOURCES[2]:
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
        return decoded.image, decoded.name, None
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
    if src == SOURCES[1]:
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
                                          format_func=lambda c: TARGET_NAMES.get(c, "Both"))
        rows = frame[frame["split"] == "test"]
        if cls_filter in ("hem", "all"):
            rows = rows[rows["y"] == (1 if cls_filter == "all" else 0)]
        ids = [i for i in rows["image_id"].astype(str) if i in files]
    if not ids:
        st.warning("None of these images is on disk any more; choose another set or upload one.")
        st.stop()
    in_split = frame[frame["split"] == split]
    y_of = dict(zip(in_split["image_id"].astype(str), in_split["y"]))
    name = st.selectbox(
        f"Image ({len(ids):,})", ids,
        key="explain_image_errors" if src == SOURCES[1] else "explain_image_test",
        format_func=lambda i: f"{i} (true {class_title(y_of[i], short=True)})"
        if i in y_of else i)
    try:
        image = read_file_image(files[name])
    except CnmcError as exc:
        st.error(f"{exc}")
        st.stop()
    return image, name, class_title(y_of[name], short=True) if name in y_of else None


def heatmaps(model_paths, image, image_name, truth, labels, signature) -> None:
    o1, o2 = st.columns(2)
    method_choice = o1.segmented_control("Method", ["gradcam", "gradcam++", "both"],
                                         default="gradcam", required=True, key="explain_method",
                                         format_func=METHOD_NAMES.get)
    target_choice = o2.segmented_control("Class explained", ["predicted", "all", "hem", "both"],
                                         default="predicted", required=True,
                                         key="explain_target", format_func=TARGET_NAMES.get)
    methods = ["gradcam", "gradcam++"] if method_choice == "both" else [method_choice]
    targets = ["all", "hem"] if target_choice == "both" else [target_choice]
    combos = [(m, t) for m in methods for t in targets]
    bar = st.progress(0.0, text="Loading the models and computing the heatmaps...")
    results = []
    try:
        for k, (method, target) in enumerate(combos):
            results.append((method, target, explain(model_paths, image, method, target,
                                                    signature)))
            bar.progress((k + 1) / len(combos), text=f"Heatmaps {k + 1} of {len(combos)}")
    except CnmcError as exc:
        bar.empty()
        st.error(f"The heatmaps could not be computed: {exc}")
        st.stop()
    bar.empty()
    from cnmc_core.explain.figure import (
        explanation_panels,  # TensorFlow is loaded by now
    )

    first = results[0][2]
    together = "combined P(ALL)" if first.ensemble_prob is not None else "P(ALL)"
    st.markdown(f"**{image_name}**" + (f" · true class **{truth}**" if truth else "")
                + f" · {together} **{format_prob(first.prob, first.threshold)}**")
    for method, target, ex in results:
        cls = ex.target.upper()
        st.subheader(f"{METHOD_NAMES[method]} for class {cls}"
                     + (" (the predicted class)" if target == "predicted" else ""))
        panels = explanation_panels(ex, labels, DISPLAY)
        cols = st.columns(max(len(panels), 4))
        for col, (img, caption) in zip(cols, panels):
            col.image(img, caption=caption, width="stretch")
        st.caption(f"Layer: {', '.join(sorted({m.layer for m in ex.members}))}. Red: evidence "
                   f"for {cls}; blue: none.")


def activations_section(model_paths, image, labels, signature) -> None:
    st.subheader("Activations of a layer")
    try:
        runs = {name: str(path) for name, path, _ in leaf_weights(model_paths)}
    except CnmcError as exc:
        st.error(f"{exc}")
        return
    a1, a2, a3 = st.columns([2, 2, 1])
    act_run = a1.selectbox("Model", list(runs), format_func=lambda m: labels.get(m, m),
                           key="explain_act_run")
    try:
        layers = feature_layers(runs[act_run], signature)
    except CnmcError as exc:
        st.error(f"The model of this run cannot be loaded: {exc}")
        return
    if not layers:
        st.info("This model has no convolution layer to show.")
        return
    layer = a2.selectbox("Layer", layers, key=f"explain_layer_{act_run}",
                         help="The paper showed the first convolution layers.")
    max_channels = a3.number_input("Channels", 1, 256, 32, key="explain_channels")
    with st.spinner("Computing the activations..."):
        try:
            grid, shape = activation_grid_of(runs[act_run], image, layer, int(max_channels),
                                             signature)
        except CnmcError as exc:
            st.error(f"The activations could not be computed: {exc}")
            return
    st.image(grid, caption=f"{layer}: {shape[-1]} channels of {shape[0]}x{shape[1]}, the first "
             f"{min(int(max_channels), shape[-1])} shown, each scaled to its own range; a grey "
             "tile with a red cross is a dead (constant) channel.",
             width=min(900, max(560, grid.shape[1])))


def wants_heatmaps(handoff: dict | None, uploading: bool) -> bool:
    """Whether to compute the maps now: loading the models and running Grad-CAM takes a second
    or more, so the page opens with the image and its models and computes them once asked (a
    click here, an error set handed over from Errors, or an upload); from then on, for every
    image and model chosen in this session."""
    if handoff or uploading or st.session_state.get(EXPLAINING_KEY):
        return True
    st.button("Explain this image", type="primary", key="explain_go",
              on_click=lambda: st.session_state.update({EXPLAINING_KEY: True}),
              help="Loads the chosen models and computes their Grad-CAM heatmaps and a "
                   "layer's activations; later images are explained as you choose them.")
    st.caption("The heatmaps load the chosen models (a second or more per model on a CPU).")
    return False


def main() -> None:
    page_start()
    st.title("Explain")
    st.caption("Grad-CAM shows which parts of the cell pushed a model towards a class (red: "
               "strong evidence). Heatmaps explain the logit, so confident predictions still "
               "give maps.")
    _, signature, members, usable = model_members(
        "No completed run with a saved model yet. Train a run (Train page), then explain its "
        "predictions here.")
    labels = dict(zip(members["member_id"], members["label"]))
    paths_by_id = dict(zip(members["member_id"], members["path"]))
    handoff = st.session_state.get(HANDOFF_KEY)
    wanted = [p.rstrip("/").rsplit("/", 1)[-1] for p in (handoff or {}).get("member_paths", [])]
    kind, chosen = choose_models(usable, labels, key="explain", verb="Explain with",
                                 max_runs=MAX_RUNS, runs_first=True,
                                 default_runs=wanted or
                                 usable[usable["kind"] == "run"]["member_id"].tolist()[:3])
    model_paths = tuple(paths_by_id[m] for m in chosen)
    if kind != "Runs":
        try:
            parts = leaf_weights(model_paths)
        except CnmcError as exc:
            st.error(f"This ensemble cannot be explained: {exc}")
            st.stop()
        st.caption("Its runs: " + ", ".join(f"{labels.get(name, name)} (weight {w:.2f})"
                                            for name, _, w in parts))
    # the radio's value is in the session state before it is drawn again
    uploading = st.session_state.get("explain_source") == SOURCES[2]
    chosen_pairs = [(labels[m], paths_by_id[m]) for m in chosen]
    cards = model_cards(chosen_pairs, signature)
    if uploading:
        synthetic_warnings(chosen_pairs, cards)
    image, image_name, truth = choose_image(model_paths, signature, handoff)
    if not wants_heatmaps(handoff, uploading):
        return
    heatmaps(model_paths, image, image_name, truth, labels, signature)
    activations_section(model_paths, image, labels, signature)


main()
