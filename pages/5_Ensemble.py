"""Ensemble: combine finished runs with live weights, fit them like the paper, compare, save.

Weights and the threshold are sliders; every move re-scores the weighted soft vote on val and
test from the runs' predictions (no model runs), so the numbers update at once. The buttons fit a
method on val (the paper's genetic algorithm with a progress bar, greedy selection, random
search, log-loss) and set the sliders to its result. Val is where weights are fitted: the test
column is the honest number.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pandas as pd
import streamlit as st

from cnmc_core.analysis.charts import confusion_figure, roc_figure
from cnmc_core.ensemble.genetic import GA_METHODS
from cnmc_core.ensemble.live import (
    COLUMN_HELP,
    comparison_table,
    fit_method,
    live_reports,
    normalise_weights,
    paper_table,
    save_live_ensemble,
    saved_ensembles_of,
)
from cnmc_core.ensemble.report import score_methods
from cnmc_core.exceptions import CnmcError
from cnmc_core.metrics.curves import best_f1_threshold
from cnmc_core.study.ensembles import align_source
from cnmc_core.workspace.paths import ensembles_dir
from page_common import choose_group_members, choose_study, workspace_members
from page_gate import can, page_start

METHOD_BUTTONS = {
    "mean": "Equal weights",
    "ga": "Genetic algorithm",
    "ga_mean": "GA, mean crossover",
    "greedy": "Greedy selection",
    "dirichlet": "Random search",
    "slsqp": "Min. log-loss (SLSQP)",
}
METHOD_HELP = {
    "mean": "The paper's plain average: every member weighs the same.",
    "ga": "The paper's genetic algorithm (settings above): weights that maximise weighted F1 "
          "on val at 0.5.",
    "ga_mean": "This project's earlier GA variant (settings above): whole-vector average "
               "crossover, mutation of any child; not the paper's.",
    "greedy": "Ensemble selection with replacement (Caruana et al. 2004) on val.",
    "dirichlet": "The best of 10,000 random weight vectors on val.",
    "slsqp": "Weights that minimise the log-loss of the vote on val.",
}
PENDING = "ens_pending"      # a method's result, applied to the sliders before they are drawn
SOURCE = "ens_source"        # where the sliders' values came from (shown above the metrics)
THRESHOLD = "ens_threshold"


@st.cache_data(show_spinner="Aligning the runs' predictions...", max_entries=16)
def load_aligned(paths: tuple[str, ...], signature: tuple):
    """The members at ``paths`` aligned, or a study (one folder) pooled out of fold."""
    return align_source(paths)


@st.cache_data(show_spinner=False, max_entries=32)
def cached_fit(paths: tuple[str, ...], signature: tuple, method: str, seed: int,
               params: tuple) -> dict:
    return fit_method(load_aligned(paths, signature), method, seed=seed, params=dict(params))


@st.cache_data(show_spinner=False, max_entries=8)
def cached_comparison(paths: tuple[str, ...], signature: tuple, seed: int, n_boot: int,
                      ga_params: tuple) -> list[dict]:
    rows, _ = score_methods(load_aligned(paths, signature), threshold=0.5, seed=seed,
                            n_boot=n_boot, params={m: dict(ga_params) for m in GA_METHODS})
    return rows


def wkey(member: str) -> str:
    return f"ens_w::{member}"


def class_table(rep: dict) -> pd.DataFrame:
    return pd.DataFrame({
        "class": ["HEM (normal)", "ALL (cancer)"],
        "precision": [rep["hem"]["precision"], rep["all"]["precision"]],
        "recall": [rep["hem"]["recall"], rep["all"]["recall"]],
        "F1": [rep["hem"]["f1"], rep["all"]["f1"]],
        "images": [rep["hem"]["support"], rep["all"]["support"]],
    })


@st.fragment
def live_ensemble(aligned, chosen: list[str], labels: dict[str, str], paths: tuple[str, ...],
                  root, signature: tuple,
                  seed: int, ga_params: tuple, actor, pooled: bool = False) -> None:
    """Sliders, method buttons, live metrics and saving (not for a study, ``pooled``: its
    members are presets, not runs): reruns alone on every slider move."""
    def apply(result: dict) -> None:
        """Set the sliders (before they are drawn, so no rerun is needed)."""
        for member, w in (result.get("weights") or {}).items():
            if member in chosen:
                st.session_state[wkey(member)] = float(np.clip(round(float(w), 2), 0.0, 1.0))
        if result.get("threshold") is not None:
            st.session_state[THRESHOLD] = float(np.clip(round(float(result["threshold"]), 2),
                                                        0.0, 1.0))
        st.session_state[SOURCE] = result.get("source", "")

    pending = st.session_state.pop(PENDING, None)
    if pending is not None:
        apply(pending)
    for member in chosen:
        st.session_state.setdefault(wkey(member), 1.0)
    st.session_state.setdefault(THRESHOLD, 0.5)

    left, right = st.columns([3, 2], gap="large")
    # The buttons are handled first (in the right column) so that a result sets the sliders of
    # the left column in this same run.
    with right:
        st.subheader("Fit on val, set the sliders")
        bar = st.empty()
        cols = st.columns(2)
        clicked = None
        for k, (method, title) in enumerate(METHOD_BUTTONS.items()):
            if cols[k % 2].button(title, key=f"ens_fit_{method}", width="stretch",
                                  type="primary" if method == "ga" else "secondary",
                                  help=METHOD_HELP[method]):
                clicked = method
        if cols[1].button("Best threshold on val", key="ens_best_threshold", width="stretch",
                          help="The threshold with the best weighted F1 on val for these "
                               "weights."):
            clicked = "threshold"
        if clicked == "threshold":
            try:
                w = normalise_weights([st.session_state[wkey(x)] for x in chosen], chosen)
            except CnmcError as exc:
                bar.error(str(exc))
            else:
                val = aligned.splits["val"]
                t, f1 = best_f1_threshold(val.y, val.probs @ w)
                apply({"threshold": t, "source": f"the best threshold on val ({t:.3f}: "
                                                 f"weighted F1 {f1:.4f})"})
        elif clicked is not None:
            params = ga_params if clicked in GA_METHODS else ()
            progress = bar.progress(0.0, text=f"{METHOD_BUTTONS[clicked]}: starting")
            step = {"last": -1}

            def report(done: int, total: int) -> None:
                pct = int(100 * done / max(total, 1))
                if pct != step["last"]:
                    step["last"] = pct
                    progress.progress(pct / 100, text=f"{METHOD_BUTTONS[clicked]}: {pct}% "
                                      f"({done:,} of {total:,} generations)"
                                      if clicked in GA_METHODS else f"{METHOD_BUTTONS[clicked]}")

            try:
                if clicked in GA_METHODS:  # not cached: the progress bar shows the search
                    result = fit_method(aligned, clicked, seed=seed, params=dict(params),
                                        progress=report)
                else:
                    result = cached_fit(paths, signature, clicked, seed, params)
            except CnmcError as exc:
                bar.error(f"{METHOD_BUTTONS[clicked]} failed: {exc}")
            else:
                bar.empty()
                apply({"weights": dict(zip(chosen, result["weights"])),
                       "threshold": result["threshold"],
                       "source": f"{METHOD_BUTTONS[clicked]} (val weighted F1 "
                                 f"{result['val_weighted_f1']:.4f} at its exact weights "
                                 + ", ".join(f"{labels[x]} {w:.3f}"
                                             for x, w in zip(chosen, result["weights"])) + ")"})
        source = st.session_state.get(SOURCE)
        if source:
            st.caption(f"Sliders set by {source}; sliders are rounded to 0.01.")
    with left:
        st.subheader("Weights")
        raw = [st.slider(labels[x], 0.0, 1.0, step=0.01, key=wkey(x),
                         help="Relative weight; the weights are normalised to sum to 1.")
               for x in chosen]
        threshold = st.slider("Threshold: P(ALL) at or above it is called ALL", 0.0, 1.0,
                              step=0.01, key=THRESHOLD)

    try:
        reports = live_reports(aligned, raw, threshold)
        equal = live_reports(aligned, [1.0] * len(chosen), threshold)
    except CnmcError as exc:
        st.error(str(exc))
        return
    st.caption("Normalised weights: " + ", ".join(
        f"**{labels[x]}** {w:.2f}" for x, w in reports["weights"].items())
        + f" · protocol **{aligned.split_protocol}**")

    cval, ctest = st.columns(2, gap="large")
    for col, split, title, note in (
            (cval, "val", "Validation", "weights and threshold are fitted here: optimistic"),
            (ctest, "test", "Test", "untouched: the honest number")):
        rep = reports[split]
        with col:
            st.subheader(title)
            st.caption(f"{rep['n']:,} images ({rep['n_hem']:,} HEM, {rep['n_all']:,} ALL); "
                       f"{note}")
            m1, m2, m3 = st.columns(3)
            gain = rep["weighted_f1"] - equal[split]["weighted_f1"]
            m1.metric("Weighted F1", f"{rep['weighted_f1']:.4f}",
                      delta=f"{gain:+.4f}" if abs(gain) > 5e-5 else None,
                      help="Weighted F1 of the vote at the threshold; the change is against "
                           "equal weights at the same threshold.")
            auc = rep["roc_auc"]
            m2.metric("ROC AUC", "n/a" if not np.isfinite(auc) else f"{auc:.4f}")
            m3.metric("Accuracy", f"{rep['accuracy']:.4f}")
            st.dataframe(class_table(rep), hide_index=True, column_config={
                c: st.column_config.NumberColumn(format="%.3f")
                for c in ("precision", "recall", "F1")})
            st.plotly_chart(confusion_figure(rep["confusion"], title="Confusion matrix"),
                            key=f"ens_confusion_{split}", config={"displayModeBar": False})
    st.plotly_chart(roc_figure({"val": reports["val"], "test": reports["test"]},
                               title="ROC (dot: the current threshold)"), key="ens_roc",
                    config={"displayModeBar": False})

    if pooled:
        st.caption("A study's pooled weights are not saved as an ensemble (its members are presets "
                   "over several runs); the study's own ensembles are fitted fold by fold.")
        return
    st.subheader("Save this ensemble")
    if not can(actor, "save_ensemble"):
        st.caption(f"{actor.name} is a {actor.role}: saving ensembles needs the trainer role.")
        return
    s1, s2 = st.columns([3, 1], vertical_alignment="bottom")
    name = s1.text_input("Name (optional)", key="ens_name",
                         placeholder="ens-weighted-<time>-<hash>",
                         help="Letters, digits, '.', '_' and '-'. Saved under "
                              f"{ensembles_dir(root)}; it then shows wherever runs show.")
    if s2.button("Save ensemble", type="primary", icon=":material/save:", key="ens_save"):
        try:
            with st.spinner("Saving (with bootstrap CIs)..."):
                path = save_live_ensemble(aligned, raw, threshold, name=name.strip() or None,
                                          seed=seed, actor=actor)
        except CnmcError as exc:
            st.error(f"Not saved: {exc}")
        else:
            st.success(f"Saved as **{path.name}** (weights "
                       + ", ".join(f"{labels[x]} {w:.3f}" for x, w in reports["weights"].items())
                       + f", threshold {threshold:.2f}). It is listed on Compare and can be a "
                         "member of another ensemble.")


# ------------------------------------------------------------------------------ the page
def main() -> None:
    actor = page_start()
    st.title("Ensemble")
    st.caption("Weighted soft vote of finished runs. The weights are fitted on the validation split, "
               "so its score is optimistic: **the test column is the honest number**.")

    root, signature, members = workspace_members(
        "combined", "No completed run yet. Train at least two runs on the same dataset and split "
        "protocol (Train page), then combine them here.")

    labels = dict(zip(members["member_id"], members["label"]))
    study = choose_study(root, "ens")
    if study is None:
        chosen, paths = choose_group_members(
            members, labels, key="ens", noun="member(s)", title="Members", default_n=4, max_n=16,
            help="An ensemble needs members scored on the same images, with the same split "
            "protocol and dataset.", too_few="Only one completed run was scored on these images. "
            "Train another model with the same dataset and split protocol (Train page) to build "
            "an ensemble.")
    else:
        paths = (study,)
    try:
        aligned = load_aligned(paths, signature)
    except CnmcError as exc:
        st.error(f"These members cannot be combined: {exc} Choose members from one group.")
        st.stop()
    if study is not None:
        chosen = list(aligned.members)
        labels = {m: m for m in chosen}
        if len(chosen) < 2:
            st.warning("This study has one preset: there is nothing to combine. Launch a study of "
                       "several presets (Train page).")
            st.stop()
        st.caption(f"Study **{os.path.basename(study)}**: one weight vector applies to every fold; "
                   "the validation column pools every fold's val predictions and the test column "
                   "every fold's test predictions, over every subject (averaged over the seeds). "
                   "The weights are chosen on val predictions of the same images (by other runs), "
                   "so the ensembles fitted fold by fold (the study's report on Compare) are the "
                   "honest comparison.")

    with st.expander("Genetic algorithm settings (the paper's by default)"):
        g1, g2, g3, g4 = st.columns(4)
        ga_pop = g1.number_input("Population", 2, 1000, 100, key="ens_ga_pop")
        ga_gen = g2.number_input("Generations", 1, 1000, 100, key="ens_ga_gen")
        ga_restarts = g3.number_input("Restarts", 1, 50, 10, key="ens_ga_restarts")
        seed = int(g4.number_input("Seed", 0, 2**31 - 1, 0, key="ens_seed"))
        st.caption("The paper's operators: tournament k=5, average crossover 0.4 of 2 genes, "
                   "mutation 0.005 of crossover children (renormalised: the one change), "
                   "fitness = weighted F1 on val, ALL above 0.5. Applies to both GAs; the seed "
                   "also seeds the random search and the bootstrap.")
    ga_params = (("population_size", int(ga_pop)), ("generations", int(ga_gen)),
                 ("restarts", int(ga_restarts)))


    live_ensemble(aligned, list(chosen), labels, paths, root, signature, seed, ga_params,
                  actor, study is not None)


    # ---------------------------------------------------------------------------- saved ensembles
    saved = members[members["kind"] == "ensemble"] if study is None else members.iloc[:0]
    matching = {e["id"]: e for e in saved_ensembles_of(dict(zip(saved["member_id"], saved["path"])),
                                                       chosen)}
    if matching:
        st.subheader("Saved ensembles of these members")
        pick = st.selectbox("Saved ensemble", list(matching), key="ens_saved",
                            format_func=lambda m: labels.get(m, m))
        config = matching[pick]
        st.caption(f"Method {config['method']}, threshold {config['threshold']}, weights "
                   + ", ".join(f"{labels.get(k, k)} {v:.3f}" for k, v in config["weights"].items()))
        if st.button("Load its weights into the sliders", key="ens_load_saved"):
            st.session_state[PENDING] = {"weights": config["weights"],
                                         "threshold": config["threshold"],
                                         "source": f"saved ensemble {pick}"}
            st.rerun()


    # ---------------------------------------------------------------------------- comparison
    st.subheader("Method comparison")
    st.caption("Each method is fitted on val and scored on the untouched test split, with a 95% "
               "bootstrap CI (by subject when subjects are known) and the paired difference with "
               "equal weights. The paper's figures come from its random split by image (leaky).")
    c1, c2 = st.columns([1, 3], vertical_alignment="bottom")
    n_boot = int(c1.number_input("Bootstrap resamples", 0, 5000, 1000, step=100, key="ens_n_boot"))
    shown_key = ("ens_compare_shown", paths, seed, n_boot, ga_params)
    if c2.button("Compare the methods", icon=":material/table_chart:", key="ens_compare"):
        st.session_state["ens_compare_shown"] = shown_key
    if st.session_state.get("ens_compare_shown") == shown_key:
        try:
            with st.spinner("Fitting every method on val and bootstrapping test..."):
                rows = cached_comparison(paths, signature, seed, n_boot, ga_params)
        except CnmcError as exc:
            st.error(f"The comparison failed: {exc}")
        else:
            table = comparison_table(rows, labels)
            columns = {c: st.column_config.NumberColumn(format="%.4f", help=COLUMN_HELP.get(c))
                       for c in ("threshold", "val wF1 (fitted)", "test wF1", "P hem", "P all",
                                 "R hem", "R all")}
            columns.update({c: st.column_config.TextColumn(help=COLUMN_HELP[c])
                            for c in ("test wF1 95% CI", "test AUC", "vs mean", "vs mean 95% CI")})
            st.dataframe(table, hide_index=True, column_config=columns)
            notes = sorted({r["note"] for r in rows if r.get("note")})
            for note in notes:
                st.caption(note)
            st.caption("The paper's reported ensembles (not comparable: split by image, so cells of "
                       "one subject are in train and test):")
            st.dataframe(paper_table(), hide_index=True, column_config={
                "test AUC": st.column_config.TextColumn(help=COLUMN_HELP["test AUC"])})
    else:
        st.caption("Click **Compare the methods** to fit them all (a few seconds).")


main()
