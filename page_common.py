"""Helpers shared by the dashboard pages (Streamlit code: kept out of ``cnmc_core``)."""

from __future__ import annotations

import streamlit as st
from streamlit.errors import StreamlitAPIException

from cnmc_core.ensemble.members import list_members, members_signature
from cnmc_core.workspace.paths import artifacts_dir

__all__ = ["use_app_navigation", "page_link", "load_members", "workspace_members"]


def use_app_navigation() -> None:
    """Run through app.py's navigation even when this page is the first request of a fresh
    server: Streamlit then runs a page of pages/ on its own (its old multipage mode, with a
    plain sidebar and no page config) until some session has run app.py."""
    try:
        from streamlit.runtime.pages_manager import PagesManager
    except ImportError:  # pragma: no cover - Streamlit internals moved: the page still works
        return
    if PagesManager.uses_pages_directory and not st.session_state.get("_cnmc_navigation_checked"):
        st.session_state["_cnmc_navigation_checked"] = True  # once per session: never a rerun loop
        PagesManager.uses_pages_directory = False
        st.rerun()


def page_link(path: str, label: str, icon: str) -> None:
    """A link to another page; a hint instead when this page runs alone (no navigation)."""
    try:
        st.page_link(path, label=label, icon=icon)
    except StreamlitAPIException:
        st.caption(f"{label}: open it from the navigation.")


@st.cache_data(show_spinner=False, max_entries=8)
def load_members(root: str, signature: tuple):
    """:func:`cnmc_core.ensemble.members.list_members`, cached per workspace signature."""
    return list_members(root)


def workspace_members(what: str, empty_text: str):
    """The workspace's usable runs and ensembles, for a page that combines them.

    Lists the unusable ones (not completed or damaged) in an expander saying they cannot be
    ``what``; stops the page with ``empty_text`` and a link to Train when none is usable.

    Returns:
        ``(root, signature, members)``: the artifacts folder, its signature (a cache key) and the
        members frame of :func:`cnmc_core.ensemble.members.list_members`.
    """
    root = artifacts_dir()
    signature = members_signature(root)
    members, skipped = load_members(str(root), signature)
    if len(skipped):
        with st.expander(f"{len(skipped)} run(s) or ensemble(s) cannot be {what} (not completed "
                         "or damaged)"):
            st.dataframe(skipped[["member_id", "kind", "state", "reason"]], hide_index=True)
    if members.empty:
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
    root = artifacts_dir()
    signature = members_signature(root)
    members, _ = load_members(str(root), signature)
    usable = members[members["has_model"]] if len(members) else members
    if usable.empty:
        st.info(empty_text)
        page_link("pages/2_Train.py", "Go to Train", icon=":material/model_training:")
        st.stop()
    return root, signature, members, usable
