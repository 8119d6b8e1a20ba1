"""The study folder, ``artifacts/studies/<id>/``, and its runs.

- ``study.json``: the study's settings (presets, K, seeds, protocol and whether it is leaky,
  dataset and its fingerprint, backend) and its runs: ``[{"id", "path" (``runs/<id>``, relative
  to the workspace), "preset", "fold", "seed"}]``; replaced atomically.
- ``status.json``: ``queued``, ``running`` (the coordinator's pid and heartbeat, runs done of
  total), ``completed``, ``failed`` or ``cancelled``, as a run's (:mod:`cnmc_core.workspace.
  status`), so liveness applies to it.
- when the runs are done: ``oof.csv`` (every run's test predictions, tagged with preset, fold and
  seed), ``pooled.csv`` (one row per preset and image, P(ALL) averaged over the seeds),
  ``metrics.json`` (per preset, the pairwise comparisons, the ensembles per fold) and
  ``log.txt``.

Its runs are ordinary run folders under ``runs/``, tagged in their config with ``study``
(``{id, preset, fold, seed}``), so every page and verb still works on them.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import secrets
import sys
import time
from pathlib import Path

from cnmc_core.exceptions import RunError
from cnmc_core.study.plan import StudyPlan
from cnmc_core.study.pooling import StudyRun
from cnmc_core.workspace.fileio import atomic_write_json, check_name, read_json
from cnmc_core.workspace.layout import make_unique_folder
from cnmc_core.workspace.paths import artifacts_dir, studies_dir
from cnmc_core.workspace.status import write_status

__all__ = ["STUDY_FILE", "OOF_FILE", "POOLED_FILE", "create_study", "read_study", "study_runs",
           "study_path", "launch_coordinator", "start_study"]

STUDY_FILE = "study.json"
OOF_FILE = "oof.csv"
POOLED_FILE = "pooled.csv"


def _study_id(presets: list[str]) -> str:
    stem = "-".join(re.sub(r"[^A-Za-z0-9_]", "", p.removeprefix("demo_").removeprefix("paper_"))
                    for p in presets)[:40] or "study"
    return f"study-{_dt.datetime.now(_dt.timezone.utc):%Y%m%d-%H%M%S}-{stem}-{secrets.token_hex(2)}"


def read_study(study_dir: str | os.PathLike) -> dict:
    """The ``study.json`` of a study folder.

    Raises:
        RunError: missing or damaged (the message names the file).
    """
    path = Path(study_dir) / STUDY_FILE
    try:
        study = read_json(path)
    except (OSError, UnicodeDecodeError, ValueError) as exc:  # CnmcError included
        raise RunError(f"{path} cannot be read ({exc}); the folder is not a study or was "
                       "damaged.") from None
    if not isinstance(study, dict) or study.get("kind") != "study":
        raise RunError(f"{path} is not a study's file (no kind 'study').")
    return study


def study_path(ref: str | os.PathLike, root: str | os.PathLike | None = None) -> Path:
    """The folder of a study given by id (looked up in ``<artifacts>/studies/``) or path.

    Raises:
        RunError: an unsafe id, or no study there.
    """
    text = str(ref)
    candidate = Path(text)
    if os.sep in text or candidate.is_dir():
        path = candidate
    else:
        check_name(text, "study id", RunError)
        path = artifacts_dir(root) / "studies" / text
    if not (path / STUDY_FILE).is_file():
        raise RunError(f"No study at {path} (no {STUDY_FILE}); list studies with "
                       "`python -m cnmc_core runs`.")
    return path


def study_runs(study_dir: str | os.PathLike) -> list[StudyRun]:
    """The runs of a study, resolved inside the study's own workspace (``<artifacts>/runs``).

    Raises:
        RunError: a damaged ``study.json`` or a run entry that names no run of the workspace.
    """
    study_dir = Path(study_dir)
    workspace = study_dir.parent.parent
    out = []
    for entry in read_study(study_dir).get("runs") or []:
        run_id = check_name(str(entry.get("id")), "run id", RunError)
        out.append(StudyRun(preset=str(entry["preset"]), fold=int(entry["fold"]),
                            seed=int(entry["seed"]), path=workspace / "runs" / run_id))
    return out


def create_study(plan: StudyPlan, root: str | os.PathLike | None = None, *, actor=None) -> Path:
    """Create the study's folder and its runs: ``study.json``, a queued ``status.json``, then
    one run folder per config (tagged with the study), started on the local queue at once for
    the ``local`` backend, left queued for the coordinator to submit for ``ray``.

    Nothing is created before :func:`cnmc_core.study.plan.plan_study` has checked every run.
    ``actor`` (None: the local OS user) must be a trainer or admin; the study and its runs
    record it as ``launched_by``.

    Raises:
        AccessError: the actor may not launch studies (nothing is created). RunError: the
        artifacts folder is not writable.
    """
    from cnmc_core.auth.roles import require
    from cnmc_core.training.launch import start_runs

    actor = require(actor, "launch_study")
    require(actor, "launch")

    folder = make_unique_folder(studies_dir(root), lambda: _study_id(plan.presets), "study")
    created = time.time()
    study = {"study_id": folder.name, "kind": "study", "created": created, **plan.settings(),
             "launched_by": actor.launched_by, "runs": []}
    write_status(folder, state="queued", kind="study", created=created, pid=None,
                 heartbeat=created, done=0, total=len(plan.configs), failed=0, error=None,
                 message="creating the runs")
    atomic_write_json(folder / STUDY_FILE, study)
    configs = []
    for config in plan.configs:
        config = dict(config)
        config["study"] = {"id": folder.name, "preset": config["name"],
                           "fold": config["kfold"]["fold"], "seed": config["seed"]}
        configs.append(config)
    runs = start_runs(configs, root, detach=plan.backend == "local", actor=actor)
    study["runs"] = [{"id": path.name, "path": f"runs/{path.name}", "preset": c["name"],
                      "fold": c["kfold"]["fold"], "seed": c["seed"]}
                     for path, c in zip(runs, configs)]
    atomic_write_json(folder / STUDY_FILE, study)
    write_status(folder, message=f"{len(runs)} runs queued")
    return folder


def launch_coordinator(study_dir: str | os.PathLike, resume: bool = False) -> int:
    """Start the study's coordinator (``python -m cnmc_core study-worker STUDY``) as a detached
    process: it follows the runs, and pools their results when they are done. Returns its pid.

    With ``resume`` (a study whose coordinator ended: crashed, killed, or finished), the study
    is queued again first, so that the new coordinator takes over.

    Raises:
        RunError: resuming a study whose coordinator is still alive.
    """
    from cnmc_core.workspace.queue import WORKER_ENV, spawn_detached
    from cnmc_core.workspace.status import (
        effective_status,
        process_fields,
        read_status,
        wall_time,
    )

    study_dir = Path(study_dir).resolve()
    if resume:
        status = effective_status(study_dir)
        if status.get("state") in ("queued", "running"):
            raise RunError(f"Study {study_dir.name} is {status['state']}: its coordinator is alive "
                           "(pid {}); wait for it, or cancel the study.".format(status.get("pid")))
        from cnmc_core.contracts import CANCEL_FLAG

        (study_dir / CANCEL_FLAG).unlink(missing_ok=True)
        write_status(study_dir, state="queued", pid=None, pid_start=None, heartbeat=wall_time(),
                     error=None, message="resumed")
    pid = spawn_detached([sys.executable, "-m", "cnmc_core", "study-worker", str(study_dir)],
                         study_dir / "log.txt",
                         env={**WORKER_ENV, "CNMC_ARTIFACTS": str(study_dir.parent.parent)})
    if read_status(study_dir).get("pid") is None:
        write_status(study_dir, **process_fields(pid), heartbeat=wall_time())
    return pid


def start_study(plan: StudyPlan, root: str | os.PathLike | None = None, *, actor=None) -> Path:
    """Create a checked study (:func:`create_study`) and start its coordinator as a detached
    process (:func:`launch_coordinator`): what ``study`` (with or without ``--detach``) and the
    Train page do. Returns the study folder; nothing of it runs in the caller's process.
    ``actor``: who launches it (see :func:`create_study`).

    Raises:
        AccessError: the actor may not launch studies (nothing is created). RunError: the
        artifacts folder is not writable.
    """
    folder = create_study(plan, root, actor=actor)
    launch_coordinator(folder)
    return folder
