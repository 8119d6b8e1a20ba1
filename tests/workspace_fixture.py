"""A small workspace for page and browser tests: a tiny dataset, three completed runs of
different models on the same images, and one failed run.

Built once per test session (about 30 s on 2 cores) by :func:`build_workspace`.
"""

from __future__ import annotations

from pathlib import Path

from conftest import make_kaggle_tree

from cnmc_core.training.config import resolve_config
from cnmc_core.training.loop import train_run
from cnmc_core.workspace.layout import append_history, create_run
from cnmc_core.workspace.status import write_status

MODELS = ("scratch_dd256", "scratch_d128", "scratch_d256")


def build_workspace(root: Path) -> dict:
    """Create ``root/data`` and ``root/artifacts`` with 3 completed runs and 1 failed run.

    Returns ``{"artifacts": Path, "data": Path, "runs": [Path, ...], "failed": Path}``.
    """
    data = make_kaggle_tree(root / "data", n_all=8, n_hem=7, per_subject=4)
    artifacts = root / "artifacts"
    runs = []
    for k, model in enumerate(MODELS):
        config = resolve_config("demo_scratch", data=str(data), epochs=2, seed=k,
                                sets=[f"model={model}", "batch_size=8"])
        config["name"] = f"fixture_{model}"
        config["seed"] = 0  # the same split for all: their predictions align for ensembles
        run_dir = create_run(config, artifacts)
        train_run(run_dir, log=None, artifacts=artifacts, wait_in_queue=False)
        runs.append(run_dir)
    config = resolve_config("demo_scratch", data=str(data), epochs=3)
    failed = create_run(config, artifacts)
    append_history(failed, {"stage": "train", "epoch": 1, "loss": 0.69, "val_loss": 0.7, "accuracy": 0.5,
                            "val_accuracy": 0.5, "time": 0.0, "elapsed": 1.0})
    (failed / "log.txt").write_text("12:00:00 data: ...\nTraceback (most recent call last):\n"
                                    "MemoryError: out of memory while training\n")
    write_status(failed, state="failed", error="MemoryError: out of memory while training", epoch=1)
    return {"artifacts": artifacts, "data": data, "runs": runs, "failed": failed}


def build_synth_workspace(root: Path) -> dict:
    """``root/data``: a tiny dataset made by the synthetic generator (its marker included), and
    ``root/artifacts`` with one completed run trained on it (about 15 s on 2 cores).

    Returns ``{"artifacts": Path, "data": Path, "run": Path}``.
    """
    from cnmc_core.data.synth import generate_dataset

    data = root / "data"
    generate_dataset(data, subjects_all=6, subjects_hem=6, cells_per_subject=4, size=96, seed=2,
                     prelim_subjects=(0, 0), final_subjects=(0, 0), n_jobs=1)
    artifacts = root / "artifacts"
    config = resolve_config("demo_scratch", data=str(data), epochs=1,
                            sets=["model=scratch_d128", "batch_size=8"])
    config["name"] = "fixture_synthetic"
    run_dir = create_run(config, artifacts)
    train_run(run_dir, log=None, artifacts=artifacts, wait_in_queue=False)
    return {"artifacts": artifacts, "data": data, "run": run_dir}
