"""Re-scoring a trained run's model on another dataset or split (``python -m cnmc_core evaluate``).

The arguments are checked, and the model loaded (:func:`cnmc_core.models.io.load_model`),
before anything is written: an evaluation folder appears only for a model that loads and
images that can be scored.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import pandas as pd

from cnmc_core.contracts import (
    CONFIG,
    METRICS,
    MODEL,
    PREDICTIONS,
    SOURCES,
    SPLIT_PROTOCOLS,
    protocol_label,
)
from cnmc_core.data.manifest import manifest_fingerprint, resolve_manifest
from cnmc_core.data.preprocess import build_cache
from cnmc_core.data.splits import make_split
from cnmc_core.exceptions import DataError, RunError
from cnmc_core.validation import check_choice
from cnmc_core.workspace.fileio import atomic_write_csv, atomic_write_json
from cnmc_core.workspace.status import check_completed
from cnmc_core.workspace.summary import read_config

__all__ = ["EVALUATION_SPLITS", "evaluate_run"]

#: What ``split=`` accepts: every labelled image, or the test split of a protocol.
EVALUATION_SPLITS = ("all", *SPLIT_PROTOCOLS)


def evaluate_run(run_dir: str | os.PathLike, data: str | os.PathLike, split: str = "all",
                 source: str | None = None, artifacts: str | os.PathLike | None = None,
                 log: Callable[[str], None] | None = print) -> tuple[Path, dict]:
    """Re-score a trained run's model on a dataset (e.g. the labelled preliminary set).

    Args:
        run_dir: a completed run (its ``model.keras`` is loaded with safe loading).
        data: dataset folder or manifest CSV.
        split: ``all`` (every labelled image), or a protocol (``subject``, ``paper``,
            ``official``) whose test split is scored with the run's seed.
        source: keep only images of this source (one of :data:`cnmc_core.contracts.SOURCES`:
            ``prelim``, ``fold_2``, ...); it is part of the output folder's name, so nothing
            else is accepted.
        artifacts: the artifacts folder whose preprocessing cache is used.
        log: where the one-line summary goes (None: nowhere).

    Returns:
        The evaluation folder ``<run>/evaluations/<fingerprint>-<split>[-<source>]`` (holding
        ``predictions.csv`` and ``metrics.json``) and the metrics.

    Raises:
        ConfigError: an unknown ``split`` or ``source``. RunError: the run has no model, or it
        does not load. DataError: no labelled images of both classes to score.
    """
    from cnmc_core.metrics.bootstrap import full_report
    from cnmc_core.models.io import load_model, predict_images

    check_choice(split, "--split", EVALUATION_SPLITS, owner="evaluate")
    if source is not None:
        check_choice(source, "--source", SOURCES, owner="evaluate")
    run_dir = Path(run_dir)
    if not (run_dir / MODEL).is_file():
        raise RunError(f"Run {run_dir.name} has no {MODEL}; only completed runs can be evaluated.")
    check_completed(run_dir, "evaluated")  # a damaged or unfinished status stops here
    config = read_config(run_dir)  # a JSON object in UTF-8, or a RunError naming the file
    size = config.get("image_size")
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise RunError(f"{run_dir / CONFIG}: image_size must be a positive integer; got {size!r}; "
                       "the file is damaged: restore it, or train the run again.")
    model = load_model(run_dir / MODEL)  # a damaged file fails here, before any folder exists
    manifest = resolve_manifest(data)
    images = manifest[manifest["y"].isin([0, 1])]
    if source is not None:
        images = images[images["source"] == source]
    if split != "all":
        test_ids = make_split(manifest, split, seed=config.get("seed", 0)).query("split == 'test'")["image_id"]
        images = images[images["image_id"].isin(set(test_ids))]
    where = ("every labelled image" if split == "all" else
             f"the test split of protocol {protocol_label(split)}") + (f" of source {source}" if source else "")
    if images.empty or images["y"].nunique() < 2:
        raise DataError(f"No labelled images of both classes to score in {data} ({where}); "
                        "choose another --split or --source.")
    images = images.sort_values("image_id").reset_index(drop=True)
    cache = build_cache(images, int(config["image_size"]), clahe=config.get("clahe", False), root=artifacts)
    prob = predict_images(model, cache.get(images["image_id"].tolist()))
    fingerprint = manifest_fingerprint(manifest)
    tag = f"{fingerprint}-{split}" + (f"-{source}" if source else "")
    out = run_dir / "evaluations" / tag
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_csv(out / PREDICTIONS, pd.DataFrame({"image_id": images["image_id"], "split": "test",
                                                      "y": images["y"], "prob": prob, "subject": images["subject"]}))
    metrics = {"test": full_report(images["y"].to_numpy(), prob, 0.5, subjects=images["subject"].to_numpy(),
                                   seed=int(config.get("seed", 0))),
               "data": str(data), "dataset_fingerprint": fingerprint, "split": split, "source": source}
    atomic_write_json(out / METRICS, metrics)
    if log is not None:
        log(f"{len(images)} images scored, {where}: weighted F1 "
            f"{metrics['test']['weighted_f1']:.4f}, AUC {metrics['test']['roc_auc']:.4f}")
    return out, metrics
