"""The library behind the Home, Data, Train and Compare pages: listing runs and ensembles,
smoothing, stage boundaries, metric tables, confusion differences, config diffs, progress text,
workspace settings, the stored scan, and launching from form values."""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cnmc_core.compare import (
    EXPERIMENT_COLUMNS, config_diff, confusion_difference, confusion_frame, debiased_ema, default_selection,
    display_name, ema, flatten_config, history_frame, history_metrics, list_experiments, load_curve_points,
    metrics_table, read_log_tail, row_normalised, run_progress, runs_table, smooth_curves, stage_boundaries,
    workspace_counts, workspace_signature,
)
from cnmc_core.exceptions import CnmcError, ConfigError, DataError
from cnmc_core.runs import append_history, create_run, write_status


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def ws_copy(workspace, tmp_path_factory):
    """A private copy of the session workspace plus a saved mean ensemble of its 3 runs."""
    from cnmc_core.ensemble import build_ensemble

    root = tmp_path_factory.mktemp("compare") / "artifacts"
    shutil.copytree(workspace["artifacts"], root)
    runs = sorted(p for p in (root / "runs").iterdir() if "fixture_" in p.name)
    ens, _ = build_ensemble(runs, method="mean", compare=("mean",), n_boot=20,
                            out_dir=root / "ensembles")
    return {"root": root, "runs": runs, "ensemble": ens,
            "failed": root / "runs" / workspace["failed"].name, "data": workspace["data"]}


# --------------------------------------------------------------------------- listing
def test_list_experiments_lists_runs_and_ensembles_together(ws_copy):
    frame = list_experiments(ws_copy["root"])
    assert list(frame.columns) == EXPERIMENT_COLUMNS
    assert sorted(frame["kind"].value_counts().items()) == [("ensemble", 1), ("run", 4)]
    ens = frame[frame["kind"] == "ensemble"].iloc[0]
    assert ens["state"] == "completed" and ens["model"] == "ensemble:mean"
    assert ens["protocol"] == "subject" and 0 <= ens["test_weighted_f1"] <= 1
    assert ens["run_id"] == ws_copy["ensemble"].name
    failed = frame[frame["state"] == "failed"].iloc[0]
    assert "MemoryError" in failed["error"]
    # newest first
    assert list(frame["created_ts"]) == sorted(frame["created_ts"], reverse=True)


def test_runs_created_in_the_same_second_keep_their_creation_order(tmp_path):
    runs = [create_run({"name": name, "model": "m", "stages": [{"epochs": 1}]}, tmp_path)
            for name in ("zeta", "alpha", "mid")]  # names sort otherwise
    frame = list_experiments(tmp_path)
    assert list(frame["run_id"]) == [p.name for p in reversed(runs)]
    assert list(runs_table(frame)["run_id"]) == [p.name for p in runs]


def test_list_experiments_on_empty_workspace(tmp_path):
    frame = list_experiments(tmp_path)
    assert frame.empty and list(frame.columns) == EXPERIMENT_COLUMNS
    assert workspace_counts(frame) == {"runs": 0, "completed": 0, "active": 0, "running": 0, "queued": 0,
                                       "failed": 0, "cancelled": 0, "ensembles": 0}
    assert runs_table(frame).empty


