"""Saved ensembles: their ids, ``config.json`` before and after fitting, ``predictions.csv`` and
``metrics.json``, and a fitted ensemble written as a folder with a run's files, so anything that
lists runs can show it and it can be a member of a new ensemble.

An ensemble lives in a workspace (``<workspace>/ensembles/<id>/``) and refers to its members by
their place in that workspace, ``runs/<id>`` or ``ensembles/<id>`` (``member_paths`` of its
``config.json``), never by an absolute path: a copied or moved workspace keeps working on its
own runs, and never reads another workspace's. So an ensemble can only be created in the
workspace of its members: :func:`ensemble_workspace` refuses anything else before a file is
written, and :func:`cnmc_core.ensemble.members.member_paths` resolves the references inside the
ensemble's own workspace only.
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
from cnmc_core.exceptions import ConfigError, RunError
from cnmc_core.metrics.bootstrap import full_report
from cnmc_core.workspace.fileio import atomic_write_csv, atomic_write_json, check_name
from cnmc_core.workspace.paths import ensembles_dir
from cnmc_core.workspace.summary import write_summary

__all__ = [
    "MEMBER_FOLDERS",
    "new_ensemble_id",
    "members_workspace",
    "ensemble_workspace",
    "member_refs",
    "base_config",
    "fitted_config",
    "ensemble_outputs",
    "save_ensemble",
]

#: The workspace subfolders members live in; a member reference is ``<subfolder>/<id>``.
MEMBER_FOLDERS = ("runs", "ensembles")


def new_ensemble_id(aligned: AlignedPredictions, method: str, seed: int, threshold) -> str:
    digest = hashlib.sha1(
        "|".join(map(str, [*aligned.members, method, seed, threshold, time.time_ns()])).encode()
    ).hexdigest()[:6]
    return f"ens-{method}-{time.strftime('%Y%m%d-%H%M%S')}-{digest}"


def _workspace_of(path: Path) -> Path | None:
    """The workspace a member folder is in (``<workspace>/runs/<id>`` or
    ``<workspace>/ensembles/<id>``), or None."""
    path = Path(path).resolve()
    return path.parent.parent if path.parent.name in MEMBER_FOLDERS else None


def members_workspace(paths) -> Path | None:
    """The one workspace all member folders ``paths`` are in, or None (none, or several)."""
    found = {_workspace_of(Path(p)) for p in paths}
    return found.pop() if len(found) == 1 and None not in found else None


def ensemble_workspace(out_dir: str | os.PathLike | None, paths) -> tuple[Path, Path]:
    """Where an ensemble of the members ``paths`` is created: ``(folder for its folder, its
    workspace)``.

    ``out_dir`` (the folder the ensemble's own folder goes in, normally
    ``<workspace>/ensembles``) defaults to the members' workspace's ``ensembles/``, else
    :func:`~cnmc_core.workspace.paths.ensembles_dir`. The ensemble's workspace is the folder
    above ``out_dir``, and every member must be in it.

    Raises:
        ConfigError: a member not in ``runs/`` or ``ensembles/`` of that workspace (the message
            names it, the two workspaces, and where to create the ensemble instead).
    """
    shared = members_workspace(paths)
    if out_dir is not None:
        root = Path(out_dir)
    else:
        root = shared / "ensembles" if shared is not None else ensembles_dir()
    workspace = root.resolve().parent
    for p in paths:
        if _workspace_of(Path(p)) != workspace:
            where = (f"create it in {shared / 'ensembles'} (leave out --out / out_dir)"
                     if shared is not None else "put its members in one workspace's runs/ or "
                     "ensembles/ first")
            raise ConfigError(
                f"Member {Path(p)} is not in the workspace {workspace} that the ensemble would "
                f"be created in ({root}): an ensemble refers to its members as runs/<id> or "
                f"ensembles/<id> of its own workspace, never by a path outside it. Instead, "
                f"{where}."
            )
    return root, workspace


def member_refs(paths, workspace: str | os.PathLike) -> list[str]:
    """The references ``runs/<id>`` / ``ensembles/<id>`` of member folders inside ``workspace``
    (checked by :func:`ensemble_workspace` first)."""
    workspace = Path(workspace).resolve()
    out = []
    for p in paths:
        p = Path(p).resolve()
        if p.parent.parent != workspace or p.parent.name not in MEMBER_FOLDERS:
            raise ConfigError(f"Member {p} is not in runs/ or ensembles/ of {workspace}.")
        out.append(f"{p.parent.name}/{p.name}")
    return out


def base_config(aligned: AlignedPredictions, combiner: Combiner, *, eid: str, method: str,
                 threshold_rule: float | str, seed: int, created: float,
                 workspace: str | os.PathLike, launched_by: str | None = None) -> dict:
    """The part of an ensemble's ``config.json`` known before it is fitted; ``member_paths``
    are the members' references inside ``workspace`` (:func:`member_refs`); ``launched_by``
    who saved it (:attr:`cnmc_core.auth.roles.Actor.launched_by`)."""
    return {
        "kind": "ensemble", "ensemble_id": eid, "run_id": eid, "model": f"ensemble:{method}",
        "members": list(aligned.members), "member_paths": member_refs(aligned.paths, workspace),
        "member_kinds": list(aligned.kinds), "method": method,
        "threshold_rule": str(threshold_rule),
        "split_protocol": aligned.split_protocol,
        "dataset_fingerprint": aligned.dataset_fingerprint, "seed": seed,
        "params": {k: v for k, v in combiner.get_params().items() if k != "callback"},
        "fitted_on": "val", "created": created,  # epoch seconds, as runs
        "launched_by": launched_by,
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
    actor=None,
) -> Path:
    """Write a fitted ensemble as ``<out_dir>/<ensemble_id>/`` with a run's files.

    ``config.json`` (kind, ensemble_id, members, member paths, method, weights by member,
    threshold and its rule, split protocol, dataset fingerprint, seed, parameters, stacking
    coefficients), ``status.json`` (completed), ``predictions.csv`` (``image_id, split, y, prob,
    subject``) and ``metrics.json`` (``val``/``test`` full reports, plus ``comparison`` and the
    paper's figures). The folder is built under a temporary name and renamed into place, so a
    reader never sees half an ensemble. (A search, :func:`cnmc_core.ensemble.search.run_search`,
    writes the same files into a folder that exists, with a live status, from its start.)
    ``out_dir`` defaults to the members' workspace's ``ensembles/`` (:func:`ensemble_workspace`).
    ``actor`` (None: the local OS user) must be a trainer or admin; it is recorded as
    ``launched_by``.

    Raises:
        AccessError: the actor may not save ensembles; RunError: the ensemble folder already
            exists; CnmcError: an unsafe ``ensemble_id``; ConfigError: ``out_dir`` outside the
            members' workspace.
    """
    from cnmc_core.auth.roles import require

    actor = require(actor, "save_ensemble")
    eid = check_name(ensemble_id or new_ensemble_id(aligned, method, seed, threshold_rule),
                     "ensemble id")
    root, workspace = ensemble_workspace(out_dir, aligned.paths)
    root.mkdir(parents=True, exist_ok=True)
    target = root / eid
    if target.exists():
        raise RunError(f"{target} already exists; choose another ensemble id.")
    created = time.time()
    config = fitted_config(aligned, combiner, base_config(
        aligned, combiner, eid=eid, method=method, threshold_rule=threshold_rule, seed=seed,
        created=created, workspace=workspace, launched_by=actor.launched_by))
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
        write_summary(tmp, "ensemble")  # stamps hold no path: still fresh once renamed
        os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
