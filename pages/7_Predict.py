"""Predict: score new images with finished runs or a saved ensemble.

Upload one or many images (BMP, PNG, JPEG, TIFF). Each file is checked (size, signature, pixel
count) and decoded from its bytes with OpenCV; nothing uploaded is ever unpickled. Each image is
cropped to its cell like the training images, scored, and shown with its probability and a
Grad-CAM heatmap; the results download as CSV.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pandas as pd
import streamlit as st

from cnmc_core.data.images import MAX_UPLOAD_BYTES, UPLOAD_EXTENSIONS, check_uploads
from cnmc_core.ensemble.members import leaf_runs
from cnmc_core.exceptions import CnmcError
from cnmc_core.predict import format_prob, member_threshold, results_csv, results_frame
from page_common import model_members, use_app_navigation

MAX_FILES = 200
HEATMAPS_UP_TO = 24  # heatmaps by default for this many images or fewer
PER_ROW = 3
RESULTS = "predict_results"  # {cache key: (frame, images, maps)} of the last scoring


def score(paths: list[str], images: list[np.ndarray], progress) -> tuple[dict, np.ndarray]:
    """Each run's P(ALL) (an ensemble's runs included), and the final P(ALL): the ensemble's
    (its own weights or stacking model), or the mean of the chosen runs."""
    from cnmc_core.predict import score_member

    run_probs: dict[str, np.ndarray] = {}
    finals = []
    for k, p in enumerate(paths):
        progress(k, len(paths), os.path.basename(p))
        finals.append(score_member(p, images, run_probs))
    progress(len(paths), len(paths), "")
    return run_probs, np.mean(np.column_stack(finals), axis=1)


def heatmaps(paths: list[str], images: list[np.ndarray], is_all: np.ndarray,
             progress) -> list[np.ndarray]:
    """One overlay per image: the weighted combination of the runs' Grad-CAM maps, all for the
    class finally predicted for that image (so that they can be combined)."""
    import cv2

    from cnmc_core.explain.figure import overlay
    from cnmc_core.explain.members import ensemble_heatmap, run_heatmaps

    runs: dict[str, float] = {}
    for p in paths:
        for run, w in leaf_runs(p):
            runs[str(run)] = runs.get(str(run), 0.0) + w / len(paths)
    maps, bases = [], None
    groups = [(np.flatnonzero(is_all), "all"), (np.flatnonzero(~is_all), "hem")]
    for k, run in enumerate(runs):
        progress(k, len(runs), os.path.basename(run))
        heat = [None] * len(images)
        for idx, cls in groups:
            if idx.size == 0:
                continue
            prepared, cam = run_heatmaps(run, [images[i] for i in idx], target=cls)
            for j, i in enumerate(idx):
                heat[i] = cam.heatmaps[j]
                if bases is None:
                    bases = [None] * len(images)
                if bases[i] is None or prepared[j].shape[0] > bases[i].shape[0]:
                    bases[i] = prepared[j]
        maps.append(heat)
    progress(len(runs), len(runs), "")
    weights = list(runs.values())
    out = []
    for i in range(len(images)):
        combined = ensemble_heatmap([m[i] for m in maps], weights, size=bases[i].shape[:2])
        out.append(cv2.resize(overlay(bases[i], combined), (224, 224),
                              interpolation=cv2.INTER_LINEAR))
    return out


def thumb(image: np.ndarray, side: int = 224) -> np.ndarray:
    import cv2

    from cnmc_core.data.preprocess import crop_to_cell

    return cv2.resize(crop_to_cell(image), (side, side), interpolation=cv2.INTER_AREA)


# ------------------------------------------------------------------------------ the page
use_app_navigation()
st.title("Predict")
st.caption("Score new cell images with a trained run or a saved ensemble. P(ALL) is the "
           "probability of a malignant lymphoblast (ALL); below the threshold the cell is "
           "called normal (HEM).")

_, signature, members, usable = model_members(
    "No completed run with a saved model yet. Train a run (Train page), then score new images "
    "here.")
labels = dict(zip(members["member_id"], members["label"]))
paths_by_id = dict(zip(members["member_id"], members["path"]))
runs = usable[usable["kind"] == "run"]
ensembles = usable[usable["kind"] == "ensemble"]

kinds = (["A saved ensemble"] if len(ensembles) else []) + (["Runs"] if len(runs) else [])
kind = st.radio("Score with", kinds, horizontal=True, key="predict_kind") if len(kinds) > 1 \
    else kinds[0]
if kind == "Runs":
    chosen = st.multiselect("Runs", runs["member_id"].tolist(),
                            default=runs["member_id"].tolist()[:1],
                            format_func=lambda m: labels[m], key="predict_runs",
                            help="With several runs the final P(ALL) is their mean.")
    if not chosen:
        st.warning("Choose at least one run.")
        st.stop()
    threshold = 0.5 if len(chosen) > 1 else member_threshold(paths_by_id[chosen[0]])
    final_name = "mean" if len(chosen) > 1 else labels[chosen[0]]
else:
    ens = st.selectbox("Ensemble", ensembles["member_id"].tolist(),
                       format_func=lambda m: labels[m], key="predict_ensemble")
    chosen = [ens]
    threshold = member_threshold(paths_by_id[ens])
    final_name = labels[ens]
paths = [paths_by_id[m] for m in chosen]
st.caption(f"Threshold: **{threshold:.2f}** (P(ALL) at or above it is called ALL).")

files = st.file_uploader(
    f"Cell images: BMP, PNG, JPEG or TIFF, at most {MAX_UPLOAD_BYTES // 2**20} MB each, up to "
    f"{MAX_FILES} at a time", type=list(UPLOAD_EXTENSIONS), accept_multiple_files=True,
    key="predict_files", max_upload_size=MAX_UPLOAD_BYTES // 2**20)
if not files:
    st.info("Upload one or more images of a single cell on a black background, as in C-NMC. "
            "Each is cropped to its cell, as the training images were.")
    st.stop()

accepted, refused, notes = check_uploads([(f.name, f.getvalue()) for f in files],
                                         max_files=MAX_FILES)
for message in refused:
    st.error(message)
for message in notes:
    st.info(message)
if not accepted:
    st.warning("No image to score: fix or replace the files above.")
    st.stop()

show_maps = st.toggle("Grad-CAM heatmaps", value=len(accepted) <= HEATMAPS_UP_TO,
                      key="predict_maps", help="Where the models look (slower: one backward "
                      "pass per image and model).")
key = (tuple(paths), tuple(u.sha1 for u in accepted), signature)
cached = st.session_state.get(RESULTS)
if not cached or cached["key"] != key:
    images = [u.image for u in accepted]
    bar = st.progress(0.0, text="Scoring...")

    def progress(done: int, total: int, name: str) -> None:
        bar.progress(done / max(total, 1), text=f"Scoring with {labels.get(name, name)} "
                     f"({done + 1} of {total})" if name else "Scored")

    try:
        per, final = score(paths, images, progress)
    except CnmcError as exc:
        bar.empty()
        st.error(f"Scoring failed: {exc}")
        st.stop()
    bar.empty()
    cached = {"key": key, "per": per, "final": final, "maps": None}
    st.session_state[RESULTS] = cached
if show_maps and cached["maps"] is None:
    bar = st.progress(0.0, text="Heatmaps...")

    def progress(done: int, total: int, name: str) -> None:
        bar.progress(done / max(total, 1), text=f"Heatmaps of {labels.get(name, name)} "
                     f"({done + 1} of {total})" if name else "Heatmaps done")

    try:
        cached["maps"] = heatmaps(paths, [u.image for u in accepted],
                                  np.asarray(cached["final"]) >= threshold, progress)
    except CnmcError as exc:
        st.error(f"The heatmaps could not be computed: {exc}")
    bar.empty()

per = {labels.get(k, k): v for k, v in cached["per"].items()}
single = len(per) == 1 and kind == "Runs"
frame = results_frame([u.name for u in accepted], per, None if single else cached["final"],
                      threshold, final_name)
n_all = int((frame["predicted"] == "ALL").sum())
c1, c2, c3 = st.columns(3)
c1.metric("Images scored", f"{len(frame):,}")
c2.metric("Called ALL (cancer)", f"{n_all:,}")
c3.metric("Called HEM (normal)", f"{len(frame) - n_all:,}")
final_col = f"P(ALL) {final_name}"
st.dataframe(frame, hide_index=True, column_config={
    final_col: st.column_config.ProgressColumn(final_col, min_value=0.0, max_value=1.0,
                                               format="%.4f"),
    **{c: st.column_config.NumberColumn(format="%.3f") for c in frame.columns
       if c.startswith("P(ALL)") and c != final_col}})
st.download_button("Download the results (CSV)", results_csv(frame), file_name="predictions.csv",
                   mime="text/csv", icon=":material/download:", key="predict_download")

st.subheader("Images")
for start in range(0, len(accepted), PER_ROW):
    cols = st.columns(PER_ROW)
    for i, col in zip(range(start, min(start + PER_ROW, len(accepted))), cols):
        with col:
            p = float(frame[final_col].iloc[i])
            called = frame["predicted"].iloc[i]
            colour = "red" if called == "ALL" else "blue"
            st.markdown(f"**{accepted[i].name}**  \n:{colour}[**{called}**] · P(ALL) "
                        f"{format_prob(p, threshold)}")
            shown = thumb(accepted[i].image)
            if cached["maps"] is not None:
                gap = np.full((shown.shape[0], 8, 3), 255, np.uint8)
                st.image(np.hstack([shown, gap, cached["maps"][i]]),
                         caption="the cropped cell, and where the models look (Grad-CAM)",
                         width="stretch")
            else:
                st.image(shown, caption="the cropped cell", width="stretch")
