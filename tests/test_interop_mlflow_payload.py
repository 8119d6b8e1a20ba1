"""cnmc_core.interop.mlflow_payload and sources: what a run, ensemble or study becomes in MLflow,
computed from its folder (no server): MLflow's key and value limits, the final metrics with CI
bounds, tags naming the protocol (leaky marked), provenance, study and fold, per-epoch steps."""

from __future__ import annotations

import json
import shutil
import time

import pytest

from cnmc_core.exceptions import CnmcError, ConfigError, RunError
from cnmc_core.interop.mlflow_export import check_tracking_uri
from cnmc_core.interop.mlflow_payload import (
    KEY_MAX,
    PARAM_VALUE_MAX,
    build_payload,
    epoch_metrics,
    final_metrics,
    item_tags,
    mlflow_key,
    param_values,
)
from cnmc_core.interop.sources import (
    item_facts,
    protocol_text,
    resolve_item,
    study_runs,
    workspace_items,
)
from cnmc_core.workspace.layout import read_history


@pytest.fixture(scope="module")
def ws(ws_copy, tmp_path_factory):
    root = tmp_path_factory.mktemp("payload") / "artifacts"
    shutil.copytree(ws_copy["root"], root, ignore=shutil.ignore_patterns("cache"))
    runs = sorted(p for p in (root / "runs").iterdir() if "fixture_" in p.name)
    return {"root": root, "runs": runs, "ensemble": next((root / "ensembles").iterdir()),
            "failed": root / "runs" / ws_copy["failed"].name}


def _edit_config(path, **changes):
    config = json.loads((path / "config.json").read_text())
    config.update(changes)
    (path / "config.json").write_text(json.dumps(config))


def test_keys_follow_mlflow_rules_and_long_ones_stay_distinct():
    assert mlflow_key("stages.0.learning_rate") == "stages.0.learning_rate"
    assert mlflow_key("weights.a:b|c") == "weights.a_b_c"
    a, b = mlflow_key("x" * 300 + "a"), mlflow_key("x" * 300 + "b")
    assert len(a) == len(b) == KEY_MAX and a != b


def test_params_are_the_flattened_config_with_long_values_cut():
    params, cut = param_values({"batch_size": 8, "model_args": {"dropout": 0.5, "head": None},
                                "split_fractions": [0.6, 0.2, 0.2], "stages": [{"epochs": 5}],
                                "long": "y" * 7000})
    assert params["batch_size"] == "8" and params["model_args.dropout"] == "0.5"
    assert params["model_args.head"] == "null" and params["split_fractions"] == "[0.6, 0.2, 0.2]"
    assert params["stages.0.epochs"] == "5"
    assert cut == ["long"] and len(params["long"]) == PARAM_VALUE_MAX
    assert params["long"].endswith("...[cut]")


def test_final_metrics_carry_the_ci_bounds_and_both_classes():
    report = {"weighted_f1": 0.8, "roc_auc": float("nan"), "accuracy": 0.75, "n": 12,
              "all": {"precision": 0.9, "recall": 0.7}, "hem": {"precision": 0.6, "recall": 0.8},
              "ci": {"weighted_f1": {"low": 0.6, "high": 0.95}, "roc_auc": {"low": None}}}
    out = final_metrics({"test": report, "val": {"weighted_f1": 0.7}, "method": "x"})
    assert out["test_weighted_f1"] == 0.8 and out["test_weighted_f1_ci_low"] == 0.6
    assert out["test_weighted_f1_ci_high"] == 0.95 and out["test_n"] == 12.0
    assert out["test_precision_all"] == 0.9 and out["test_recall_hem"] == 0.8
    assert out["val_weighted_f1"] == 0.7
    assert "test_roc_auc" not in out and "test_roc_auc_ci_low" not in out  # NaN and None left out