def test_damaged_ensemble_folder_is_listed_as_failed(tmp_path):
    folder = tmp_path / "ensembles" / "ens-broken"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{not json")
    frame = list_experiments(tmp_path)
    assert frame.iloc[0]["state"] == "failed" and "not valid JSON" in frame.iloc[0]["error"]


def test_workspace_counts_and_signature_changes(ws_copy, tmp_path):
    frame = list_experiments(ws_copy["root"])
    assert workspace_counts(frame) == {"runs": 4, "completed": 3, "active": 0, "running": 0, "queued": 0,
                                       "failed": 1, "cancelled": 0, "ensembles": 1}
    root = tmp_path / "a"
    shutil.copytree(ws_copy["root"] / "runs", root / "runs")
    before = workspace_signature(root)
    assert before == workspace_signature(root)
    run = next(p for p in (root / "runs").iterdir() if p.is_dir() and not p.name.startswith("."))
    time.sleep(0.01)
    append_history(run, {"epoch": 9, "loss": 0.1})
    assert workspace_signature(root) != before


def test_display_name_strips_creation_time():
    assert display_name("20261126-005214-demo_scratch-7700") == "demo_scratch-7700"
    assert display_name("ens-ga-20261126-010203-abc123") == "ens-ga-abc123"
    assert display_name("my-own-name") == "my-own-name"


def test_runs_table_is_oldest_first_with_ci_text_and_leak_label(ws_copy):
    table = runs_table(list_experiments(ws_copy["root"]))
    assert list(table["created_ts"]) == sorted(table["created_ts"])
    row = table[table["kind"] == "run"].iloc[0]
    assert row["state"] == "completed" and row["epochs"] == "2 of 2"
    assert row["test F1 [95% CI]"].count("[") == 1 and row["test F1 [95% CI]"].endswith("]")
    failed = table[table["state"] == "failed"].iloc[0]
    assert failed["test F1 [95% CI]"] == "" and failed["epochs"] == "1 of 3"
    # the ensemble has no epochs; a leaky protocol is labelled as such
    assert table[table["kind"] == "ensemble"].iloc[0]["epochs"] == ""
    frame = list_experiments(ws_copy["root"]).assign(protocol="paper")
    assert set(runs_table(frame)["protocol"]) == {"paper (leaky: split by image)"}


def test_default_selection_takes_the_newest_completed():
    table = pd.DataFrame({"state": ["completed", "failed", "completed", "running", "completed"]})
    assert default_selection(table) == [0, 2, 4]
    assert default_selection(table, limit=2) == [2, 4]
    assert default_selection(table.iloc[[1, 3]]) == []


# --------------------------------------------------------------------------- progress
@pytest.mark.parametrize("status, fraction, text", [
    ({"state": "queued", "message": "waiting in the queue"}, 0.0, "queued - waiting in the queue"),
    ({"state": "running", "epoch": 3, "epochs": 8, "batch": 10, "batches": 40, "stage": "train",
      "message": "train: epoch 3"}, (2 + 0.25) / 8, "running - train: epoch 3 of 8, batch 10 of 40"),
    ({"state": "running", "epoch": 0, "epochs": 8, "message": "preprocessing images 5/65"}, 0.0,
     "running - preprocessing images 5/65"),
    ({"state": "completed", "epoch": 4, "epochs": 8}, 1.0, "completed - 4 epochs"),
    ({"state": "failed", "epoch": 1, "epochs": 4, "error": "MemoryError: boom"}, 0.25, "failed - MemoryError: boom"),
    ({"state": "cancelled", "epoch": 0, "epochs": 0, "message": "cancelled by the user"}, 0.0,
     "cancelled - cancelled by the user"),
    # a damaged run's row in a table: NaN and missing counts
    ({"state": "failed", "epoch": float("nan"), "epochs": float("nan"), "error": "not valid JSON"}, 0.0,
     "failed - not valid JSON"),
    ({"state": "running", "epoch": "x", "epochs": None, "message": "starting"}, 0.0, "running - starting"),
])
def test_run_progress(status, fraction, text):
    got_fraction, got_text = run_progress(status)
    assert got_fraction == pytest.approx(fraction) and got_text == text


def test_run_progress_mentions_a_non_epoch_message():
    _, text = run_progress({"state": "running", "epoch": 2, "epochs": 2, "batch": 4, "batches": 4,
                            "stage": "train", "message": "scoring val and test"})
    assert text.endswith("(scoring val and test)")


_GA = {"kind": "ensemble", "state": "running", "fitting": "ga", "step": 2, "steps": 4,
       "restart": 2, "restarts": 4, "generation": 50, "generations": 100,
       "message": "ga: restart 2 of 4, generation 50 of 100"}


@pytest.mark.parametrize("status, fraction, text", [
    (_GA, (1 + (1 + 0.5) / 4) / 4, "running - method 2 of 4: ga: restart 2 of 4, generation 50 of 100"),
    ({**_GA, "fitting": "mean", "step": 1, "message": "fitting mean"}, 0.0,
     "running - method 1 of 4: fitting mean"),
    ({**_GA, "fitting": None, "step": 4, "message": "scoring and writing predictions and metrics"},
     1.0, "running - method 4 of 4: scoring and writing predictions and metrics"),
    ({"kind": "ensemble", "state": "running", "step": 0, "steps": 4, "message": "starting"}, 0.0,
     "running - starting"),
    ({**_GA, "state": "completed"}, 1.0, "completed"),
    ({**_GA, "state": "failed", "error": "the ensemble search's process (pid 7) is gone"},
     (1 + (1 + 0.5) / 4) / 4, "failed - the ensemble search's process (pid 7) is gone"),
])
def test_run_progress_of_an_ensemble_search(status, fraction, text):
    got_fraction, got_text = run_progress(status)
    assert got_fraction == pytest.approx(fraction) and got_text == text


# --------------------------------------------------------------------------- smoothing
def test_debiased_ema_starts_at_the_first_value_and_keeps_constants():
    assert debiased_ema([5.0, 5.0, 5.0], 0.9) == pytest.approx([5.0, 5.0, 5.0])
    out = debiased_ema([1.0, 0.0], 0.5)
    # s1 = 0.5 -> /(1-0.5) = 1; s2 = 0.25 -> /(1-0.25) = 1/3
    assert out == pytest.approx([1.0, 1 / 3])
    biased = ema([1.0, 0.0], 0.5)
    assert biased == pytest.approx([0.5, 0.25])


def test_debiased_ema_matches_tensorboard_formula():
    rng = np.random.default_rng(0)
    x, w = rng.normal(size=50), 0.8
    s, expected = 0.0, []
    for i, v in enumerate(x, start=1):
        s = w * s + (1 - w) * v
        expected.append(s / (1 - w ** i))
    assert debiased_ema(x, w) == pytest.approx(expected)
    assert debiased_ema(x, 0.0) == pytest.approx(x)


def test_debiased_ema_skips_nan_without_moving():
    out = debiased_ema([1.0, float("nan"), 1.0], 0.7)
    assert out[0] == pytest.approx(1.0) and math.isnan(out[1]) and out[2] == pytest.approx(1.0)


@pytest.mark.parametrize("weight", [-0.1, 1.0, 1.5, "0.5", True])
def test_smoothing_weight_is_checked(weight):
    with pytest.raises(CnmcError, match=r"smoothing weight must be a number in \[0, 1\)"):
        debiased_ema([1.0], weight)


def _two_stage_history(tmp_path: Path) -> Path:
    run = create_run({"name": "two", "model": "m", "stages": [{"epochs": 2}, {"epochs": 2}]}, tmp_path)
    t0 = 1000.0
    for epoch, (stage, index, loss) in enumerate([("feature_extraction", 0, 1.0), ("feature_extraction", 0, 0.8),
                                                 ("fine_tune", 1, 0.9), ("fine_tune", 1, 0.5)], start=1):
        stage_start = t0 if index == 0 else t0 + 25
        now = t0 + 10 * epoch + (5 if index else 0)
        append_history(run, {"stage": stage, "stage_index": index, "epoch": epoch, "time": now,
                             "elapsed": now - stage_start, "loss": loss, "val_loss": loss + 0.1,
                             "accuracy": 0.5, "learning_rate": 1e-3})
    return run


def test_history_frame_time_axis_and_stage_boundaries(tmp_path):
    history = history_frame(_two_stage_history(tmp_path))
    assert list(history["epoch"]) == [1, 2, 3, 4]
    assert list(history["elapsed_total"]) == pytest.approx([10, 20, 35, 45])
    assert stage_boundaries(history, "epoch") == [(2.5, "fine_tune")]
    assert stage_boundaries(history, "time") == [(27.5, "fine_tune")]
    assert history_metrics([history]) == ["loss", "val_loss", "accuracy"]


def test_smoothing_restarts_at_each_stage(tmp_path):
    history = history_frame(_two_stage_history(tmp_path))
    curve = smooth_curves(history, "loss", 0.9, "epoch")
    assert list(curve["raw"]) == [1.0, 0.8, 0.9, 0.5]
    # debiased: the first point of each stage equals its raw value
    assert curve["smooth"][0] == pytest.approx(1.0) and curve["smooth"][2] == pytest.approx(0.9)
    assert list(smooth_curves(history, "loss", 0.0, "time")["x"]) == pytest.approx([10, 20, 35, 45])


@pytest.mark.parametrize("metric, x, message", [
    ("nope", "epoch", "Metric 'nope' is not in this history; choose one of"),
    ("loss", "step", "The x axis must be 'epoch' or 'time'"),
])
def test_smooth_curves_errors(tmp_path, metric, x, message):
    history = history_frame(_two_stage_history(tmp_path))
    with pytest.raises(CnmcError, match=message):
        smooth_curves(history, metric, 0.5, x)


def test_history_of_an_ensemble_or_new_run_is_empty(ws_copy, tmp_path):
    assert history_frame(ws_copy["ensemble"]).empty
    assert history_frame(create_run({"name": "x", "model": "m", "stages": []}, tmp_path)).empty
    assert stage_boundaries(pd.DataFrame()) == []
    assert smooth_curves(pd.DataFrame(), "loss").empty


# --------------------------------------------------------------------------- metrics and confusion
def test_metrics_table_has_cis_and_per_class_rates(ws_copy):
    paths = [*ws_copy["runs"], ws_copy["ensemble"], ws_copy["failed"]]
    table = metrics_table(paths, "test", names=["a", "b", "c", "ens", "failed"])
    assert list(table["run"]) == ["a", "b", "c", "ens"]  # the failed run has no metrics
    assert list(table["kind"]) == ["run", "run", "run", "ensemble"]
    metrics = json.loads((ws_copy["runs"][0] / "metrics.json").read_text())["test"]
    row = table.iloc[0]
    assert row["weighted_f1"] == pytest.approx(metrics["weighted_f1"])
    assert row["f1_ci_low"] == pytest.approx(metrics["ci"]["weighted_f1"]["low"])
    assert row["sensitivity_all"] == pytest.approx(metrics["all"]["recall"])
    assert row["specificity_hem"] == pytest.approx(metrics["hem"]["recall"])
    assert row["protocol"] == "subject" and row["n"] == metrics["n"]
    csv = table.to_csv(index=False)
    assert csv.splitlines()[0].startswith("run,kind,model,protocol,split,weighted_f1,f1_ci_low")
    with pytest.raises(CnmcError, match="split must be 'val' or 'test'"):
        metrics_table(paths, "train")


def test_confusion_frame_and_row_normalisation(ws_copy):
    cm = confusion_frame(ws_copy["runs"][0], "test")
    metrics = json.loads((ws_copy["runs"][0] / "metrics.json").read_text())["test"]
    assert cm.to_numpy().tolist() == metrics["confusion"]
    assert list(cm.index) == ["true HEM (normal)", "true ALL (cancer)"]
    assert confusion_frame(ws_copy["failed"], "test") is None
    share = row_normalised(cm)
    assert share.sum(axis=1).to_numpy() == pytest.approx([1.0, 1.0])


def test_confusion_difference():
    idx, cols = ["true HEM (normal)", "true ALL (cancer)"], ["predicted HEM (normal)", "predicted ALL (cancer)"]
    a = pd.DataFrame([[8, 2], [1, 9]], index=idx, columns=cols)
    b = pd.DataFrame([[30, 10], [0, 0]], index=idx, columns=cols)  # a row with no image
    diff = confusion_difference(a, b)
    np.testing.assert_allclose(diff.to_numpy(), [[0.8 - 0.75, 0.2 - 0.25], [0.1, 0.9]])
    assert confusion_difference(a, b, normalise=False).to_numpy().tolist() == [[-22, -8], [1, 9]]
    with pytest.raises(CnmcError, match="different classes"):
        confusion_difference(a, b.rename(index={"true HEM (normal)": "x"}))


def test_curve_points_match_the_stored_auc(ws_copy):
    points = load_curve_points(ws_copy["runs"][1], "test")
    metrics = json.loads((ws_copy["runs"][1] / "metrics.json").read_text())["test"]
    assert points["roc_auc"] == pytest.approx(metrics["roc_auc"])
    assert points["fpr"][0] == 0 and points["tpr"][-1] == 1
    assert 0 <= points["average_precision"] <= 1 and points["n"] == metrics["n"]
    assert load_curve_points(ws_copy["failed"], "test") is None
    assert load_curve_points(ws_copy["ensemble"], "val")["n"] > 0


def test_average_precision_matches_sklearn(tmp_path):
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 200)
    prob = np.clip(y * 0.3 + rng.random(200) * 0.7, 0, 1).round(2)  # ties included
    run = tmp_path / "r"
    run.mkdir()
    pd.DataFrame({"image_id": range(200), "split": "test", "y": y, "prob": prob}).to_csv(run / "predictions.csv",
                                                                                         index=False)
    assert load_curve_points(run, "test")["average_precision"] == pytest.approx(average_precision_score(y, prob))


