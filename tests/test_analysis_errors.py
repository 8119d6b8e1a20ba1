"""cnmc_core.analysis.errors on a hand-made 3-model case whose numbers are worked out below."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import cohen_kappa_score

from cnmc_core.analysis import errors as EA
from cnmc_core.cli.main import main
from cnmc_core.ensemble.align import align_runs
from cnmc_core.exceptions import CnmcError

#   image  y   A  B  C   (1 = right)   missed by
#   i0     1   1  1  1                 -
#   i1     1   0  1  1                 A
#   i2     0   0  0  1                 A B      (only C right)
#   i3     0   0  0  0                 A B C
#   i4     1   1  0  1                 B
#   i5     0   1  1  0                 C
#   i6     0   0  1  0                 A C      (only B right)
#   i7     1   1  0  0                 B C      (only A right)
#   i8     0   1  0  1                 B
Y = np.array([1, 1, 0, 0, 1, 0, 0, 1, 0])
RIGHT = np.array([[1, 1, 1], [0, 1, 1], [0, 0, 1], [0, 0, 0], [1, 0, 1], [1, 1, 0], [0, 1, 0],
                  [1, 0, 0], [1, 0, 1]], dtype=bool)
IDS = [f"i{k}" for k in range(9)]
NAMES = ["A", "B", "C"]


def probs_for(right: np.ndarray, y: np.ndarray) -> np.ndarray:
    """P(ALL) that makes each model right or wrong as asked (0.8 / 0.2)."""
    predicted_all = np.where(right, y[:, None] == 1, y[:, None] == 0)
    return np.where(predicted_all, 0.8, 0.2)


@pytest.fixture
def correct() -> pd.DataFrame:
    return EA.correctness_matrix(Y, probs_for(RIGHT, Y), 0.5, IDS, NAMES)


def test_correctness_matrix(correct):
    assert correct.shape == (9, 3) and list(correct.columns) == NAMES
    np.testing.assert_array_equal(correct.to_numpy(), RIGHT)
    # per-model thresholds; prob == threshold counts as ALL
    probs = np.array([[0.5, 0.5], [0.5, 0.5]])
    c = EA.correctness_matrix([1, 0], probs, [0.5, 0.6])
    assert c.to_numpy().tolist() == [[True, False], [False, True]]


def test_histogram(correct):
    h = EA.miss_histogram(correct, Y)
    assert h["images"].tolist() == [1, 4, 3, 1]
    assert h["hem"].tolist() == [0, 2, 2, 1]
    assert h["all"].tolist() == [1, 2, 1, 0]
    assert EA.miss_histogram(correct).columns.tolist() == ["images"]


def test_intersections(correct):
    t = EA.miss_intersections(correct, Y)
    sets = [tuple(n for n in NAMES if row[n]) for _, row in t.iterrows()]
    assert sets == [("B",), ("A",), ("C",), ("A", "B"), ("A", "C"), ("B", "C"), ("A", "B", "C")]
    assert t["size"].tolist() == [2, 1, 1, 1, 1, 1, 1]
    assert t["inclusive_size"].tolist() == [5, 4, 4, 2, 2, 2, 1]
    assert t["degree"].tolist() == [1, 1, 1, 2, 2, 2, 3]
    assert t["images"].tolist() == [["i4", "i8"], ["i1"], ["i5"], ["i2"], ["i6"], ["i7"], ["i3"]]
    assert t["hem"].tolist() == [1, 0, 1, 1, 1, 0, 1]
    assert t["all"].tolist() == [1, 1, 0, 0, 0, 1, 0]
    assert t["size"].sum() == 9 - 1  # every missed image is in exactly one exclusive set
    # all 2**3 - 1 sets with include_empty, even when one is empty
    drop_i3 = correct.drop(index="i3")
    assert len(EA.miss_intersections(drop_i3)) == 6
    assert len(EA.miss_intersections(drop_i3, include_empty=True)) == 7


def test_unique_right_and_wrong(correct):
    assert EA.unique_correct(correct) == {"A": ["i7"], "B": ["i6"], "C": ["i2"]}
    assert EA.unique_wrong(correct) == {"A": ["i1"], "B": ["i4", "i8"], "C": ["i5"]}


def test_per_class(correct):
    pc = EA.per_class_breakdown(correct, Y)
    assert pc["errors"].tolist() == [4, 5, 4]
    assert pc["errors_hem"].tolist() == [3, 3, 3]
    assert pc["errors_all"].tolist() == [1, 2, 1]
    assert pc.loc["B", "error_rate_all"] == pytest.approx(2 / 4)
    assert pc.loc["A", "error_rate_hem"] == pytest.approx(3 / 5)


def test_pairwise_diversity(correct):
    d = EA.pairwise_diversity(correct, Y).set_index(["model_a", "model_b"])
    assert list(d.index) == [("A", "B"), ("A", "C"), ("B", "C")]
    ab = d.loc[("A", "B")]
    assert (ab["n11"], ab["n10"], ab["n01"], ab["n00"]) == (2, 3, 2, 2)
    assert ab["q"] == pytest.approx(-0.2)
    assert ab["correlation"] == pytest.approx(-0.1)
    assert ab["disagreement"] == pytest.approx(5 / 9)
    assert ab["double_fault"] == pytest.approx(2 / 9)
    preds = np.where(RIGHT, Y[:, None], 1 - Y[:, None])
    for (a, b), row in d.iterrows():
        i, j = NAMES.index(a), NAMES.index(b)
        assert row["kappa"] == pytest.approx(cohen_kappa_score(preds[:, i], preds[:, j]))
    # undefined Q (a perfect model: no pair of errors) is NaN, not an error
    perfect = pd.DataFrame({"P": [True] * 4, "X": [True, False, True, False]})
    assert np.isnan(EA.pairwise_diversity(perfect)["q"].iloc[0])


@pytest.mark.parametrize(
    "call, err_msg",
    [
        (lambda: EA.correctness_matrix([0, 1], np.zeros(2)), r"probs of shape \(n, n_models\)"),
        (lambda: EA.correctness_matrix([0, 2], np.zeros((2, 1))), r"only 0 \(HEM\) and 1 \(ALL\)"),
        (lambda: EA.correctness_matrix([0, 1], np.zeros((2, 2)), model_names=["a", "a"]),
         "2 distinct names"),
        (lambda: EA.miss_histogram(pd.DataFrame({"a": [1, 0]})), "must be boolean"),
        (lambda: EA.miss_histogram(np.zeros((2, 2), bool)), "as a DataFrame"),
    ],
)
def test_errors(call, err_msg):
    with pytest.raises(CnmcError, match=err_msg):
        call()


def _write_run(root: Path, name: str, probs: np.ndarray) -> Path:
    path = root / name
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"run_id": name, "kind": "run", "model": "m",
                                                  "split_protocol": "paper",
                                                  "dataset_fingerprint": "f"}))
    (path / "status.json").write_text('{"state": "completed"}')
    frame = pd.DataFrame({"image_id": IDS * 2, "split": ["test"] * 9 + ["val"] * 9,
                          "y": np.r_[Y, Y], "prob": np.r_[probs, probs]})
    frame.to_csv(path / "predictions.csv", index=False)
    return path


def test_analyse_errors_and_cli(tmp_path, capsys):
    probs = probs_for(RIGHT, Y)
    paths = [_write_run(tmp_path / "runs", n, probs[:, j]) for j, n in enumerate(NAMES)]
    report = EA.analyse_errors(align_runs(paths), "test")
    assert report["n"] == 9 and report["thresholds"] == [0.5, 0.5, 0.5]
    assert report["histogram"]["images"].tolist() == [1, 4, 3, 1]
    assert report["unique_correct"] == {"A": ["i7"], "B": ["i6"], "C": ["i2"]}
    assert main(["errors", "A", "B", "C", "--runs-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "test split: 9 images (5 HEM, 4 ALL), 3 models, protocol paper" in out
    assert "  3 of 3: 1 (HEM 1, ALL 0)" in out
    assert "  B: 2 (HEM 1, ALL 1)" in out
    assert "  B: only right on 1, only wrong on 2" in out
    assert "A vs B: Q=-0.200 rho=-0.100" in out
    assert main(["errors", "A", "B", "--runs-dir", str(tmp_path), "--threshold", "2"]) == 2
    assert "--threshold must be in [0, 1]" in capsys.readouterr().err
