"""cnmc_core.ensemble.report and the ensemble verb: the method comparison, saved ensemble folders,
CLI refusals and the GA's memory guards."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from run_fixtures import write_run

from cnmc_core import ensemble as E
from cnmc_core import metrics as M
from cnmc_core.cli.main import main
from cnmc_core.exceptions import ConfigError


# --------------------------------------------------------------------------- report, artifacts, CLI
def test_score_methods_report(three_runs):
    _, paths = three_runs
    aligned = E.align_runs(paths)
    rows, fitted = E.score_methods(aligned, ("mean", "ga", "stacking"), n_boot=50,
                                   params={"ga": {"restarts": 2, "generations": 10}})
    by = {r["method"]: r for r in rows}
    assert list(by) == ["member:A", "member:B", "member:C", "mean", "ga", "stacking"]
    test = aligned.splits["test"]
    ga = by["ga"]
    prob = fitted["ga"].predict_proba(test.probs)
    assert ga["test_weighted_f1"] == pytest.approx(M.weighted_f1(test.y, prob, ga["threshold"]))
    assert ga["test_ci"]["unit"] == "subject" and ga["test_ci"]["low"] <= ga["test_ci"]["high"]
    assert by["mean"]["diff_vs_mean"]["estimate"] == 0.0
    d = M.paired_bootstrap_diff(test.y, prob, test.probs.mean(axis=1), test.subject, n_boot=50)
    assert ga["diff_vs_mean"]["low"] == pytest.approx(d["low"])
    assert "logistic regression" in by["stacking"]["note"]
    text = E.format_report(rows, chosen="ga")
    assert "ga *" in text and "paper: GA weights" in text and "0.9552" in text and "0.9503" in text
    assert "protocol paper (leaky: split by image)" in text and "protocol: subject" in text


def test_cli_ensemble_saves_a_run_like_folder(three_runs, tmp_path, capsys):
    truth, paths = three_runs
    art = tmp_path / "artifacts"
    rc = main(["ensemble", "A", "B", "C", "--runs-dir", str(art), "--method", "ga",
               "--threshold", "best", "--seed", "3", "--n-boot", "40", "--name", "ens1",
               "--out", str(art / "ensembles")])
    out = capsys.readouterr().out.strip().splitlines()
    assert rc == 0
    folder = Path(out[-1])
    assert folder == art / "ensembles" / "ens1"
    assert any(line.startswith("ga *") for line in out)
    config = json.loads((folder / "config.json").read_text())
    assert config["kind"] == "ensemble" and config["members"] == ["A", "B", "C"]
    assert config["method"] == "ga" and config["threshold_rule"] == "best"
    assert set(config["weights"]) == {"A", "B", "C"}
    assert sum(config["weights"].values()) == pytest.approx(1.0)
    assert config["split_protocol"] == "subject" and config["dataset_fingerprint"] == "fp-1"
    assert json.loads((folder / "status.json").read_text())["state"] == "completed"
    metrics = json.loads((folder / "metrics.json").read_text())
    assert {"val", "test", "comparison", "paper_reference"} <= set(metrics)
    preds = pd.read_csv(folder / "predictions.csv")
    assert list(preds.columns) == ["image_id", "split", "y", "prob", "subject"]
    assert len(preds) == len(truth)
    member = E.load_predictions(folder)
    assert member.kind == "ensemble" and member.threshold == config["threshold"]
    rep = M.binary_report(preds.loc[preds.split == "test", "y"], preds.loc[preds.split == "test",
                                                                            "prob"],
                          config["threshold"])
    assert metrics["test"]["weighted_f1"] == pytest.approx(rep["weighted_f1"])
    # the same seed gives the same weights
    main(["ensemble", *map(str, paths), "--method", "ga", "--threshold", "best", "--seed", "3",
          "--n-boot", "0", "--report", "chosen", "--artifacts", str(art)])
    again = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert again.parent == art / "ensembles"  # by default beside its members
    assert json.loads((again / "config.json").read_text())["weights"] == config["weights"]
    # an ensemble is a member of a new ensemble
    rc = main(["ensemble", str(folder), "A", "--runs-dir", str(art), "--method", "mean",
               "--n-boot", "0", "--report", "chosen"])
    assert rc == 0
    nested = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert json.loads((nested / "config.json").read_text())["members"] == ["ens1", "A"]
    # and of error analysis
    assert main(["errors", str(folder), "A", "B", "--runs-dir", str(art)]) == 0
    assert "images by number of models that miss them" in capsys.readouterr().out


def test_cli_refusals(three_runs, tmp_path, capsys):
    truth, paths = three_runs
    art = tmp_path / "artifacts"
    write_run(art / "runs", "D", truth, np.full(len(truth), 0.5), protocol="paper")
    rc = main(["ensemble", "A", "D", "--runs-dir", str(art), "--out", str(tmp_path / "e")])
    err = capsys.readouterr().err
    assert rc == 2 and "error: Cannot align 2 runs" in err and "'D' 'paper'" in err
    assert not (tmp_path / "e").exists() or not any((tmp_path / "e").iterdir())
    rc = main(["ensemble", "A", "B", "--runs-dir", str(art), "--threshold", "sometimes"])
    assert rc == 2 and "The 'threshold' parameter must be" in capsys.readouterr().err
    rc = main(["ensemble", "A", "B", "--runs-dir", str(art), "--method", "weighted"])
    assert rc == 2 and "--method weighted needs --weights" in capsys.readouterr().err
    rc = main(["ensemble", "A", "B", "--runs-dir", str(art), "--method", "weighted",
               "--weights", "1,2", "--n-boot", "0", "--report", "chosen", "--name", "w"])
    assert rc == 0
    config = json.loads((art / "ensembles" / "w" / "config.json").read_text())
    assert config["weights"] == pytest.approx({"A": 1 / 3, "B": 2 / 3})
    assert config["member_paths"] == ["runs/A", "runs/B"]
    rc = main(["ensemble", "A", "B", "--runs-dir", str(art), "--method", "mean", "--n-boot", "0",
               "--report", "chosen", "--name", "w"])
    assert rc == 2 and "already exists" in capsys.readouterr().err
    # an ensemble lives in its members' workspace: elsewhere it is refused, nothing written
    rc = main(["ensemble", "A", "B", "--runs-dir", str(art), "--method", "mean", "--n-boot", "0",
               "--out", str(tmp_path / "elsewhere")])
    err = capsys.readouterr().err
    assert rc == 2 and f"is not in the workspace {tmp_path.resolve()}" in err
    assert f"create it in {art.resolve() / 'ensembles'}" in err
    assert not (tmp_path / "elsewhere").exists()


def test_ga_memory_guards_fail_before_any_work(tmp_path, three_runs, capsys):
    """Absurd GA sizes are refused with the memory they would take, not a MemoryError later;
    from the CLI before any ensemble folder exists."""
    rng = np.random.default_rng(0)
    X, y = rng.random((1000, 3)), rng.integers(0, 2, 1000)
    with pytest.raises(ConfigError, match=r"population_size=300000 on 1,000 images needs a "
                                          r"300,000,000-value matrix per generation .* lower "
                                          r"population_size"):
        E.GeneticWeights(population_size=300_000, generations=1, restarts=1).fit(X, y)
    _, paths = three_runs
    out = tmp_path / "ens"
    rc = main(["ensemble", *map(str, paths), "--method", "ga", "--ga-generations", "10000000",
               "--ga-restarts", "1000", "--runs-dir", str(tmp_path / "artifacts"), "--out", str(out)])
    assert rc == 2 and "lower restarts or generations" in capsys.readouterr().err
    assert not out.exists() or not list(out.iterdir())
