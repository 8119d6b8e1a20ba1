"""Train: launch runs from the presets, watch the queue and the running runs (progress, live
learning curves), cancel, and read the log of a run that failed.

Training never runs in this script: a launched run is a detached worker process
(``cnmc_core.training.launch.start_run``); a fragment polls the run folders every 2 seconds.
"""

from __future__ import annotations

import os

import pandas as pd
import streamlit as st

from cnmc_core.analysis.experiments import read_log_tail
from cnmc_core.contracts import ACTIVE_STATES, KFOLD_PROTOCOLS, PROTOCOLS, SPLIT_PROTOCOLS
from cnmc_core.demo import DEMO_PRESETS
from cnmc_core.exceptions import CnmcError
from cnmc_core.training.config import list_presets
from cnmc_core.training.launch import (
    build_run_config,
    form_defaults,
    preset_models,
    start_run,
)
from cnmc_core.workspace.progress import STATE_ICONS, run_progress
from cnmc_core.workspace.settings import chosen_dataset, chosen_protocol
from page_common import active_run_card, workspace_experiments
from page_gate import can, page_start, workspace_root

ROOT = workspace_root()
SIZES = [32, 48, 64, 96, 128, 160, 192, 224, 256, 300]


@st.cache_data(show_spinner=False)
def presets() -> list[str]:
    return list_presets()


@st.cache_data(show_spinner=False)
def models() -> list[str]:
    return preset_models()


@st.cache_data(show_spinner=False)
def defaults(preset: str) -> dict:
    return form_defaults(preset)


def launch_form(actor) -> None:
    st.subheader("New run")
    if not can(actor, "launch"):
        st.info(f"{actor.name} is a {actor.role}: you can watch the runs here; launching and "
                "cancelling need the trainer role (an admin gives it with `python -m cnmc_core "
                f"users set-role {actor.name} trainer`).", icon=":material/visibility:")
        return
    names = presets()
    default = "demo_scratch" if "demo_scratch" in names else names[0]
    preset = st.selectbox("Preset", names, index=names.index(default), key="preset",
                          help="The paper's experiments (paper_*) and small CPU-sized demos (demo_*).")
    d = defaults(preset)
    st.caption(d["description"] or "")
    reported = d.get("paper_reported") or {}
    if reported.get("test_weighted_f1"):
        st.caption(f"The paper reports test weighted F1 {reported['test_weighted_f1']:.4f} "
                   f"(section {reported.get('section', '?')}, {reported.get('protocol', 'paper protocol')}).")
    dataset = chosen_dataset(ROOT)
    k = f"{preset}:"  # widget keys per preset: choosing another preset resets the form to its values
    with st.form("launch_form"):
        data = st.text_input("Dataset (folder or manifest CSV)", value=dataset or "", key=k + "data",
                             help="The dataset chosen on the Data page; type another path to use it for this run.")
        c = st.columns(4)
        model_names = models()
        model = c[0].selectbox("Model", model_names, index=model_names.index(d["model"]), key=k + "model")
        sizes = sorted(set(SIZES) | {d["image_size"]})
        image_size = c[1].selectbox("Input size (px)", sizes, index=sizes.index(d["image_size"]), key=k + "size")
        weight_options = ["none", "imagenet", "a .h5 file"]
        preset_weights = d["weights"] if d["weights"] in weight_options else "a .h5 file"
        weights_choice = c[2].selectbox(
            "Weights", weight_options, index=weight_options.index(preset_weights), key=k + "weights",
            help="none: random init. imagenet: needs the Keras notop weights file offline.")
        weights_path = c[3].text_input(
            "Weights file (.h5)", value="" if d["weights"] in weight_options else d["weights"],
            key=k + "weights_path", help="Only used when Weights is 'a .h5 file'.")
        c = st.columns(4)
        protocols = list(SPLIT_PROTOCOLS)
        protocol = c[0].selectbox("Split protocol", protocols, index=protocols.index(chosen_protocol(ROOT)),
                                  format_func=lambda n: PROTOCOLS[n].label(), key=k + "protocol",
                                  help="Defaults to the protocol chosen on the Data page. `paper` is leaky.")
        batch_size = c[1].number_input("Batch size", 1, 1024, int(d["batch_size"]), key=k + "batch")
        seed = c[2].number_input("Seed", 0, 2**31 - 1, int(d["seed"]), key=k + "seed")
        cap = c[3].number_input("Max images per split (0 = all)", 0, 100_000, int(d["max_images_per_split"]),
                                key=k + "cap", help="A cap for quick trials; at least 6 when set.")
        c = st.columns(4)
        balance = c[0].checkbox("Balance classes (paper)", value=bool(d["balance"]), key=k + "balance",
                                help="Undersample ALL, augment HEM once each, as the paper did.")
        augment = c[1].checkbox("Augment (flips, 90° rotations)", value=bool(d["augment"]), key=k + "augment")
        epochs, rates = [], []
        for i, stage in enumerate(d["stages"]):
            c = st.columns([2, 1, 1])
            trainable = stage["trainable"] if isinstance(stage["trainable"], str) else str(stage["trainable"])
            c[0].markdown(f"Stage {i + 1} **{stage['name']}** ({stage['optimizer']}, trainable: `{trainable}`)")
            epochs.append(c[1].number_input("Epochs (max)", 1, 1000, int(stage["epochs"]), key=k + f"epochs{i}"))
            rates.append(c[2].number_input("Learning rate", min_value=1e-8, max_value=1.0,
                                           value=float(stage["learning_rate"]), format="%.6f",
                                           step=1e-5, key=k + f"lr{i}"))
        submitted = st.form_submit_button("Launch run", type="primary", icon=":material/rocket_launch:")
    if submitted:
        weights = weights_choice if weights_choice != "a .h5 file" else weights_path.strip()
        if weights_choice == "a .h5 file" and not weights:
            st.error("Weights is 'a .h5 file': type the path of the notop weights file, or choose none or imagenet.")
            return
        try:
            with st.spinner("Checking the configuration and starting the run"):
                config = build_run_config(
                    preset, data=data, model=model, image_size=int(image_size), weights=weights,
                    split_protocol=protocol, balance=balance, augment=augment, batch_size=int(batch_size),
                    seed=int(seed), max_images_per_split=int(cap), epochs=[int(e) for e in epochs],
                    learning_rates=[float(r) for r in rates])
                run_dir = start_run(config, ROOT, actor=actor)
        except CnmcError as exc:
            st.error(f"The run was not launched: {exc}")
        except OSError as exc:
            st.error(f"The run was not launched: {exc}. Check that {ROOT} is writable.")
        else:
            st.success(f"Run `{run_dir.name}` is queued; it appears below and on the Compare page when done.",
                       icon=":material/check_circle:")