def test_tags_name_the_protocol_provenance_study_and_fold(ws, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(ws["runs"][0], run, ignore=shutil.ignore_patterns("model.keras"))
    item = resolve_item(run)
    tags = item_tags(item)
    assert tags["cnmc.protocol"] == "subject" and tags["cnmc.leaky"] == "false"
    # recorded by the training loop: the fixture tree has no generator marker
    assert tags["cnmc.data_kind"] == "real" and tags["cnmc.seed"] == "0"
    assert tags["cnmc.dataset_fingerprint"] == item.config["dataset_fingerprint"]
    assert tags["cnmc.preset"] == "fixture_scratch_dd256" and tags["cnmc.version"] == "0.1.0"
    assert tags["cnmc.stages"] == "train: epochs 1-2" and tags["mlflow.runName"] == item.id
    assert "cnmc.study" not in tags and "cnmc.fold" not in tags
    _edit_config(run, split_protocol="paper", provenance={"kind": "synthetic", "seed": 3},
                 study_id="study-x", fold=2)
    tags = item_tags(resolve_item(run), parent_run_id="abc")
    assert tags["cnmc.protocol"] == "paper (leaky: split by image)" and tags["cnmc.leaky"] == "true"
    assert "LEAKY" in tags["mlflow.note.content"]
    assert tags["cnmc.data_kind"] == "synthetic" and tags["cnmc.study"] == "study-x"
    assert tags["cnmc.fold"] == "2" and tags["mlflow.parentRunId"] == "abc"
    _edit_config(run, provenance="real")
    assert item_facts(resolve_item(run))["data_kind"] == "real"
    _edit_config(run, provenance=None)  # a run trained before provenance was recorded
    assert item_facts(resolve_item(run))["data_kind"] == "unknown"
    assert protocol_text("image-kfold") == "image-kfold (leaky: split by image)"
    assert protocol_text("subject-kfold") == "subject-kfold"


def test_epoch_metrics_have_the_epoch_as_step(ws):
    item = resolve_item(ws["runs"][0])
    metrics = epoch_metrics(item)
    history = read_history(ws["runs"][0])
    val_loss = [(step, value) for key, value, step, _ in metrics if key == "val_loss"]
    assert val_loss == list(zip(history["epoch"], history["val_loss"]))
    assert {k for k, *_ in metrics} >= {"train_loss", "train_accuracy", "train_auc", "val_loss",
                                        "val_accuracy", "val_auc"}
    assert all(ts > 0 for *_, ts in metrics)


def test_payload_files_figures_and_ensemble_weights(ws):
    run = build_payload(resolve_item(ws["runs"][0]))
    assert set(run.files) == {"cnmc/config.json", "cnmc/metrics.json", "cnmc/predictions.csv",
                              "cnmc/log.txt", "model/model.keras"}
    assert set(run.figures) == {"figures/learning_curves.png", "figures/confusion_val.png",
                                "figures/confusion_test.png", "figures/roc_val.png",
                                "figures/roc_test.png", "figures/pr_val.png", "figures/pr_test.png"}
    assert "model/model.keras" not in build_payload(resolve_item(ws["runs"][0]),
                                                    include_model=False).files
    ens = build_payload(resolve_item(ws["ensemble"]), include_figures=False)
    weights = ens.json_artifacts["cnmc/ensemble_weights.json"]
    assert sorted(weights["weights"]) == sorted(p.name for p in ws["runs"])
    assert abs(sum(weights["weights"].values()) - 1) < 1e-9 and ens.figures == {}
    assert ens.tags["cnmc.members"].split(",") == weights["members"]
    assert {f"weights.{p.name}" for p in ws["runs"]} <= set(ens.params)


def test_workspace_items_leave_out_the_failed_run_with_its_reason(ws):
    items, skipped = workspace_items(ws["root"])
    assert sorted(i.kind for i in items) == ["ensemble", "run", "run", "run"]
    assert [name for name, _ in skipped] == [ws["failed"].name]
    assert "failed" in skipped[0][1]
    with pytest.raises(RunError, match="is failed"):
        resolve_item(ws["failed"].name, ws["root"])


def test_a_study_lists_its_runs(ws, tmp_path):
    root = tmp_path / "artifacts"
    shutil.copytree(ws["root"], root, ignore=shutil.ignore_patterns("model.keras", "cache"))
    study = root / "studies" / "s1"
    study.mkdir(parents=True)
    names = [p.name for p in ws["runs"]]
    (study / "study.json").write_text(json.dumps({"protocol": "subject-kfold",
                                                  "runs": [names[0], {"path": str(root / "runs" / names[1])}]}))
    item = resolve_item("s1", root)
    assert item.kind == "study" and [r.id for r in study_runs(item)] == names[:2]
    (study / "study.json").write_text(json.dumps({"runs": [names[0], "gone-run"]}))
    with pytest.raises(RunError, match="Study s1: 'gone-run' is not a folder"):
        study_runs(resolve_item("s1", root))
    (study / "study.json").write_text(json.dumps({"runs": []}))
    with pytest.raises(RunError, match="lists no runs"):
        resolve_item("s1", root)


def test_the_tracking_uri_is_checked():
    with pytest.raises(ConfigError, match="'--tracking-uri' parameter must be a non-empty URI"):
        check_tracking_uri("  ")
    from browser_util import free_port

    port = free_port()
    start = time.time()
    with pytest.raises(CnmcError, match=f"No MLflow tracking server answers at http://127.0.0.1:{port}"):
        check_tracking_uri(f"http://127.0.0.1:{port}/")
    assert time.time() - start < 10
    assert check_tracking_uri("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"
