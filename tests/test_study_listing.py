"""The studies of a workspace listed (study.listing), the ``runs`` verb's study lines, and what
Compare draws of a study (analysis.study_views), over study folders written by hand whose
results the real library computed (tests/study_fixture.py)."""

from __future__ import annotations

import contextlib
import io
import json

import pytest
from study_fixture import DONE, TWO, add_built_studies, write_study

from cnmc_core.analysis.study_views import (
    fold_dots_figure,
    paired_matrix_display,
    paired_pairs_display,
    study_preset_display,
)
from cnmc_core.cli.main import main
from cnmc_core.study.listing import (
    format_studies,
    list_studies,
    study_of_runs,
    study_progress,
)
from cnmc_core.study.report import preset_table
from cnmc_core.study.results import read_results

RUNNING = "study-20261201-000001-scratch-vgg16-cd34"


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    root = add_built_studies(tmp_path_factory.mktemp("studies"))
    return {"root": root, "done": root / "studies" / DONE, "two": root / "studies" / TWO}


@pytest.fixture
def ws(studies, tmp_path):
    """A copy with a running study (coordinator: this process) and a damaged one."""
    import shutil

    root = tmp_path / "art"
    shutil.copytree(studies["root"], root)
    write_study(root, RUNNING, state="running", done=3)
    bad = root / "studies" / "study-20261201-000009-bad-0000"
    bad.mkdir()
    (bad / "study.json").write_text("[]")
    (bad / "status.json").write_text(json.dumps({"state": "completed"}))
    return root


def test_every_study_is_listed_with_its_progress_and_damaged_ones_with_the_reason(ws):
    frame = list_studies(ws).set_index("study_id")
    assert len(frame) == 4
    done = frame.loc[DONE]
    assert done["state"] == "completed" and done["presets"] == ["demo_scratch", "demo_vgg16"]
    assert (done["folds"], done["seeds"], done["runs_done"], done["runs_total"]) == (4, 1, 8, 8)
    assert done["protocol_label"] == "subject-kfold" and len(done["run_ids"]) == 8
    running = frame.loc[RUNNING]
    assert running["state"] == "running" and (running["runs_done"], running["runs_total"]) == (3, 8)
    assert study_progress(running.to_dict()) == (3 / 8, "running - 3 of 8 runs done, 1 training")
    bad = frame.loc["study-20261201-000009-bad-0000"]
    assert bad["state"] == "damaged" and "study.json" in bad["error"]
    assert study_of_runs(frame.reset_index())[done["run_ids"][0]] == DONE


def test_a_killed_coordinator_shows_the_study_failed(ws):
    status = ws / "studies" / RUNNING / "status.json"
    data = json.loads(status.read_text())
    status.write_text(json.dumps({**data, "pid": 2 ** 22 + 7, "pid_start": "1"}))
    row = list_studies(ws).set_index("study_id").loc[RUNNING]
    assert row["state"] == "failed" and "is gone" in row["error"]
    fraction, text = study_progress(row.to_dict())
    assert fraction == 3 / 8 and text.startswith("failed - the run's process")


def test_no_studies_folder_lists_nothing(tmp_path):
    assert list_studies(tmp_path / "none").empty


def test_runs_verb_lists_studies_in_text_and_json(ws):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["runs", "--artifacts", str(ws)]) == 0
    text = out.getvalue()
    assert "studies:" in text
    line = next(x for x in text.splitlines() if DONE in x)
    assert "completed" in line and "demo_scratch demo_vgg16" in line and "4 folds x 1 seed(s)" in line
    assert "runs 8/8 done" in line and "subject-kfold, local" in line
    assert "runs 3/8 done" in next(x for x in text.splitlines() if RUNNING in x)
    assert "damaged" in next(x for x in text.splitlines() if "bad-0000" in x)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["runs", "--json", "--artifacts", str(ws)]) == 0
    records = json.loads(out.getvalue())
    studies = [r for r in records if r["kind"] == "study"]
    assert len(studies) == 4 and len([r for r in records if r["kind"] == "run"]) == 8 + 4 + 8
    mine = next(r for r in studies if r["study_id"] == DONE)
    assert mine["runs_done"] == 8 and mine["presets"] == ["demo_scratch", "demo_vgg16"]
    assert format_studies(list_studies(ws))[0].startswith(DONE)  # oldest first


def test_preset_table_shows_pooled_scores_with_cis_and_the_fold_spread(studies):
    results = read_results(studies["done"])
    table = preset_table(results)
    shown = study_preset_display(results)
    assert list(shown["preset"]) == list(table["name"])
    assert list(shown["kind"][:2]) == ["preset", "preset"] and "ensemble:ga" in set(shown["preset"])
    row, raw = shown.iloc[1], table.iloc[1]
    assert row["pooled OOF AUC [95% CI]"] == \
        f"{raw.auc:.3f} [{raw.auc_low:.3f}, {raw.auc_high:.3f}]"
    assert row["AUC folds mean ± sd"] == f"{raw.auc_fold_mean:.3f} ± {raw.auc_fold_sd:.3f}"
    assert row["subjects"] == 11  # every subject, out of fold


def test_paired_matrix_is_row_minus_column_with_ci_and_p(studies):
    results = read_results(studies["done"])
    matrix = paired_matrix_display(results, "roc_auc")
    assert list(matrix.index) == list(matrix.columns) == ["demo_scratch", "demo_vgg16"]
    assert matrix.loc["demo_scratch", "demo_scratch"] == "-"
    ab, ba = matrix.loc["demo_scratch", "demo_vgg16"], matrix.loc["demo_vgg16", "demo_scratch"]
    assert ab.startswith("+") and ba.startswith("-") and ", p=" in ab
    assert ab.split(", p=")[1] == ba.split(", p=")[1]
    pairs = paired_pairs_display(results, "roc_auc")
    assert len(pairs) == 1 and pairs.iloc[0]["A"] == "demo_scratch"
    ensembles = paired_matrix_display(results, "weighted_f1", ensembles=True)
    assert set(ensembles.index) == {"ensemble:ga", "ensemble:mean", "ensemble:slsqp"}


def test_undecided_comparisons_say_why_instead_of_a_number(studies):
    results = read_results(studies["two"])
    cell = paired_matrix_display(results, "roc_auc").loc["demo_scratch", "demo_vgg16"]
    assert cell.startswith("cannot be decided: 2 paired fold(s)") and "p=" not in cell
    pairs = paired_pairs_display(results, "roc_auc")
    assert pairs.iloc[0]["per-fold A - B [95% CI]"] == "cannot be decided"
    assert pairs.iloc[0]["p"] == "-"


def test_fold_dots_show_every_fold_and_the_pooled_score(studies):
    results = read_results(studies["done"])
    fig = fold_dots_figure(results, "weighted_f1")
    names = list(preset_table(results)["name"])
    assert len(fig.data) == 2 * len(names)
    dots = [t for t in fig.data if t.name.endswith(": folds")]
    assert all(len(t.x) == 4 for t in dots)  # 4 folds x 1 seed
    pooled = next(t for t in fig.data if t.name == "demo_vgg16: pooled")
    assert pooled.x[0] == pytest.approx(preset_table(results).set_index("name").loc["demo_vgg16", "wf1"])