# --------------------------------------------------------------------------- config diff
def test_flatten_config():
    flat = flatten_config({"a": 1, "stages": [{"lr": 0.1, "t": {"blocks": ["b2", "b3"]}}], "fr": [0.6, 0.4],
                           "empty": {}})
    assert flat == {"a": 1, "stages.0.lr": 0.1, "stages.0.t.blocks": ["b2", "b3"], "fr": [0.6, 0.4], "empty": {}}


def test_config_diff_hides_identical_fields():
    a = {"run_id": "1", "created": 1.0, "model": "x", "seed": 0, "stages": [{"learning_rate": 1e-3, "epochs": 5}],
         "split_fractions": [0.6, 0.2, 0.2]}
    b = {"run_id": "2", "created": 2.0, "model": "y", "seed": 0, "stages": [{"learning_rate": 1e-5, "epochs": 5}],
         "split_fractions": [0.6, 0.2, 0.2], "extra": True}
    diff = config_diff({"A": a, "B": b})
    assert list(diff.index) == ["model", "stages.0.learning_rate", "extra"]
    assert diff.loc["stages.0.learning_rate"].tolist() == ["0.001", "1e-05"]
    assert diff.loc["extra"].tolist() == ["-", "True"]
    full = config_diff({"A": a, "B": b}, hide_identical=False)
    assert "seed" in full.index and "split_fractions" in full.index and "run_id" not in full.index
    assert full.loc["split_fractions"].tolist() == ["0.6, 0.2, 0.2"] * 2
    assert config_diff({"A": a, "B": dict(a, run_id="other")}).empty


