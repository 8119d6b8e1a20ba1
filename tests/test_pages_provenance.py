"""AppTest tests of provenance on the Predict and Explain pages: beside each model the data it was
trained on and its test AUC with CI and protocol; the synthetic warning when a model trained on
synthetic cells scores or explains uploads; images outside what the model saw flagged."""

from __future__ import annotations

import pytest
from conftest import cell_image
from test_pages_analysis import assert_clean, png, run_page, texts

from cnmc_core.data.feature_ranges import OUTSIDE_TEXT
from cnmc_core.model_cards import SYNTHETIC_WARNING


@pytest.fixture
def synth_ws(synth_workspace, monkeypatch):
    monkeypatch.setenv("CNMC_ARTIFACTS", str(synth_workspace["artifacts"]))
    return synth_workspace


def _uploads(real_samples):
    files = sorted(real_samples.glob("all/*.bmp"))[:2] + sorted(real_samples.glob("hem/*.bmp"))[:2]
    return [(p.name, p.read_bytes(), "image/bmp") for p in files]


def test_predict_shows_the_provenance_the_warning_and_the_flags(synth_ws, real_samples):
    at = run_page("7_Predict")
    assert_clean(at)
    captions = texts(at.caption)
    assert any("trained on synthetic data (generator v" in c and "recorded" in c
               and "test AUC" in c and "protocol subject" in c for c in captions), captions
    assert not any(SYNTHETIC_WARNING in w for w in texts(at.warning))  # nothing scored yet
    at.file_uploader(key="predict_files").set_value(_uploads(real_samples)).run()
    assert_clean(at)
    assert any(SYNTHETIC_WARNING in w for w in texts(at.warning)), texts(at.warning)
    frame = at.dataframe[0].value
    assert OUTSIDE_TEXT in frame.columns and len(frame) == 4
    flagged = [v for v in frame[OUTSIDE_TEXT] if v]
    assert flagged and all(" z=" in v for v in flagged)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics[OUTSIDE_TEXT.capitalize()] == str(len(flagged))
    assert any(f"{OUTSIDE_TEXT}: " in t for t in texts(at.markdown))


def test_explain_warns_only_for_uploads(synth_ws):
    at = run_page("6_Explain")
    assert_clean(at)
    assert any("trained on synthetic data" in c for c in texts(at.caption))
    assert not any(SYNTHETIC_WARNING in w for w in texts(at.warning))
    at.radio(key="explain_source").set_value("Upload an image").run()
    assert any(SYNTHETIC_WARNING in w for w in texts(at.warning))
    at.file_uploader(key="explain_upload").set_value(
        ("cell.png", png(cell_image(size=120, radius=40, seed=4)), "image/png")).run()
    assert_clean(at)
    assert any(SYNTHETIC_WARNING in w for w in texts(at.warning))


def test_predict_with_real_data_runs_shows_no_warning(workspace, monkeypatch):
    monkeypatch.setenv("CNMC_ARTIFACTS", str(workspace["artifacts"]))
    at = run_page("7_Predict")
    assert_clean(at)
    assert any("trained on real data (recorded)" in c for c in texts(at.caption))
    at.file_uploader(key="predict_files").set_value(
        [("like.png", png(cell_image(seed=9)), "image/png"),  # drawn as the training cells
         ("bright.png", png(cell_image(color=(250, 250, 250), seed=9)), "image/png")]).run()
    assert_clean(at)
    assert not any(SYNTHETIC_WARNING in w for w in texts(at.warning))
    flags = at.dataframe[0].value[OUTSIDE_TEXT].tolist()
    assert flags[0] == "" and "mean_b z=-" in flags[1], flags
