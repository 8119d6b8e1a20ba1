"""The Ensemble and Errors pages on a study (issue 13): its presets pooled out of fold, every
subject scored; sliders apply one weight vector to every fold. A completed study written by hand
(run_fixtures.write_study: 2 presets x 3 subject folds, 12 subjects), nothing trained."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from run_fixtures import write_study
from streamlit.testing.v1 import AppTest

from cnmc_core.analysis.errors import analyse_errors
from cnmc_core.ensemble.live import live_reports
from cnmc_core.study.ensembles import align_source
from cnmc_core.study.listing import completed_studies

REPO = Path(__file__).resolve().parents[1]
STUDY_CHOICE = "A study (pooled out of fold)"


@pytest.fixture
def study_ws(tmp_path, monkeypatch):
    root = tmp_path / "artifacts"
    study = write_study(root)
    monkeypatch.setenv("CNMC_ARTIFACTS", str(root))
    return root, study


def test_completed_studies_and_the_pooled_source(study_ws):
    root, study = study_ws
    running = write_study(root, presets=("demo_c", "demo_d"), study_id="study-20260102-000000-cd-0001")
    (running / "status.json").write_text(json.dumps({"state": "running", "kind": "study"}))
    assert list(completed_studies(root)) == [str(study)]
    assert completed_studies(root)[str(study)].endswith("demo_a, demo_b, 3 folds x 1 seed(s), "
                                                        "subject-kfold")
    (study / "study.json").write_text("[]")  # damaged: not offered, no error
    assert completed_studies(root) == {}

    study = write_study(root / "again")
    aligned = align_source([str(study)])
    assert aligned.members == ["demo_a", "demo_b"]
    for split in ("val", "test"):  # every image of every subject, once
        part = aligned.splits[split]
        assert len(part.image_id) == 48 and len(set(part.image_id)) == 48
        assert len(set(part.subject)) == 12


def _study_page(page: str) -> AppTest:
    at = AppTest.from_file(str(REPO / "pages" / page), default_timeout=120).run()
    assert not at.exception, [e.value for e in at.exception]
    at.radio(key=f"{'ens' if 'Ensemble' in page else 'errors'}_source").set_value(STUDY_CHOICE).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_ensemble_page_sliders_weight_every_fold_of_a_study(study_ws):
    root, study = study_ws
    at = _study_page("5_Ensemble.py")
    assert [s.label for s in at.slider][:2] == ["demo_a", "demo_b"]
    assert any("one weight vector applies to every fold" in c.value for c in at.caption)
    assert any(c.value.startswith("48 images") for c in at.caption)  # val and test: every image
    at.slider(key="ens_w::demo_b").set_value(0.0).run()
    assert not at.exception
    aligned = align_source([str(study)])
    want = live_reports(aligned, [1.0, 0.0], 0.5)
    shown = {m.label: m.value for m in at.metric if m.label == "Weighted F1"}
    assert shown, [m.label for m in at.metric]
    values = [m.value for m in at.metric if m.label == "Weighted F1"]
    assert values == [f"{want['val']['weighted_f1']:.4f}", f"{want['test']['weighted_f1']:.4f}"]
    assert not [b for b in at.button if b.key == "ens_save"]  # a study's weights are not saved


def test_errors_page_on_a_study_covers_every_subject(study_ws):
    root, study = study_ws
    at = _study_page("4_Errors.py")
    metrics = {m.label: m.value for m in at.metric}
    report = analyse_errors(align_source([str(study)]), "test")
    assert metrics["Images"] == "48"
    assert metrics["Missed by all 2"] == f"{int(report['histogram']['images'].iloc[-1]):,}"
    assert any("every subject" in c.value for c in at.caption)
    assert np.isclose(report["n"], 48)