def test_config_diff_of_the_fixture_runs_shows_the_model(ws_copy):
    configs = {p.name: json.loads((p / "config.json").read_text()) for p in ws_copy["runs"]}
    diff = config_diff(configs)
    assert "model" in diff.index and "name" in diff.index
    assert "split_protocol" not in diff.index and "batch_size" not in diff.index


# --------------------------------------------------------------------------- logs
def test_read_log_tail(tmp_path, ws_copy):
    (tmp_path / "log.txt").write_text("".join(f"line {i}\n" for i in range(100)))
    assert read_log_tail(tmp_path, 3) == "line 97\nline 98\nline 99"
    assert "MemoryError" in read_log_tail(ws_copy["failed"])
    assert read_log_tail(tmp_path / "none") == ""


# --------------------------------------------------------------------------- settings
def test_settings_round_trip_and_checks(tmp_path):
    from cnmc_core.settings import (
        chosen_dataset, chosen_protocol, load_settings, save_settings, set_chosen_dataset, set_chosen_protocol,
    )

    assert chosen_dataset(tmp_path) is None and chosen_protocol(tmp_path) == "subject"
    set_chosen_dataset(tmp_path / "data", tmp_path)
    set_chosen_protocol("paper", tmp_path)
    assert chosen_dataset(tmp_path) == str((tmp_path / "data").resolve())
    assert chosen_protocol(tmp_path) == "paper"
    assert json.loads((tmp_path / "workspace.json").read_text()) == load_settings(tmp_path)
    with pytest.raises(ConfigError, match="split protocol must be one of"):
        set_chosen_protocol("random", tmp_path)
    with pytest.raises(ConfigError, match="Unknown workspace setting 'colour'"):
        save_settings(tmp_path, colour="red")
    (tmp_path / "workspace.json").write_text("{broken")
    assert load_settings(tmp_path) == {} and chosen_protocol(tmp_path) == "subject"


