"""``mlflow-export`` against a real MLflow tracking server started here on localhost (sqlite
backend, local artifact root), everything read back with ``MlflowClient``: params, tags (the
leaky protocol), metric histories with their steps, CI bounds, artifacts (PNG figures, the
model); a second export updates the same runs (no duplicate, no doubled history); a study is a
parent run with its runs nested; an unreachable server and a refused write are errors that
leave the run folder unchanged."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from browser_util import LOGS, free_port

from cnmc_core.cli.main import main
from cnmc_core.interop.mlflow_export import MLFLOW_RECORD, read_record
from cnmc_core.interop.mlflow_payload import param_values
from cnmc_core.workspace.layout import read_history
from cnmc_core.workspace.status import write_status

mlflow = pytest.importorskip("mlflow")
from mlflow.entities import ViewType  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``mlflow server`` on a free port of 127.0.0.1 (one worker), until /health answers; its
    output goes to test-output/logs/mlflow-PORT.log; stopped with its process group after."""
    tmp = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    LOGS.mkdir(parents=True, exist_ok=True)
    log_path = LOGS / f"mlflow-{port}.log"
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
           f"sqlite:///{tmp / 'mlflow.db'}", "--default-artifact-root", str(tmp / "mlruns"),
           "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 240
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited ({proc.returncode}):\n"
                                   + log_path.read_text(errors="replace")[-3000:])
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as resp:
                    if resp.read().decode().strip() == "OK":
                        break
            except OSError:
                pass
            if time.time() > deadline:
                raise TimeoutError(f"{uri}/health did not answer within 240 s")
            time.sleep(0.5)
        yield {"uri": uri, "client": MlflowClient(uri), "root": tmp}
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


@pytest.fixture(scope="module")
def ws(ws_copy, tmp_path_factory):
    """A private copy of the fixture workspace: three runs (one with the leaky ``paper``
    protocol, one recording synthetic provenance), a failed run, a mean ensemble, and a
    hand-written study of two of the runs."""
    root = tmp_path_factory.mktemp("mlflow-ws") / "artifacts"
    shutil.copytree(ws_copy["root"], root, ignore=shutil.ignore_patterns("cache"))
    runs = sorted(p for p in (root / "runs").iterdir() if "fixture_" in p.name)
    edit(runs[1], split_protocol="paper")
    edit(runs[2], provenance={"kind": "synthetic", "seed": 0})
    study = root / "studies" / "study-a"
    study.mkdir(parents=True)
    (study / "study.json").write_text(json.dumps({
        "study_id": "study-a", "kind": "study", "protocol": "image-kfold", "presets": ["a", "b"],
        "folds": 2, "seeds": [0], "dataset_fingerprint": "1900896d5ad38e2e",
        "runs": [{"id": runs[0].name, "preset": "a", "fold": 0, "seed": 0},
                 {"id": runs[2].name, "preset": "b", "fold": 1, "seed": 0}]}))
    write_status(study, state="completed", kind="study", total=2, done=2, failed=0)
    # the runs carry their study tag as a study's runs do (study.plan)
    edit(runs[0], study={"id": "study-a", "preset": "a", "fold": 0, "seed": 0})
    edit(runs[2], study={"id": "study-a", "preset": "b", "fold": 1, "seed": 0},
         kfold={"k": 2, "fold": 1})
    (study / "metrics.json").write_text(json.dumps(_study_metrics()))
    return {"root": root, "runs": runs, "ensemble": next((root / "ensembles").iterdir()),
            "failed": root / "runs" / ws_copy["failed"].name, "study": study}


def _study_metrics() -> dict:
    """A study's metrics.json in the shape study.results writes (two presets, one comparison)."""
    def scores(auc):
        ci = {"roc_auc": {"estimate": auc, "low": auc - 0.1, "high": auc + 0.1},
              "weighted_f1": {"estimate": 0.7, "low": 0.6, "high": 0.8}}
        folds = [{"fold": k, "seed": 0, "n": 10, "roc_auc": auc, "weighted_f1": 0.7} for k in (0, 1)]
        return {"pooled": {"roc_auc": auc, "weighted_f1": 0.7, "ci": ci}, "folds": folds,
                "fold_mean": {"roc_auc": auc, "weighted_f1": 0.7},
                "fold_sd": {"roc_auc": 0.0, "weighted_f1": 0.0}, "n_subjects": 6, "n_images": 20}

    return {"presets": {"a": scores(0.8), "b": scores(0.77)}, "comparisons": [
        {"a": "a", "b": "b", "metric": "roc_auc",
         "folds": {"estimate": 0.03, "mean_diff": 0.03, "p": 0.08, "low": -0.01, "high": 0.07,
                   "decided": True, "reason": ""},
         "pooled": {"estimate": 0.028, "low": -0.01, "high": 0.07}}]}


