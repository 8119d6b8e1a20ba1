"""The data verbs of the CLI: scan, split, preprocess, as a user runs them."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
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
    assert "The split protocol must be one of ['official', 'paper', 'subject']" in capsys.readouterr().err


def test_module_entry_point(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "cnmc_core", "scan", str(tmp_path / "missing")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "does not exist" in proc.stderr
