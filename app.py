"""cnmc dashboard: the entry page (workspace status, quick start) and the navigation.

Run with ``streamlit run app.py``. The workspace is ``$CNMC_ARTIFACTS`` (default ``artifacts/``).
Training never runs here: runs are launched as detached processes and their folders are polled.
"""

from __future__ import annotations

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import streamlit as st

from cnmc_core.contracts import ACTIVE_STATES
from cnmc_core.demo import (
    DEMO_PRESETS,
    create_demo_dataset,
    demo_dataset_exists,
    demo_runs_done,
    demo_studies,
    demo_study_plan,
    queue_demo_runs,
    start_demo_study,
)
from cnmc_core.exceptions import CnmcError
from cnmc_core.study.listing import study_progress
from cnmc_core.training.timing import format_duration, queued_expectations, sources_text
from cnmc_core.workspace.listing import display_name
from cnmc_core.workspace.progress import STATE_ICONS, experiment_status, run_progress
from cnmc_core.workspace.settings import chosen_dataset, set_chosen_dataset
from cnmc_core.workspace.views import workspace_counts
from page_common import load_experiments, load_studies, workspace_experiments
from page_gate import can, sign_in_gate, signed_in, workspace_root

PAGES = [
    ("pages/1_Data.py", "Data", ":material/database:", "Data",
     "choose the dataset, counts by source, class and subject, split protocol, preprocessing preview"),
    ("pages/2_Train.py", "Train", ":material/model_training:", "Train",
     "launch runs from the presets, watch the queue, live learning curves, cancel, failed-run logs"),
    ("pages/3_Compare.py", "Compare", ":material/compare_arrows:", "Compare",
     "runs table, learning curves, confusion matrices, ROC/PR, config diff, metrics CSV"),
    ("pages/4_Errors.py", "Errors", ":material/error_outline:", "Errors",
     "which images the models miss and how their errors overlap"),
    ("pages/5_Ensemble.py", "Ensemble", ":material/join_inner:", "Ensemble",
     "combine finished runs with live weights"),
    ("pages/6_Explain.py", "Explain", ":material/visibility:", "Explain",
     "activations and Grad-CAM heatmaps per model"),
    ("pages/7_Predict.py", "Predict", ":material/online_prediction:", "Predict",
     "score new images with a trained run or ensemble"),
]


def _demo_progress(bar, text):
    def report(done: int, total: int) -> None:
        bar.progress(done / total if total else 0.0, text=f"{text}: {done} of {total} images")
    return report


def _progress_bar(path: str, label: str, expected: dict | None = None) -> None:
    try:
        status = experiment_status(path)
        fraction, text = run_progress(status)
    except CnmcError as exc:
        status, fraction, text = {}, 0.0, f"unreadable - {exc}"
    if expected and status.get("state") in ACTIVE_STATES:
        text += f" · expected {format_duration(expected['seconds'])}"
    icon = STATE_ICONS.get(status.get("state"), "")
    st.progress(fraction, text=f"{icon} {label}: {text}")


@st.cache_data(show_spinner=False, max_entries=4)
def _expected_times(root: str, signature: str) -> dict:
    """Each active run's expected time (:func:`cnmc_core.training.timing.queued_expectations`),
    computed again only when the workspace signature changes (a run queued, started, ended)."""
    experiments = load_experiments(root, signature)
    active = experiments[(experiments["kind"] == "run") & experiments["state"].isin(ACTIVE_STATES)]
    return queued_expectations(active, experiments)


@st.cache_data(show_spinner=False, max_entries=4)
def _demo_plan(root: str, signature: str, dataset: str | None) -> dict:
    """The demo study's folds and expected time (:func:`cnmc_core.demo.demo_study_plan`), again
    only when the workspace (its measured runs) changes."""
    return demo_study_plan(load_experiments(root, signature), data=dataset)


@st.fragment(run_every=2)
def _workspace_metrics(root) -> None:
    """The workspace's counts; redrawn every 2 s, so "Training / queued" follows the queue (the
    listing is read again whenever a run is queued, starts or ends)."""
    _, experiments = workspace_experiments(root)
    counts = workspace_counts(experiments)
    c1, c2, c3, c4, c5 = st.columns(5)
    c1.metric("Completed runs", counts["completed"])
    c2.metric("Training / queued", f"{counts['running']} / {counts['queued']}")
    c3.metric("Failed runs", counts["failed"])
    c4.metric("Ensembles", counts["ensembles"])
    c5.metric("Dataset", "chosen" if chosen_dataset(root) else "none")


