"""A real study on the local queue, end to end through the CLI: 2 presets x 3 folds x 1 seed of
tiny runs, followed to the end, pooled over every subject, compared, ensembled per fold."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from cnmc_core.cli.main import main
from cnmc_core.exceptions import RunError
from conftest import make_kaggle_tree

PRESETS = ["demo_scratch", "paper_scratch_d128"]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    data = make_kaggle_tree(root / "data", n_all=4, n_hem=3, per_subject=3) / "C-NMC_Leukemia"
    art = root / "art"
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(["study", "--presets", *PRESETS, "--data", str(data), "--folds", "3",
                   "--seeds", "1", "--epochs", "1", "--image-size", "64", "--artifacts", str(art)])
    lines = out.getvalue().strip().splitlines()
    return {"rc": rc, "lines": lines, "art": art, "data": data,
            "folder": next((art / "studies").iterdir())}


def test_the_study_completes_and_prints_its_folder_first_and_last(study):
    assert study["rc"] == 0, "\n".join(study["lines"])
    assert study["lines"][0] == str(study["folder"]) and study["lines"][-1] == str(study["folder"])
    assert any("6 runs: demo_scratch, paper_scratch_d128 x 3 folds x 1 seed(s)" in line
               for line in study["lines"])
    status = json.loads((study["folder"] / "status.json").read_text())
    assert status["state"] == "completed" and status["done"] == 6 and status["total"] == 6


def test_its_runs_are_ordinary_runs_tagged_with_the_study(study):
    from cnmc_core.study.store import read_study, study_runs

    entries = read_study(study["folder"])["runs"]
    assert {(e["preset"], e["fold"], e["seed"]) for e in entries} == \
        {(p, f, 0) for p in PRESETS for f in range(3)}
    for run in study_runs(study["folder"]):
        config = json.loads((run.path / "config.json").read_text())
        assert config["study"] == {"id": study["folder"].name, "preset": run.preset,
                                   "fold": run.fold, "seed": run.seed}
        assert config["kfold"] == {"k": 3, "fold": run.fold}
        assert run.path.parent == study["art"] / "runs"


def test_every_subject_is_scored_out_of_fold(study):
    from cnmc_core.data.manifest import resolve_manifest

    manifest = resolve_manifest(study["data"])
    labelled = manifest[manifest["y"] >= 0]
    pooled = pd.read_csv(study["folder"] / "pooled.csv", dtype={"image_id": str, "subject": str})
    for preset in PRESETS:
        rows = pooled[pooled["preset"] == preset]
        assert set(rows["image_id"]) == set(labelled["image_id"])
        assert (rows["n_seeds"] == 1).all()
    metrics = json.loads((study["folder"] / "metrics.json").read_text())
    for preset in PRESETS:
        score = metrics["presets"][preset]
        assert score["n_subjects"] == labelled["subject"].nunique() == 10
        assert len(score["folds"]) == 3
        ci = score["pooled"]["ci"]
        assert ci["unit"] == "subject" and ci["roc_auc"]["n_undefined"] == 0  # stratified


def test_presets_and_ensembles_are_compared_over_the_folds(study):
    from cnmc_core.study.report import format_study, paired_matrix, preset_table

    metrics = json.loads((study["folder"] / "metrics.json").read_text())
    pairs = {(c["a"], c["b"], c["metric"]) for c in metrics["comparisons"]}
    assert pairs == {(a, b, m) for a in PRESETS for b in PRESETS if a != b
                     for m in ("roc_auc", "weighted_f1")}
    for c in metrics["comparisons"]:
        assert c["folds"]["n"] + c["folds"]["n_undefined"] == 3
        assert c["folds"]["decided"] or c["folds"]["reason"]
        assert "estimate" in c["pooled"] or "reason" in c["pooled"]
    ens = metrics["ensembles"]
    assert {"ensemble:mean", "ensemble:ga", "ensemble:slsqp"} <= set(ens["presets"])
    assert any(c["a"] == "ensemble:ga" and c["b"] == "ensemble:mean" for c in ens["comparisons"])
    table = preset_table(metrics)
    assert list(table["name"][:2]) == PRESETS and table["n_subjects"].eq(10).all()
    assert len(paired_matrix(metrics)) == 2
    text = format_study(study["folder"])
    assert "demo_scratch - paper_scratch_d128" in text and "class-stratified subject bootstrap" in text


def test_the_study_as_aligned_members(study):
    from cnmc_core.study.ensembles import study_aligned
    from cnmc_core.study.store import study_runs

    aligned = study_aligned(study_runs(study["folder"]))
    assert aligned.members == sorted(PRESETS)
    assert aligned.splits["val"].probs.shape == aligned.splits["test"].probs.shape
    assert aligned.splits["test"].probs.shape[1] == 2


def test_a_finished_study_cannot_be_cancelled(study, capsys):
    assert main(["cancel", study["folder"].name, "--artifacts", str(study["art"])]) == 2
    assert "only a queued or running study can be cancelled" in capsys.readouterr().err
    with pytest.raises(RunError, match="completed"):
        from cnmc_core.study.runner import cancel_study

        cancel_study(study["folder"])


@pytest.mark.parametrize("change, words", [
    (lambda m: m["presets"].update(x=[1]), "'presets.x' is not an object"),
    (lambda m: m["presets"][next(iter(m["presets"]))].pop("folds"), "folds' is missing"),
    (lambda m: m.update(comparisons=[{"metric": "roc_auc"}]), "'comparisons[0]' is not a comparison"),
    (lambda m: m.update(ensembles=[]), "'ensembles' is not an object"),
])
def test_damaged_study_results_are_a_clear_error(tmp_path, change, words):
    import json

    from cnmc_core.exceptions import RunError
    from cnmc_core.study.results import read_results

    metrics = {"presets": {"p": {"pooled": {}, "folds": [], "fold_mean": {}, "fold_sd": {}}},
               "comparisons": []}
    assert read_results_ok(tmp_path, metrics)
    change(metrics)
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(RunError, match="metrics.json is damaged") as err:
        read_results(tmp_path)
    assert words in str(err.value) and "study --resume" in str(err.value)


def read_results_ok(folder, metrics) -> bool:
    import json

    from cnmc_core.study.results import read_results

    (folder / "metrics.json").write_text(json.dumps(metrics))
    return read_results(folder) == metrics


def test_resuming_a_completed_study_prints_its_results_and_starts_nothing(study, capsys):
    from cnmc_core.cli.main import main

    folder = study["folder"]
    status_before = (folder / "status.json").read_bytes()
    log = folder / "log.txt"
    log_before = log.read_bytes() if log.exists() else b""
    capsys.readouterr()
    assert main(["study", "--resume", folder.name, "--artifacts", str(study["art"])]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == str(folder) and out[-1] == str(folder)
    assert any("is completed; nothing to resume" in line for line in out)
    assert any("demo_scratch" in line for line in out)  # the summary of its presets
    assert (folder / "status.json").read_bytes() == status_before
    assert (log.read_bytes() if log.exists() else b"") == log_before  # no coordinator started
