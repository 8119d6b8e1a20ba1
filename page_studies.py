"""The Compare page's study section (Streamlit code, shared so that the page stays short): per
study its state and progress, and once its results exist the presets' pooled out-of-fold scores
with CIs, the per-fold dots and the paired matrices. Everything shown is computed in
``cnmc_core.analysis.study_views`` and ``cnmc_core.study``."""

from __future__ import annotations

import streamlit as st

from cnmc_core.analysis.study_views import (
    STUDY_METRIC_NAMES,
    fold_dots_figure,
    paired_matrix_display,
    paired_pairs_display,
    study_preset_display,
)
from cnmc_core.contracts import ACTIVE_STATES
from cnmc_core.exceptions import CnmcError
from cnmc_core.study.listing import study_progress
from cnmc_core.study.results import read_results
from cnmc_core.workspace.progress import STATE_ICONS
from page_common import file_mtime

__all__ = ["studies_section"]


@st.cache_data(show_spinner=False, max_entries=32)
def load_results(path: str, mtime: float):
    return read_results(path)


def _study_results(row) -> None:
    """A study's results: the preset table, the per-fold dots, the paired matrices."""
    try:
        results = load_results(row.path, file_mtime(row.path, "metrics.json"))
    except CnmcError as exc:
        st.error(f"{exc}", icon=":material/error:")
        return
    if results is None:
        st.info(f"Its scores appear here when every run is done ({row.runs_done} of "
                f"{row.runs_total} so far); its runs are in the runs table below (turn on \"Show the runs of studies\").")
        return
    metric = st.radio("Metric", list(STUDY_METRIC_NAMES), horizontal=True,
                      format_func=STUDY_METRIC_NAMES.get, key=f"study-metric-{row.study_id}")
    st.markdown("**Scores on every subject** (pooled out of fold: each subject's images scored "
                "by the run that held it out; 95% CI from a class-stratified subject bootstrap; "
                "the fold mean and sd beside it)")
    st.dataframe(study_preset_display(results), hide_index=True, width="stretch",
                 key=f"study-table-{row.study_id}")
    st.plotly_chart(fold_dots_figure(results, metric), width="stretch",
                    key=f"study-dots-{row.study_id}-{metric}")
    for title, ensembles in (("presets", False), ("ensembles fitted per fold", True)):
        matrix = paired_matrix_display(results, metric, ensembles=ensembles)
        if matrix.empty:
            continue
        st.markdown(f"**Is the row better than the column?** ({title}, {STUDY_METRIC_NAMES[metric]}: "
                    "mean per-fold difference row - column, its 95% CI and p from the corrected "
                    "resampled t-test, which counts the overlap of the folds' training sets)")
        st.dataframe(matrix, width="stretch", key=f"study-matrix-{row.study_id}-{metric}-{ensembles}")
        pairs = paired_pairs_display(results, metric, ensembles=ensembles)
        st.dataframe(pairs, hide_index=True, width="stretch",
                     key=f"study-pairs-{row.study_id}-{metric}-{ensembles}",
                     column_config={"pooled A - B [95% CI]": st.column_config.TextColumn(
                         help="difference of the pooled out-of-fold scores, paired subject "
                              "bootstrap")})


def studies_section(studies) -> None:
    st.subheader(f"Studies ({len(studies)})")
    done = studies.loc[studies["state"] == "completed", "study_id"]
    open_ids = {studies["study_id"].iloc[0], *done.head(1)}  # the newest, and the newest finished
    for row in studies.itertuples():
        if row.state == "damaged":
            st.error(f"Study `{row.study_id}` cannot be read: {row.error}", icon=":material/error:")
            continue
        title = (f"{STATE_ICONS.get(row.state, '')} **{row.study_id}** · {', '.join(row.presets)} · "
                 f"{row.folds} folds x {row.seeds} seed(s) · {row.protocol_label} · "
                 f"runs {row.runs_done} of {row.runs_total}")
        with st.expander(title, expanded=row.study_id in open_ids):
            if "leaky" in (row.protocol_label or ""):
                st.warning("This study's folds split by image: cells of one person are in train "
                           "and test, so its scores are inflated.", icon=":material/warning:")
            if row.state in ACTIVE_STATES or row.state in ("failed", "cancelled"):
                fraction, text = study_progress(row)
                st.progress(fraction, text=f"{STATE_ICONS.get(row.state, '')} {text}")
            _study_results(row)
