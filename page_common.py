"""Helpers shared by the dashboard pages (Streamlit code: kept out of ``cnmc_core``).

The gate every page passes first (navigation, sign-in, the workspace folder) is in
``page_gate.py``; here: links, the cached listing and members, the choosers of models, studies
and groups, the card of an active run, the model cards and their warnings.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st
from page_gate import can, workspace_root
from streamlit.errors import StreamlitAPIException

from cnmc_core.auth.roles import Actor
from cnmc_core.exceptions import CnmcError
from cnmc_core.workspace.listing import list_experiments, workspace_signature
from cnmc_core.workspace.views import list_members, split_skipped, training_line

__all__ = ["page_link", "load_experiments", "workspace_experiments", "load_members",
           "unusable_notes", "workspace_members", "model_members", "choose_models", "choose_study",
           "choose_group_members", "rerun_app_on_change", "active_run_card", "load_studies",
           "model_cards", "synthetic_warnings"]

def page_link(path: str, label: str, icon: str) -> None:
    """A link to another page; a hint instead when this page runs alone (no navigation)."""
    try:
        st.page_link(path, label=label, icon=icon)
    except StreamlitAPIException:
        st.caption(f"{label}: open it from the navigation.")


def file_mtime(folder: str, name: str) -> float:
    """The modification time of ``folder/name`` (0 when it is missing): the cache key that makes
    a page re-read a file once it changed."""
    try:
        return (Path(folder) / name).stat().st_mtime
    except OSError:
        return 0.0


@st.cache_data(show_spinner=False, max_entries=8)
def load_experiments(root: str, signature: str) -> pd.DataFrame:
    """:func:`cnmc_core.workspace.listing.list_experiments`, cached per workspace signature."""
    return list_experiments(root)


def workspace_experiments(root: str | Path) -> tuple[str, pd.DataFrame]:
    """``(signature, experiments)``: the workspace's signature (a cache key for what a page
    computes from it) and its listing, read again only when the signature changes (a job
    queued, started, ended, failed, killed, deleted or damaged). Active rows carry the progress
    of when they were listed: a page that shows live progress reads the status itself."""
    signature = workspace_signature(root)
    return signature, load_experiments(str(root), signature)


def rerun_app_on_change(key: str, token) -> None:
    """Rerun the whole page when ``token`` differs from the one this session saw last under
    ``key`` (a polling fragment calls it with what it watches: the active runs, the workspace
    signature), so that the parts outside the fragment are drawn again."""
    previous = st.session_state.get(key)
    st.session_state[key] = token
    if previous is not None and previous != token:
        st.rerun(scope="app")


def active_run_card(row, key: str, cancel: bool = True, expected: dict | None = None,
                    actor: Actor | None = None) -> None:
    """A queued, running or unresponsive run as the Train and Compare pages show it: id, model,
    size and protocol, a Cancel button (which ends an unresponsive run's process at once), a
    warning for an unresponsive run, the progress (read from its status now) with the expected
    time when known, and the live learning curves (its history read once)."""
    from cnmc_core.analysis.curves import history_frame
    from cnmc_core.analysis.run_charts import live_curves_figure
    from cnmc_core.contracts import PROTOCOLS, UNRESPONSIVE
    from cnmc_core.training.timing import format_duration
    from cnmc_core.workspace.progress import STATE_ICONS, experiment_status, run_progress
    from cnmc_core.workspace.queue import cancel_run, unresponsive_limit

    try:
        status = experiment_status(row.path)
    except CnmcError as exc:
        st.error(f"{row.run_id}: {exc}")
        return
    fraction, text = run_progress(status)
    if expected:
        text += (f" · expected {format_duration(expected['seconds'])} ({expected['epochs']} "
                 f"epochs x {expected['epoch_seconds']:.0f} s, {expected['source']})")
    with st.container(border=True):
        top = st.columns([5, 1])
        protocol = PROTOCOLS[row.protocol].label() if row.protocol in PROTOCOLS else row.protocol
        top[0].markdown(f"**{row.run_id}** · {row.model} · {row.image_size} px · protocol {protocol}")
        hung = status.get("state") == UNRESPONSIVE
        # Train's keys are the plain ``cancel-<id>``; another page's carry its prefix
        button_key = f"cancel-{row.run_id}" if key == "train" else f"{key}-cancel-{row.run_id}"
        from cnmc_core.auth.roles import owner_of

        owner = owner_of(row.path)
        if cancel and actor is not None and not can(actor, "cancel", owner=owner):
            cancel = False  # no Cancel: the library would refuse it (a viewer, another's run)
            if can(actor, "launch"):  # a trainer: someone else's run
                top[1].caption(f"{owner or 'nobody recorded'}'s run")
        if cancel and top[1].button("Cancel", key=button_key, icon=":material/cancel:",
                                    help="Ends its process now: it does not respond." if hung else
                                    "It stops after the current batch."):
            try:
                cancel_run(row.path, actor=actor)
            except CnmcError as exc:
                st.error(f"{exc}")
            else:
                st.toast(f"{row.run_id} was cancelled: its process was ended." if hung else
                         f"Cancelling {row.run_id}: it stops after the current batch.")
        if hung:
            st.warning(f"Unresponsive: {status.get('error')}. If another run waits for its "
                       f"queue slot, the queue ends it after {unresponsive_limit():.0f} s.",
                       icon=":material/pause_circle:")
        st.progress(fraction, text=f"{STATE_ICONS.get(status.get('state'), '')} {text}")
        history = history_frame(row.path)  # read once: both panels show the same epochs
        if not history.empty:
            st.plotly_chart(live_curves_figure(history), width="stretch",
                            key=f"{key}-curves-{row.run_id}" if key != "train"
                            else f"curves-{row.run_id}")


@st.cache_data(show_spinner=False, max_entries=8, ttl=2)
def load_studies(root: str) -> pd.DataFrame:
    """:func:`cnmc_core.study.listing.list_studies` (a study's progress changes at every run:
    kept 2 s, the polling interval)."""
    from cnmc_core.study.listing import list_studies

    return list_studies(root)


@st.cache_data(show_spinner=False, max_entries=8)
def load_members(root: str, signature: str):
    """:func:`cnmc_core.workspace.views.list_members` over the cached listing."""
    return list_members(experiments=load_experiments(root, signature))


def unusable_notes(skipped, what: str) -> int:
    """Say why the skipped folders (:func:`cnmc_core.workspace.views.list_members`) are not
    offered: runs still training with their epoch and links to Train (ensemble searches: to
    Home), damaged folders with the reason, failed or cancelled ones in an expander. Returns
    how many are still training."""
    parts = split_skipped(skipped)
    training = parts["training"]
    if len(training):
        with st.container(border=True):
            st.markdown(f":material/sync: **{training_line(training)}**: they can be {what} once "
                        "they are completed.")
            for row in training.head(6).itertuples():  # runs on Train, searches on Home
                page_link("pages/2_Train.py" if row.kind == "run" else "app.py",
                          f"{row.member_id}: {row.state}", icon=":material/model_training:"
                          if row.kind == "run" else ":material/home:")
    if len(parts["damaged"]):
        with st.expander(f":material/broken_image: {len(parts['damaged'])} damaged folder(s) "
                         "cannot be read"):
            st.dataframe(parts["damaged"][["member_id", "kind", "reason", "path"]], hide_index=True)
    if len(parts["ended"]):
        with st.expander(f"{len(parts['ended'])} failed or cancelled run(s) or ensemble(s) cannot "
                         f"be {what}"):
            st.dataframe(parts["ended"][["member_id", "kind", "state", "reason"]], hide_index=True)
    return len(training)


def workspace_members(what: str, empty_text: str):
    """The workspace's usable runs and ensembles, for a page that combines them.

    Says why the others are not offered (:func:`unusable_notes`: still training, damaged, failed
    or cancelled); stops the page with ``empty_text`` (or, while runs train, a line saying so)
    and a link to Train when none is usable.

    Returns:
        ``(root, signature, members)``: the artifacts folder, its signature (a cache key) and the
        members frame of :func:`cnmc_core.workspace.views.list_members`.
    """
    root = workspace_root()
    signature = workspace_signature(root)
    members, skipped = load_members(str(root), signature)
    training = unusable_notes(skipped, what)
    if members.empty:
        if training:
            st.info("No completed run yet: wait for the runs above to finish (the Train page shows "
                    "their live curves), then come back here.")
        else:
            st.info(empty_text)
            page_link("pages/2_Train.py", "Go to Train", icon=":material/model_training:")
        st.stop()
    return root, signature, members


def model_members(empty_text: str):
    """The workspace's runs and ensembles, for a page that needs models (Explain, Predict).

    Stops the page with ``empty_text`` and a link to Train when no usable member has a saved
    model (a run with ``model.keras``, or an ensemble whose runs all have one).

    Returns:
        ``(root, signature, members, usable)``: as :func:`workspace_members`, and the members
        that have a model.
    """
    root = workspace_root()
    signature = workspace_signature(root)
    members, _ = load_members(str(root), signature)
    usable = members[members["has_model"]] if len(members) else members
    if usable.empty:
        st.info(empty_text)
        page_link("pages/2_Train.py", "Go to Train", icon=":material/model_training:")
        st.stop()
    return root, signature, members, usable


def choose_models(usable, labels: dict[str, str], *, key: str, verb: str,
                  max_runs: int | None = None, default_runs: list[str] | None = None,
                  runs_first: bool = False):
    """The model chooser of the Explain and Predict pages: several runs, or one saved ensemble.

    Args:
        usable: members with a saved model (see :func:`model_members`).
        labels: display label of each member id.
        key: prefix of the widgets' keys.
        verb: what is done with the models, for the labels ("Explain with", "Score with").
        max_runs: at most this many runs can be chosen.
        default_runs: the runs chosen at first (default: the first one).
        runs_first: offer runs before ensembles.

    Returns:
        ``(kind, chosen)``: ``"Runs"`` or ``"A saved ensemble"``, and the chosen member ids (one
        for an ensemble). Stops the page with a warning when no run is chosen.
    """
    runs = usable[usable["kind"] == "run"]["member_id"].tolist()
    ensembles = usable[usable["kind"] == "ensemble"]["member_id"].tolist()
    kinds = (["Runs"] if runs else []) + (["A saved ensemble"] if ensembles else [])
    if not runs_first:
        kinds = kinds[::-1]
    kind = st.radio(verb, kinds, horizontal=True, key=f"{key}_kind") if len(kinds) > 1 \
        else kinds[0]
    if kind == "Runs":
        default = [r for r in (default_runs or runs[:1]) if r in runs][:max_runs] or runs[:1]
        chosen = st.multiselect("Runs", runs, default=default, format_func=lambda m: labels[m],
                                max_selections=max_runs, key=f"{key}_runs",
                                help="With several runs, P(ALL) is their mean and their maps are "
                                     "combined with equal weights.")
        if not chosen:
            st.warning("Choose at least one run.")
            st.stop()
        return kind, list(chosen)
    ens = st.selectbox("Ensemble", ensembles, format_func=lambda m: labels[m],
                       key=f"{key}_ensemble")
    return kind, [ens]


def choose_study(root, key: str) -> str | None:
    """Where the workspace has a completed study, a choice between runs and a study (its presets
    pooled out of fold: every subject); returns the chosen study folder, or None for runs."""
    from cnmc_core.study.listing import completed_studies

    studies = completed_studies(root)
    if not studies:
        return None
    source = st.radio("Analyse", ["Runs", "A study (pooled out of fold)"], horizontal=True,
                      key=f"{key}_source", help="A completed study's presets, each pooled out of "
                      "fold: every image is scored by the run that held its subject out, so every "
                      "subject counts, not one test split.")
    if source == "Runs":
        return None
    return st.selectbox("Study", list(studies), format_func=studies.get, key=f"{key}_study")


def choose_group_members(members, labels: dict[str, str], *, key: str, noun: str, title: str,
                         default_n: int, max_n: int, help: str, too_few: str):
    """The member chooser of the Errors and Ensemble pages: a group of members scored on the same
    images (see :func:`cnmc_core.ensemble.members.comparable_groups`), then members of it.

    Args:
        members: :func:`cnmc_core.workspace.views.list_members`'s members frame.
        labels: display label of each member id.
        key: prefix of the widgets' keys.
        noun: how the group's members are counted (``run(s)``, ``member(s)``).
        title: the members selector's label.
        default_n, max_n: members chosen at first, and at most.
        help: the group selector's help.
        too_few: what to do when the group holds one member only.

    Returns:
        ``(chosen ids, their folders)``. Stops the page with a warning when fewer than two are
        chosen.
    """
    from cnmc_core.ensemble.members import (
        comparable_groups,
        default_members,
        group_label,
    )

    group = st.selectbox("Runs scored on the same images", comparable_groups(members),
                         format_func=lambda g: group_label(members, g, noun), key=f"{key}_group",
                         help=help)
    in_group = members[members["group"] == group]
    options = in_group["member_id"].tolist()
    chosen = st.multiselect(title, options, default=default_members(in_group, default_n),
                            format_func=lambda m: labels[m], max_selections=max_n,
                            key=f"{key}_members_{group}")
    if len(chosen) < 2:
        st.warning(f"Choose at least two {noun.replace('(s)', 's')}." if len(options) >= 2
                   else too_few)
        st.stop()
    return list(chosen), tuple(in_group.set_index("member_id").loc[chosen, "path"])


# a study's results and a dataset's marker are not in the signature: a short time to live
@st.cache_data(show_spinner=False, max_entries=256, ttl=60)
def _model_card(path: str, signature) -> dict:
    from cnmc_core.model_cards import model_card

    return model_card(path)


def model_cards(chosen: list[tuple[str, str]], signature) -> list[dict]:
    """Beside each chosen model (``(label, folder)`` pairs), what it was trained on and its
    honest score (:func:`cnmc_core.model_cards.model_card`, cached per workspace
    ``signature``). Returns the cards."""
    from cnmc_core.model_cards import card_text

    cards = []
    for label, path in chosen:
        card = _model_card(str(path), signature)
        cards.append(card)
        st.caption(f"**{label}**: {card_text(card)}")
    return cards


def synthetic_warnings(chosen: list[tuple[str, str]], cards: list[dict]) -> None:
    """The warning of each chosen model trained on synthetic cells, for a page that scores or
    explains uploaded images with them."""
    for (label, _), card in zip(chosen, cards):
        if card["warning"]:
            st.warning(f"**{label}**: {card['warning']}.", icon=":material/warning:")