@st.fragment(run_every=2)
def _live_runs(root) -> None:
    """Progress of the active runs (or the latest finished ones) with each one's expected time,
    of the studies and of the ensemble searches running; reruns itself every 2 s. The listing is
    cached per workspace signature; only the bars shown read their status (never every run)."""
    signature, experiments = workspace_experiments(root)
    runs = experiments[experiments["kind"] == "run"]
    active = runs[runs["state"].isin(ACTIVE_STATES)]
    searches = experiments[(experiments["kind"] == "ensemble")
                           & experiments["state"].isin(ACTIVE_STATES)]
    studies = load_studies(str(root))
    running_studies = studies[studies["state"].isin(ACTIVE_STATES)]
    ids = set(active["run_id"]) | set(searches["run_id"]) | set(running_studies["study_id"])
    previous = st.session_state.get("home_active_runs")
    st.session_state["home_active_runs"] = ids
    if previous and previous - ids:
        st.rerun(scope="app")  # a job finished: refresh the counts, the next step, the links
    if len(running_studies):
        st.markdown("**Studies running**")
        for row in running_studies.iloc[::-1].itertuples():
            fraction, text = study_progress(row)
            st.progress(fraction, text=f"{STATE_ICONS.get(row.state, '')} `{row.study_id}` "
                        f"({', '.join(row.presets)} x {row.folds} folds x {row.seeds} seed(s)): "
                        f"{text}")
    if len(runs):
        # the queue's order (oldest first) while runs are active, else the latest finished ones
        shown = active.iloc[::-1] if len(active) else runs.head(len(DEMO_PRESETS)).iloc[::-1]
        expected = _expected_times(str(root), signature) if len(active) else {}
        st.markdown("**Active runs** (trained one at a time, in this order)" if len(active)
                    else "**Latest runs**")
        for row in shown.head(12).itertuples():
            _progress_bar(row.path, f"`{row.preset}` ({row.model})", expected.get(row.run_id))
        if len(shown) > 12:
            st.caption(f"... and {len(shown) - 12} more (the Train page lists them all).")
        if expected:
            total = sum(e["seconds"] for e in expected.values())
            sources = {e["preset"]: e["source"] for e in expected.values()}
            st.caption(f"The queue should be done in about {format_duration(total)} (expected "
                       f"times from each preset's epoch time, {sources_text(sources)}).")
    if len(searches):
        st.markdown("**Ensemble searches running**")
        for row in searches.iloc[::-1].itertuples():
            _progress_bar(row.path, f"`{display_name(row.run_id)}` ({row.model})")


def _demo_study_step(root, dataset, signature, studies, actor) -> None:
    """Once the four demo runs exist: the demo study (folds chosen to fit the budget from the
    presets' measured epoch times) and Compare, instead of training the demo models again."""
    st.success("The four demo models are trained: compare them on Compare. Training them again "
               "would queue four more runs of the same presets.", icon=":material/check_circle:")
    demo = demo_studies(studies)
    active = demo[demo["state"].isin(ACTIVE_STATES)]
    try:
        plan = _demo_plan(str(root), signature, dataset)
    except CnmcError as exc:
        st.error(f"The demo study cannot be planned: {exc}")
        return
    st.markdown(f"**Next: the demo study.** One test split holds a few subjects, so a single run's "
                f"score is mostly noise. The study trains the four presets on {plan['folds']} "
                f"subject-grouped folds ({plan['runs']} runs), scores every subject out of fold and "
                f"says which preset is better than which, with a CI and a p-value. Expected "
                f"about **{format_duration(plan['seconds'])}** on this machine (budget "
                f"{format_duration(plan['budget'])}; epoch times "
                f"{sources_text(plan['sources'])}).")
    finished = demo[demo["state"] == "completed"]
    if len(finished):
        st.info(f"The demo study `{finished['study_id'].iloc[0]}` is done: its scores and which "
                "preset beats which are on Compare.", icon=":material/check_circle:")
    again = " again" if len(finished) else ""
    if st.button(f"Run the demo study{again} ({plan['folds']} folds)", type="primary",
                 icon=":material/science:", disabled=not dataset or bool(len(active)),
                 help="A demo study is running; Home shows its progress." if len(active) else None):
        try:
            with st.spinner("Checking the study and starting it"):
                folder = start_demo_study(root, data=dataset, folds=plan["folds"], actor=actor)
        except CnmcError as exc:
            st.error(f"The demo study was not started (nothing was created): {exc}")
        else:
            st.toast(f"Study {folder.name} started: {plan['runs']} runs queued.",
                     icon=":material/check:")
            time.sleep(0.5)
            st.rerun()


