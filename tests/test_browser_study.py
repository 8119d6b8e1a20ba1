"""Studies in a real browser (Debian's Chromium through Playwright, a real Streamlit server):
Home with a running study and the demo study offered as the next step, Train's study form,
Compare's study section at 1,400 px. Each page is saved as a screenshot under
``test-output/screenshots/`` (study-home.png, study-train.png, study-compare.png)."""

from __future__ import annotations

import json
import os
import shutil
import time

import pytest
from browser_util import (
    assert_no_exception,
    chromium,
    open_page,
    require_browser,
    screenshot,
    streamlit_server,
)
from study_fixture import add_built_studies, write_study
from test_training_timing import write_timed_run

from cnmc_core.demo import DEMO_PRESETS
from cnmc_core.workspace.status import Heartbeat, proc_start_time

pytestmark = require_browser()

RUNNING = "study-20261201-000005-demo-live-aa11"


@pytest.fixture(scope="module")
def study_browser_ws(workspace, tmp_path_factory):
    root = tmp_path_factory.mktemp("study-browser") / "artifacts"
    shutil.copytree(workspace["artifacts"], root, ignore=shutil.ignore_patterns("model.keras"))
    (root / "workspace.json").write_text(json.dumps({"dataset": str(workspace["data"])}))
    for i, preset in enumerate(DEMO_PRESETS):
        write_timed_run(root, f"20261202-00000{i}-{preset}-d{i:03d}", preset, [2.0] * 3)
    add_built_studies(root)
    folder = write_study(root, RUNNING, state="running", done=3)
    beat = Heartbeat(folder)  # this process is the study's coordinator while the pages load
    beat.update(pid=os.getpid(), pid_start=proc_start_time(os.getpid()))
    beat.start()
    yield root
    beat.stop()


@pytest.fixture(scope="module")
def app_url(study_browser_ws):
    with streamlit_server(study_browser_ws) as url:
        yield url


@pytest.fixture(scope="module")
def page(app_url):
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        yield page


def test_home_shows_the_running_study_and_offers_the_demo_study(page, app_url):
    open_page(page, app_url)
    assert_no_exception(page)
    body = page.locator('[data-testid="stMain"]').inner_text()
    assert "Studies running" in body and RUNNING in body and "3 of 8 runs done" in body
    assert "Run the demo study (" in body and "Train the four demo models" not in body
    assert "expected" in body
    screenshot(page, "study-home")


def test_train_shows_the_study_form(page, app_url):
    open_page(page, app_url, "Train")
    assert_no_exception(page)
    body = page.locator('[data-testid="stMain"]').inner_text()
    assert "New study" in body and "Launch study" in body and "Ray address" in body
    page.get_by_text("New study").first.scroll_into_view_if_needed()
    screenshot(page, "study-train")


def test_compare_shows_the_study_results(page, app_url):
    open_page(page, app_url, "Compare")
    assert_no_exception(page)
    time.sleep(1.0)
    body = page.locator('[data-testid="stMain"]').inner_text()
    assert "Studies (3)" in body and "Is the row better than the column?" in body
    assert page.locator('[data-testid="stPlotlyChart"]').count() >= 1
    screenshot(page, "study-compare")
