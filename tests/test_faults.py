"""Faults: concurrent readers never see half a file; full disks and bad data give clear errors."""

from __future__ import annotations

import errno
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import cell_image, write_image

from cnmc_core.data.images import read_image
from cnmc_core.data.manifest import scan_dataset
from cnmc_core.exceptions import DataError, RunError
from cnmc_core.workspace.layout import create_run, read_history
from cnmc_core.workspace.status import read_status

# The writer runs in a fresh interpreter (not multiprocessing's spawn, which re-runs the parent's
# __main__: after the AppTest page tests that is a Streamlit page script).
_WRITER = """
import json, sys, time
from pathlib import Path
import pandas as pd
from cnmc_core.workspace.fileio import atomic_write_csv, atomic_write_json
from cnmc_core.workspace.status import write_status
run, seconds = Path(sys.argv[1]), float(sys.argv[2])
end = time.time() + seconds
k = 0
with open(run / "history.jsonl", "a") as fh:
    while time.time() < end:
        k += 1
        write_status(run, state="running", epoch=k, payload="x" * (k % 5000))
        atomic_write_json(run / "metrics.json", {"val": {"weighted_f1": k / 1e6}, "pad": list(range(k % 300))})
        atomic_write_csv(run / "predictions.csv",
                         pd.DataFrame({"image_id": [f"i{j}" for j in range(k % 200 + 1)], "prob": 0.5}))
        line = json.dumps({"epoch": k, "loss": 1.0 / k}) + "\\n"
        for cut in (len(line) // 2, len(line)):  # a line is written in two pieces
            fh.write(line[: cut] if cut < len(line) else line[len(line) // 2:])
            fh.flush()
"""


def test_readers_never_see_half_written_files(tmp_path):
    run = create_run({"name": "stress", "model": "m", "stages": []}, tmp_path)
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(run), "3.0"],
                            cwd=Path(__file__).resolve().parents[1])
    reads = 0
    try:
        deadline = time.time() + 60  # read for as long as the writer writes (it starts slowly)
        while proc.poll() is None and time.time() < deadline:
            assert read_status(run)["state"] in ("queued", "running")
            if (run / "metrics.json").exists():
                assert "val" in json.loads((run / "metrics.json").read_text())
            if (run / "predictions.csv").exists():
                frame = pd.read_csv(run / "predictions.csv")
                assert list(frame.columns) == ["image_id", "prob"] and frame["prob"].notna().all()
            history = read_history(run)
            if len(history):
                assert history["loss"].notna().all() and history["epoch"].is_monotonic_increasing
            reads += 1
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == 0 and reads > 50
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]


def test_full_disk_while_saving_leaves_no_model_and_says_why(tmp_path, monkeypatch):
    import keras
    from conftest import make_kaggle_tree

    from cnmc_core.training.config import resolve_config
    from cnmc_core.training.loop import train_run

    data = make_kaggle_tree(tmp_path / "data", n_all=5, n_hem=5, per_subject=3)
    config = resolve_config("demo_scratch", data=str(data), epochs=1, sets=["batch_size=8"])
    run = create_run(config, tmp_path / "art")

    def full_disk(self, path, *args, **kwargs):
        Path(path).write_bytes(b"PK\x03\x04 partial")  # a half-written file, as a full disk leaves
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(keras.Model, "save", full_disk)
    with pytest.raises(OSError):
        train_run(run, log=None, artifacts=tmp_path / "art", wait_in_queue=False)
    status = read_status(run)
    assert status["state"] == "failed" and "No space left on device" in status["error"]
    assert not (run / "model.keras").exists()
    assert not [p.name for p in run.iterdir() if "partial" in p.name]
    assert "No space left on device" in (run / "log.txt").read_text()