def study_form(actor) -> None:
    """A study: presets x K subject-grouped folds x S seeds, checked in full by the library
    (``plan_study``) before anything is created; its coordinator starts as a detached process
    (``start_study``), never in this script."""
    if not can(actor, "launch_study"):
        return  # a viewer: the launch form above says why
    from cnmc_core.study.plan import BACKENDS, plan_study
    from cnmc_core.study.store import start_study

    st.subheader("New study")
    st.caption("Every preset trained on the same K subject-grouped folds (fold i test, fold i+1 "
               "val) under S seeds: every subject is scored out of fold, and every pair of "
               "presets is compared with a corrected resampled t-test over the folds and a "
               "paired subject bootstrap (Compare shows the results).")
    names = presets()
    with st.form("study_form"):
        chosen = st.multiselect("Presets", names, default=[p for p in DEMO_PRESETS if p in names],
                                key="study_presets", help="They must share one input size (or "
                                "give one below).")
        data = st.text_input("Dataset (folder or manifest CSV)", value=chosen_dataset(ROOT) or "",
                             key="study_data")
        c = st.columns(5)
        folds = c[0].number_input("Folds (K)", 1, 20, 5, key="study_folds",
                                  help="At least 3 (test, val and train), at most the subjects of "
                                       "the smaller class.")
        seeds = c[1].number_input("Seeds (S)", 1, 20, 1, key="study_seeds",
                                  help="Seeds 0 to S-1; each draws other folds.")
        protocols = list(KFOLD_PROTOCOLS)
        protocol = c[2].selectbox("Protocol", protocols, key="study_protocol",
                                  format_func=lambda n: PROTOCOLS[n].label() if n in PROTOCOLS else n,
                                  help="image-kfold is the paper's split by image as folds: leaky.")
        epochs = c[3].number_input("Epochs (0 = presets')", 0, 1000, 0, key="study_epochs")
        size = c[4].number_input("Input px (0 = presets')", 0, 600, 0, key="study_size")
        c = st.columns([1, 3])
        backend = c[0].radio("Backend", list(BACKENDS), horizontal=True, key="study_backend",
                             help="local: the queue of detached workers on this machine; ray: "
                                  "tasks on a Ray cluster whose nodes all see the artifacts folder.")
        address = c[1].text_input("Ray address (Ray only)", value="", key="study_address",
                                  placeholder="auto, host:port or ray://host:port")
        submitted = st.form_submit_button("Launch study", type="primary", icon=":material/science:")
    if not submitted:
        return
    try:
        with st.spinner("Checking every run of the study"):
            plan = plan_study(list(chosen), data=data, folds=int(folds), seeds=int(seeds),
                              protocol=protocol, backend=backend,
                              address=(address.strip() or None) if backend == "ray" else None,
                              epochs=int(epochs) or None, image_size=int(size) or None,
                              artifacts=ROOT)
            folder = start_study(plan, ROOT, actor=actor)
    except CnmcError as exc:
        st.error(f"The study was not launched (nothing was created): {exc}", icon=":material/error:")
    except OSError as exc:
        st.error(f"The study was not launched: {exc}. Check that {ROOT} is writable.")
    else:
        st.success(f"Study `{folder.name}` started: {len(plan.configs)} runs ({', '.join(plan.presets)} "
                   f"x {plan.folds} folds x {len(plan.seeds)} seed(s)) queued below; Home shows its "
                   "progress and Compare its results.", icon=":material/check_circle:")


