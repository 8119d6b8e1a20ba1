"""Saved ensembles: their ids, ``config.json`` before and after fitting, ``predictions.csv`` and
``metrics.json``, and a fitted ensemble written as a folder with a run's files, so anything that
lists runs can show it and it can be a member of a new ensemble.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from cnmc_core import __version__
from cnmc_core.contracts import SCORED_SPLITS
from cnmc_core.ensemble.align import AlignedPredictions
from cnmc_core.ensemble.combiners import Combiner, StackingEnsemble
from cnmc_core.ensemble.report import PAPER_RESULTS
from cnmc_core.exceptions import RunError
from cnmc_core.metrics.bootstrap import full_report
from cnmc_core.workspace.fileio import atomic_write_csv, atomic_write_json, check_name
from cnmc_core.workspace.paths import ensembles_dir

__all__ = ["new_ensemble_id", "base_config", "fitted_config", "ensemble_outputs", "save_ensemble"]


def new_ensemble_id(aligned: AlignedPredictions, method: str, seed: int, threshold) -> str:
    digest = hashlib.sha1(
        "|".join(map(str, [*aligned.members, method, seed, threshold, time.time_ns()])).encode()
    ).hexdigest()[:6]
    return f"ens-{method}-{time.strftime('%Y%m%d-%H%M%S')}-{digest}"


def base_config(aligned: AlignedPredictions, combiner: Combiner, *, eid: str, method: str,
                 threshold_rule: float | str, seed: int, created: float) -> dict:
    """The part of an ensemble's ``config.json`` known before it is fitted."""
    return {
        "kind": "ensemble", "ensemble_id": eid, "run_id": eid, "model": f"ensemble:{method}",
        "members": list(aligned.members), "member_paths": [str(p) for p in aligned.paths],
        "member_kinds": list(aligned.kinds), "method": method,
        "threshold_rule": str(threshold_rule),
        "split_protocol": aligned.split_protocol,
        "dataset_fingerprint": aligned.dataset_fingerprint, "seed": seed,
        "params": {k: v for k, v in combiner.get_params().items() if k != "callback"},
        "fitted_on": "val", "created": created,  # epoch seconds, as runs
        "versions": {"cnmc_core": __version__, "numpy": np.__version__, "pandas": pd.__version__},
    }


def fitted_config(aligned: AlignedPredictions, combiner: Combiner, base: dict) -> dict:
    """``base`` with the fitted weights by member, the threshold and any stacking model."""
    config = dict(base)
    config["weights"] = dict(zip(aligned.members, map(float, combiner.weights_)))
    config["threshold"] = float(combiner.threshold_)
    if isinstance(combiner, StackingEnsemble):
        config["stacking"] = {"coef": combiner.coef_.tolist(), "intercept": combiner.intercept_,
                              "features": "logit of each member's P(ALL)",
                              "note": "weights are display only; predictions come from the LR"}
    return config


def ensemble_outputs(aligned: AlignedPredictions, combiner: Combiner, *, method: str, seed: int,
                      comparison: list[dict] | None, n_boot: int) -> tuple[pd.DataFrame, dict]:
    """A fitted ensemble's ``predictions.csv`` frame and ``metrics.json`` content."""
    frames, metrics = [], {}
    for split in SCORED_SPLITS:
        data = aligned.splits[split]
        prob = combiner.predict_proba(data.probs)
        frame = pd.DataFrame({"image_id": data.image_id, "split": split, "y": data.y,
                              "prob": prob})
        if data.subject is not None:
            frame["subject"] = data.subject
        frames.append(frame)
        metrics[split] = full_report(data.y, prob, combiner.threshold_, data.subject,
                                     n_boot=n_boot, seed=seed)
    metrics["method"] = method
    metrics["comparison"] = comparison or []
    metrics["paper_reference"] = list(PAPER_RESULTS)
    return pd.concat(frames, ignore_index=True), metrics


def save_ensemble(
    aligned: AlignedPredictions,
    combiner: Combiner,
    *,
    method: str,
    threshold_rule: float | str,
    seed: int,
    out_dir: str | os.PathLike | None = None,
    ensemble_id: str | None = None,
    comparison: list[dict] | None = None,
    n_boot: int = 1000,
) -> Path:
    """Write a fitted ensemble as ``<out_dir>/<ensemble_id>/`` with a run's files.

    ``config.json`` (kind, ensemble_id, members, member paths, method, weights by member,
    threshold and its rule, split protocol, dataset fingerprint, seed, parameters, stacking
    coefficients), ``status.json`` (completed), ``predictions.csv`` (``image_id, split, y, prob,
    subject``) and ``metrics.json`` (``val``/``test`` full reports, plus ``comparison`` and the
    paper's figures). The folder is built under a temporary name and renamed into place, so a
    reader never sees half an ensemble. (A search, :func:`build_ensemble`, writes the same files
    into a folder that exists, with a live status, from its start.)

    Raises:
        RunError: the ensemble folder already exists; CnmcError: an unsafe ``ensemble_id``.
    """
    root = Path(out_dir) if out_dir is not None else ensembles_dir()
    root.mkdir(parents=True, exist_ok=True)
    eid = check_name(ensemble_id or new_ensemble_id(aligned, method, seed, threshold_rule),
                     "ensemble id")
    target = root / eid
    if target.exists():
        raise RunError(f"{target} already exists; choose another ensemble id.")
    created = time.time()
    config = fitted_config(aligned, combiner, base_config(
        aligned, combiner, eid=eid, method=method, threshold_rule=threshold_rule, seed=seed,
        created=created))
    predictions, metrics = ensemble_outputs(aligned, combiner, method=method, seed=seed,
                                             comparison=comparison, n_boot=n_boot)
    tmp = Path(tempfile.mkdtemp(prefix=f".{eid}.", suffix=".tmp", dir=root))
    try:
        atomic_write_json(tmp / "config.json", config)
        atomic_write_csv(tmp / "predictions.csv", predictions)
        atomic_write_json(tmp / "metrics.json", metrics)
        atomic_write_json(tmp / "status.json", {"state": "completed", "kind": "ensemble",
                                                "created": created, "heartbeat": created,
                                                "error": None})
        os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