def test_read_only_artifacts_folder_is_a_clear_error(tmp_path, monkeypatch):
    def refuse(self, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", refuse)
    with pytest.raises(RunError, match="Cannot create a run folder in .*: Permission denied.*writable"):
        create_run({"name": "x", "model": "m", "stages": []}, tmp_path)


def test_huge_and_tiny_images(tmp_path, monkeypatch):
    import cnmc_core.data.images as ds

    write_image(tmp_path / "all" / "UID_1_1_1_all.png", cell_image(size=300, radius=100))
    write_image(tmp_path / "all" / "UID_1_2_1_all.png", np.full((1, 1, 3), 90, np.uint8))  # 1x1: a cell
    write_image(tmp_path / "hem" / "UID_H1_1_1_hem.bmp", cell_image(size=300, radius=80))
    monkeypatch.setattr(ds, "MAX_PIXELS", 50_000)  # 300x300 BMP/PNG headers exceed it
    result = scan_dataset(tmp_path)
    assert result.manifest["image_id"].tolist() == ["UID_1_2_1_all.png"]
    assert set(result.skipped["reason"]) == {"image too large"}
    with pytest.raises(DataError, match="more than the limit of 50,000; C-NMC images are 450x450"):
        read_image(tmp_path / "hem" / "UID_H1_1_1_hem.bmp")


def test_subject_with_one_image_and_single_class_dataset(tmp_path):
    from cnmc_core.data.splits import make_split

    for s in range(4):
        write_image(tmp_path / "all" / f"UID_{s}_1_1_all.bmp", cell_image(seed=s))
    manifest = scan_dataset(tmp_path).manifest
    with pytest.raises(DataError, match="has only ALL images; both ALL and HEM are needed"):
        make_split(manifest, "subject")
    for s in range(3):  # HEM subjects with one image each: still a valid subject split
        write_image(tmp_path / "hem" / f"UID_H{s}_1_1_hem.bmp", cell_image(seed=10 + s))
    split = make_split(scan_dataset(tmp_path).manifest, "subject")
    assert set(split["split"]) == {"train", "val", "test"}


@pytest.mark.parametrize("name", ["../evil", "/tmp/evil", "a/b", "..", "bad name"])
def test_ensemble_ids_cannot_escape(workspace, tmp_path, capsys, name):
    from cnmc_core.cli.main import main

    runs = [str(p) for p in workspace["runs"][:2]]
    assert main(["ensemble", *runs, "--method", "mean", "--name", name, "--out", str(tmp_path / "ens")]) == 2
    assert "Invalid ensemble id" in capsys.readouterr().err
    ens = tmp_path / "ens"
    assert not ens.exists() or not any(ens.iterdir())  # nothing written anywhere


def test_nothing_is_unpickled_and_models_load_safely():
    """Every model load is the one in cnmc_core/models/io.py, with safe_mode=True; no pickle,
    joblib.load, allow_pickle=True or eval anywhere in the library, the pages or the app (a user
    can supply any of those files)."""
    import ast

    repo = Path(__file__).resolve().parents[1]
    files = [*repo.glob("cnmc_core/**/*.py"), *repo.glob("pages/*.py"), *repo.glob("page_*.py"), repo / "app.py"]
    keras_loads = []
    for path in files:
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                assert not any(n.split(".")[0] in ("pickle", "dill", "cloudpickle") for n in names), path
                if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in ("keras", "tensorflow"):
                    assert "load_model" not in names, (path, node.lineno)  # keras' loader by another name
            if isinstance(node, ast.Call):
                func = ast.unparse(node.func)
                assert func not in ("eval", "exec", "joblib.load"), (path, node.lineno, func)
                pickles = [k for k in node.keywords if k.arg == "allow_pickle" and ast.unparse(k.value) != "False"]
                assert not pickles, (path, node.lineno, func)
                if func.endswith(".load_model") and func.split(".")[0] in ("keras", "tf", "tensorflow"):
                    keras_loads.append(str(path.relative_to(repo)))
                    safe = [k for k in node.keywords if k.arg == "safe_mode"]
                    assert safe and ast.unparse(safe[0].value) == "True", (path, node.lineno)
    assert keras_loads == ["cnmc_core/models/io.py"]  # models.io.load_model, used by every reader
