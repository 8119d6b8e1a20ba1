"""AppTest tests of how pages show runs that are not completed (issue 12 items 9 and 20): runs
still training are named with their epoch on Errors and Ensemble (not "cannot be analysed"), and
the Train page offers Cancel for an unresponsive run. The "training" runs are copies of a fixture
run whose status names this test process, alive (fresh heartbeat) or silent (old heartbeat)."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from cnmc_core.workspace.listing import forget_summaries
from cnmc_core.workspace.status import proc_start_time
from cnmc_core.workspace.views import split_skipped, training_line

REPO = Path(__file__).resolve().parents[1]


def _training_copy(source: Path, runs: Path, run_id: str, *, epoch, heartbeat_age=0.0,
                   state="running") -> Path:
    target = runs / run_id
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(
        "model.keras", "summary.json", "predictions.csv", "metrics.json"))
    config = json.loads((target / "config.json").read_text())
    (target / "config.json").write_text(json.dumps({**config, "run_id": run_id}))
    now = time.time()
    (target / "status.json").write_text(json.dumps({
        "state": state, "pid": os.getpid(), "pid_start": proc_start_time(os.getpid()),
        "heartbeat": now - heartbeat_age, "updated": now - heartbeat_age, "created": now,
        "epoch": epoch, "epochs": 8, "message": "training"}))
    return target


@pytest.fixture
def training_ws(workspace, tmp_path, monkeypatch):
    """The session workspace (no models) plus a run at epoch 3 of 8 and a queued one."""
    root = tmp_path / "artifacts"
    shutil.copytree(workspace["artifacts"], root, ignore=shutil.ignore_patterns("model.keras"))
    source = workspace["runs"][0]
    _training_copy(source, root / "runs", "20260101-000001-training", epoch=3)
    _training_copy(source, root / "runs", "20260101-000002-waiting", epoch=None, state="queued")
    forget_summaries()
    monkeypatch.setenv("CNMC_ARTIFACTS", str(root))
    return root


def test_training_line_names_each_run_with_its_epoch(training_ws):
    from cnmc_core.workspace.views import list_members

    _, skipped = list_members(training_ws)
    parts = split_skipped(skipped)
    assert set(parts["training"]["member_id"]) == {"20260101-000001-training",
                                                   "20260101-000002-waiting"}
    assert parts["damaged"].empty and list(parts["ended"]["state"]) == ["failed"]
    assert training_line(parts["training"]) == "2 runs still training (epoch 3 of 8, queued)"


@pytest.mark.parametrize("page, what", [("4_Errors", "analysed"), ("5_Ensemble", "combined")])
def test_analysis_pages_say_runs_are_still_training(training_ws, page, what):
    at = AppTest.from_file(str(REPO / "pages" / f"{page}.py"), default_timeout=120).run()
    assert not at.exception, [e.value for e in at.exception]
    lines = [m.value for m in at.markdown]
    assert any("2 runs still training (epoch 3 of 8, queued)" in t and f"can be {what}" in t
               for t in lines), lines
    labels = [e.label for e in at.expander]
    assert not any("not completed or damaged" in label for label in labels), labels
    assert any(f"1 failed or cancelled run(s) or ensemble(s) cannot be {what}" in label
               for label in labels), labels


def test_only_training_runs_say_wait_not_no_run(workspace, tmp_path, monkeypatch):
    root = tmp_path / "artifacts"
    _training_copy(workspace["runs"][0], root / "runs", "20260101-000001-training", epoch=5)
    monkeypatch.setenv("CNMC_ARTIFACTS", str(root))
    for page in ("4_Errors", "5_Ensemble"):
        at = AppTest.from_file(str(REPO / "pages" / f"{page}.py"), default_timeout=120).run()
        assert not at.exception
        infos = [i.value for i in at.info]
        assert any("No completed run yet: wait for the runs above" in t for t in infos), infos
        assert any("1 run still training (epoch 5 of 8)" in m.value for m in at.markdown)


def test_train_page_offers_cancel_for_an_unresponsive_run(workspace, tmp_path, monkeypatch):
    root = tmp_path / "artifacts"
    run = _training_copy(workspace["runs"][0], root / "runs", "20260101-000001-stopped", epoch=2,
                         heartbeat_age=120)
    monkeypatch.setenv("CNMC_ARTIFACTS", str(root))
    at = AppTest.from_file(str(REPO / "pages" / "2_Train.py"), default_timeout=120).run()
    assert not at.exception, [e.value for e in at.exception]
    warnings = [w.value for w in at.warning]
    assert any(w.startswith("Unresponsive: no heartbeat for 12") and "lives: it is stopped or "
               "hangs" in w and "the queue ends it after 300 s" in w for w in warnings), warnings
    button = at.button(key=f"cancel-{run.name}")
    assert "Ends its process now" in button.help
