"""Browser test of provenance on the Predict page in headless Chromium: real C-NMC samples
(read from ../shared/real-samples, never copied into the project) scored by a model trained on
synthetic cells show what it was trained on, its test AUC with CI and protocol, the synthetic
warning, and the images outside what it saw, in the page and in the downloaded CSV."""

from __future__ import annotations

import pandas as pd
import pytest
from browser_util import assert_no_exception, chromium, require_browser, screenshot, streamlit_server
from test_browser_analysis import goto, metric_value, wait_done, wait_for_text

from cnmc_core.data.feature_ranges import OUTSIDE_TEXT
from cnmc_core.model_cards import SYNTHETIC_WARNING

pytestmark = require_browser()


@pytest.fixture(scope="module")
def synth_url(synth_workspace):
    with streamlit_server(synth_workspace["artifacts"]) as url:
        yield url


def test_predict_real_samples_with_a_synthetic_model(synth_url, real_samples, tmp_path):
    files = sorted(real_samples.glob("all/*.bmp"))[:3] + sorted(real_samples.glob("hem/*.bmp"))[:3]
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        goto(page, synth_url, "predict", timeout=180)
        wait_for_text(page, "trained on synthetic data (generator v")
        assert page.get_by_text(SYNTHETIC_WARNING).count() == 0  # nothing scored yet
        page.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(
            [str(p) for p in files])
        wait_for_text(page, "Images scored", timeout=180)
        wait_for_text(page, "where the models look", timeout=180)
        wait_done(page, 180)
        assert_no_exception(page)
        warnings = page.locator('[data-testid="stAlertContentWarning"]').all_inner_texts()
        assert any(SYNTHETIC_WARNING in w for w in warnings), warnings
        card = page.get_by_text("trained on synthetic data (generator v").first.inner_text()
        assert "test AUC" in card and "protocol subject" in card and "[" in card, card
        assert metric_value(page, "Images scored") == str(len(files))
        flagged = int(metric_value(page, OUTSIDE_TEXT.capitalize()))
        assert flagged >= 1
        assert page.get_by_text(f"{OUTSIDE_TEXT}: ").count() == flagged  # under each image
        with page.expect_download() as info:
            page.get_by_text("Download the results (CSV)").click()
        csv = tmp_path / "predictions.csv"
        info.value.save_as(csv)
        frame = pd.read_csv(csv, keep_default_na=False)
        assert frame["file"].tolist() == [p.name for p in files]
        assert sum(bool(v) for v in frame[OUTSIDE_TEXT]) == flagged
        page.get_by_text(SYNTHETIC_WARNING).first.scroll_into_view_if_needed()
        screenshot(page, "predict_provenance")
        page.close()