def _runs():
    """The workspace's runs (cached per workspace signature), newest first."""
    _, experiments = workspace_experiments(ROOT)
    return experiments[experiments["kind"] == "run"]


@st.fragment(run_every=2)
def live_runs(actor) -> None:
    """The queue and the running runs; reruns every 2 s and the whole page when one finishes."""
    runs = _runs()
    active = runs[runs["state"].isin(ACTIVE_STATES)]
    ids = tuple(active["run_id"])
    previous = st.session_state.get("active_runs")
    st.session_state["active_runs"] = ids
    if previous is not None and set(previous) - set(ids):
        st.rerun(scope="app")  # a run finished: refresh the finished-runs section too
    st.subheader(f"Queue and running runs ({len(active)})")
    if active.empty:
        st.info("No run is queued or training. Launch one above, or the four demo runs from the Home page.")
    for row in active.iloc[::-1].itertuples():  # oldest first: the queue's order
        active_run_card(row, key="train", actor=actor)
    recent = runs[~runs["state"].isin(ACTIVE_STATES)].head(3)
    if len(recent):
        st.markdown("**Recently finished**")
        for row in recent.itertuples():
            fraction, text = run_progress({"state": row.state, "epoch": row.epoch, "epochs": row.epochs,
                                           "error": row.error})
            f1 = f", test weighted F1 {row.test_weighted_f1:.4f}" if pd.notna(row.test_weighted_f1) else ""
            st.progress(fraction, text=f"{STATE_ICONS.get(row.state, '')} `{row.run_id}` ({row.model}): {text}{f1}")


def finished_runs() -> None:
    runs = _runs()
    done = runs[~runs["state"].isin(ACTIVE_STATES)]
    st.subheader("Finished runs")
    if done.empty:
        st.caption("None yet.")
        return
    table = done[["run_id", "state", "model", "protocol", "epoch", "epochs", "val_weighted_f1",
                  "test_weighted_f1", "created"]]
    st.dataframe(table, hide_index=True, width="stretch", placeholder="-", column_config={
        "val_weighted_f1": st.column_config.NumberColumn("val weighted F1", format="%.4f"),
        "test_weighted_f1": st.column_config.NumberColumn("test weighted F1", format="%.4f"),
        "epoch": st.column_config.NumberColumn("epochs done"), "epochs": st.column_config.NumberColumn("of")})
    bad = done[done["state"].isin(["failed", "cancelled"])]
    if bad.empty:
        return
    st.markdown("**Failed or cancelled runs**")
    run_id = st.selectbox("Run", list(bad["run_id"]), key="failed_run",
                          format_func=lambda r: f"{r} ({bad.set_index('run_id').loc[r, 'state']})")
    row = bad.set_index("run_id").loc[run_id]
    if row["state"] == "failed":
        st.error(f"**Error:** {row['error'] or 'no error recorded'}", icon=":material/error:")
    else:
        st.warning(f"Cancelled. {row['error'] or ''}")
    log = read_log_tail(row["path"])
    st.caption(f"Last lines of `{os.path.join(row['path'], 'log.txt')}`")
    st.code(log or "(the log is empty)", language="text")


def main() -> None:
    actor = page_start()
    st.title("Train")
    st.caption(f"Runs train in background processes, one at a time; this page polls their folders in "
               f"`{ROOT.resolve()}`. Closing the browser does not stop them.")
    launch_form(actor)
    study_form(actor)
    live_runs(actor)
    finished_runs()


main()
