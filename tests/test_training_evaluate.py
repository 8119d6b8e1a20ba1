"""cnmc_core.training.evaluate: re-scoring a trained run, in a fresh process as a user runs it;
arguments and the model checked before anything is written."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import make_kaggle_tree

from cnmc_core.cli.main import main
from cnmc_core.exceptions import ConfigError
from cnmc_core.training.evaluate import evaluate_run

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny dataset and a 1-epoch run trained on it through the CLI."""
    root = tmp_path_factory.mktemp("evaluate")
    data = make_kaggle_tree(root / "data", n_all=6, n_hem=6, per_subject=4)
    art = root / "art"
    proc = subprocess.run([sys.executable, "-m", "cnmc_core", "train", "--preset", "demo_scratch",
                           "--data", str(data), "--epochs", "1", "--set", "batch_size=8",
                           "--artifacts", str(art)], cwd=REPO, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return {"data": data, "art": art, "run": Path(proc.stdout.strip().splitlines()[-1])}


def _copy(run: Path, tmp_path: Path) -> Path:
    """A private copy of the run (evaluations are written into the run folder), in the
    workspace ``tmp_path`` (a run is used only from its workspace: ``--artifacts tmp_path``)."""
    copy = tmp_path / "runs" / run.name
    shutil.copytree(run, copy)
    return copy


def test_evaluate_in_a_fresh_process(trained, tmp_path):
    """A new interpreter that only runs the verb: the model's own layers must load without any
    import the training process made (issue 12: 'Could not locate class ImageNetPreprocess')."""
    run = _copy(trained["run"], tmp_path)
    proc = subprocess.run([sys.executable, "-m", "cnmc_core", "evaluate", str(run), "--data",
                           str(trained["data"]), "--source", "prelim", "--artifacts",
                           str(tmp_path)], cwd=REPO, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    out = Path(lines[-1])
    assert out.parent == run / "evaluations" and out.name.endswith("-all-prelim")
    assert lines[-2].startswith("3 images scored, every labelled image of source prelim: weighted F1")
    metrics = json.loads((out / "metrics.json").read_text())
    preds = pd.read_csv(out / "predictions.csv")
    assert metrics["test"]["n"] == 3 and metrics["source"] == "prelim" and len(preds) == 3
    assert preds["prob"].between(0, 1).all() and set(preds["split"]) == {"test"}


def test_the_split_of_a_protocol_is_named_leaky_for_the_paper(trained, tmp_path):
    run = _copy(trained["run"], tmp_path)
    lines = []
    out, metrics = evaluate_run(run, trained["data"], split="paper", artifacts=trained["art"],
                                log=lines.append)
    assert out.name.endswith("-paper") and metrics["split"] == "paper"
    assert "the test split of protocol paper (leaky: split by image)" in lines[0]


@pytest.mark.parametrize("argv, message", [
    (["--source", "../../../outside"],
     r"The '--source' parameter of evaluate must be one of \{'fold_0', 'fold_1', 'fold_2', 'prelim', "
     r"'final', 'unknown'\}\. Got '../../../outside' instead"),
    (["--source", "/tmp/abs"], r"'--source' parameter .* Got '/tmp/abs' instead"),
    (["--split", "random"], r"The '--split' parameter of evaluate must be one of \{'all', 'subject', "
                            r"'paper', 'official'\}"),
])
def test_bad_arguments_write_nothing(trained, tmp_path, capsys, argv, message):
    import re

    run = _copy(trained["run"], tmp_path)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    rc = main(["evaluate", str(run), "--data", str(trained["data"]), *argv,
               "--artifacts", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and re.search(message, err), err
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
    assert not (run / "evaluations").exists()


def test_the_library_checks_the_source_too(trained, tmp_path):
    run = _copy(trained["run"], tmp_path)
    with pytest.raises(ConfigError, match="'--source' parameter"):
        evaluate_run(run, trained["data"], source="x/../../y")
    assert not (run / "evaluations").exists()


def test_a_damaged_model_is_an_error_not_a_traceback(trained, tmp_path, capsys):
    run = _copy(trained["run"], tmp_path)
    (run / "model.keras").write_bytes(b"garbage, not a zip")
    rc = main(["evaluate", str(run), "--data", str(trained["data"]), "--artifacts",
               str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith(f"error: cannot load model file {run / 'model.keras'}"), err
    assert "Traceback" not in err and not (run / "evaluations").exists()


def test_a_run_without_a_model(trained, tmp_path, capsys):
    run = _copy(trained["run"], tmp_path)
    (run / "model.keras").unlink()
    assert main(["evaluate", str(run), "--data", str(trained["data"]), "--artifacts",
                 str(tmp_path)]) == 2
    assert "has no model.keras; only completed runs can be evaluated" in capsys.readouterr().err
