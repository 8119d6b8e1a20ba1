"""Ensembles of a study, fitted per fold, and the study's pooled members for the dashboard.

- :func:`fold_ensembles`: for every (fold, seed), the presets' runs of that fold are aligned,
  each method (equal weights, the paper's GA, ...) is fitted on that fold's validation
  predictions and scored on its test predictions; the result has the shape of
  :func:`cnmc_core.study.pooling.oof_frame` with the method as the "preset" (``ensemble:ga``), so
  the same pooling, scores and paired tests answer "does the GA beat the mean?" across folds.
- :func:`study_aligned`: the study as aligned members (one per preset) whose val and test splits
  are the pooled out-of-fold predictions of every image (each image is the val fold of one run
  and the test fold of another, per seed; averaged over the seeds): what the Ensemble page's
  sliders weight (one weight vector for every fold) and the Errors page analyses, over every
  subject.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from cnmc_core.exceptions import RunError
from cnmc_core.study.pooling import StudyRun

__all__ = ["STUDY_METHODS", "fold_ensembles", "study_aligned", "align_source"]

#: The ensemble methods fitted per fold (the paper's average and GA, and our best simple one).
STUDY_METHODS = ("mean", "ga", "slsqp")


def fold_ensembles(runs: Sequence[StudyRun], methods: Sequence[str] = STUDY_METHODS, *,
                   seed: int = 0, params: dict | None = None) -> pd.DataFrame:
    """Each method fitted on every fold's val and scored on its test, as out-of-fold rows:
    ``preset`` (``ensemble:<method>``), ``fold``, ``seed``, ``image_id``, ``y``, ``subject``,
    ``prob``, ``threshold``.

    Raises:
        RunError: fewer than two presets (nothing to combine), or runs of one fold and seed that
            do not align (the message says how they differ).
    """
    from cnmc_core.ensemble.align import align_runs
    from cnmc_core.ensemble.methods import make_combiner, method_params

    by_fold: dict[tuple[int, int], list[StudyRun]] = {}
    for run in runs:
        by_fold.setdefault((run.seed, run.fold), []).append(run)
    if len({r.preset for r in runs}) < 2:
        raise RunError("Ensembles need at least two presets in the study.")
    parts = []
    for (s, fold), group in sorted(by_fold.items()):
        group = sorted(group, key=lambda r: r.preset)
        aligned = align_runs([r.path for r in group])
        val, test = aligned.splits["val"], aligned.splits["test"]
        for method in methods:
            combiner = make_combiner(method, **method_params(method, seed + s, 0.5, params))
            combiner.fit(val.probs, val.y)
            parts.append(pd.DataFrame({
                "preset": f"ensemble:{method}", "fold": fold, "seed": s,
                "image_id": test.image_id.astype(str), "y": test.y.astype(int),
                "subject": test.subject.astype(str) if test.subject is not None else "",
                "prob": combiner.predict_proba(test.probs), "threshold": float(combiner.threshold_)}))
    return pd.concat(parts, ignore_index=True)


def study_aligned(runs: Sequence[StudyRun]):
    """The study as :class:`~cnmc_core.ensemble.align.AlignedPredictions`: one member per preset
    (named after the preset), val and test the pooled out-of-fold predictions of every image.

    Raises:
        RunError: a run that is not completed, or presets scored on different images.
    """
    from cnmc_core.ensemble.align import AlignedPredictions, SplitData, load_predictions

    rows = []
    config = None
    for run in runs:
        member = load_predictions(run.path)
        config = config or member.config
        frame = member.frame.assign(preset=run.preset, seed=run.seed)
        rows.append(frame[["preset", "seed", "image_id", "split", "y", "prob", "subject"]])
    if not rows:
        raise RunError("The study has no completed run.")
    frame = pd.concat(rows, ignore_index=True)
    pooled = frame.groupby(["preset", "split", "image_id"], sort=True).agg(
        y=("y", "first"), subject=("subject", "first"), prob=("prob", "mean")).reset_index()
    presets = sorted(pooled["preset"].unique())
    first_path = {}
    for run in runs:
        first_path.setdefault(run.preset, run.path)
    splits = {}
    for split in ("val", "test"):
        part = pooled[pooled["split"] == split]
        wide = part.pivot(index="image_id", columns="preset", values="prob")
        if wide.isna().any().any():
            raise RunError(f"The presets of the study were scored on different {split} images; "
                           "they were not trained on the same folds.")
        info = part.drop_duplicates("image_id").set_index("image_id").loc[wide.index]
        splits[split] = SplitData(wide.index.to_numpy(dtype=str), info["y"].to_numpy(np.int8),
                                  info["subject"].astype(str).to_numpy(), wide[presets].to_numpy())
    return AlignedPredictions(members=presets, paths=[first_path[p] for p in presets],
                              kinds=["run"] * len(presets), thresholds=[0.5] * len(presets),
                              split_protocol=str(config.get("split_protocol")),
                              dataset_fingerprint=str(config.get("dataset_fingerprint")),
                              splits=splits)


def align_source(paths: Sequence[str]):
    """What the Ensemble and Errors pages analyse: the runs or ensembles at ``paths`` aligned image
    by image (:func:`cnmc_core.ensemble.align.align_runs`), or, for one study folder (it holds
    ``study.json``), the study's presets pooled out of fold over every subject
    (:func:`study_aligned`).

    Raises:
        RunError: members that do not align, or a study with a run that is not completed.
    """
    from pathlib import Path

    from cnmc_core.ensemble.align import align_runs
    from cnmc_core.study.store import STUDY_FILE, study_runs

    if len(paths) == 1 and (Path(paths[0]) / STUDY_FILE).is_file():
        return study_aligned(study_runs(paths[0]))
    return align_runs(list(paths))