def test_demo_dataset_is_the_default_choice(tmp_path):
    from cnmc_core.settings import chosen_dataset

    (tmp_path / "demo-data").mkdir()
    assert chosen_dataset(tmp_path) is None  # a half-written demo dataset is not chosen
    (tmp_path / "demo-data" / ".synth_info.json").write_text("{}")
    assert chosen_dataset(tmp_path) == str((tmp_path / "demo-data").resolve())


# --------------------------------------------------------------------------- data view
def test_scan_is_stored_and_reused_until_the_folder_changes(tmp_path):
    from cnmc_core.dataview import scan_cached, scan_is_stored
    from conftest import cell_image, make_kaggle_tree, write_image

    data = make_kaggle_tree(tmp_path / "data")
    root = tmp_path / "artifacts"
    assert not scan_is_stored(data, root)
    first, cached = scan_cached(data, root)
    assert not cached and scan_is_stored(data, root)
    again, cached = scan_cached(data, root)
    assert cached and again.manifest.equals(first.manifest) and again.labels_csv == first.labels_csv
    write_image(data / "C-NMC_Leukemia" / "training_data" / "fold_0" / "all" / "UID_9_1_1_all.bmp", cell_image(seed=9))
    assert not scan_is_stored(data, root)
    third, cached = scan_cached(data, root)
    assert not cached and len(third.manifest) == len(first.manifest) + 1


