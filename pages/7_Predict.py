"""Predict: score new images with finished runs or a saved ensemble.

Upload one or many images (BMP, PNG, JPEG, TIFF). Each file is checked (size, signature, pixel
count) and decoded from its bytes with OpenCV; nothing uploaded is ever unpickled. Each image is
cropped to its cell like the training images, scored, and shown with its probability and a
Grad-CAM heatmap; the results download as CSV. Beside each model: what data it was trained on
and its test (or pooled out-of-fold) AUC with CI and protocol, with a warning for a model trained
on synthetic cells; images outside what the model saw in training are flagged.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import streamlit as st

from cnmc_core.contracts import CLASS_SHORT, CLASS_TITLES
from cnmc_core.data.images import MAX_UPLOAD_BYTES, UPLOAD_EXTENSIONS, check_uploads
from cnmc_core.data.summary import thumbnail
from cnmc_core.exceptions import CnmcError
from cnmc_core.explain.figure import overlay_panel
from cnmc_core.data.feature_ranges import OUTSIDE_TEXT, Z_LIMIT
from cnmc_core.explain.members import explain_images
from cnmc_core.predict import (
    format_prob,
    member_threshold,
    outside_flags,
    results_csv,
    results_frame,
    score_selection,
)
from page_common import choose_models, model_cards, model_members, synthetic_warnings
from page_gate import page_start

MAX_FILES = 200
HEATMAPS_UP_TO = 24  # heatmaps by default for this many images or fewer
PER_ROW = 3
RESULTS = "predict_results"  # {cache key: (frame, images, maps)} of the last scoring


def progress_bar(text: str, labels: dict[str, str]):
    """A progress bar and the ``progress(done, total, name)`` callback that moves it."""
    bar = st.progress(0.0, text=f"{text}...")

    def progress(done: int, total: int, name: str) -> None:
        bar.progress(done / max(total, 1), text=f"{text}: {labels.get(name, name)} "
                     f"({done + 1} of {total})" if name else f"{text}: done")

    return bar, progress


def main() -> None:
    page_start()
    st.title("Predict")
    st.caption("Score new cell images with a trained run or a saved ensemble. P(ALL) is the "
               "probability of a malignant lymphoblast (ALL); below the threshold the cell is "
               "called normal (HEM).")
    _, signature, members, usable = model_members(
        "No completed run with a saved model yet. Train a run (Train page), then score new "
        "images here.")
    labels = dict(zip(members["member_id"], members["label"]))
    paths_by_id = dict(zip(members["member_id"], members["path"]))
    kind, chosen = choose_models(usable, labels, key="predict", verb="Score with")
    paths = [paths_by_id[m] for m in chosen]
    several = len(chosen) > 1
    threshold = 0.5 if several else member_threshold(paths[0])
    final_name = "mean" if several else labels[chosen[0]]
    st.caption(f"Threshold: **{threshold:.2f}** (P(ALL) at or above it is called ALL).")
    chosen_pairs = [(labels[m], paths_by_id[m]) for m in chosen]
    cards = model_cards(chosen_pairs, signature)

    files = st.file_uploader(
        f"Cell images: BMP, PNG, JPEG or TIFF, at most {MAX_UPLOAD_BYTES // 2**20} MB each, up "
        f"to {MAX_FILES} at a time", type=list(UPLOAD_EXTENSIONS), accept_multiple_files=True,
        key="predict_files", max_upload_size=MAX_UPLOAD_BYTES // 2**20)
    if not files:
        st.info("Upload one or more images of a single cell on a black background, as in C-NMC. "
                "Each is cropped to its cell, as the training images were.")
        return
    accepted, refused, notes = check_uploads([(f.name, f.getvalue()) for f in files],
                                             max_files=MAX_FILES)
    for message in refused:
        st.error(message)
    for message in notes:
        st.info(message)
    if not accepted:
        st.warning("No image to score: fix or replace the files above.")
        return
    synthetic_warnings(chosen_pairs, cards)

    show_maps = st.toggle("Grad-CAM heatmaps", value=len(accepted) <= HEATMAPS_UP_TO,
                          key="predict_maps", help="Where the models look (slower: one "
                          "backward pass per image and model).")
    images = [u.image for u in accepted]
    key = (tuple(paths), tuple(u.sha1 for u in accepted), signature)
    cached = st.session_state.get(RESULTS)
    if not cached or cached["key"] != key:
        bar, progress = progress_bar("Scoring", labels)
        try:
            per, final = score_selection(paths, images, progress)
            outside, outside_notes = outside_flags(paths, images)
        except CnmcError as exc:
            bar.empty()
            st.error(f"Scoring failed: {exc}")
            return
        bar.empty()
        cached = {"key": key, "per": per, "final": final, "maps": None, "outside": outside,
                  "outside_notes": outside_notes}
        st.session_state[RESULTS] = cached
    if show_maps and cached["maps"] is None:
        bar, progress = progress_bar("Heatmaps", labels)
        try:
            explanations = explain_images(paths, images, target="predicted",
                                          threshold=threshold, progress=progress)
            cached["maps"] = [overlay_panel(ex) for ex in explanations]
        except CnmcError as exc:
            st.error(f"The heatmaps could not be computed: {exc}")
        bar.empty()

    per = {labels.get(k, k): v for k, v in cached["per"].items()}
    single = len(per) == 1 and kind == "Runs"
    frame = results_frame([u.name for u in accepted], per, None if single else cached["final"],
                          threshold, final_name, outside=cached["outside"])
    n_all = int((frame["predicted"] == CLASS_SHORT["all"]).sum())
    flagged = [bool(v) and not v.startswith("not checked") for v in cached["outside"]]
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Images scored", f"{len(frame):,}")
    c2.metric(f"Called {CLASS_TITLES['all']}", f"{n_all:,}")
    c3.metric(f"Called {CLASS_TITLES['hem']}", f"{len(frame) - n_all:,}")
    c4.metric(OUTSIDE_TEXT.capitalize(), f"{sum(flagged):,}",
              help=f"Images whose size, shape, texture or colour statistics are more than "
                   f"{Z_LIMIT:g} sd from the mean of the model's training images (any feature, "
                   "any of its runs); the table names the features.")
    for note in cached["outside_notes"]:
        st.caption(f"Not checked against {note}.")
    final_col = f"P(ALL) {final_name}"
    st.dataframe(frame, hide_index=True, column_config={
        final_col: st.column_config.ProgressColumn(final_col, min_value=0.0, max_value=1.0,
                                                   format="%.4f"),
        **{c: st.column_config.NumberColumn(format="%.3f") for c in frame.columns
           if c.startswith("P(ALL)") and c != final_col}})
    st.download_button("Download the results (CSV)", results_csv(frame),
                       file_name="predictions.csv", mime="text/csv", icon=":material/download:",
                       key="predict_download")

    st.subheader("Images")
    for start in range(0, len(accepted), PER_ROW):
        cols = st.columns(PER_ROW)
        for i, col in zip(range(start, min(start + PER_ROW, len(accepted))), cols):
            with col:
                called = frame["predicted"].iloc[i]
                colour = "red" if called == CLASS_SHORT["all"] else "blue"
                st.markdown(f"**{accepted[i].name}**  \n:{colour}[**{called}**] · P(ALL) "
                            f"{format_prob(float(frame[final_col].iloc[i]), threshold)}"
                            + (f"  \n:orange[{OUTSIDE_TEXT}: {cached['outside'][i]}]"
                               if flagged[i] else ""))
                shown = thumbnail(accepted[i].image, 224, crop=True)
                if cached["maps"] is not None:
                    gap = np.full((shown.shape[0], 8, 3), 255, np.uint8)
                    st.image(np.hstack([shown, gap, cached["maps"][i]]),
                             caption="the cropped cell, and where the models look (Grad-CAM)",
                             width="stretch")
                else:
                    st.image(shown, caption="the cropped cell", width="stretch")


main()
