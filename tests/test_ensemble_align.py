"""cnmc_core.ensemble.align: run folders written by hand, loading and alignment, refusals by message."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from run_fixtures import make_truth, write_run

from cnmc_core import ensemble as E
from cnmc_core.exceptions import CnmcError, RunError
from cnmc_core.workspace import layout


# --------------------------------------------------------------------------- loading
def test_load_and_align_reorders_by_image(three_runs):
    truth, paths = three_runs
    aligned = E.align_runs(paths)
    assert aligned.members == ["A", "B", "C"] and aligned.split_protocol == "subject"
    test = aligned.splits["test"]
    # every member's column is its own prob of the same image, whatever its row order
    for j, path in enumerate(paths):
        frame = pd.read_csv(path / "predictions.csv", dtype={"image_id": str}).set_index(
            ["split", "image_id"])
        expected = frame.loc[[("test", i) for i in test.image_id], "prob"].to_numpy()
        np.testing.assert_array_equal(test.probs[:, j], expected)
    by_id = truth.set_index("image_id")
    assert (test.y == by_id.loc[test.image_id, "y"].to_numpy()).all()
    assert (test.subject == by_id.loc[test.image_id, "subject"].to_numpy()).all()


@pytest.mark.parametrize(
    "change, err_msg",
    [
        (lambda p: (p / "predictions.csv").unlink(),
         r"has no predictions.csv: the run may not be finished"),
        (lambda p: (p / "status.json").write_text('{"state": "running"}'),
         r"run 'B' is 'running', not 'completed'"),
        (lambda p: (p / "config.json").write_text('{"run_id": "B", "split_protocol": "subject"}'),
         r"has no 'dataset_fingerprint'"),
        (lambda p: (p / "predictions.csv").write_text("image_id,split,y\nx,val,1\n"),
         r"lacks the column\(s\) \['prob'\]"),
        (lambda p: (p / "predictions.csv").write_text("image_id,split,y,prob\nx,val,1,1.5\n"),
         r"prob must be a probability P\(ALL\) in \[0, 1\]"),
        (lambda p: (p / "predictions.csv").write_text("image_id,split,y,prob\nx,val,2,0.5\n"),
         r"y must be 0 \(HEM\) or 1 \(ALL\)"),
        (lambda p: (p / "predictions.csv").write_text("image_id,split,y,prob\nx,train,1,0.5\n"),
         r"split must be 'val' or 'test'; got \['train'\]"),
        (lambda p: (p / "predictions.csv").write_text(
            "image_id,split,y,prob\nx,val,1,0.5\nx,val,1,0.5\n"), r"1 duplicated \(image_id, split\)"),
        (lambda p: (p / "config.json").write_text("{oops"), r"is not valid JSON"),
    ],
)
def test_load_predictions_refuses_bad_runs(three_runs, change, err_msg):
    _, paths = three_runs
    change(paths[1])
    with pytest.raises(RunError, match=err_msg):
        E.align_runs(paths)


def test_misaligned_runs_are_refused_by_message(tmp_path):
    truth = make_truth(n_val=20, n_test=10)
    runs = tmp_path / "runs"
    a = write_run(runs, "A", truth, np.full(len(truth), 0.4))
    test_rows = truth.index[truth["split"] == "test"][:3]
    b = write_run(runs, "B", truth, np.full(len(truth), 0.6), drop=test_rows)
    with pytest.raises(RunError) as info:
        E.align_runs([a, b])
    msg = str(info.value)
    missing = ", ".join(sorted(truth.loc[test_rows, "image_id"]))
    assert f"run 'B' has 7 test images, run 'A' 10; 3 test images of 'A' are missing from 'B': {missing}" in msg
    assert "never silently intersected" in msg

    c = write_run(runs, "C", truth, np.full(len(truth), 0.5), protocol="paper",
                  fingerprint="fp-2")
    flipped = truth.copy()
    flipped.loc[flipped.index[:2], "y"] = 1 - flipped.loc[flipped.index[:2], "y"]
    d = write_run(runs, "D", flipped, np.full(len(truth), 0.5))
    with pytest.raises(RunError) as info:
        E.align_runs([a, c, d])
    msg = str(info.value)
    assert "split protocol differs (split_protocol): 'A' 'subject', 'C' 'paper', 'D' 'subject'" in msg
    assert "dataset differs (dataset_fingerprint)" in msg
    assert "'D' labels 2 val images differently from 'A'" in msg

    with pytest.raises(RunError, match=r"Run\(s\) \['A'\] given more than once"):
        E.align_runs([a, a])
    with pytest.raises(RunError, match="At least 2 runs are needed; got 1"):
        E.align_runs([a])


def test_resolve_member_by_id(three_runs, tmp_path):
    _, paths = three_runs
    assert layout.resolve_member("B", tmp_path / "artifacts") == paths[1]
    assert layout.resolve_member(paths[0], tmp_path / "artifacts") == paths[0]
    with pytest.raises(RunError, match="Run 'Z' not found"):
        layout.resolve_member("Z", tmp_path / "artifacts")
    with pytest.raises(CnmcError, match="Invalid run id '../x'"):
        layout.resolve_member("../x", tmp_path / "artifacts")