def test_scan_keeps_skipped_files_and_refuses_missing_paths(tmp_path):
    from cnmc_core.dataview import scan_cached
    from conftest import make_kaggle_tree

    data = make_kaggle_tree(tmp_path / "data")
    (data / "notes.txt").write_text("hello")
    (data / "C-NMC_Leukemia" / "training_data" / "fold_0" / "all" / "UID_1_9_1_all.bmp").write_bytes(b"")
    result, _ = scan_cached(data, tmp_path / "a")
    again, cached = scan_cached(data, tmp_path / "a")
    assert cached and len(again.skipped) == len(result.skipped) == 2
    assert set(again.skipped["path"]) == set(result.skipped["path"])
    with pytest.raises(DataError, match="does not exist"):
        scan_cached(tmp_path / "nowhere", tmp_path / "a")


def test_counts_split_summary_and_samples(workspace):
    from cnmc_core.dataset import scan_dataset
    from cnmc_core.dataview import class_counts, sample_images, split_summary, subject_counts

    manifest = scan_dataset(workspace["data"]).manifest
    counts = class_counts(manifest)
    assert counts.loc["total", "total"] == len(manifest)
    assert counts.loc["total", "ALL (cancer)"] == (manifest["y"] == 1).sum()
    assert counts.loc["final", "unlabelled"] == 2
    subjects = subject_counts(manifest)
    assert subjects["images"].sum() == (manifest["y"] >= 0).sum()
    assert set(subjects["class"]) == {"ALL (cancer)", "HEM (normal)"}
    table, leak = split_summary(manifest, "subject")
    assert leak == {"shared_train_test": 0, "shared_train_val": 0, "test_images_of_train_subjects": 0}
    assert table["images"].sum() == (manifest["y"] >= 0).sum()
    table, leak = split_summary(manifest, "paper")
    assert leak["shared_train_test"] > 0 and leak["test_images_of_train_subjects"] > 0
    samples = sample_images(manifest, per_class=3, seed=1)
    assert list(samples["label"]) == ["all"] * 3 + ["hem"] * 3
    assert sample_images(manifest, per_class=3, seed=1).equals(samples)


def test_split_summary_explains_an_impossible_split(tmp_path):
    from cnmc_core.dataset import scan_dataset
    from cnmc_core.dataview import split_summary
    from conftest import cell_image, write_image

    for i in range(4):
        write_image(tmp_path / "all" / f"a{i}.png", cell_image(seed=i))
        write_image(tmp_path / "hem" / f"h{i}.png", cell_image(seed=10 + i))
    manifest = scan_dataset(tmp_path).manifest
    with pytest.raises(DataError, match="subject"):
        split_summary(manifest, "subject")


def test_preprocessing_steps(workspace, tmp_path):
    from cnmc_core.dataset import scan_dataset
    from cnmc_core.dataview import preprocessing_steps, thumbnail
    from conftest import write_image

    path = scan_dataset(workspace["data"]).manifest["path"].iloc[0]
    steps = preprocessing_steps(path, 64)
    assert [t.split()[0] for t, _ in steps] == ["raw", "crop", "CLAHE", "resized"]
    raw, crop, clahe, resized = (img for _, img in steps)
    assert crop.shape[0] == crop.shape[1] <= raw.shape[0] and clahe.shape == crop.shape
    assert resized.shape == (64, 64, 3) and resized.dtype == np.uint8
    assert thumbnail(path, 32).shape == (32, 32, 3)
    black = write_image(tmp_path / "black.png", np.zeros((20, 20, 3), np.uint8))
    with pytest.raises(DataError, match="all black"):
        preprocessing_steps(black, 64)
    with pytest.raises(ConfigError, match="size must be an integer"):
        preprocessing_steps(path, 3)