def edit(path: Path, **changes) -> None:
    config = json.loads((path / "config.json").read_text())
    (path / "config.json").write_text(json.dumps({**config, **changes}))


def snapshot(folder: Path) -> dict:
    """Every file of a folder: name -> (sha1 of the bytes, mtime in ns)."""
    return {p.name: (hashlib.sha1(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted(folder.iterdir()) if p.is_file()}


def export(server, ws, *args: str) -> tuple[int, str, str]:
    import io
    from contextlib import redirect_stderr, redirect_stdout

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        rc = main(["mlflow-export", *args, "--tracking-uri", server["uri"], "--artifacts",
                   str(ws["root"])])
    return rc, out.getvalue(), err.getvalue()


def run_of(folder: Path, server) -> str:
    [entry] = [e for e in read_record(folder) if e["tracking_uri"] == server["uri"]
               and e["experiment"] == "cnmc"]
    return entry["run_id"]


def cnmc_runs(server) -> list:
    client = server["client"]
    experiment = client.get_experiment_by_name("cnmc")
    return client.search_runs([experiment.experiment_id], run_view_type=ViewType.ALL)


@pytest.fixture(scope="module")
def exported(server, ws):
    """The first export: the three runs and the ensemble, named on the command line."""
    rc, out, err = export(server, ws, *[p.name for p in ws["runs"]], ws["ensemble"].name)
    assert rc == 0, err
    return {"out": out, "ids": {p: run_of(p, server) for p in [*ws["runs"], ws["ensemble"]]}}


def test_everything_is_read_back_from_the_server(server, ws, exported):
    client = server["client"]
    assert exported["out"].count("created MLflow run") == 4
    assert len(cnmc_runs(server)) == 4
    for folder in ws["runs"]:
        run = client.get_run(exported["ids"][folder])
        config = json.loads((folder / "config.json").read_text())
        assert run.data.params == param_values(config)[0]
        assert run.data.params["stages.0.learning_rate"] == "0.0003"
        tags = run.data.tags
        assert tags["cnmc.id"] == folder.name and tags["cnmc.kind"] == "run"
        assert tags["cnmc.dataset_fingerprint"] == config["dataset_fingerprint"]
        assert tags["cnmc.seed"] == "0" and tags["cnmc.preset"] == config["name"]
        assert tags["cnmc.version"] == "0.1.0" and tags["cnmc.stages"] == "train: epochs 1-2"
        history = read_history(folder)
        for key, column in (("val_loss", "val_loss"), ("train_accuracy", "accuracy"),
                            ("val_auc", "val_auc")):
            logged = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))
            assert logged == pytest.approx(list(zip(history["epoch"], history[column])))
        metrics = json.loads((folder / "metrics.json").read_text())
        test = metrics["test"]
        assert run.data.metrics["test_weighted_f1"] == pytest.approx(test["weighted_f1"])
        assert run.data.metrics["test_weighted_f1_ci_low"] == pytest.approx(test["ci"]["weighted_f1"]["low"])
        assert run.data.metrics["test_weighted_f1_ci_high"] == pytest.approx(test["ci"]["weighted_f1"]["high"])
        assert run.data.metrics["val_roc_auc_ci_low"] == pytest.approx(metrics["val"]["ci"]["roc_auc"]["low"])
        assert run.data.metrics["test_recall_hem"] == pytest.approx(test["hem"]["recall"])
        assert run.data.metrics["test_precision_all"] == pytest.approx(test["all"]["precision"])
        assert run.info.status == "FINISHED" and run.info.start_time == int(config["created"] * 1000)
    leaky, synthetic = (client.get_run(exported["ids"][p]).data.tags for p in ws["runs"][1:])
    assert leaky["cnmc.protocol"] == "paper (leaky: split by image)" and leaky["cnmc.leaky"] == "true"
    assert synthetic["cnmc.protocol"] == "subject" and synthetic["cnmc.leaky"] == "false"
    # the leaky one's is as its training recorded it (the fixture tree has no generator marker)
    assert synthetic["cnmc.data_kind"] == "synthetic" and leaky["cnmc.data_kind"] == "real"


