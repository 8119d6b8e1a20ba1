"""Compare: runs and ensembles side by side.

A runs table with row selection; for the selected ones: learning curves overlaid (metric, x axis
epoch or time, debiased-EMA smoothing with the raw line kept faint, stage boundaries), confusion
matrices (counts and row percentages) and the difference of two, ROC and precision-recall curves
with AUC in the legend, a config diff without the identical fields, a metrics table to
download, and the selection shared: a report (one HTML file) to download, or an export to MLflow.
Studies come first, each with its presets' pooled out-of-fold scores, the per-fold dots and the
paired matrix. The page polls the workspace every 2 seconds, as Train does: running runs show with
live curves, and the page is drawn again when a run is queued, starts or ends.
The computations are in ``cnmc_core.analysis`` (``experiments``, ``study_views``) and
``cnmc_core.interop``; loaders are cached on file mtimes.
"""

from __future__ import annotations

import os

import streamlit as st

from cnmc_core.analysis.curves import (
    history_frame,
    history_metrics,
)
from cnmc_core.analysis.experiments import (
    config_diff,
    confusion_difference,
    confusion_frame,
    default_selection,
    load_curve_points,
    metrics_table,
    read_configs,
    runs_table,
)
from cnmc_core.analysis.run_charts import (
    learning_curve_figure,
    roc_pr_figures,
    run_color,
    run_confusion_figure,
)
from cnmc_core.contracts import ACTIVE_STATES
from cnmc_core.exceptions import CnmcError
from cnmc_core.interop.mlflow_export import export_table, export_to_mlflow
from cnmc_core.interop.report import build_report
from cnmc_core.study.listing import study_of_runs
from page_common import (
    active_run_card,
    file_mtime,
    load_studies,
    rerun_app_on_change,
    workspace_experiments,
)
from page_gate import can, page_start, workspace_root
from page_studies import studies_section

ROOT = workspace_root()


@st.cache_data(show_spinner=False, max_entries=64)
def load_history(path: str, mtime: float):
    return history_frame(path)


@st.cache_data(show_spinner=False, max_entries=64)
def load_curves(path: str, split: str, mtime: float):
    return load_curve_points(path, split)


@st.cache_data(show_spinner=False, max_entries=16)
def load_configs(paths: tuple, names: tuple, mtimes: tuple):
    return read_configs(dict(zip(names, paths)))


@st.cache_data(show_spinner=False, max_entries=16)
def load_metrics_table(paths: tuple, names: tuple, split: str, mtimes: tuple):
    return metrics_table(list(paths), split, list(names))


@st.fragment(run_every=2)
def live_section() -> None:
    """Polls the workspace every 2 s (as Train does): the running runs with live curves, and the
    whole page again when a job is queued, starts or ends (the tables follow)."""
    signature, experiments = workspace_experiments(ROOT)
    studies = load_studies(str(ROOT))
    rerun_app_on_change("compare_signature", (signature, tuple(zip(studies["study_id"],
                                                                     studies["state"]))))
    active = experiments[(experiments["kind"] == "run") & experiments["state"].isin(ACTIVE_STATES)]
    running = active[active["state"] != "queued"]  # training, or unresponsive
    if active.empty:
        return
    st.subheader(f"Training now ({len(running)} running, {len(active) - len(running)} queued)")
    for row in running.iloc[::-1].itertuples():
        active_run_card(row, key="compare", cancel=False)
    if len(active) > len(running):
        st.caption("Queued: " + ", ".join(f"`{r}`" for r in active[active["state"] == "queued"]
                                          ["run_id"].iloc[::-1]) + ". The Train page can cancel them.")


