"""Listing the workspace: runs and ensembles in one table with their state (liveness applied),
progress and key metrics, the counts the Home page shows, and a file signature for caches.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
from pathlib import Path
from typing import Any, Iterator, Sequence

import pandas as pd

from cnmc_core.contracts import ACTIVE_STATES, CONFIG, METRICS, PREDICTIONS, STATUS
from cnmc_core.workspace.fileio import read_json
from cnmc_core.workspace.paths import ensembles_dir, runs_dir
from cnmc_core.workspace.status import effective_status

__all__ = [
    "list_runs",
    "EXPERIMENT_COLUMNS",
    "list_experiments",
    "display_name",
    "files_signature",
    "workspace_counts",
    "STATE_ICONS",
    "run_progress",
    "experiment_status",
]


def _iso(ts: float | None) -> str:
    return _dt.datetime.fromtimestamp(ts).isoformat(timespec="seconds") if ts else ""


def _iter_run_dirs(root: str | os.PathLike | None) -> Iterator[Path]:
    base = runs_dir(root)
    for path in sorted(base.iterdir()):
        if path.is_dir() and not path.name.startswith(".") and (path / CONFIG).is_file():
            yield path


def list_runs(root: str | os.PathLike | None = None) -> pd.DataFrame:
    """One row per run: id, state, preset, model, protocol, progress, key metrics with CIs.

    A damaged run folder is listed with state ``failed`` and the reason, never skipped silently.
    """
    rows = []
    for path in _iter_run_dirs(root):
        row: dict[str, Any] = {"run_id": path.name, "path": str(path)}
        try:
            config = read_json(path / CONFIG)
            status = effective_status(path)
        except Exception as exc:  # a damaged folder is shown as such
            row.update(state="failed", error=str(exc))
            rows.append(row)
            continue
        row.update(
            state=status.get("state"), preset=config.get("name"), model=config.get("model"),
            protocol=config.get("split_protocol"), seed=config.get("seed"),
            image_size=config.get("image_size"), created=_iso(config.get("created")),
            epoch=status.get("epoch"), epochs=status.get("epochs"), error=status.get("error"),
        )
        metrics_path = path / METRICS
        if metrics_path.is_file():
            try:
                metrics = read_json(metrics_path)
            except Exception:
                metrics = {}
            for split in ("val", "test"):
                report = metrics.get(split) or {}
                row[f"{split}_weighted_f1"] = report.get("weighted_f1")
                ci = (report.get("ci") or {}).get("weighted_f1") or {}
                row[f"{split}_f1_low"], row[f"{split}_f1_high"] = ci.get("low"), ci.get("high")
                row[f"{split}_auc"] = report.get("roc_auc")
        rows.append(row)
    columns = ["run_id", "state", "preset", "model", "protocol", "seed", "image_size", "created",
               "epoch", "epochs", "val_weighted_f1", "val_f1_low", "val_f1_high", "val_auc",
               "test_weighted_f1", "test_f1_low", "test_f1_high", "test_auc", "error", "path"]
    frame = pd.DataFrame(rows)
    for column in columns:
        if column not in frame.columns:
            frame[column] = None
    return frame[columns]


EXPERIMENT_COLUMNS = [
    "run_id", "kind", "state", "preset", "model", "protocol", "seed", "image_size", "created",
    "epoch", "epochs", "val_weighted_f1", "val_f1_low", "val_f1_high", "val_auc",
    "test_weighted_f1", "test_f1_low", "test_f1_high", "test_auc", "error", "path", "created_ts",
]


def _ensemble_rows(root) -> list[dict]:
    rows = []
    base = ensembles_dir(root)
    for path in sorted(base.iterdir()):
        if not path.is_dir() or path.name.startswith(".") or not (path / CONFIG).is_file():
            continue
        row: dict[str, Any] = {"run_id": path.name, "kind": "ensemble", "path": str(path)}
        try:
            config = read_json(path / CONFIG)
            # liveness as for runs: a search whose process is gone or silent reads as failed
            status = effective_status(path) if (path / STATUS).is_file() else {
                "state": "failed", "error": "no status.json"}
        except Exception as exc:  # a damaged folder is shown as such, never skipped silently
            row.update(state="failed", error=str(exc))
            rows.append(row)
            continue
        created = config.get("created")
        row.update(
            run_id=config.get("ensemble_id") or path.name, state=status.get("state"),
            preset=f"ensemble ({config.get('method', '?')})", model=config.get("model"),
            protocol=config.get("split_protocol"), seed=config.get("seed"),
            image_size=None,
            created=_dt.datetime.fromtimestamp(float(created)).isoformat(timespec="seconds") if created else "",
            epoch=None, epochs=None, error=status.get("error"), created_ts=_float_or_none(created),
        )
        row.update(_metric_fields(path))
        rows.append(row)
    return rows


def _float_or_none(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _created_ts(path: str) -> float | None:
    """A run's creation time in seconds (``config.json``'s ``created``; the listed ``created`` is
    rounded to the second, and the demo runs are created within one second)."""
    try:
        return _float_or_none(read_json(Path(path) / CONFIG).get("created"))
    except Exception:
        return None


def _metric_fields(path: Path) -> dict:
    out: dict[str, Any] = {}
    try:
        metrics = read_json(path / METRICS) if (path / METRICS).is_file() else {}
    except Exception:
        metrics = {}
    for split in ("val", "test"):
        report = metrics.get(split) or {}
        ci = (report.get("ci") or {}).get("weighted_f1") or {}
        out.update({f"{split}_weighted_f1": report.get("weighted_f1"), f"{split}_f1_low": ci.get("low"),
                    f"{split}_f1_high": ci.get("high"), f"{split}_auc": report.get("roc_auc")})
    return out


def list_experiments(root: str | os.PathLike | None = None, kinds: Sequence[str] = ("run", "ensemble")) -> pd.DataFrame:
    """Runs and ensembles in one frame, newest first by creation time (columns
    :data:`EXPERIMENT_COLUMNS`; ``created`` is local time to the second, ``created_ts`` epoch
    seconds).

    ``kind`` is ``run`` or ``ensemble``; an ensemble's ``preset`` reads ``ensemble (<method>)``
    and its ``model`` ``ensemble:<method>``. A damaged folder is listed as ``failed`` with the
    reason. Metrics are None until a run completes.
    """
    frames = []
    if "run" in kinds:
        runs = list_runs(root)
        runs.insert(1, "kind", "run")
        runs["created_ts"] = [_created_ts(p) for p in runs["path"]]
        frames.append(runs)
    if "ensemble" in kinds:
        frames.append(pd.DataFrame(_ensemble_rows(root)))
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in EXPERIMENT_COLUMNS})
    frame = pd.concat(frames, ignore_index=True)
    for column in EXPERIMENT_COLUMNS:
        if column not in frame.columns:
            frame[column] = None
    frame = frame[EXPERIMENT_COLUMNS]
    return frame.sort_values(["created_ts", "run_id"], ascending=False, na_position="last",
                             kind="stable").reset_index(drop=True)


_RUN_ID_RE = re.compile(r"^\d{8}-\d{6}-(?P<rest>.+)$")
_ENS_ID_RE = re.compile(r"^ens-(?P<method>[^-]+)-\d{8}-\d{6}-(?P<tag>.+)$")


def display_name(run_id: str) -> str:
    """A short label for charts: the run id without its creation time
    (``20261126-005214-demo_scratch-7700`` -> ``demo_scratch-7700``;
    ``ens-ga-20261126-010203-abc123`` -> ``ens-ga-abc123``)."""
    text = str(run_id)
    m = _ENS_ID_RE.match(text)
    if m:
        return f"ens-{m['method']}-{m['tag']}"
    m = _RUN_ID_RE.match(text)
    return m["rest"] if m else text


def files_signature(root: str | os.PathLike | None = None) -> tuple:
    """A cheap fingerprint of every run and ensemble file (names, sizes, mtimes).

    Pages pass it to ``st.cache_data`` loaders as an argument, so a new run, a new epoch or a
    finished run invalidates the cache while an unchanged workspace is read once.
    """
    items = []
    for base in (runs_dir(root), ensembles_dir(root)):
        for path in sorted(base.iterdir()):
            if not path.is_dir() or path.name.startswith("."):
                continue
            for name in (CONFIG, STATUS, METRICS, PREDICTIONS, "history.jsonl"):
                try:
                    st = (path / name).stat()
                except OSError:
                    continue
                items.append((path.name, name, st.st_size, st.st_mtime_ns))
    return tuple(items)


def workspace_counts(experiments: pd.DataFrame) -> dict[str, int]:
    """How many runs are completed, active (queued or running), failed or cancelled, and how many
    ensembles there are."""
    runs = experiments[experiments["kind"] == "run"]
    states = runs["state"].value_counts().to_dict()
    return {
        "runs": int(len(runs)),
        "completed": int(states.get("completed", 0)),
        "active": int(sum(states.get(s, 0) for s in ACTIVE_STATES)),
        "running": int(states.get("running", 0)),
        "queued": int(states.get("queued", 0)),
        "failed": int(states.get("failed", 0)),
        "cancelled": int(states.get("cancelled", 0)),
        "ensembles": int((experiments["kind"] == "ensemble").sum()),
    }


#: Streamlit material icons of the run states (the library only names them; pages draw them).
STATE_ICONS = {"queued": ":material/schedule:", "running": ":material/sync:",
               "completed": ":material/check_circle:", "failed": ":material/error:",
               "cancelled": ":material/cancel:"}


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
    error = status.get("error") or status.get("message") or ""
    fraction = min(1.0, epoch / epochs) if epochs else 0.0
    return fraction, f"{state}" + (f" - {error}" if error else "")


def experiment_status(path: str | os.PathLike) -> dict:
    """The status of a run or an ensemble, with liveness applied (a killed run or ensemble
    search reads as ``failed``)."""
    return effective_status(Path(path))
