"""Pooled out-of-fold predictions of a study, and the scores that rest on every subject.

In a study of K subject-grouped folds, fold ``i`` is the test set of the runs of fold ``i``: each
subject's images are scored once per seed, by the run that held that subject out. Pooling the
test predictions of the K folds gives every image an out-of-fold P(ALL) per seed; averaging the
seeds gives one pooled P(ALL) per image. A preset's study score is computed on those pooled
predictions over every subject (37 on the default dataset, not the 9 of one test split), with a
class-stratified subject-bootstrap CI; the spread of the per-fold and per-seed scores is reported
beside it.

- :func:`oof_frame`: the test predictions of every run of a study, tagged with preset, fold and
  seed, checked (one fold per image and seed, the same images for every preset);
- :func:`pooled_predictions`: one row per (preset, image), P(ALL) averaged over the seeds;
- :func:`preset_scores`: per preset the pooled report, the per-seed pooled AUC and weighted F1,
  and each fold's;
- :func:`paired_comparisons`: every pair of presets: the per-fold differences with the
  corrected resampled t-test, and the paired subject bootstrap of the pooled difference.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from cnmc_core.exceptions import RunError
from cnmc_core.study.stats import corrected_ttest

__all__ = ["StudyRun", "STUDY_METRICS", "oof_frame", "pooled_predictions", "fold_scores",
           "preset_scores", "paired_comparisons"]

#: The metrics a study reports and compares (weighted F1 at the run's threshold, ROC AUC).
STUDY_METRICS = ("roc_auc", "weighted_f1")


@dataclass(frozen=True)
class StudyRun:
    """One run of a study: which preset, fold and seed it is, and its folder."""

    preset: str
    fold: int
    seed: int
    path: Path


def oof_frame(runs: Sequence[StudyRun]) -> pd.DataFrame:
    """The test predictions of every run, one row per (run, image): ``preset``, ``fold``,
    ``seed``, ``image_id``, ``y``, ``subject``, ``prob``, ``threshold`` (the run's).

    Raises:
        RunError: a run that is not completed or has no readable predictions (the message names
            it); an image scored by two folds of one preset and seed (the folds overlap); presets
            scored on different images (they were not trained on the same folds).
    """
    from cnmc_core.ensemble.align import load_predictions

    parts = []
    for run in runs:
        member = load_predictions(run.path)
        test = member.frame[member.frame["split"] == "test"]
        if test.empty:
            raise RunError(f"Run {run.path.name} (preset {run.preset}, fold {run.fold}, seed "
                           f"{run.seed}) has no test predictions.")
        if "subject" not in test.columns or test["subject"].isna().any():
            raise RunError(f"Run {run.path.name} gives no subject for some test images: the "
                           "study's subject bootstrap needs them (train it again).")
        parts.append(pd.DataFrame({"preset": run.preset, "fold": int(run.fold), "seed": int(run.seed),
                                   "image_id": test["image_id"].astype(str).to_numpy(),
                                   "y": test["y"].astype(int).to_numpy(),
                                   "subject": test["subject"].astype(str).to_numpy(),
                                   "prob": test["prob"].astype(float).to_numpy(),
                                   "threshold": float(member.threshold)}))
    if not parts:
        raise RunError("The study has no completed run to pool.")
    frame = pd.concat(parts, ignore_index=True)
    twice = frame.duplicated(["preset", "seed", "image_id"], keep=False)
    if twice.any():
        row = frame[twice].iloc[0]
        raise RunError(f"Image {row['image_id']} is in the test fold of two runs of preset "
                       f"{row['preset']} with seed {row['seed']}: the folds overlap.")
    images = {p: frozenset(g["image_id"]) for p, g in frame.groupby("preset")}
    first = next(iter(images))
    for preset, ids in images.items():
        if ids != images[first]:
            raise RunError(f"Presets {first} and {preset} were scored on different images "
                           f"({len(images[first]):,} and {len(ids):,}); a study compares presets "
                           "on the same folds.")
    return frame


def pooled_predictions(oof: pd.DataFrame) -> pd.DataFrame:
    """One row per (preset, image): ``preset``, ``image_id``, ``y``, ``subject``, ``prob`` (the
    mean of its out-of-fold P(ALL) over the seeds), ``n_seeds``, ``threshold`` (the mean of the
    runs' thresholds)."""
    grouped = oof.groupby(["preset", "image_id"], sort=True)
    return grouped.agg(y=("y", "first"), subject=("subject", "first"), prob=("prob", "mean"),
                       n_seeds=("seed", "nunique"), threshold=("threshold", "mean")).reset_index()


def _score(y: np.ndarray, prob: np.ndarray, threshold: float) -> dict[str, float]:
    from cnmc_core.metrics.report import binary_report

    rep = binary_report(y, prob, threshold)
    return {"roc_auc": rep["roc_auc"], "weighted_f1": rep["weighted_f1"]}


def fold_scores(oof: pd.DataFrame) -> pd.DataFrame:
    """Each run's test scores: ``preset``, ``fold``, ``seed``, ``n`` (images), ``roc_auc``,
    ``weighted_f1`` (NaN AUC where a fold has one class)."""
    rows = []
    for (preset, fold, seed), g in oof.groupby(["preset", "fold", "seed"], sort=True):
        rows.append({"preset": preset, "fold": int(fold), "seed": int(seed), "n": len(g),
                     **_score(g["y"].to_numpy(), g["prob"].to_numpy(), float(g["threshold"].iloc[0]))})
    return pd.DataFrame(rows, columns=["preset", "fold", "seed", "n", *STUDY_METRICS])


def preset_scores(oof: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> dict[str, dict]:
    """The study's score of each preset, on every subject.

    Returns:
        ``{preset: {"pooled": full report of the pooled predictions (with the class-stratified
        subject-bootstrap CI), "n_images", "n_subjects", "seeds": {seed: {metric: value}} (each
        seed's pooled out-of-fold score), "folds": [{fold, seed, n, metric...}], "fold_mean" and
        "fold_sd" {metric: value}}}``.
    """
    from cnmc_core.metrics.bootstrap import full_report

    pooled = pooled_predictions(oof)
    folds = fold_scores(oof)
    out = {}
    for preset, g in pooled.groupby("preset", sort=True):
        per_seed = {}
        for s, gs in oof[oof["preset"] == preset].groupby("seed", sort=True):
            per_seed[int(s)] = _score(gs["y"].to_numpy(), gs["prob"].to_numpy(),
                                      float(gs["threshold"].mean()))
        f = folds[folds["preset"] == preset]
        out[preset] = {
            "pooled": full_report(g["y"].to_numpy(), g["prob"].to_numpy(),
                                  float(g["threshold"].mean()), g["subject"].to_numpy(),
                                  n_boot=n_boot, seed=seed),
            "n_images": int(len(g)), "n_subjects": int(g["subject"].nunique()),
            "seeds": per_seed,
            "folds": f.drop(columns="preset").to_dict(orient="records"),
            "fold_mean": {m: float(np.nanmean(f[m])) if f[m].notna().any() else None
                          for m in STUDY_METRICS},
            "fold_sd": {m: float(np.nanstd(f[m], ddof=1)) if f[m].notna().sum() > 1 else None
                        for m in STUDY_METRICS},
        }
    return out


def paired_comparisons(oof: pd.DataFrame, n_train: float, n_test: float, *,
                       metric: str = "roc_auc", n_boot: int = 1000, seed: int = 0) -> list[dict]:
    """Every ordered pair (A, B) of presets: is A better than B on ``metric``?

    Two answers per pair: the per-fold differences (same fold, same seed) with
    :func:`cnmc_core.study.stats.corrected_ttest` (``folds``), and the paired subject bootstrap
    of the pooled out-of-fold difference (``pooled``: :func:`cnmc_core.metrics.bootstrap.
    paired_bootstrap_diff`, class-stratified, the same resamples for both).

    Returns:
        One dict per ordered pair: ``a``, ``b``, ``metric``, ``folds`` (the t-test's dict),
        ``pooled`` (``estimate``, ``low``, ``high``, ``p_a_not_better``, or ``reason`` when it
        cannot be computed).
    """
    from cnmc_core.metrics.bootstrap import paired_bootstrap_diff

    if metric not in STUDY_METRICS:
        raise RunError(f"metric must be one of {list(STUDY_METRICS)}; got {metric!r}.")
    folds = fold_scores(oof).set_index(["preset", "seed", "fold"])[metric]
    pooled = pooled_predictions(oof)
    presets = sorted(pooled["preset"].unique())
    wide = pooled.pivot(index="image_id", columns="preset", values="prob")
    truth = pooled.drop_duplicates("image_id").set_index("image_id").loc[wide.index]
    thresholds = pooled.groupby("preset")["threshold"].mean()
    out = []
    for a, b in itertools.permutations(presets, 2):
        fa, fb = folds.loc[a], folds.loc[b]
        common = fa.index.intersection(fb.index)
        ttest = corrected_ttest((fa.loc[common] - fb.loc[common]).to_numpy(), n_train, n_test)
        try:
            boot = paired_bootstrap_diff(truth["y"].to_numpy(), wide[a].to_numpy(),
                                         wide[b].to_numpy(), truth["subject"].to_numpy(),
                                         threshold=(float(thresholds[a]), float(thresholds[b])),
                                         metric=metric, n_boot=n_boot, seed=seed)
            pooled_diff = {k: boot[k] for k in ("estimate", "low", "high", "p_a_not_better")}
        except (ValueError, RunError) as exc:  # CnmcError included: one class, no subject...
            pooled_diff = {"reason": str(exc)}
        out.append({"a": a, "b": b, "metric": metric, "folds": ttest, "pooled": pooled_diff})
    return out
