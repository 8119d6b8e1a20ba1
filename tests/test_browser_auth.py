"""Browser tests of a shared dashboard (CNMC_AUTH=local) in Debian's headless Chromium against
a real server: a signed-out visitor sees only the sign-in form on every page URL; a viewer has
no launch or cancel button; a trainer launches a run and cancels it, but gets no Cancel on
someone else's run; five wrong passwords lock the name; and the server refuses connections on
a non-local address unless ``--server.address`` asks for it.

Screenshots: test-output/screenshots/auth_*.png. Outside CI these skip with the reason when
Playwright or Chromium is missing (browser_util).
"""

from __future__ import annotations

import re
import subprocess
import time

import pytest
from browser_util import (
    assert_no_exception,
    chromium,
    open_page,
    require_browser,
    screenshot,
    streamlit_server,
    wait_until_idle,
)
from run_fixtures import auth_workspace

pytestmark = require_browser()

URL_PATHS = ["", "Data", "Train", "Compare", "Errors", "Ensemble", "Explain", "Predict"]
CANCEL_TIMEOUT = 120  # s for a launched worker to see its cancel flag (it may be importing TF)


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """A workspace with a tiny dataset chosen, three users and otto's queued run; the server."""
    ws = auth_workspace(tmp_path_factory.mktemp("browser_auth"),
                        {"vera": ("viewer", "vera-password"), "tina": ("trainer", "tina-password"),
                         "lou": ("trainer", "lou-password")}, ["otto"])
    with streamlit_server(ws["root"], env={"CNMC_AUTH": "local"}) as url:
        yield {"url": url, "root": ws["root"], "otto": ws["runs"]["otto"]}


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


def new_page(browser):
    """A page in a fresh context: no cookie, no session of an earlier test."""
    return browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()


def sign_in(page, url: str, name: str, password: str, expect_ok: bool = True) -> None:
    page.get_by_label("User name", exact=True).fill(name)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Sign in").click()
    if expect_ok:
        page.get_by_text(f"Signed in as {name}").wait_for(timeout=30_000)
    wait_until_idle(page)


def go_to(page, title: str) -> None:
    """Through the sidebar's navigation (a new URL would be a new, signed-out session)."""
    page.locator('[data-testid="stSidebarNav"]').get_by_text(title, exact=True).click()
    page.get_by_role("heading", name=title).first.wait_for(timeout=60_000)
    wait_until_idle(page)


@pytest.mark.parametrize("url_path", URL_PATHS)
def test_signed_out_visitor_sees_only_the_sign_in_form(shared, browser, url_path):
    page = new_page(browser)
    open_page(page, shared["url"], url_path)
    assert_no_exception(page)
    main = page.locator('[data-testid="stMain"]')
    assert page.get_by_role("heading", name="Sign in").count() == 1
    assert main.locator("input").count() == 2  # user name and password, nothing else
    buttons = main.locator("button")
    labels = [buttons.nth(i).get_attribute("aria-label")
              or buttons.nth(i).inner_text().split("\n")[-1].strip()  # after the icon's name
              for i in range(buttons.count())]
    # Sign in, and the password field's show/hide eye
    assert sorted(labels) == ["Show password", "Sign in"], labels
    assert main.locator("img, canvas, .js-plotly-plot, [data-testid='stDataFrame']").count() == 0
    assert page.locator('[data-testid="stSidebarNav"]').count() == 0  # no page list either
    for text in ("Launch run", "Workspace", "otto_run", "Images by source"):
        assert page.get_by_text(text).count() == 0
    if url_path == "Train":
        screenshot(page, "auth_sign_in")
    page.context.close()


def test_viewer_has_no_launch_or_cancel_button(shared, browser):
    page = new_page(browser)
    open_page(page, shared["url"], "")
    sign_in(page, shared["url"], "vera", "vera-password")
    assert page.get_by_role("button", name="Train the four demo models").count() == 0
    go_to(page, "Train")
    page.get_by_text("otto_run", exact=False).first.wait_for(timeout=30_000)
    assert_no_exception(page)
    assert page.get_by_role("button", name="Launch run").count() == 0
    assert page.get_by_role("button", name="Cancel").count() == 0
    assert page.get_by_text("vera is a viewer").count() == 1
    screenshot(page, "auth_viewer_train")
    page.context.close()


