"""The ``predict`` verb: provenance and score of the model, the synthetic warning, P(ALL) per
image, the flags of images outside what the model saw, and the CSV."""

from __future__ import annotations

import pandas as pd

from cnmc_core.cli.main import main
from cnmc_core.data.feature_ranges import OUTSIDE_TEXT
from cnmc_core.model_cards import SYNTHETIC_WARNING


def test_predict_says_what_the_model_is_and_flags_real_cells(synth_workspace, real_samples,
                                                            tmp_path, capsys):
    run = synth_workspace["run"]
    own = sorted(synth_workspace["data"].rglob("*.png"))[:2]  # cells like its training cells
    real = sorted(real_samples.glob("all/*.bmp"))[:2]
    out = tmp_path / "scores.csv"
    rc = main(["predict", str(run), *map(str, own + real), "--out", str(out),
               "--artifacts", str(synth_workspace["artifacts"])])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    lines = captured.out.strip().splitlines()
    assert lines[0].startswith(f"{run.name}: trained on synthetic data (generator v")
    assert "test AUC" in lines[0] and "protocol subject" in lines[0]
    assert f"warning: {run.name}: {SYNTHETIC_WARNING}." in captured.err
    assert lines[-1] == str(out)
    frame = pd.read_csv(out, keep_default_na=False)
    assert frame["file"].tolist() == [p.name for p in own + real]
    assert frame[OUTSIDE_TEXT].tolist()[:2] == ["", ""]
    assert all(frame[OUTSIDE_TEXT].tolist()[2:])
    for line, flag in zip(lines[1:-1], frame[OUTSIDE_TEXT]):
        assert (f"{OUTSIDE_TEXT}: {flag}" in line) == bool(flag)


def test_predict_refuses_before_writing(synth_workspace, tmp_path, capsys):
    run = synth_workspace["run"]
    image = str(sorted(synth_workspace["data"].rglob("*.png"))[0])
    assert main(["predict", str(run), image, "--out", str(tmp_path / "x.txt"),
                 "--artifacts", str(synth_workspace["artifacts"])]) == 2
    assert "--out must be a .csv file" in capsys.readouterr().err
    missing = tmp_path / "nope.png"
    assert main(["predict", str(run), str(missing), "--out", str(tmp_path / "x.csv"),
                 "--artifacts", str(synth_workspace["artifacts"])]) == 2
    assert str(missing) in capsys.readouterr().err and not (tmp_path / "x.csv").exists()
