"""Study folders written by hand, as ``create_study`` and the training engine leave them, with
their results computed by the real library (``write_results``): for the study listing, the
``runs`` verb and the pages, without training."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from cnmc_core.study.results import write_results
from cnmc_core.study.store import study_runs

DONE = "study-20261201-000000-scratch-vgg16-ab12"
TWO = "study-20261201-000002-twofold-ef56"
_BUILT: dict[str, Path] = {}

SUBJECTS_ALL = [f"A{i}" for i in range(6)]
SUBJECTS_HEM = [f"H{i}" for i in range(5)]


def _folds(k: int) -> dict[str, int]:
    """Subject -> fold, stratified by class."""
    out = {}
    for group in (SUBJECTS_ALL, SUBJECTS_HEM):
        for i, s in enumerate(group):
            out[s] = i % k
    return out


def _write_run(root: Path, run_id: str, study_id: str, preset: str, fold: int, seed: int,
               k: int, skill: float, rng, state: str = "completed") -> None:
    path = root / "runs" / run_id
    path.mkdir(parents=True)
    fold_of = _folds(k)
    rows = []
    for subject, f in fold_of.items():
        split = "test" if f == fold else "val" if f == (fold + 1) % k else None
        if split is None:
            continue
        y = int(subject.startswith("A"))
        for image in range(4):
            prob = float(np.clip(skill * y + (1 - skill) * rng.random() + rng.normal(0, .05), 0, 1))
            rows.append({"image_id": f"UID_{subject}_{image}_1_{'all' if y else 'hem'}.bmp",
                         "split": split, "y": y, "prob": prob, "subject": subject})
    created = time.time() - 600 + fold
    (path / "config.json").write_text(json.dumps({
        "run_id": run_id, "kind": "run", "name": preset, "preset": preset, "model": "cnn",
        "image_size": 32, "split_protocol": "subject-kfold", "seed": seed,
        "stages": [{"name": "train", "epochs": 3}],
        "dataset_fingerprint": "fp-study", "created": created, "kfold": {"k": k, "fold": fold},
        "split_counts": {"train_all": 30, "train_hem": 25, "test_all": 8, "test_hem": 8},
        "study": {"id": study_id, "preset": preset, "fold": fold, "seed": seed}}))
    (path / "status.json").write_text(json.dumps({"state": state, "created": created,
                                                  "heartbeat": time.time()}))
    if state == "completed":
        pd.DataFrame(rows).to_csv(path / "predictions.csv", index=False)
        (path / "metrics.json").write_text(json.dumps({"threshold": 0.5}))


def write_study(root: Path, study_id: str = "study-20261201-000000-scratch-vgg16-ab12",
                presets=("demo_scratch", "demo_vgg16"), folds: int = 4, seeds: int = 1,
                state: str = "completed", skills=(0.45, 0.25), n_boot: int = 100,
                done: int | None = None) -> Path:
    """A study of ``presets`` x ``folds`` x ``seeds`` under ``root`` (the workspace).

    ``state`` ``completed``: every run completed and the results written by
    :func:`cnmc_core.study.results.write_results`; ``running``: the coordinator is this process
    (alive, fresh heartbeat), ``done`` runs completed and the others queued.
    """
    rng = np.random.default_rng(0)
    folder = root / "studies" / study_id
    folder.mkdir(parents=True)
    runs = []
    n = 0
    for p, preset in enumerate(presets):
        for seed in range(seeds):
            for fold in range(folds):
                run_id = f"20261201-0000{n:02d}-{preset}-{study_id[-4:]}{n:02d}"
                run_state = "completed" if state == "completed" or (done is not None and n < done) \
                    else "queued"
                _write_run(root, run_id, study_id, preset, fold, seed, folds, skills[p], rng,
                           state=run_state)
                runs.append({"id": run_id, "path": f"runs/{run_id}", "preset": preset,
                             "fold": fold, "seed": seed})
                n += 1
    created = time.time() - 700
    (folder / "study.json").write_text(json.dumps({
        "study_id": study_id, "kind": "study", "created": created, "presets": list(presets),
        "folds": folds, "seeds": list(range(seeds)), "protocol": "subject-kfold",
        "protocol_label": "subject-kfold", "leaky": False, "data": str(root / "data"),
        "dataset_fingerprint": "fp-study", "n_subjects": {"all": 6, "hem": 5},
        "backend": "local", "address": None, "epochs": None, "image_size": 32,
        "resources": {}, "runs": runs}))
    status = {"state": state, "kind": "study", "created": created, "total": len(runs),
              "done": len(runs) if state == "completed" else (done or 0), "failed": 0,
              "running": 0 if state == "completed" else 1, "heartbeat": time.time(),
              "error": None}
    if state == "running":
        from cnmc_core.workspace.status import proc_start_time

        status.update(pid=os.getpid(), pid_start=proc_start_time(os.getpid()),
                      message=f"{done or 0} of {len(runs)} runs done, 1 training")
    (folder / "status.json").write_text(json.dumps(status))
    if state == "completed":
        write_results(folder, study_runs(folder), n_boot=n_boot)
    return folder


def add_built_studies(root: Path) -> Path:
    """Copy into the workspace ``root`` two finished studies, built once per test process: DONE
    (4 folds: its comparisons are decided) and TWO (2 folds: they cannot be)."""
    import shutil
    import tempfile

    if "base" not in _BUILT:
        base = Path(tempfile.mkdtemp(prefix="cnmc-studies-"))
        write_study(base, DONE)
        write_study(base, TWO, folds=2)
        _BUILT["base"] = base
    for sub in ("runs", "studies"):
        shutil.copytree(_BUILT["base"] / sub, root / sub, dirs_exist_ok=True)
    return root