# --------------------------------------------------------------------------- launch from a form
def test_form_defaults_follow_the_preset():
    from cnmc_core.launch import form_defaults, preset_models

    d = form_defaults("paper_vgg16_block4")
    assert d["model"] == "vgg16_block4" and d["image_size"] == 224 and d["weights"] == "imagenet"
    assert [s["name"] for s in d["stages"]] == ["feature_extraction", "fine_tune"]
    assert d["max_images_per_split"] == 0
    assert {"scratch_dd256", "vgg16_block4", "resnet50_conv4_v2"} <= set(preset_models())


def test_build_run_config_applies_the_form(workspace):
    from cnmc_core.launch import build_run_config

    config = build_run_config("paper_resnet50_conv4_v1", data=workspace["data"], image_size=64, weights="none",
                              split_protocol="subject", balance=False, augment=True, batch_size=8, seed=3,
                              max_images_per_split=0, epochs=[1, 2], learning_rates=[1e-3, 1e-4])
    assert config["image_size"] == 64 and config["weights"] == "none" and config["split_protocol"] == "subject"
    assert config["balance"] is False and config["augment"] is True and config["batch_size"] == 8
    assert config["max_images_per_split"] is None and config["seed"] == 3
    assert [(s["epochs"], s["learning_rate"]) for s in config["stages"]] == [(1, 1e-3), (2, 1e-4)]
    assert config["data"] == str(workspace["data"])


@pytest.mark.parametrize("kwargs, message", [
    ({"data": ""}, "No dataset: choose one on the Data page"),
    ({"data": "/no/such/folder"}, "does not exist; choose an existing folder"),
    ({"epochs": [1, 2]}, "has 1 stage"),
    ({"epochs": [0]}, "epochs of stage 1 .* at least 1"),
    ({"learning_rates": [0.0]}, "learning rate of stage 1 .* positive number"),
    ({"max_images_per_split": 3}, "Max images per split must be 0"),
    ({"image_size": 0}, "input size must be a positive whole number"),
    ({"split_protocol": "random"}, "'split_protocol' must be one of"),
    ({"batch_size": 0}, "'batch_size' must be a positive integer"),
])
def test_build_run_config_errors_say_what_to_do(workspace, kwargs, message):
    from cnmc_core.launch import build_run_config

    kwargs = {"data": workspace["data"], **kwargs}
    with pytest.raises(ConfigError, match=message):
        build_run_config("demo_scratch", **kwargs)


def test_launch_checked_refuses_before_creating_anything(workspace, tmp_path):
    from cnmc_core.launch import build_run_config, launch_checked

    config = build_run_config("demo_scratch", data=workspace["data"], image_size=32)  # scratch needs >= 60
    with pytest.raises(ConfigError, match="image_size must be"):
        launch_checked(config, tmp_path)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_launch_checked_trains_a_tiny_run(workspace, tmp_path):
    from cnmc_core.launch import build_run_config, launch_checked
    from cnmc_core.runs import effective_status

    config = build_run_config("demo_scratch", data=workspace["data"], epochs=[1], batch_size=16)
    run = launch_checked(config, tmp_path)
    deadline = time.time() + 150
    while time.time() < deadline and effective_status(run)["state"] in ("queued", "running"):
        time.sleep(0.5)
    status = effective_status(run)
    assert status["state"] == "completed", (status, read_log_tail(run))
    assert (run / "metrics.json").is_file() and list_experiments(tmp_path).iloc[0]["state"] == "completed"


def test_experiment_status_of_an_ensemble_and_a_dead_run(ws_copy, tmp_path):
    from cnmc_core.compare import experiment_status

    assert experiment_status(ws_copy["ensemble"])["state"] == "completed"
    run = create_run({"name": "dead", "model": "m", "stages": [{"epochs": 1}]}, tmp_path)
    write_status(run, state="running", pid=999_999_999, heartbeat=time.time())
    assert experiment_status(run)["state"] == "failed"