def runs_selection(table, key: str = "runs_table"):
    st.subheader("Runs")
    visible = table.drop(columns=["run_id", "path", "created_ts"], errors="ignore")
    # "created" right after the name: at 1,400 px with the sidebar open the table is wider than
    # the page, and the columns at its right end scroll; the creation time must not be one of them
    order = ["name", "created", *[c for c in visible.columns if c not in ("name", "created")]]
    event = st.dataframe(
        visible, key=key, on_select="rerun", selection_mode="multi-row",
        hide_index=True, width="stretch", placeholder="-", column_order=order,
        selection_default={"selection": {"rows": default_selection(table)}},
        column_config={
            "name": st.column_config.TextColumn(width=190),
            "created": st.column_config.TextColumn(width=150, help="when the run was created (local time)"),
            "study": st.column_config.TextColumn(help="the study the run belongs to"),
            "test AUC": st.column_config.NumberColumn(format="%.4f"),
            "val F1 [95% CI]": st.column_config.TextColumn(
                width=160, help="weighted F1 on val, 95% subject-bootstrap CI"),
            "test F1 [95% CI]": st.column_config.TextColumn(
                width=160, help="weighted F1 on test, 95% subject-bootstrap CI")})
    rows = [r for r in event.selection.rows if r < len(table)]
    if not rows:
        st.info("Tick rows in the table (the box at the left of each row) to compare runs.")
    return table.iloc[sorted(rows)]


def protocol_warnings(selected) -> None:
    protocols = sorted({p for p in selected["protocol"] if p})
    if len(protocols) > 1:
        st.warning(f"The selected runs use different split protocols ({', '.join(protocols)}): their scores "
                   "are measured on different test images and are not directly comparable.",
                   icon=":material/rule:")
    if any("leaky" in p for p in protocols):
        st.warning("Scores of runs with the `paper` protocol are inflated: cells of one person are in both "
                   "train and test.", icon=":material/warning:")


def colors_of(selected) -> dict[str, str]:
    """Each selected run's colour, from its id: the same on every page and in every selection."""
    return {row.name: run_color(row.run_id) for row in selected.itertuples()}


def learning_curves(selected) -> None:
    st.subheader("Learning curves")
    histories = {}
    for row in selected.itertuples():
        if row.kind == "run":
            h = load_history(row.path, file_mtime(row.path, "history.jsonl"))
            if not h.empty:
                histories[row.name] = h
    if not histories:
        st.info("None of the selected runs has finished an epoch yet (ensembles have no learning curves).")
        return
    metrics = history_metrics(histories.values())
    c = st.columns([1.8, 2, 2.4, 2.4, 1], vertical_alignment="bottom")
    default = metrics.index("val_loss") if "val_loss" in metrics else 0
    metric = c[0].selectbox("Metric", metrics, index=default, key="curve_metric")
    log_y = c[4].toggle("log y", key="curve_log_y")
    x_axis = c[1].radio("x axis", ["epoch", "time"], horizontal=True, key="curve_x",
                        format_func=lambda v: "epoch" if v == "epoch" else "time (s)")
    smoothing = c[2].radio("Smoothing", ["none", "debiased EMA"], horizontal=True, key="curve_smoothing",
                           index=1)
    weight = c[3].slider("EMA weight", 0.0, 0.95, 0.6, 0.05, key="curve_weight", disabled=smoothing == "none",
                         help="Exponential moving average with the start-up bias removed (TensorBoard's "
                              "smoothing); restarted at each stage. The raw values stay as a faint line.")
    w = weight if smoothing != "none" else 0.0
    fig, boundaries = learning_curve_figure(histories, metric, colors=colors_of(selected),
                                            weight=w, x=x_axis, log_y=log_y)
    st.plotly_chart(fig, width="stretch", key="curves_chart")
    skipped = [r.name for r in selected.itertuples() if r.kind == "run" and r.name not in histories]
    if skipped:
        st.caption(f"No epoch recorded yet for: {', '.join(skipped)}.")
    if boundaries:
        st.caption("Dashed vertical lines mark where a training stage begins (feature extraction, then "
                   "fine-tuning); smoothing restarts there.")


