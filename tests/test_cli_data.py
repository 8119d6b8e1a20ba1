"""The data verbs of the CLI: scan, split, preprocess, as a user runs them."""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd
import pytest
from conftest import make_kaggle_tree

from cnmc_core.cli.main import main


def test_scan_split_preprocess(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CNMC_ARTIFACTS", str(tmp_path / "art"))
    make_kaggle_tree(tmp_path / "data", n_all=6, n_hem=5)
    assert main(["scan", str(tmp_path / "data"), "--out", str(tmp_path / "m.csv")]) == 0
    out = capsys.readouterr().out
    assert "prelim" in out and "final" in out and "subjects: all 8, hem 6" in out
    assert out.strip().splitlines()[-1] == str(tmp_path / "m.csv")
    manifest = pd.read_csv(tmp_path / "m.csv", keep_default_na=False)
    assert len(manifest) == 27

    assert main(["split", str(tmp_path / "m.csv"), "--protocol", "paper", "--out", str(tmp_path / "s.csv")]) == 0
    out = capsys.readouterr().out
    assert "leaky" in out and "WARNING" in out
    split = pd.read_csv(tmp_path / "s.csv")
    assert list(split.columns) == ["image_id", "split"] and set(split["split"]) == {"train", "val", "test"}

    assert main(["split", str(tmp_path / "m.csv"), "--out", str(tmp_path / "s2.csv")]) == 0
    assert "WARNING" not in capsys.readouterr().out

    assert main(["preprocess", str(tmp_path / "m.csv"), "--size", "32", "--jobs", "1"]) == 0
    assert "cache built: 27 images at 32x32" in capsys.readouterr().out
    assert main(["preprocess", str(tmp_path / "m.csv"), "--size", "32", "--jobs", "1"]) == 0
    assert "cache found (cache hit)" in capsys.readouterr().out


def test_errors_are_messages_not_tracebacks(tmp_path, capsys):
    assert main(["scan", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Dataset root") and "Traceback" not in err
    assert main(["split", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "s.csv")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["split", str(tmp_path), "--protocol", "bogus", "--out", str(tmp_path / "s.csv")]) == 2
    err = capsys.readouterr().err
    assert "The '--protocol' parameter must be one of {'subject', 'paper', 'official'}. Got 'bogus'" in err
    assert "--kfold K --fold I" in err


def test_module_entry_point(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "cnmc_core", "scan", str(tmp_path / "missing")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "does not exist" in proc.stderr


# Each row: a mistake in the arguments -> the message. The dataset named does not exist, so a
# verb that read it before checking its arguments would say that instead: every argument is
# checked first, and nothing is written.
@pytest.mark.parametrize("argv, message", [
    (["split", "{data}", "--fractions", "nan,0.5,0.5"],  # used to loop forever at 100% CPU
     "The '--fractions' parameter must be a float in the range (0, 1). Got nan instead. Give three "
     "shares (train, val, test) above 0 that sum to 1, e.g. 0.6,0.2,0.2."),
    (["split", "{data}", "--fractions", "inf,0.5,0.5"], "Got inf instead"),
    (["split", "{data}", "--fractions", "0.5,0.5,0.5"],
     "The '--fractions' parameter must sum to 1. Got [0.5, 0.5, 0.5] (sum 1.5) instead."),
    (["split", "{data}", "--fractions", "0.6,0.4"], "The '--fractions' parameter must be three numbers."),
    (["split", "{data}", "--fractions", "0.6,x,0.2"], "must be a float in the range (0, 1). Got 'x' instead."),
    (["split", "{data}", "--fractions", "0,0.5,0.5"], "Got 0.0 instead."),
    (["split", "{data}", "--seed", "-1"],
     "The '--seed' parameter must be an int in the range [0, 4294967295]. Got -1 instead. Use a whole "
     "number such as 0, 1 or 42."),
    (["split", "{data}", "--seed", str(2**32)], f"Got {2**32} instead."),
    (["split", "{data}", "--kfold", "2"], "The '--kfold' parameter must be an int in the range [3, inf]. Got 2"),
    (["split", "{data}", "--kfold", "5", "--fold", "5"],
     "The '--fold' parameter must be an int in the range [0, 4]. Got 5 instead."),
    (["split", "{data}", "--kfold", "5", "--fold", "-1"], "Got -1 instead."),
    (["split", "{data}", "--kfold", "5", "--seed", "-3"], "The '--seed' parameter must be an int"),
    (["split", "{data}", "--kfold", "5", "--protocol", "paper"], "--kfold is subject-grouped"),
    (["preprocess", "{data}", "--size", "8"],
     "The '--size' parameter must be an int in the range [16, 1024]. Got 8 instead. Use the model's input side"),
    (["synth", "{tmp}/synth", "--size", "31"],
     "The 'size' parameter must be an int in the range [32, 2048]. Got 31 instead. Use e.g. --size 450"),
])
def test_argument_mistakes_exit_2_with_the_rule_and_write_nothing(tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.setenv("CNMC_ARTIFACTS", str(tmp_path / "art"))
    argv = [a.format(data=tmp_path / "no-such-dataset", tmp=tmp_path) for a in argv]
    if argv[0] == "split":
        argv += ["--out", str(tmp_path / "out" / "s.csv")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err, err
    assert os.listdir(tmp_path) == [], "nothing is written for bad arguments"
