"""Browser tests of the analysis pages (Errors, Ensemble, Explain, Predict) in headless Chromium.

They run the real app against a copy of the fixture workspace with a saved ensemble, use the
pages as a person would (click an UpSet bar, move a weight slider, upload files) and save a
screenshot of each page under test-output/screenshots/.
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

NAV = {"errors": "Errors", "ensemble": "Ensemble", "explain": "Explain", "predict": "Predict"}


@pytest.fixture(scope="module")
def analysis_workspace(workspace, tmp_path_factory):
    """A copy of the fixture workspace (so the session one is left as other tests expect it) with
    one saved ensemble of the three completed runs."""
    from cnmc_core.ensemble.search import run_search

    root = tmp_path_factory.mktemp("analysis-ws") / "artifacts"
    shutil.copytree(workspace["artifacts"], root)
    runs = sorted(p for p in (root / "runs").iterdir() if (p / "predictions.csv").is_file())
    run_search(runs, method="ga", out_dir=root / "ensembles", runs_root=root,
                   ensemble_id="ens-ga-fixture",
                   methods=("mean",), n_boot=50, params={"ga": {"generations": 20, "restarts": 2}})
    return root


@pytest.fixture(scope="module")
def app_url(analysis_workspace):
    with streamlit_server(analysis_workspace) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with chromium() as b:
        yield b


@pytest.fixture
def page(browser):
    p = browser.new_page(viewport={"width": 1400, "height": 1000})
    yield p
    p.close()


def goto(page, base_url: str, url_path: str, timeout: float = 120.0) -> None:
    """Open a page as a user does: the entry page, then its link in the navigation (once the
    app's own navigation, with its Home entry, has replaced the pages/ listing that a fresh
    server shows first)."""
    title = NAV[url_path]
    open_page(page, base_url, "", timeout)
    nav = page.locator('[data-testid="stSidebarNav"]')
    nav.get_by_role("link", name="Home", exact=True).wait_for(timeout=timeout * 1000)
    nav.get_by_role("link", name=title, exact=True).click()
    page.locator("h1").filter(has_text=re.compile(rf"^{title}$")).first.wait_for(
        timeout=timeout * 1000)
    wait_until_idle(page, timeout)
    wait_done(page, timeout)
    assert page.locator('[role="dialog"]').filter(has_text="Page not found").count() == 0


def wait_done(page, timeout: float = 120.0, quiet: float = 1.0) -> None:
    """Wait until the script has finished (no "Stop" in the status widget for ``quiet`` s) and
    every image on the page has loaded."""
    deadline = time.time() + timeout
    calm = None
    while time.time() < deadline:
        busy = page.locator('[data-testid="stStatusWidget"]').filter(has_text="Stop").count() > 0
        if busy:
            calm = None
        elif calm is None:
            calm = time.time()
        elif time.time() - calm >= quiet:
            break
        time.sleep(0.2)
    else:
        raise TimeoutError(f"{page.url} still running after {timeout:.0f} s")
    page.wait_for_function("() => Array.from(document.images).every(i => i.complete)",
                           timeout=timeout * 1000)


def wait_for_text(page, text: str, timeout: float = 90.0):
    loc = page.get_by_text(text, exact=False).first
    loc.wait_for(state="visible", timeout=timeout * 1000)
    return loc


def metric_value(page, label: str, index: int = 0) -> str:
    metric = page.locator('[data-testid="stMetric"]').filter(has_text=label).nth(index)
    return metric.locator('[data-testid="stMetricValue"]').inner_text()


def test_errors_page_upset_click_shows_gallery(page, app_url):
    goto(page, app_url, "errors")
    assert_no_exception(page)
    wait_for_text(page, "Which models miss together")
    heading = page.locator("h3").filter(has_text=re.compile(r"^Images .*: \d+")).first
    before = heading.inner_text()
    # Click the UpSet bars (with a real mouse click, as a user) until one shows another set
    # than the default one.
    chart = page.locator('[data-testid="stPlotlyChart"]').nth(1)
    bars = chart.locator("g.trace.bars path")
    boxes = [bars.nth(i).bounding_box() for i in range(bars.count())]
    boxes = [b for b in boxes if b and b["height"] > 2 and b["width"] > 2]
    assert len(boxes) >= 2, "the UpSet chart should have at least two visible bars"
    after = before
    for box in boxes:
        page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        deadline = time.time() + 15
        while time.time() < deadline and heading.inner_text() == before:
            time.sleep(0.3)
        after = heading.inner_text()
        if after != before:
            break
    wait_until_idle(page)
    assert after != before, "clicking the UpSet bars did not change the gallery"
    assert page.locator('[data-testid="stImage"]').count() >= 1
    wait_done(page)
    assert_no_exception(page)
    screenshot(page, "errors")


def test_ensemble_slider_moves_metric(page, app_url, analysis_workspace):
    goto(page, app_url, "ensemble")
    assert_no_exception(page)
    wait_for_text(page, "untouched: the honest number")
    from cnmc_core.ensemble.align import align_runs
    from cnmc_core.ensemble.live import live_reports
    from cnmc_core.workspace.views import list_members

    # The page starts with the group's runs at equal weights: find a weight whose move to 0
    # changes a score (the tiny fixture models differ from session to session).
    members, _ = list_members(analysis_workspace)
    aligned = align_runs(members[members["kind"] == "run"]["path"].tolist())
    m = len(aligned.members)

    def scores(w):
        rep = live_reports(aligned, w, 0.5)
        return (f"{rep['val']['weighted_f1']:.4f}", f"{rep['test']['weighted_f1']:.4f}")

    equal = scores([1.0] * m)
    moves = [j for j in range(m) if scores([0.0 if k == j else 1.0 for k in range(m)]) != equal]
    j = moves[0] if moves else 0
    target = scores([0.0 if k == j else 1.0 for k in range(m)])
    weights = page.get_by_text("Normalised weights:").first
    before = (metric_value(page, "Weighted F1", 0), metric_value(page, "Weighted F1", 1))
    assert before == equal
    caption = weights.inner_text()
    # Move that member's weight to 0 with the keyboard (as a user can).
    thumb = page.locator('[data-testid="stSlider"] input[type="range"]').nth(j)
    thumb.focus()
    thumb.press("Home")
    deadline = time.time() + 20
    while time.time() < deadline and weights.inner_text() == caption:
        time.sleep(0.2)
    wait_done(page)
    assert " 0.00" in weights.inner_text(), weights.inner_text()
    after = (metric_value(page, "Weighted F1", 0), metric_value(page, "Weighted F1", 1))
    assert after == target
    if moves:
        assert after != before, "moving a weight did not change the metrics"
    wait_done(page)
    # The method comparison with its CIs, for the screenshot (and to see that it renders).
    page.get_by_role("button", name="Compare the methods").click()
    wait_for_text(page, "The paper's reported ensembles", timeout=120)
    wait_done(page)
    assert_no_exception(page)
    screenshot(page, "ensemble")


def test_explain_page_shows_heatmaps(page, app_url):
    goto(page, app_url, "explain", timeout=180)
    wait_for_text(page, "Explain this image", timeout=180)  # no model loaded until asked
    wait_done(page)
    assert page.get_by_text("Activations of a layer").count() == 0
    page.get_by_role("button", name="Explain this image").click()
    wait_for_text(page, "Activations of a layer", timeout=180)
    wait_for_text(page, "channels of", timeout=180)
    wait_done(page, 180)
    assert_no_exception(page)
    assert page.locator('[data-testid="stImage"]').count() >= 4
    screenshot(page, "explain")


def test_predict_upload_scores_and_refuses(page, app_url, tmp_path):
    import cv2
    from conftest import cell_image

    good = tmp_path / "cell_1.png"
    cv2.imwrite(str(good), cv2.cvtColor(cell_image(size=200, radius=60, seed=1), cv2.COLOR_RGB2BGR))
    bad = tmp_path / "notes.png"
    bad.write_bytes(b"this is not an image")
    goto(page, app_url, "predict")
    page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(
        [str(good), str(bad)])
    wait_for_text(page, "Images scored", timeout=180)
    wait_until_idle(page, 180)
    wait_for_text(page, "where the models look", timeout=180)
    wait_done(page, 180)
    assert_no_exception(page)
    errors = page.locator('[data-testid="stAlertContentError"]').all_inner_texts()
    assert any("notes.png" in e and "not a BMP, PNG, JPEG or TIFF" in e for e in errors), errors
    assert metric_value(page, "Images scored") == "1"
    assert page.get_by_text("Download the results (CSV)").count() == 1
    screenshot(page, "predict")
