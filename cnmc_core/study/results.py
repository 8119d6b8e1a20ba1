"""A finished study's results, written once its runs are done, and read back by every reader.

:func:`write_results` pools the runs' test predictions (``oof.csv``, ``pooled.csv``), scores
every preset on every subject, compares every pair of presets (the corrected resampled t-test
over the folds and the paired subject bootstrap of the pooled difference, for AUC and weighted
F1), fits the ensembles per fold and compares the GA with the mean the same way, and writes it
all to ``metrics.json`` (atomically, last). :func:`read_results` reads it back, saying which file
is damaged rather than failing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from cnmc_core.contracts import METRICS, protocol_label
from cnmc_core.exceptions import RunError
from cnmc_core.study.pooling import (
    STUDY_METRICS,
    StudyRun,
    oof_frame,
    paired_comparisons,
    pooled_predictions,
    preset_scores,
)
from cnmc_core.study.store import OOF_FILE, POOLED_FILE, read_study
from cnmc_core.workspace.fileio import atomic_write_csv, atomic_write_json, read_json

__all__ = ["split_sizes", "write_results", "read_results", "results_problem"]


def split_sizes(runs: Sequence[StudyRun]) -> tuple[float, float]:
    """The mean numbers of training and test images of the runs (from their ``split_counts``),
    whose ratio sets the corrected t-test's correction.

    Raises:
        RunError: no run records its split counts.
    """
    train, test = [], []
    for run in runs:
        counts = (read_json(run.path / "config.json") or {}).get("split_counts") or {}
        n_train = sum(v for k, v in counts.items() if k.startswith("train_"))
        n_test = sum(v for k, v in counts.items() if k.startswith("test_"))
        if n_train and n_test:
            train.append(n_train)
            test.append(n_test)
    if not train:
        raise RunError("No run of the study records its split counts (config.json "
                       "split_counts); train them again.")
    return float(np.mean(train)), float(np.mean(test))


def write_results(study_dir: str | os.PathLike, runs: Sequence[StudyRun], *, n_boot: int = 1000,
                  seed: int = 0, log: Callable[[str], None] | None = None) -> dict:
    """Pool, score, compare and write a study's results; returns the ``metrics.json`` content.

    Raises:
        RunError: the runs cannot be pooled (not completed, overlapping folds, presets on
            different images).
    """
    from cnmc_core.study.ensembles import fold_ensembles

    study_dir = Path(study_dir)
    study = read_study(study_dir)
    say = log or (lambda text: None)
    oof = oof_frame(runs)
    n_train, n_test = split_sizes(runs)
    comparisons = [c for metric in STUDY_METRICS
                   for c in paired_comparisons(oof, n_train, n_test, metric=metric,
                                               n_boot=n_boot, seed=seed)]
    metrics = {"study_id": study_dir.name, "protocol": study.get("protocol"),
               "protocol_label": protocol_label(study.get("protocol")),
               "folds": study.get("folds"), "seeds": study.get("seeds"),
               "n_train": n_train, "n_test": n_test,
               "presets": preset_scores(oof, n_boot=n_boot, seed=seed),
               "comparisons": comparisons, "ensembles": None}
    if len({r.preset for r in runs}) >= 2:
        say("fitting the ensembles on every fold")
        ens = fold_ensembles(runs, seed=seed)
        ens_comparisons = [c for metric in STUDY_METRICS
                           for c in paired_comparisons(ens, n_train, n_test, metric=metric,
                                                       n_boot=n_boot, seed=seed)]
        metrics["ensembles"] = {"presets": preset_scores(ens, n_boot=n_boot, seed=seed),
                                "comparisons": ens_comparisons}
        oof = oof.merge(ens, how="outer")
    atomic_write_csv(study_dir / OOF_FILE, oof)
    atomic_write_csv(study_dir / POOLED_FILE, pooled_predictions(oof))
    atomic_write_json(study_dir / METRICS, metrics)
    return metrics


def read_results(study_dir: str | os.PathLike) -> dict | None:
    """The ``metrics.json`` of a finished study, or None before it is written.

    Raises:
        RunError: the file is damaged (the message names it).
    """
    path = Path(study_dir) / METRICS
    if not path.is_file():
        return None
    try:
        data = read_json(path)
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # CnmcError included
        raise RunError(f"{path} cannot be read ({exc}); run `python -m cnmc_core study --resume "
                       f"{Path(study_dir).name}` to write it again.") from None
    if not isinstance(data, dict) or "presets" not in data:
        raise RunError(f"{path} is not a study's results (no 'presets').")
    problem = results_problem(data)
    if problem:
        raise RunError(f"{path} is damaged: {problem}; run `python -m cnmc_core study --resume "
                       f"{Path(study_dir).name}` to write it again.")
    return data


def _scores_problem(scores, where: str) -> str:
    if not isinstance(scores, dict):
        return f"'{where}' is not an object"
    for name, s in scores.items():
        if not isinstance(s, dict):
            return f"'{where}.{name}' is not an object"
        for key, kind in (("pooled", dict), ("folds", list), ("fold_mean", dict),
                          ("fold_sd", dict)):
            if not isinstance(s.get(key), kind):
                return f"'{where}.{name}.{key}' is missing or not a{'n object' if kind is dict else ' list'}"
        if not all(isinstance(f, dict) for f in s["folds"]):
            return f"'{where}.{name}.folds' holds something that is not an object"
    return ""


def _comparisons_problem(comparisons, where: str) -> str:
    if not isinstance(comparisons, list):
        return f"'{where}' is not a list"
    for k, c in enumerate(comparisons):
        if not (isinstance(c, dict) and isinstance(c.get("metric"), str)
                and isinstance(c.get("folds"), dict) and "decided" in c["folds"]
                and isinstance(c.get("pooled"), dict)):
            return (f"'{where}[{k}]' is not a comparison (an object with 'metric', 'folds' with "
                    "'decided', and 'pooled')")
    return ""


def results_problem(data: dict) -> str:
    """What is wrong with the shape of a study's ``metrics.json`` (what the readers of
    :mod:`cnmc_core.study.report` rely on), or "" when nothing is."""
    problem = (_scores_problem(data.get("presets"), "presets")
               or _comparisons_problem(data.get("comparisons", []), "comparisons"))
    ensembles = data.get("ensembles")
    if not problem and ensembles is not None:
        if not isinstance(ensembles, dict):
            return "'ensembles' is not an object"
        problem = (_scores_problem(ensembles.get("presets") or {}, "ensembles.presets")
                   or _comparisons_problem(ensembles.get("comparisons", []), "ensembles.comparisons"))
    return problem
