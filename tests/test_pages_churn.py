"""A dashboard left open while runs start, finish, fail and are deleted never shows an exception.

Each page is rendered, the workspace changes under it (a run is queued with a live-looking
status, one finishes, one fails, one is deleted, one folder is damaged), and the same session
reruns: the page must absorb every change without an exception element.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from cnmc_core.training.config import resolve_config
from cnmc_core.workspace.layout import append_history, create_run
from cnmc_core.workspace.status import write_status

REPO = Path(__file__).resolve().parents[1]
PAGES = ["pages/1_Data.py", "pages/2_Train.py", "pages/3_Compare.py", "pages/4_Errors.py",
         "pages/5_Ensemble.py", "pages/6_Explain.py", "pages/7_Predict.py"]


@pytest.fixture
def live_ws(workspace, tmp_path, monkeypatch):
    root = tmp_path / "artifacts"
    shutil.copytree(workspace["artifacts"], root, ignore=shutil.ignore_patterns("cache"))
    (root / "workspace.json").write_text(json.dumps({"dataset": str(workspace["data"])}))
    monkeypatch.setenv("CNMC_ARTIFACTS", str(root))
    return {"root": root, "data": workspace["data"]}


def _clean(at: AppTest, when: str) -> None:
    assert not at.exception, (when, [e.value for e in at.exception])


@pytest.mark.parametrize("page", PAGES)
def test_page_survives_runs_changing_under_it(live_ws, page):
    root = live_ws["root"]
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=60).run()
    _clean(at, "app")
    at.switch_page(page).run()
    _clean(at, "first render")

    config = resolve_config("demo_scratch", data=str(live_ws["data"]), epochs=3)
    # a run starts: running, with a heartbeat, one epoch of history
    started = create_run(config, root)
    write_status(started, state="running", pid=os.getpid(), heartbeat=time.time(), epoch=1, epochs=3)
    append_history(started, {"stage": "train", "epoch": 1, "loss": 0.7, "val_loss": 0.69,
                             "accuracy": 0.5, "val_accuracy": 0.5, "time": time.time(), "elapsed": 1.0})
    at.run()
    _clean(at, "a run started")

    # it fails; another completed run is deleted; a folder is damaged half-way through a write
    write_status(started, state="failed", error="MemoryError: out of memory")
    completed = sorted(p for p in (root / "runs").iterdir() if "fixture_scratch_d256" in p.name)
    shutil.rmtree(completed[0])
    damaged = create_run(config, root)
    (damaged / "status.json").write_text('{"state": "runn')
    at.run()
    _clean(at, "runs failed, deleted, damaged")

    # everything is deleted
    shutil.rmtree(root / "runs")
    at.run()
    _clean(at, "all runs deleted")


@pytest.mark.parametrize("page", ["app.py", *PAGES])
def test_page_says_what_to_do_when_the_artifacts_folder_is_a_file(tmp_path, monkeypatch, page):
    (tmp_path / "afile").write_text("not a folder")
    monkeypatch.setenv("CNMC_ARTIFACTS", str(tmp_path / "afile"))
    at = AppTest.from_file(str(REPO / page), default_timeout=60).run()
    _clean(at, "artifacts folder is a file")
    errors = [str(e.value) for e in at.error]
    assert any("is a file, not a folder: point $CNMC_ARTIFACTS" in e for e in errors), errors
    assert (tmp_path / "afile").read_text() == "not a folder"