def confusion_section(selected, split: str) -> None:
    st.subheader("Confusion matrices")
    st.caption(f"{split} split, threshold of each run (0.5 for runs). Cells: count and share of the true class (row).")
    matrices = {}
    for row in selected.itertuples():
        m = confusion_frame(row.path, split)
        if m is not None:
            matrices[row.name] = m
    if not matrices:
        st.info("None of the selected runs has finished (no metrics yet).")
        return
    names = list(matrices)
    per_row = 4
    for start in range(0, len(names), per_row):
        cols = st.columns(per_row)
        for col, name in zip(cols, names[start:start + per_row]):
            col.plotly_chart(run_confusion_figure(matrices[name], name), width="stretch", key=f"cm-{name}")
    if len(names) < 2:
        st.caption("Select two finished runs to see the difference of their confusion matrices.")
        return
    st.markdown("**Difference of two runs** (row percentages of A minus B, in percentage points)")
    c = st.columns([1, 1, 2])
    a = c[0].selectbox("A", names, index=0, key="diff_a")
    b = c[1].selectbox("B", names, index=1, key="diff_b")
    if a == b:
        c[2].info("Choose two different runs.")
        return
    try:
        diff = confusion_difference(matrices[a], matrices[b])
    except CnmcError as exc:
        st.error(f"{exc}")
        return
    c[2].plotly_chart(run_confusion_figure(diff, f"{a} minus {b}", diff=True), width="stretch", key="cm-diff")
    c[2].caption("Blue: A does better than B in that cell (more images right on the diagonal, fewer "
                 "errors off it); red: worse.")


def roc_pr_section(selected, split: str) -> None:
    st.subheader("ROC and precision-recall curves")
    curves = {}
    for row in selected.itertuples():
        points = load_curves(row.path, split, file_mtime(row.path, "predictions.csv"))
        if points is not None:
            curves[row.name] = points
    if not curves:
        st.info(f"None of the selected runs has {split} predictions with both classes yet.")
        return
    roc, pr = roc_pr_figures(curves, colors_of(selected))
    left, right = st.columns(2)
    left.plotly_chart(roc, width="stretch", key="roc_chart")
    right.plotly_chart(pr, width="stretch", key="pr_chart")


def config_section(selected) -> None:
    st.subheader("Config diff")
    if len(selected) < 2:
        st.caption("Select two or more runs to see how their configs differ.")
        return
    hide = st.toggle("Hide fields that are identical in every selected run", value=True, key="hide_identical")
    configs, problems = load_configs(tuple(selected["path"]), tuple(selected["name"]),
                                     tuple(file_mtime(p, "config.json") for p in selected["path"]))
    for name, why in problems.items():
        st.error(f"{name}: its config cannot be read ({why}).")
    diff = config_diff(configs, hide_identical=hide)
    if diff.empty:
        st.info("The selected configs are identical (apart from ids and creation times).")
        return
    st.dataframe(diff, width="stretch", height=min(36 * (len(diff) + 1) + 4, 520))


def metrics_section(selected, split: str) -> None:
    st.subheader("Metrics table")
    paths = tuple(selected["path"])
    names = tuple(selected["name"])
    mtimes = tuple(file_mtime(p, "metrics.json") for p in paths)
    table = load_metrics_table(paths, names, split, mtimes)
    if table.empty:
        st.info("None of the selected runs has metrics yet.")
        return
    number = st.column_config.NumberColumn(format="%.4f")
    text_columns = ("run", "kind", "model", "backend", "protocol", "split", "n", "n_all", "n_hem")
    st.dataframe(table, hide_index=True, width="stretch",
                 column_config={c: number for c in table.columns if c not in text_columns})
    st.download_button(f"Download the metrics of the {split} split (CSV)", table.to_csv(index=False).encode(),
                       file_name=f"cnmc-metrics-{split}.csv", mime="text/csv", icon=":material/download:",
                       key="download_metrics")
    st.caption("CIs: 95% bootstrap over subjects. sensitivity_all: recall of ALL (cancer); specificity_hem: "
               "recall of HEM (normal).")


