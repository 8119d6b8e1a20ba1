"""Errors: which images the models miss, and how their errors overlap (paper 3.4.1, and past it).

Pick runs scored on the same images; see the images by how many models miss them, the UpSet
chart of the intersections of the missed sets, the images only one model gets right or wrong,
and the pairwise diversity. Clicking a bar (or choosing a set below) shows its images with the
true class and each model's probability; "Explain these images" hands the set to Explain.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pandas as pd
import streamlit as st
from streamlit.errors import StreamlitAPIException

from cnmc_core.analysis.charts import (
    DIVERSITY_METRICS,
    diversity_figure,
    miss_histogram_figure,
    selected_keys,
    upset_figure,
)
from cnmc_core.analysis.error_sets import (
    ErrorSet,
    filter_class,
    gallery_rows,
    histogram_set,
    intersection_set,
    unique_set,
)
from cnmc_core.analysis.errors import analyse_errors
from cnmc_core.data.summary import thumbnail
from cnmc_core.ensemble.members import (
    data_source,
    image_paths,
)
from cnmc_core.exceptions import CnmcError
from cnmc_core.predict import format_prob
from cnmc_core.study.ensembles import align_source
from page_common import choose_group_members, choose_study, workspace_members
from page_gate import page_start

PAGE_SIZE = 24
MAX_MEMBERS = 12
HANDOFF_KEY = "cnmc_error_set"  # read by the Explain page


# ------------------------------------------------------------------------------ cached loaders
@st.cache_data(show_spinner="Aligning the runs' predictions...", max_entries=16)
def load_aligned(paths: tuple[str, ...], signature: tuple):
    """The members at ``paths`` aligned, or a study (one folder) pooled out of fold."""
    return align_source(paths)


@st.cache_data(show_spinner="Finding the image files...", max_entries=8, ttl=3600)
def load_image_paths(source: str) -> dict[str, str]:
    return image_paths(source)


@st.cache_data(show_spinner=False, max_entries=2048)
def load_thumbnail(path: str, size: int = 150) -> np.ndarray | None:
    """The cell cropped as the models see it, ``size`` px; None when it cannot be read."""
    try:
        return thumbnail(path, size, crop=True)
    except (CnmcError, OSError):
        return None


# ------------------------------------------------------------------------------ the page
def main() -> None:
    page_start()
    st.title("Errors")
    st.caption("Which images the models miss and how their errors overlap. Each model uses its own "
               "threshold (0.5 for runs). Click a bar of the histogram or of the UpSet chart, or "
               "choose a set below, to see its images.")

    root, signature, members = workspace_members(
        "analysed", "No completed run yet. Train at least two runs on the same dataset and split "
        "(Train page), then come back here.")

    labels = dict(zip(members["member_id"], members["label"]))
    study = choose_study(root, "errors")
    if study is None:
        chosen, paths = choose_group_members(
            members, labels, key="errors", noun="run(s)", title="Models", default_n=6,
            max_n=MAX_MEMBERS, help="Only runs with the same split protocol, dataset and images "
            "can be compared image by image.", too_few="Only one completed run was scored on these "
            "images. Train another model with the same dataset and split protocol (Train page) to "
            "compare their errors.")
    else:
        paths = (study,)
    try:
        aligned = load_aligned(paths, signature)
    except CnmcError as exc:
        st.error(f"These runs cannot be compared image by image: {exc} Choose runs from one group.")
        st.stop()
    if study is not None:
        labels = {m: m for m in aligned.members}
        paths = tuple(str(p) for p in aligned.paths)  # a run per preset: the dataset's images
        st.caption(f"Study **{os.path.basename(study)}**: each preset's predictions pooled out of "
                   "fold, so every subject is here (each image scored by the run that held its "
                   "subject out, averaged over the seeds); \"missed by every model\" is over every "
                   "subject. Test is each image's held-out prediction, validation the prediction "
                   "of the run that validated on it.")

    c1, c2 = st.columns([1, 2])
    split = c1.radio("Split", ["test", "val"], horizontal=True, key="errors_split",
                     format_func=lambda s: {"test": "test (untouched)", "val": "validation"}[s])
    cls = c2.segmented_control("Class filter", ["both", "hem", "all"], default="both", required=True,
                               key="errors_class",
                               format_func=lambda c: {"both": "All images", "hem": "HEM (normal) only",
                                                      "all": "ALL (cancer) only"}[c])
    view = filter_class(aligned, split, cls or "both")
    if view.splits[split].y.size == 0:
        st.warning(f"The {split} split has no {cls.upper()} image. Choose another class or split.")
        st.stop()
    report = analyse_errors(view, split)
    members_now = report["members"]
    m = len(members_now)
    hist = report["histogram"]

    k1, k2, k3, k4 = st.columns(4)
    k1.metric("Images", f"{report['n']:,}", help=f"{report['n_hem']:,} HEM, {report['n_all']:,} ALL")
    k2.metric(f"Missed by all {m}", f"{int(hist['images'].iloc[-1]):,}",
              help=f"HEM {int(hist['hem'].iloc[-1])}, ALL {int(hist['all'].iloc[-1])}")
    k3.metric("Missed by none", f"{int(hist['images'].iloc[0]):,}")
    k4.metric("Missed by at least one", f"{int(hist['images'].iloc[1:].sum()):,}")

    # The set shown in the gallery: the last thing clicked or chosen (a key, re-read on each run so
    # that it follows the split and class filter).
    CURRENT = "errors_current"


    def choose(kind: str, chart_key: str | None = None, value=None) -> None:
        """Callback of the charts and the set selector: remember what the gallery shows."""
        if chart_key is not None:
            keys = selected_keys(st.session_state.get(chart_key))
            if not keys:
                return
            value = keys[0]
        elif value is None:
            value = st.session_state.get("errors_unique")
        st.session_state[CURRENT] = (kind, value)
        st.session_state["errors_page"] = 1


    left, right = st.columns([2, 3])
    with left:
        st.subheader("Missed by how many models")
        st.plotly_chart(miss_histogram_figure(hist), key="errors_hist_chart", on_select=lambda:
                        choose("hist", "errors_hist_chart"), selection_mode="points",
                        config={"displayModeBar": False})
    with right:
        st.subheader("Which models miss together (UpSet)")
        inter = report["intersections"]
        if inter.empty:
            st.success("No model misses any of these images.")
        else:
            errors = report["per_class"]["errors"].reindex(members_now).tolist()
            st.plotly_chart(upset_figure(inter, members_now, errors, labels, top=20),
                            key="errors_upset_chart",
                            on_select=lambda: choose("inter", "errors_upset_chart"),
                            selection_mode="points", config={"displayModeBar": False})
            if len(inter) > 20:
                st.caption(f"The 20 largest of {len(inter)} non-empty intersections.")

    st.subheader("Only one model gets it right, or wrong")
    uniq = pd.DataFrame({
        "model": [labels[x] for x in members_now],
        "errors": report["per_class"]["errors"].reindex(members_now).to_numpy(),
        "errors on HEM": report["per_class"]["errors_hem"].reindex(members_now).to_numpy(),
        "errors on ALL": report["per_class"]["errors_all"].reindex(members_now).to_numpy(),
        "only this model right": [len(report["unique_correct"][x]) for x in members_now],
        "only this model wrong": [len(report["unique_wrong"][x]) for x in members_now],
    })
    st.dataframe(uniq, hide_index=True)
    unique_options = [(x, r) for x in members_now for r in (True, False)]
    st.selectbox(
        "Show the images that...", unique_options, index=None, key="errors_unique",
        placeholder="choose a model",
        format_func=lambda o: (f"only {labels[o[0]]} gets right "
                               f"({len(report['unique_correct' if o[1] else 'unique_wrong'][o[0]])})"
                               if o[1] else f"only {labels[o[0]]} gets wrong "
                               f"({len(report['unique_wrong'][o[0]])})"),
        on_change=lambda: choose("unique"))


    def current_set() -> ErrorSet:
        kind, value = st.session_state.get(CURRENT) or (None, None)
        try:
            if kind == "hist":
                return histogram_set(report, int(value))
            if kind == "inter":
                return intersection_set(report, int(value), labels)
            if kind == "unique" and value is not None and tuple(value)[0] in members_now:
                return unique_set(report, tuple(value)[0], bool(tuple(value)[1]), labels)
        except (CnmcError, ValueError, TypeError):
            pass
        # Default: what every model misses, else the largest intersection.
        if int(hist["images"].iloc[-1]):
            return histogram_set(report, m)
        if not report["intersections"].empty:
            return intersection_set(report, 0, labels)
        return histogram_set(report, 0)


    shown = current_set()
    st.subheader(f"Images {shown.title}: {len(shown.image_ids):,}")
    if not shown.image_ids:
        st.info("No image in this set. Click another bar or choose another set.")
    else:
        rows = gallery_rows(view, split, shown.image_ids)
        source = None
        try:
            source = data_source(paths[0])
            files = load_image_paths(source) if source else {}
        except CnmcError as exc:
            files = {}
            st.warning(f"The images cannot be shown: {exc} The probabilities are listed below.")
        if source is None:
            st.warning("These runs do not record their dataset, so the images cannot be shown.")
        n_pages = max(1, -(-len(rows) // PAGE_SIZE))
        b1, b2 = st.columns([3, 1])
        page = b2.number_input(f"Page (of {n_pages})", 1, n_pages, key="errors_page") \
            if n_pages > 1 else 1
        if study is not None:
            b1.caption("Explain works on runs: choose one of the study's runs on the Explain page "
                       "(each image was scored out of fold by a different run).")
        elif b1.button("Explain these images", icon=":material/visibility:", key="errors_explain",
                       help="Open the Explain page with this set of images."):
            st.session_state[HANDOFF_KEY] = {**shown.to_dict(), "member_paths": list(paths),
                                             "labels": {x: labels[x] for x in members_now}}
            try:
                st.switch_page("pages/6_Explain.py")
            except StreamlitAPIException:  # the page runs alone (tests): no navigation
                st.info("The set is ready: open the Explain page and choose "
                        "'An error set from the Errors page'.")
        part = rows.iloc[(page - 1) * PAGE_SIZE: page * PAGE_SIZE]
        short = {x: f"M{j + 1}" for j, x in enumerate(members_now)}
        thresholds = dict(zip(members_now, report["thresholds"]))
        st.caption("P(ALL) of each model, :green[✓] right, :red[✗] wrong: " + ", ".join(
            f"**{short[x]}** {labels[x]}" for x in members_now))
        per_row = 6
        for start in range(0, len(part), per_row):
            cols = st.columns(per_row)
            for col, (_, r) in zip(cols, part.iloc[start:start + per_row].iterrows()):
                with col:
                    path = files.get(r["image_id"])
                    img = load_thumbnail(path) if path else None
                    if img is not None:
                        st.image(img, width="stretch")
                    else:
                        st.caption("(image file not found)")
                    colour = "red" if r["true"] == "ALL" else "blue"
                    marks = " · ".join(
                        f"{short[x]} {format_prob(r[f'prob:{x}'], thresholds[x], 2)}"
                        + (" :green[✓]" if r[f"right:{x}"] else " :red[✗]") for x in members_now)
                    st.markdown(f"true :{colour}[**{r['true']}**]  \n"
                                f":small[{r['image_id']}]  \n:small[{marks}]")
        with st.expander("As a table"):
            table = rows[["image_id", "true", "n_wrong"]].copy()
            for x in members_now:
                table[f"P(ALL) {labels[x]}"] = rows[f"prob:{x}"]
            st.dataframe(table, hide_index=True)

    st.subheader("Pairwise diversity")
    d1, d2 = st.columns([1, 3])
    metric = d1.selectbox("Measure", list(DIVERSITY_METRICS), key="errors_diversity",
                          format_func=lambda k: DIVERSITY_METRICS[k][0])
    d1.caption("Computed from which images each model gets right (Kuncheva & Whitaker 2003). "
               "Diverse models make different mistakes, which an ensemble can fix.")
    with d2:
        st.plotly_chart(diversity_figure(report["diversity"], members_now, metric, labels),
                        key="errors_diversity_chart", config={"displayModeBar": False})


main()
