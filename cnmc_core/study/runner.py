"""A study's coordinator: follows the runs to their end, then pools their results.

The coordinator (``python -m cnmc_core study-worker STUDY``, a detached process started with the
study) keeps the study's ``status.json`` live (:class:`~cnmc_core.workspace.status.Heartbeat`:
pid, heartbeat, ``done``/``total``/``failed`` runs), submits the runs to Ray when that is the
backend, honours a cancel (``cancel STUDY``: every active run is cancelled), and when no run is
active writes the pooled results (:func:`cnmc_core.study.results.write_results`) and ends the
study ``completed``; with runs that failed or were cancelled it ends ``failed`` (or
``cancelled``) naming them, their runs and histories kept.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

from cnmc_core.contracts import ACTIVE_STATES
from cnmc_core.exceptions import RunError
from cnmc_core.study.backends import make_backend
from cnmc_core.study.pooling import StudyRun
from cnmc_core.study.store import read_study, study_runs
from cnmc_core.workspace.queue import cancel_requested, cancel_run
from cnmc_core.workspace.status import Heartbeat, effective_status, process_fields

__all__ = ["StudyCancelled", "run_states", "cancel_study", "run_coordinator"]


class StudyCancelled(Exception):
    """The study was cancelled by the user."""


def run_states(runs: list[StudyRun]) -> dict[Path, str]:
    """Each run's state, liveness applied; a folder that cannot be read counts as ``failed``."""
    out = {}
    for run in runs:
        try:
            out[run.path] = str(effective_status(run.path).get("state"))
        except (OSError, ValueError, AttributeError, TypeError):  # CnmcError included
            out[run.path] = "failed"
    return out


def cancel_study(study_dir: str | os.PathLike, *, actor=None) -> dict:
    """Ask a study to stop: its flag is set (the coordinator cancels what is left) and every
    queued or running run of it is cancelled now. Returns ``{"cancelled": n runs}``. ``actor``
    (None: the local OS user) must be a trainer who launched the study, or an admin.

    Raises:
        AccessError: the actor may not cancel this study (nothing is changed). RunError: the
        study is already finished.
    """
    from cnmc_core.auth.roles import owner_of, require
    from cnmc_core.contracts import CANCEL_FLAG

    study_dir = Path(study_dir)
    actor = require(actor, "cancel", owner=owner_of(study_dir), what=f"study {study_dir.name}")
    state = effective_status(study_dir).get("state")
    if state not in ACTIVE_STATES:
        raise RunError(f"Study {study_dir.name} is {state}; only a queued or running study can be "
                       "cancelled.")
    (study_dir / CANCEL_FLAG).write_text(str(time.time()))
    n = 0
    for run, run_state in run_states(study_runs(study_dir)).items():
        if run_state in ACTIVE_STATES:
            try:
                cancel_run(run, actor=actor)  # its runs record the study's launcher
                n += 1
            except RunError:  # it ended in between
                pass
    return {"cancelled": n}


def run_coordinator(study_dir: str | os.PathLike, poll: float = 2.0,
                    log: Callable[[str], None] | None = print) -> dict:
    """Follow a study's runs to their end, then write its pooled results.

    Returns:
        The study's final status.

    Raises:
        StudyCancelled, RunError: after recording the study cancelled or failed.
    """
    from cnmc_core.study.results import write_results

    study_dir = Path(study_dir)
    study = read_study(study_dir)
    runs = study_runs(study_dir)
    say = log or (lambda text: None)
    heartbeat = Heartbeat(study_dir)
    heartbeat.update(state="running", kind="study", **process_fields(os.getpid()),
                     started=time.time(),
                     total=len(runs), done=0, failed=0, message="starting")
    heartbeat.start()
    backend = make_backend(study)
    try:
        backend.start(runs, study_dir)
        say(f"study {study_dir.name}: {len(runs)} runs on the {backend.name} backend")
        last = None
        while True:
            if cancel_requested(study_dir):
                backend.cancel(runs)
                for run, state in run_states(runs).items():
                    if state in ACTIVE_STATES:
                        try:
                            cancel_run(run)
                        except RunError:
                            pass
            backend.poll(runs)
            states = run_states(runs)
            done = sum(s == "completed" for s in states.values())
            bad = sum(s in ("failed", "cancelled") for s in states.values())
            active = sum(s in ACTIVE_STATES for s in states.values())
            running = sum(s == "running" for s in states.values())
            message = f"{done} of {len(runs)} runs done, {running} training" + \
                (f", {bad} failed or cancelled" if bad else "")
            heartbeat.note(done=done, failed=bad, running=running, message=message)
            if message != last:
                say(message)
                last = message
            if not active:
                break
            time.sleep(poll)
        if cancel_requested(study_dir):
            raise StudyCancelled("cancelled by the user")
        failed = [r for r in runs if states[r.path] != "completed"]
        if failed:
            names = ", ".join(f"{r.path.name} ({states[r.path]})" for r in failed[:6])
            raise RunError(f"{len(failed)} of {len(runs)} runs did not complete: {names}"
                           + (" ..." if len(failed) > 6 else "") + ". Their folders and logs are "
                           "kept; the completed runs are ordinary runs on every page.")
        heartbeat.note(message="pooling the out-of-fold predictions and comparing the presets")
        write_results(study_dir, runs, log=say)
        final = heartbeat.finish()
        say(f"study {study_dir.name} completed")
        return final
    except BaseException as exc:
        heartbeat.finish(exc, cancelled=(StudyCancelled, KeyboardInterrupt),
                         cancel_message="cancelled by the user")
        raise
    finally:
        heartbeat.stop()
        try:
            backend.close()
        except Exception:  # noqa: BLE001 - the study's own outcome matters more
            pass
