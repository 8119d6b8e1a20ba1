"""Browser tests: the dashboard in Debian's headless Chromium over a copy of the fixture
workspace. Choose the dataset on the Data page, visit every page (no exception box, a screenshot
of each under test-output/screenshots/), launch a tiny run on the Train page and watch it go
from running to completed, then see it on Compare.

Outside CI they skip with the reason when Playwright or Chromium is missing (browser_util).
"""

from __future__ import annotations

import re
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
    wait_until_idle,
)

pytestmark = require_browser()

PAGES = [("", "01_home"), ("Data", "02_data"), ("Train", "03_train"), ("Compare", "04_compare"),
         ("Errors", "05_errors"), ("Ensemble", "06_ensemble"), ("Explain", "07_explain"), ("Predict", "08_predict")]
RUN_TIMEOUT = 150  # seconds for a 1-epoch demo_scratch run on the fixture dataset (2 busy cores)


@pytest.fixture(scope="module")
def app(workspace, tmp_path_factory):
    """The app on a free port over a private copy of the workspace with a mean ensemble."""
    from cnmc_core.ensemble.search import run_search

    root = tmp_path_factory.mktemp("browser") / "artifacts"
    shutil.copytree(workspace["artifacts"], root)
    runs = sorted(p for p in (root / "runs").iterdir() if "fixture_" in p.name)
    run_search(runs, method="mean", methods=("mean",), n_boot=20, out_dir=root / "ensembles",
               runs_root=root)
    with streamlit_server(root) as url:
        yield {"url": url, "root": root, "data": workspace["data"]}


@pytest.fixture(scope="module")
def page(app):
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        yield page
        page.close()


def test_choose_the_dataset_on_the_data_page(app, page):
    open_page(page, app["url"], "Data")
    assert page.get_by_text("No dataset chosen yet").count() == 1
    page.get_by_label("C-NMC folder or manifest CSV", exact=True).fill(str(app["data"]))
    page.get_by_role("button", name="Use this dataset").click()
    page.get_by_text("Images by source and class").wait_for(timeout=60_000)
    wait_until_idle(page)
    assert_no_exception(page)
    assert page.get_by_text("Subject-disjoint: no person has cells in both train and test").count() == 1
    assert (app["root"] / "workspace.json").is_file()
    # the leak warning of the paper protocol
    page.get_by_text("paper (leaky: split by image)").click()
    page.get_by_text(re.compile("protocol leaks subjects")).first.wait_for(timeout=30_000)
    wait_until_idle(page)
    screenshot(page, "02_data_paper_protocol")
    page.locator('[data-testid="stRadio"] label').filter(has_text=re.compile(r"^subject")).click()
    page.get_by_text("Subject-disjoint: no person has cells").wait_for(timeout=30_000)
    wait_until_idle(page)
    assert '"split_protocol": "subject"' in (app["root"] / "workspace.json").read_text()


@pytest.mark.parametrize("url_path, name", PAGES)
def test_every_page_renders_without_an_exception(app, page, url_path, name):
    open_page(page, app["url"], url_path)
    page.wait_for_timeout(1000)  # charts draw after the script finishes
    assert_no_exception(page)
    assert page.get_by_text("Page not found").count() == 0
    screenshot(page, name)


def test_compare_draws_its_charts(app, page):
    open_page(page, app["url"], "Compare")
    for heading in ("Learning curves", "Confusion matrices", "ROC and precision-recall curves", "Config diff",
                    "Metrics table"):
        assert page.get_by_role("heading", name=heading).count() == 1, heading
    page.locator(".js-plotly-plot").first.wait_for(timeout=30_000)
    # curves, 4 confusion matrices and their difference, ROC, PR
    assert page.locator(".js-plotly-plot").count() >= 8
    assert page.get_by_text("(AUC ", exact=False).count() >= 1  # AUC in the ROC legend
    # one download button of ours, named by what it downloads; the tables' toolbars keep theirs
    buttons = page.locator('[data-testid="stDownloadButton"]')
    assert buttons.get_by_text("Download the metrics of the test split (CSV)").count() == 1
    assert buttons.get_by_text("Download as CSV").count() == 0


def test_launch_a_tiny_run_and_watch_it_complete(app, page):
    open_page(page, app["url"], "Train")
    # the run form's (the study form below has its own), filled in once the page has run
    from playwright.sync_api import expect

    run_form = page.locator('[data-testid="stForm"]').filter(has=page.get_by_role("button", name="Launch run"))
    expect(run_form.get_by_label("Dataset (folder or manifest CSV)", exact=True)).to_have_value(
        str(app["data"].resolve()), timeout=30_000)
    assert page.get_by_text("subject", exact=True).count() >= 1  # the protocol chosen on the Data page
    epochs = page.get_by_label("Epochs (max)", exact=True)
    epochs.fill("1")
    epochs.press("Tab")
    page.get_by_role("button", name="Launch run").click()
    queued = page.get_by_text(re.compile(r"Run .* is queued"))
    queued.wait_for(timeout=90_000)
    run_id = re.search(r"Run (\S+) is queued", queued.inner_text()).group(1).strip("`")
    assert run_id in [p.name for p in (app["root"] / "runs").iterdir()]

    started = time.time()
    running = page.get_by_text(re.compile(r"running - "))
    running.first.wait_for(timeout=RUN_TIMEOUT * 1000)
    assert page.get_by_text(run_id).count() >= 1
    screenshot(page, "03_train_running")

    done = page.get_by_text(re.compile(rf"{re.escape(run_id)}.*completed - 1 epoch"))
    done.first.wait_for(timeout=max(10, RUN_TIMEOUT - (time.time() - started)) * 1000)
    wait_until_idle(page)
    assert_no_exception(page)
    assert page.get_by_role("heading", name="Queue and running runs (0)").count() == 1
    screenshot(page, "03_train_completed")

    # the new run is on Compare, selected by default with the other completed ones
    open_page(page, app["url"], "Compare")
    page.locator(".js-plotly-plot").first.wait_for(timeout=30_000)
    short = run_id.split("-", 2)[2]
    assert page.get_by_text(short, exact=False).count() >= 1  # in chart titles and legends
    assert_no_exception(page)
    screenshot(page, "04_compare_with_new_run")
