"""The explain verb on saved runs and an ensemble of them."""

from __future__ import annotations

import glob
import shutil

import cv2
import numpy as np
import pytest

from cnmc_core.cli.main import main
from cnmc_core.explain.members import explain_path, leaf_weights


def _image(workspace):
    return sorted(glob.glob(str(workspace["data"] / "**" / "fold_0" / "all" / "*.bmp"), recursive=True))[0]


def test_explain_run_writes_a_figure(workspace, tmp_path, capsys):
    run = workspace["runs"][0]
    for method in ("gradcam", "gradcam++", "activations"):
        out = tmp_path / f"{method}.png"
        assert main(["explain", str(run), _image(workspace), "--out", str(out), "--method", method,
                     "--class", "all", "--artifacts", str(workspace["artifacts"])]) == 0
        lines = capsys.readouterr().out.strip().splitlines()
        assert lines[-1] == str(out)
        figure = cv2.imread(str(out))
        assert figure is not None and figure.shape[0] > 300 and figure.shape[1] > 600
        # first what the model is: its data and its score
        assert lines[0].startswith(f"{run.name}: trained on real data (recorded) · test AUC")
        if method != "activations":
            assert "for class all" in lines[1] and "P(ALL)" in lines[1]


def test_explain_ensemble_combines_members(workspace, tmp_path, capsys):
    # an ensemble is saved in its members' workspace: a private copy, not the shared one
    art = shutil.copytree(workspace["artifacts"], tmp_path / "artifacts")
    runs = [art / "runs" / run.name for run in workspace["runs"]]
    assert main(["ensemble", *map(str, runs), "--method", "mean", "--artifacts", str(art)]) == 0
    ens = capsys.readouterr().out.strip().splitlines()[-1]
    members = leaf_weights([ens])
    assert sorted(m[1] for m in members) == sorted(runs)
    assert sum(w for _, _, w in members) == pytest.approx(1.0)
    from cnmc_core.data.images import read_image

    explanation = explain_path(ens, read_image(_image(workspace)), method="gradcam")
    assert len(explanation.members) == 3 and explanation.ensemble_heatmap is not None
    assert np.isfinite(explanation.ensemble_heatmap).all()
    assert explanation.ensemble_prob == pytest.approx(np.mean([m.prob for m in explanation.members]))
    assert len({m.target for m in explanation.members}) == 1  # one class for the combined map
    out = tmp_path / "ens.png"
    assert main(["explain", ens, _image(workspace), "--out", str(out), "--artifacts", str(art)]) == 0
    assert "ensemble: P(ALL)" in capsys.readouterr().out


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--method", "lime"], "'--method' parameter must be one of"),
        (["--class", "cancer"], "'--class' parameter must be one of"),
        (["--layer", "nope"], "nope"),
    ],
)
def test_explain_bad_arguments(workspace, tmp_path, capsys, extra, message):
    rc = main(["explain", str(workspace["runs"][0]), _image(workspace), "--out", str(tmp_path / "x.png"),
               "--artifacts", str(workspace["artifacts"]), *extra])
    assert rc == 2 and message in capsys.readouterr().err


def test_explain_refuses_failed_run_and_bad_out(workspace, tmp_path, capsys):
    art = ["--artifacts", str(workspace["artifacts"])]
    assert main(["explain", str(workspace["failed"]), _image(workspace), "--out", str(tmp_path / "x.png"), *art]) == 2
    assert "has no model.keras" in capsys.readouterr().err
    assert main(["explain", str(workspace["runs"][0]), _image(workspace), "--out", str(tmp_path / "x.jpg"), *art]) == 2
    assert "--out must be a .png file" in capsys.readouterr().err
