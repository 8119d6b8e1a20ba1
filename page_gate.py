"""The gate every dashboard page passes first (Streamlit code: kept out of ``cnmc_core``).

:func:`page_start` runs the page through app.py's navigation and then :func:`sign_in_gate`
(app.py calls :func:`sign_in_gate` itself before its navigation): with ``$CNMC_AUTH`` set, a
signed-out session gets the sign-in form and nothing else (the script stops there, so no
widget, file or image of the page is ever sent). :func:`can` says whether to draw a control;
:func:`workspace_root` is the artifacts folder, or a message and a stop.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st
from streamlit.errors import StreamlitSecretNotFoundError

from cnmc_core.auth.roles import Actor, allowed, local_actor
from cnmc_core.exceptions import AccessError, CnmcError
from cnmc_core.workspace.paths import artifacts_root

__all__ = ["page_start", "sign_in_gate", "signed_in", "can", "use_app_navigation",
           "workspace_root"]

_ACTOR_KEY = "_cnmc_actor"


def page_start() -> Actor:
    """What every page does first: run through app.py's navigation, then :func:`sign_in_gate`.
    Returns the signed-in user."""
    use_app_navigation()
    return sign_in_gate()


def can(actor: Actor, action: str, owner: str | None = None) -> bool:
    """Whether to show the control of ``action`` (the library checks again when it runs)."""
    return allowed(actor, action, owner=owner)


def signed_in() -> bool:
    """Whether this session may see pages (without drawing anything): no sign-in needed, or a
    user is signed in. app.py hides its navigation otherwise."""
    from cnmc_core.auth.signin import auth_mode

    try:
        mode = auth_mode()
    except CnmcError:
        return False
    if mode is None:
        return True
    if mode == "oidc":
        return bool(st.user.get("is_logged_in", False))
    return st.session_state.get(_ACTOR_KEY) is not None


def sign_in_gate(sidebar: bool = True) -> Actor:
    """The acting user of this session, or the sign-in form and a stop.

    ``sidebar``: show who is signed in, with a Sign out button (once per run: app.py checks
    without it before its navigation, then the page shows it).

    ``$CNMC_AUTH`` unset: the local OS user (an admin; the server listens on localhost only).
    ``local``: the users file's users, with their password. ``oidc``: ``st.login``. An unknown
    value stops the page with the error saying what to set.
    """
    from cnmc_core.auth.signin import auth_mode, current_actor

    try:
        mode = auth_mode()
    except CnmcError as exc:
        st.error(f"{exc}", icon=":material/lock:")
        st.stop()
    if mode is None:
        return local_actor("dashboard")
    root = workspace_root()
    actor = _oidc_actor(root) if mode == "oidc" else st.session_state.get(_ACTOR_KEY)
    if actor is not None and mode == "local":
        actor = current_actor(actor, root)  # a role changed or a user removed counts now
        if actor is None:
            st.session_state.pop(_ACTOR_KEY, None)
    if actor is None:
        _local_form(root)
        st.stop()
    if not sidebar:
        return actor
    with st.sidebar:
        st.caption(f"Signed in as **{actor.name}** ({actor.role})")
        if st.button("Sign out", key="_cnmc_sign_out", icon=":material/logout:"):
            st.session_state.pop(_ACTOR_KEY, None)
            if mode == "oidc":
                st.logout()
            st.rerun()
    return actor


def _local_form(root) -> None:
    from cnmc_core.auth.signin import authenticate

    st.title("Sign in")
    st.caption("This cnmc dashboard is shared: sign in with the user name and password the "
               "admin gave you (`python -m cnmc_core users add NAME`).")
    with st.form("_cnmc_sign_in"):
        name = st.text_input("User name", key="_cnmc_user")
        password = st.text_input("Password", type="password", key="_cnmc_password")
        submitted = st.form_submit_button("Sign in", type="primary", icon=":material/login:")
    if not submitted:
        return
    try:
        actor = authenticate(name, password, root, client=str(st.context.ip_address or ""))
    except AccessError as exc:
        st.error(f"{exc}", icon=":material/lock:")
        return
    st.session_state[_ACTOR_KEY] = actor
    st.rerun()


def _oidc_actor(root) -> Actor | None:
    """The OIDC user of this session; draws the sign-in button (or how to configure it) and
    stops the page when there is none."""
    import importlib.util

    from cnmc_core.auth.signin import OIDC_TEMPLATE, oidc_actor, oidc_problems

    try:
        auth = st.secrets.get("auth")
        auth = dict(auth) if auth is not None else None
    except (StreamlitSecretNotFoundError, FileNotFoundError):  # no secrets.toml at all
        auth = None
    problems = oidc_problems(auth, importlib.util.find_spec("authlib") is not None)
    if problems:
        st.title("Sign in")
        st.error("CNMC_AUTH=oidc, but sign-in with an identity provider is not configured: "
                 + " ".join(problems), icon=":material/lock:")
        st.markdown("Put this in `.streamlit/secrets.toml` (beside `config.toml`), with your "
                    "provider's values, then restart the dashboard; or use `CNMC_AUTH=local`:")
        st.code(OIDC_TEMPLATE, language="toml")
        st.stop()
    if not st.user.get("is_logged_in", False):
        st.title("Sign in")
        st.button("Sign in with your lab account", type="primary", on_click=st.login,
                  icon=":material/login:")
        st.stop()
    try:
        return oidc_actor(st.user.get("email"), root)
    except AccessError as exc:
        st.title("Sign in")
        st.error(f"{exc}", icon=":material/lock:")
        st.button("Sign out", on_click=st.logout)
        st.stop()


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


def workspace_root() -> Path:
    """The artifacts folder ($CNMC_ARTIFACTS or ./artifacts); when it cannot be used (it is a
    file...), the page says why and what to do, and stops."""
    try:
        return artifacts_root()
    except CnmcError as exc:
        st.error(str(exc), icon=":material/folder_off:")
        st.stop()
