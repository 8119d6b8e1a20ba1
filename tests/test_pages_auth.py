"""AppTest tests of the sign-in gate: with CNMC_AUTH set, a signed-out session gets only the
sign-in form on every page; a viewer gets no launch, cancel or save control; a trainer gets
Cancel on their own runs only; OIDC without secrets.toml and an unknown CNMC_AUTH are messages
on the page, not tracebacks. (Real-browser versions: test_browser_auth.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from run_fixtures import auth_workspace
from streamlit.testing.v1 import AppTest

REPO = Path(__file__).resolve().parents[1]
TIMEOUT = 60
PAGE_FILES = ["app.py", *sorted(f"pages/{p.name}" for p in (REPO / "pages").glob("*.py"))]


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """A workspace with a tiny dataset chosen, users, and two queued runs: tina's and otto's."""
    return auth_workspace(tmp_path_factory.mktemp("auth_pages"),
                          {"vera": ("viewer", "vera-password"),
                           "tina": ("trainer", "tina-password")}, ["tina", "otto"])


@pytest.fixture
def local_auth(shared, monkeypatch):
    monkeypatch.setenv("CNMC_ARTIFACTS", str(shared["root"]))
    monkeypatch.setenv("CNMC_AUTH", "local")
    return shared


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.message for e in at.exception]


def assert_only_sign_in_form(at: AppTest) -> None:
    assert_clean(at)
    assert [t.value for t in at.title] == ["Sign in"]
    assert [t.label for t in at.text_input] == ["User name", "Password"]
    assert [b.label for b in at.button] == ["Sign in"]
    for kind in ("selectbox", "multiselect", "radio", "slider", "number_input", "checkbox",
                 "dataframe", "metric", "tabs", "expander"):
        assert len(getattr(at, kind)) == 0, f"a signed-out session sees a {kind}"
    assert not at.sidebar.button


@pytest.mark.parametrize("page", PAGE_FILES)
def test_signed_out_sees_only_the_sign_in_form(local_auth, page):
    at = AppTest.from_file(str(REPO / page), default_timeout=TIMEOUT).run()
    assert_only_sign_in_form(at)


def sign_in(name: str, password: str) -> AppTest:
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT).run()
    at.text_input(key="_cnmc_user").input(name)
    at.text_input(key="_cnmc_password").input(password)
    at.button[0].click().run()
    assert_clean(at)
    return at


def test_wrong_password_is_refused_on_the_page(local_auth):
    at = sign_in("vera", "not-her-password")
    assert "Wrong user name or password." in [e.value for e in at.error]
    assert_only_sign_in_form(at)


def test_viewer_sees_no_launch_cancel_or_save(local_auth):
    at = sign_in("vera", "vera-password")
    assert "Signed in as **vera** (viewer)" in [c.value for c in at.sidebar.caption]
    labels = [b.label for b in at.button]
    assert "Train the four demo models" not in labels and "Create the demo dataset" not in labels
    at.switch_page("pages/2_Train.py").run()
    assert_clean(at)
    labels = [b.label for b in at.button]
    assert "Launch run" not in labels and "Cancel" not in labels, labels
    assert any("vera is a viewer" in i.value for i in at.info)
    text = " ".join(m.value for m in at.markdown)
    assert "tina_run" in text and "otto_run" in text  # the viewer still sees the queue
    at.switch_page("pages/1_Data.py").run()
    assert_clean(at)
    assert "Use this dataset" not in [b.label for b in at.button]


def test_trainer_can_launch_and_cancel_only_own_runs(local_auth):
    at = sign_in("tina", "tina-password")
    at.switch_page("pages/2_Train.py").run()
    assert_clean(at)
    assert "Launch run" in [b.label for b in at.button]
    cancels = [b.key for b in at.button if b.label == "Cancel"]
    assert cancels == [f"cancel-{local_auth['runs']['tina'].name}"], cancels
    assert "otto's run" in [c.value for c in at.caption]


def test_a_role_change_counts_at_the_next_rerun(local_auth):
    from cnmc_core.auth.users import set_role

    at = sign_in("tina", "tina-password")
    at.switch_page("pages/2_Train.py").run()
    assert "Launch run" in [b.label for b in at.button]
    set_role("tina", "viewer", local_auth["root"])
    try:
        at.run()
        assert_clean(at)
        assert "Launch run" not in [b.label for b in at.button]
    finally:
        set_role("tina", "trainer", local_auth["root"])


def test_oidc_without_secrets_says_how_to_configure(shared, monkeypatch):
    monkeypatch.setenv("CNMC_ARTIFACTS", str(shared["root"]))
    monkeypatch.setenv("CNMC_AUTH", "oidc")
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT).run()
    assert_clean(at)
    errors = " ".join(e.value for e in at.error)
    assert "CNMC_AUTH=oidc, but sign-in with an identity provider is not configured" in errors
    assert "[auth]" in at.code[0].value and "server_metadata_url" in at.code[0].value
    assert not at.text_input and not at.button and not at.dataframe


def test_unknown_auth_mode_is_an_error_on_the_page(shared, monkeypatch):
    monkeypatch.setenv("CNMC_ARTIFACTS", str(shared["root"]))
    monkeypatch.setenv("CNMC_AUTH", "ldap")
    for page in ("app.py", "pages/2_Train.py"):
        at = AppTest.from_file(str(REPO / page), default_timeout=TIMEOUT).run()
        assert_clean(at)
        assert "CNMC_AUTH must be unset" in at.error[0].value and "got 'ldap'" in at.error[0].value
        assert not at.button and not at.text_input


def test_oidc_with_secrets_needs_authlib_or_offers_the_sign_in_button(shared, monkeypatch):
    import importlib.util

    monkeypatch.setenv("CNMC_ARTIFACTS", str(shared["root"]))
    monkeypatch.setenv("CNMC_AUTH", "oidc")
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT)
    at.secrets["auth"] = {"redirect_uri": "http://localhost:8501/oauth2callback",
                          "cookie_secret": "x" * 32, "client_id": "cnmc",
                          "client_secret": "s", "server_metadata_url":
                          "https://idp.example.org/.well-known/openid-configuration"}
    at.run()
    assert_clean(at)
    if importlib.util.find_spec("authlib") is None:
        errors = " ".join(e.value for e in at.error)
        assert "needs the Authlib package" in errors and "No [auth] section" not in errors
        assert not at.button
    else:
        assert [b.label for b in at.button] == ["Sign in with your lab account"]
    assert not at.text_input and not at.dataframe and not at.metric
