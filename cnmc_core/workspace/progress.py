"""What a job is doing: a progress fraction and a line of text from a run's (or an ensemble
search's) status, the icons of the states, and a folder's status with liveness applied.

Pages that show live progress read it here, apart from the listing (whose cache key does not
change at every heartbeat).
"""

from __future__ import annotations

import os
from pathlib import Path

from cnmc_core.contracts import ACTIVE_STATES, UNRESPONSIVE
from cnmc_core.workspace.status import effective_status

__all__ = ["STATE_ICONS", "run_progress", "progress_text", "experiment_status"]


#: Streamlit material icons of the run states (the library only names them; pages draw them).
STATE_ICONS = {"queued": ":material/schedule:", "running": ":material/sync:",
               "completed": ":material/check_circle:", "failed": ":material/error:",
               "cancelled": ":material/cancel:", "unresponsive": ":material/pause_circle:"}


def _count(value) -> int:
    """A non-negative count from a status field; missing, NaN (a row of a damaged run in a
    table) or malformed values count as 0."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0
    return int(number) if number == number and number > 0 else 0


def _search_progress(status: dict) -> tuple[float, str]:
    """:func:`run_progress` of an ensemble search: the methods fitted one after the other
    (``step`` of ``steps``), within the GA its restart and generation."""
    state = status.get("state") or "unknown"
    step, steps = _count(status.get("step")), _count(status.get("steps"))
    if state == "completed":
        return 1.0, "completed"
    within = 0.0
    if status.get("fitting") == "ga":
        restart, restarts = _count(status.get("restart")), _count(status.get("restarts"))
        generation, generations = _count(status.get("generation")), _count(status.get("generations"))
        if restart and restarts and generations:
            within = (restart - 1 + min(generation, generations) / generations) / restarts
    elif status.get("fitting") is None and steps and step >= steps:
        within = 1.0  # every method fitted: scoring and writing
    fraction = min(1.0, max(0.0, (step - 1 + within) / steps)) if steps and step else 0.0
    if state in ACTIVE_STATES:
        where = f"method {step} of {steps}: " if steps and step else ""
        return fraction, f"{state} - {where}{status.get('message') or 'starting'}"
    error = status.get("error") or status.get("message") or ""
    return fraction, f"{state}" + (f" - {error}" if error else "")


def run_progress(status: dict) -> tuple[float, str]:
    """A progress fraction in [0, 1] and a line to show beside it, from a run's (or an ensemble
    search's) status.

    Examples: ``running - train: epoch 3 of 8, batch 12 of 40``; ``queued - waiting in the
    queue``; ``failed - MemoryError: ...``; a search: ``running - method 2 of 6: ga: restart
    3 of 10, generation 40 of 100``.
    """
    if status.get("kind") == "ensemble":
        return _search_progress(status)
    state = status.get("state") or "unknown"
    epochs, epoch = _count(status.get("epochs")), _count(status.get("epoch"))
    batch, batches = _count(status.get("batch")), _count(status.get("batches"))
    if state == "completed":
        return 1.0, f"completed - {epoch} epoch{'s' if epoch != 1 else ''}"
    if state == "queued":
        return 0.0, "queued - " + (status.get("message") or "waiting in the queue")
    if state == "running":
        if epoch >= 1 and epochs:
            within = batch / batches if batches else 0.0
            fraction = min(1.0, max(0.0, (epoch - 1 + within) / epochs))
            stage = f"{status['stage']}: " if status.get("stage") else ""
            text = f"running - {stage}epoch {epoch} of {epochs}"
            if batches:
                text += f", batch {batch} of {batches}"
            message = status.get("message") or ""
            if message and not message.startswith(str(status.get("stage") or "\0")):
                text += f" ({message})"
            return fraction, text
        return 0.0, "running - " + (status.get("message") or "starting")
    fraction = min(1.0, epoch / epochs) if epochs else 0.0
    if state == UNRESPONSIVE:  # the reason is shown apart (it is long): where it stopped
        where = f"epoch {epoch} of {epochs}" if epoch and epochs else status.get("was") or "queued"
        age = status.get("heartbeat_age")
        return fraction, f"{state} - {where}" + (f", no heartbeat for {age:.0f} s" if age else "")
    error = status.get("error") or status.get("message") or ""
    return fraction, f"{state}" + (f" - {error}" if error else "")


def progress_text(status: dict) -> str:
    """What an active job is doing, without its state (``train: epoch 3 of 8, batch 12 of 40``,
    ``method 2 of 3: ga: restart 1 of 2, generation 3 of 10``); "" for a finished one."""
    if status.get("state") not in ACTIVE_STATES:
        return ""
    return run_progress(status)[1].removeprefix(f"{status.get('state')} - ")


def experiment_status(path: str | os.PathLike) -> dict:
    """The status of a run or an ensemble, with liveness applied (a killed run or ensemble
    search reads as ``failed``)."""
    return effective_status(Path(path))