def home() -> None:
    actor = sign_in_gate()
    root = workspace_root()
    st.title("C-NMC 2019: ALL vs HEM cell classifier")
    st.caption("Classify malignant B-lymphoblasts (ALL, cancer, y = 1) against normal B cells "
               "(HEM, y = 0) in C-NMC 2019 images, train the paper's models, and compare experiments "
               "with leakage-aware scores.")

    signature, experiments = workspace_experiments(root)
    counts = workspace_counts(experiments)
    studies = load_studies(str(root))
    dataset = chosen_dataset(root)

    st.subheader("Workspace")
    _workspace_metrics(root)
    st.caption(f"Artifacts folder: `{root.resolve()}`  \nDataset: `{dataset or 'none chosen yet'}`")
    if dataset and not os.path.exists(dataset):
        st.error(f"The chosen dataset `{dataset}` no longer exists. Choose another one on the Data page "
                 "or create the demo dataset below.")

    st.subheader("Quick start")
    st.markdown("**1. A dataset.** The synthetic demo dataset (about 2,000 C-NMC-like cells) needs no "
                "download; or point the Data page at your C-NMC folder.")
    left, right = st.columns([1, 1])
    trainer = can(actor, "launch")
    if not trainer:
        left.info(f"{actor.name} is a {actor.role}: you can read every page and score images on "
                  "Predict; creating data and training need the trainer role.",
                  icon=":material/visibility:")
    elif demo_dataset_exists(root):
        left.success("The demo dataset is ready.", icon=":material/check_circle:")
        if dataset != str((root / "demo-data").resolve()) and left.button("Use the demo dataset"):
            set_chosen_dataset(root / "demo-data", root, actor=actor)
            st.rerun()
    elif left.button("Create the demo dataset", type="primary", icon=":material/add_photo_alternate:"):
        bar = left.progress(0.0, text="Creating the demo dataset")
        try:
            path = create_demo_dataset(root, progress=_demo_progress(bar, "Creating the demo dataset"))
        except (CnmcError, OSError) as exc:
            left.error(f"Could not create the demo dataset: {exc}. Check that the artifacts folder "
                       f"{root} is writable and has free space, then try again.")
        else:
            set_chosen_dataset(path, root, actor=actor)
            st.rerun()
    right.page_link("pages/1_Data.py", label="Use a C-NMC folder instead (Data page)", icon=":material/folder_open:")

    st.markdown(f"**2. Train the paper's four ensemble members** ({', '.join(DEMO_PRESETS)}): small "
                "CPU-sized versions, queued and trained one at a time in the background.")
    busy = counts["active"] > 0
    if not trainer:
        pass  # a viewer: no launch control (said above)
    elif demo_runs_done(experiments):
        _demo_study_step(root, dataset, signature, studies, actor)
    elif st.button("Train the four demo models", type="primary", disabled=not dataset or busy,
                   icon=":material/play_arrow:",
                   help="Needs a dataset (step 1)." if not dataset else
                   ("Runs are already training; wait for them or cancel them on the Train page." if busy else None)):
        if not os.path.exists(dataset):
            st.error(f"The dataset `{dataset}` does not exist; choose one on the Data page first.")
        else:
            try:
                with st.spinner("Queueing the demo runs"):
                    queue_demo_runs(root, data=dataset, actor=actor)
            except CnmcError as exc:
                st.error(f"Could not queue the demo runs: {exc}")
            else:
                st.toast("Four runs queued; they train one after the other.", icon=":material/check:")
                time.sleep(0.5)
                st.rerun()
    _live_runs(root)

    st.markdown("**3. Compare them** as soon as one finishes: learning curves, confusion matrices, "
                "ROC and precision-recall curves, config differences; a study's pooled scores "
                "on every subject and which preset beats which.")
    st.page_link("pages/3_Compare.py", label="Open Compare", icon=":material/compare_arrows:",
                 disabled=counts["runs"] + counts["ensembles"] + len(studies) == 0)

    st.subheader("Pages")
    for path, title, icon, _, description in PAGES:
        st.page_link(path, label=f"{title}: {description}", icon=icon)


def main() -> None:
    st.set_page_config(page_title="cnmc: ALL vs HEM", page_icon=":material/biotech:", layout="wide")
    # url paths are the ones Streamlit infers from the file names (``1_Data.py`` -> ``/Data``):
    # on a fresh server the first request is resolved against the pages/ folder before
    # st.navigation has run, and any other path shows a "Page not found" dialog
    pages = [st.Page(home, title="Home", icon=":material/home:", default=True)]
    pages += [st.Page(path, title=title, icon=icon, url_path=url) for path, title, icon, url, _ in PAGES]
    # with $CNMC_AUTH set, a signed-out session gets the sign-in form and stops before its page
    # runs, the page list hidden (each page checks again, for a page run alone on a fresh server)
    page = st.navigation(pages, position="sidebar" if signed_in() else "hidden")
    sign_in_gate(sidebar=False)
    page.run()


main()