def share_section(selected, actor) -> None:
    st.subheader("Share")
    done = selected[selected["state"] == "completed"]
    if done.empty:
        st.info("Select completed runs or ensembles to share them as a report or in MLflow.")
        return
    left = [n for n, state in zip(selected["name"], selected["state"]) if state != "completed"]
    if left:
        st.caption(f"Not completed, left out: {', '.join(left)}.")
    paths = tuple(done["path"])
    c = st.columns([1.2, 2.6, 1.2], vertical_alignment="bottom")
    c[0].download_button(
        "Download report", data=lambda: build_report(list(paths), ROOT).encode(),
        file_name="cnmc-report.html", mime="text/html", on_click="ignore", key="download_report",
        icon=":material/description:",
        help="One HTML file that works offline: the comparison with CIs and protocols, curves, "
             "confusion matrices, ROC/PR, ensemble weights, images every model misses, configs.")
    if not can(actor, "configure"):
        c[1].caption("Exporting to MLflow needs the trainer role.")
        return
    uri = c[1].text_input("MLflow tracking URI", value=os.environ.get("MLFLOW_TRACKING_URI", ""),
                          placeholder="http://127.0.0.1:5000", key="mlflow_uri")
    clicked = c[2].button("Export to MLflow", key="mlflow_export", disabled=not uri.strip(),
                          icon=":material/upload:",
                          help="One MLflow run per selected run or ensemble; exporting again "
                               "updates the same MLflow runs.")
    if clicked:
        try:
            with st.spinner(f"Exporting {len(paths)} to {uri.strip()} ..."):
                results = export_to_mlflow(list(paths), uri, artifacts=ROOT, actor=actor)
        except CnmcError as exc:
            st.error(f"{exc}", icon=":material/error:")
            return
        created = sum(r.action == "created" for r in results)
        st.success(f"Exported to {uri.strip()}: {created} MLflow run(s) created, "
                   f"{len(results) - created} updated.", icon=":material/check_circle:")
        st.dataframe(export_table(results), hide_index=True, width="stretch",
                     column_config={"url": st.column_config.LinkColumn()})


def main() -> None:
    actor = page_start()
    st.title("Compare")
    _, experiments = workspace_experiments(ROOT)
    studies = load_studies(str(ROOT))
    live_section()
    if experiments.empty and studies.empty:
        st.info("No run or ensemble yet. Start the four demo runs on the Home page, or launch a run on the "
                "Train page; they show here as soon as they exist.", icon=":material/hourglass_empty:")
        st.page_link("pages/2_Train.py", label="Go to Train", icon=":material/model_training:")
        return
    if len(studies):
        studies_section(studies)
    table = runs_table(experiments)
    in_study = study_of_runs(studies)
    table.insert(1, "study", table["run_id"].map(lambda r: in_study.get(r, "")))
    key = "runs_table"
    if in_study and table["study"].astype(bool).any():
        if not st.toggle("Show the runs of studies in the table", value=False, key="show_study_runs",
                         help="Each study's runs are ordinary runs: show them to compare their curves "
                              "and confusion matrices."):
            table = table[~table["study"].astype(bool)].drop(columns="study").reset_index(drop=True)
        else:
            key = "runs_table_with_studies"  # other rows: a selection of its own
    else:
        table = table.drop(columns="study")
    if table.empty:
        st.caption("Every run belongs to a study; show them with the toggle above.")
        return
    selected = runs_selection(table, key)
    if selected.empty:
        return
    protocol_warnings(selected)
    split = st.radio("Scores on", ["test", "val"], horizontal=True, key="compare_split",
                     help="Confusion matrices, ROC/PR curves and the metrics table use this split.")
    learning_curves(selected)
    confusion_section(selected, split)
    roc_pr_section(selected, split)
    config_section(selected)
    metrics_section(selected, split)
    share_section(selected, actor)


main()