def test_trainer_launches_and_cancels_own_run_not_anothers(shared, browser):
    from cnmc_core.auth.roles import owner_of
    from cnmc_core.workspace.status import effective_status

    page = new_page(browser)
    open_page(page, shared["url"], "")
    sign_in(page, shared["url"], "tina", "tina-password")
    go_to(page, "Train")
    page.get_by_text("otto's run").wait_for(timeout=30_000)  # no Cancel on otto's run
    assert page.get_by_role("button", name="Cancel").count() == 0
    epochs = page.get_by_label("Epochs (max)", exact=True)
    epochs.fill("1")
    epochs.press("Tab")
    page.get_by_role("button", name="Launch run").click()
    queued = page.get_by_text(re.compile(r"Run .* is queued"))
    queued.wait_for(timeout=90_000)
    run_id = re.search(r"Run (\S+) is queued", queued.inner_text()).group(1).strip("`")
    run = shared["root"] / "runs" / run_id
    assert owner_of(run) == "tina"
    cancel = page.get_by_role("button", name="Cancel")
    cancel.first.wait_for(timeout=30_000)
    assert cancel.count() == 1  # tina's run only
    screenshot(page, "auth_trainer_train")
    cancel.first.click()
    deadline = time.time() + CANCEL_TIMEOUT
    while effective_status(run)["state"] != "cancelled" and time.time() < deadline:
        time.sleep(1)
    assert effective_status(run)["state"] == "cancelled"
    assert effective_status(shared["otto"])["state"] == "queued"  # otto's is untouched
    assert_no_exception(page)
    page.context.close()


def test_five_wrong_passwords_lock_the_name(shared, browser):
    page = new_page(browser)
    open_page(page, shared["url"], "")
    for k in range(1, 6):
        sign_in(page, shared["url"], "lou", f"wrong-{k}", expect_ok=False)
        page.get_by_text("Wrong user name or password.").first.wait_for(timeout=30_000)
    assert page.get_by_text(re.compile(r"Too many failures: wait 30 s")).count() == 1
    # the right password is refused now, and from another session too (the count is stored)
    sign_in(page, shared["url"], "lou", "lou-password", expect_ok=False)
    page.get_by_text(re.compile(r"Too many failed sign-ins for lou: try again in \d+ s")) \
        .wait_for(timeout=30_000)
    other = new_page(browser)
    open_page(other, shared["url"], "Train")
    sign_in(other, shared["url"], "lou", "lou-password", expect_ok=False)
    other.get_by_text(re.compile(r"Too many failed sign-ins for lou")).wait_for(timeout=30_000)
    assert other.get_by_text("Signed in as").count() == 0
    screenshot(other, "auth_locked")
    assert "failed sign-in for 'lou'" in (shared["root"] / "auth" / "signin.log").read_text()
    page.context.close()
    other.context.close()


def _non_local_ip() -> str | None:
    try:
        out = subprocess.run(["hostname", "-I"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    ips = [ip for ip in out.split() if re.fullmatch(r"\d+\.\d+\.\d+\.\d+", ip)
           and not ip.startswith("127.")]
    return ips[0] if ips else None


def test_server_refuses_non_local_connections_unless_asked(shared, browser):
    ip = _non_local_ip()
    if ip is None:
        pytest.skip("this machine has no non-loopback IPv4 address to connect to")
    page = new_page(browser)
    # no --server.address: .streamlit/config.toml's "localhost" applies
    with streamlit_server(shared["root"], env={"CNMC_AUTH": "local"}, address=None) as url:
        port = url.rsplit(":", 1)[1]
        open_page(page, url, "")  # on localhost it answers
        with pytest.raises(Exception, match="ERR_CONNECTION_REFUSED"):
            page.goto(f"http://{ip}:{port}/", timeout=20_000)
    with streamlit_server(shared["root"], env={"CNMC_AUTH": "local"}, address="0.0.0.0") as url:
        port = url.rsplit(":", 1)[1]
        open_page(page, f"http://{ip}:{port}", "")
        assert page.get_by_role("heading", name="Sign in").count() == 1  # and it asks who
        assert_no_exception(page)
    page.context.close()