def _files(client, run_id, path=None) -> dict:
    out = {}
    for entry in client.list_artifacts(run_id, path):
        out.update(_files(client, run_id, entry.path) if entry.is_dir else {entry.path: entry.file_size})
    return out


def test_artifacts_are_the_files_the_figures_and_the_model(server, ws, exported, tmp_path):
    import cv2
    import numpy as np

    client = server["client"]
    run_id = exported["ids"][ws["runs"][0]]
    files = _files(client, run_id)
    assert set(files) == {"cnmc/config.json", "cnmc/metrics.json", "cnmc/predictions.csv",
                          "cnmc/log.txt", "model/model.keras", "figures/learning_curves.png",
                          "figures/confusion_val.png", "figures/confusion_test.png",
                          "figures/roc_val.png", "figures/roc_test.png", "figures/pr_val.png",
                          "figures/pr_test.png"}
    assert files["model/model.keras"] == (ws["runs"][0] / "model.keras").stat().st_size
    png = Path(client.download_artifacts(run_id, "figures/confusion_test.png", str(tmp_path)))
    image = cv2.imdecode(np.frombuffer(png.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
    assert image.shape[0] > 300 and image.shape[1] > 500 and image.std() > 10  # drawn, not blank
    ens_id = exported["ids"][ws["ensemble"]]
    ens = client.get_run(ens_id)
    config = json.loads((ws["ensemble"] / "config.json").read_text())
    assert ens.data.tags["cnmc.members"].split(",") == config["members"]
    assert ens.data.tags["cnmc.kind"] == "ensemble" and ens.data.tags["cnmc.method"] == "mean"
    for member, weight in config["weights"].items():
        assert float(ens.data.params[f"weights.{member}"]) == pytest.approx(weight)
    weights = json.loads(Path(client.download_artifacts(ens_id, "cnmc/ensemble_weights.json",
                                                        str(tmp_path))).read_text())
    assert weights["weights"] == pytest.approx(config["weights"])
    assert "model/model.keras" not in _files(client, ens_id)


def test_a_second_export_updates_the_same_runs(server, ws, exported):
    client = server["client"]
    before = {p: len(client.get_metric_history(i, "val_loss")) for p, i in exported["ids"].items()}
    rc, out, err = export(server, ws, "--no-model")  # no ids: every completed run and ensemble
    assert rc == 0, err
    assert f"skipped {ws['failed'].name}" in out and "is failed" in out
    created = [line for line in out.splitlines() if line.startswith("created")]
    assert len(created) == 1 and " for study study-a" in created[0]  # only the study is new
    assert out.count("updated MLflow run") == 4  # the 3 runs (2 now under the study), the ensemble
    assert {p: run_of(p, server) for p in exported["ids"]} == exported["ids"]
    ids = [r.data.tags["cnmc.id"] for r in cnmc_runs(server)]
    assert len(ids) == len(set(ids)) == 5  # 3 runs, the ensemble, the study: no duplicate
    for path, run_id in exported["ids"].items():
        assert len(client.get_metric_history(run_id, "val_loss")) == before[path]
        assert len(client.get_metric_history(run_id, "test_weighted_f1")) == 1
    assert not (ws["failed"] / MLFLOW_RECORD).exists()


def test_a_study_is_a_parent_run_with_its_runs_nested(server, ws, exported):
    client = server["client"]
    rc, out, err = export(server, ws, "study-a", "--no-model", "--no-figures")
    assert rc == 0, err
    parent_id = run_of(ws["study"], server)
    parent = client.get_run(parent_id)
    assert parent.data.tags["cnmc.kind"] == "study" and parent.data.tags["cnmc.id"] == "study-a"
    assert parent.data.tags["cnmc.protocol"] == "image-kfold (leaky: split by image)"
    assert parent.data.tags["cnmc.leaky"] == "true"
    assert parent.data.params["presets"] == '["a", "b"]' and "runs" not in parent.data.params
    assert parent.data.metrics["comparisons.0.pooled.estimate"] == pytest.approx(0.028)
    assert set(_files(client, parent_id)) == {"cnmc/study.json", "cnmc/metrics.json"}
    members = [ws["runs"][0], ws["runs"][2]]
    for folder in members:
        child = client.get_run(exported["ids"][folder])  # the same MLflow run, now nested
        assert child.data.tags["mlflow.parentRunId"] == parent_id
        assert child.data.tags["cnmc.study"] == "study-a"
        assert child.data.tags["cnmc.fold"] == ("0" if folder == ws["runs"][0] else "1")
        assert run_of(folder, server) == exported["ids"][folder]
    nested = client.search_runs([parent.info.experiment_id],
                                filter_string=f"tags.`mlflow.parentRunId` = '{parent_id}'")
    assert sorted(r.info.run_id for r in nested) == sorted(exported["ids"][f] for f in members)
    ids = [r.data.tags["cnmc.id"] for r in cnmc_runs(server)]
    assert len(ids) == len(set(ids))


def test_an_unreachable_server_is_an_error_that_changes_nothing(ws, exported, capsys):
    folders = [ws["runs"][0], ws["ensemble"]]
    before = {f: snapshot(f) for f in folders}
    port = free_port()
    start = time.time()
    rc = main(["mlflow-export", *[f.name for f in folders], "--tracking-uri",
               f"http://127.0.0.1:{port}", "--artifacts", str(ws["root"])])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith(f"error: No MLflow tracking server answers at "
                                      f"http://127.0.0.1:{port}")
    assert "Nothing was exported" in err and time.time() - start < 60
    assert {f: snapshot(f) for f in folders} == before


def test_refused_writes_are_errors_that_change_nothing(server, ws, exported, capsys):
    client = server["client"]
    client.delete_experiment(client.create_experiment("gone"))
    folder = ws["runs"][0]
    before = snapshot(folder)
    rc = main(["mlflow-export", folder.name, "--experiment", "gone", "--tracking-uri",
               server["uri"], "--artifacts", str(ws["root"])])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: The MLflow experiment 'gone'") and "is deleted" in err
    assert snapshot(folder) == before
    # a param MLflow already holds with another value: refused before anything is written
    config = (folder / "config.json").read_text()
    edit(folder, batch_size=16)
    before = snapshot(folder)
    try:
        rc = main(["mlflow-export", folder.name, "--no-figures", "--tracking-uri", server["uri"],
                   "--artifacts", str(ws["root"])])
        err = capsys.readouterr().err
        assert rc == 2 and "MLflow never changes a param" in err and "['batch_size']" in err
        assert snapshot(folder) == before
        assert client.get_run(exported["ids"][folder]).data.params["batch_size"] == "8"
    finally:
        (folder / "config.json").write_text(config)


def test_a_lost_record_is_found_again_by_the_run_tag(server, ws, exported):
    folder = ws["runs"][1]
    (folder / MLFLOW_RECORD).unlink()
    rc, out, err = export(server, ws, folder.name, "--no-model", "--no-figures")
    assert rc == 0, err
    assert out.startswith(f"updated MLflow run {exported['ids'][folder]}")
    assert run_of(folder, server) == exported["ids"][folder]


def _compare_page(ws, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("CNMC_ARTIFACTS", str(ws["root"]))
    repo = Path(__file__).resolve().parents[1]
    at = AppTest.from_file(str(repo / "app.py"), default_timeout=120).run()
    at.switch_page("pages/3_Compare.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_the_compare_page_exports_the_selection(server, ws, exported, monkeypatch):
    at = _compare_page(ws, monkeypatch)
    assert "Share" in [s.value for s in at.subheader]
    assert at.button(key="mlflow_export").disabled  # no URI yet
    at.toggle(key="show_study_runs").set_value(True).run()  # study-a's two runs too
    at.text_input(key="mlflow_uri").set_value(server["uri"]).run()
    at.button(key="mlflow_export").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "0 MLflow run(s) created, 4 updated" in at.success[0].value
    table = at.dataframe[-1].value
    assert sorted(table["kind"]) == ["ensemble", "run", "run", "run"]
    assert set(table["mlflow run"]) == set(exported["ids"].values())


def test_the_compare_page_shows_an_unreachable_server_as_an_error(ws, exported, monkeypatch):
    before = {p: snapshot(p) for p in exported["ids"]}
    at = _compare_page(ws, monkeypatch)
    at.text_input(key="mlflow_uri").set_value(f"http://127.0.0.1:{free_port()}").run()
    at.button(key="mlflow_export").click().run()
    assert not at.exception and "No MLflow tracking server answers" in at.error[0].value
    assert {p: snapshot(p) for p in exported["ids"]} == before
