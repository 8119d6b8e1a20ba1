"""Comparing experiments: runs and ensembles listed together, learning curves, metric tables,
confusion matrices and their difference, config diffs.

Everything the Compare, Train and entry pages compute lives here (they only draw), so it is
tested without a browser. A run folder (``artifacts/runs/<id>``) and an ensemble folder
(``artifacts/ensembles/<id>``) hold the same files; :func:`list_experiments` lists both, and
every other function takes either folder.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import re
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from .exceptions import CnmcError
from .fileio import read_json
from .runs import ACTIVE_STATES, CONFIG, METRICS, PREDICTIONS, STATUS, effective_status, list_runs
from .workspace import ensembles_dir, runs_dir

__all__ = [
    "EXPERIMENT_COLUMNS",
    "list_experiments",
    "display_name",
    "runs_table",
    "default_selection",
    "workspace_signature",
    "workspace_counts",
    "run_progress",
    "STATE_ICONS",
    "ema",
    "debiased_ema",
    "smooth_curves",
    "history_frame",
    "history_metrics",
    "stage_boundaries",
    "metrics_table",
    "CLASS_NAMES",
    "confusion_frame",
    "row_normalised",
    "confusion_difference",
    "load_curve_points",
    "flatten_config",
    "config_diff",
    "read_log_tail",
    "experiment_status",
]

EXPERIMENT_COLUMNS = [
    "run_id", "kind", "state", "preset", "model", "protocol", "seed", "image_size", "created",
    "epoch", "epochs", "val_weighted_f1", "val_f1_low", "val_f1_high", "val_auc",
    "test_weighted_f1", "test_f1_low", "test_f1_high", "test_auc", "error", "path", "created_ts",
]


# --------------------------------------------------------------------------- listing
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


def _ci_text(value, low, high) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if low is None or high is None or any(isinstance(v, float) and math.isnan(v) for v in (low, high)):
        return f"{value:.4f}"
    return f"{value:.4f} [{low:.3f}, {high:.3f}]"


def runs_table(experiments: pd.DataFrame) -> pd.DataFrame:
    """The Compare page's table, one row per run or ensemble, oldest first (row positions stay
    put when new runs arrive, so a selection stays on its rows): ``name``, ``kind``, ``state``,
    ``model``, ``protocol`` (``paper`` marked leaky), ``epochs``, ``val F1 [95% CI]``,
    ``test F1 [95% CI]``, ``test AUC``, ``created``, ``run_id``, ``path``, ``created_ts``."""
    from .splits import PROTOCOLS

    frame = experiments.sort_values(["created_ts", "run_id"], kind="stable",
                                    na_position="first").reset_index(drop=True)

    def protocol(p):
        return PROTOCOLS[p].label() if p in PROTOCOLS else (p or "")

    def epochs(row):
        if row["kind"] == "ensemble" or row["epochs"] is None or pd.isna(row["epochs"]):
            return ""
        return f"{int(row['epoch'] or 0)} of {int(row['epochs'])}"

    return pd.DataFrame({
        "name": frame["run_id"].map(display_name),
        "kind": frame["kind"],
        "state": frame["state"].fillna("unknown"),
        "model": frame["model"].fillna(""),
        "protocol": frame["protocol"].map(protocol),
        "epochs": frame.apply(epochs, axis=1) if len(frame) else pd.Series(dtype=object),
        "val F1 [95% CI]": [_ci_text(*v) for v in
                            zip(frame["val_weighted_f1"], frame["val_f1_low"], frame["val_f1_high"])],
        "test F1 [95% CI]": [_ci_text(*v) for v in
                             zip(frame["test_weighted_f1"], frame["test_f1_low"], frame["test_f1_high"])],
        "test AUC": pd.to_numeric(frame["test_auc"], errors="coerce"),
        "created": frame["created"],
        "run_id": frame["run_id"],
        "path": frame["path"],
        "created_ts": frame["created_ts"],
    })


def default_selection(table: pd.DataFrame, limit: int = 6) -> list[int]:
    """Rows to select when the user has chosen none: the newest completed runs and ensembles
    (at most ``limit``), in table order."""
    done = [i for i, state in enumerate(table["state"]) if state == "completed"]
    return done[-limit:]


def workspace_signature(root: str | os.PathLike | None = None) -> tuple:
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


# --------------------------------------------------------------------------- learning curves
def ema(values: Iterable[float], weight: float) -> np.ndarray:
    """The plain exponential moving average ``s_t = w s_(t-1) + (1 - w) x_t`` with ``s_0 = 0``
    (biased towards 0 at the start; see :func:`debiased_ema`). NaN values are skipped (they keep
    the previous average)."""
    x = np.asarray(list(values), dtype=float)
    _check_weight(weight)
    out = np.empty_like(x)
    s = 0.0
    for i, v in enumerate(x):
        if not math.isnan(v):
            s = weight * s + (1 - weight) * v
        out[i] = s
    return out


def _check_weight(weight: float) -> None:
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 <= weight < 1:
        raise CnmcError(f"The smoothing weight must be a number in [0, 1); got {weight!r}. "
                        "0 means no smoothing, 0.9 strong smoothing.")


def debiased_ema(values: Iterable[float], weight: float) -> np.ndarray:
    """Exponential moving average with the start-up bias removed (as TensorBoard and Adam do).

    ``s_t = w s_(t-1) + (1 - w) x_t``, ``s_0 = 0``, then ``s_t / (1 - w^n_t)`` where ``n_t`` is
    the number of finite values seen so far: the first point equals the first value, and a
    constant series stays constant. NaN values are passed through as NaN (a gap in the line) and
    do not move the average. ``weight = 0`` returns the values unchanged.

    Raises:
        CnmcError: a weight outside [0, 1).
    """
    x = np.asarray(list(values), dtype=float)
    _check_weight(weight)
    out = np.full_like(x, np.nan)
    s, n = 0.0, 0
    for i, v in enumerate(x):
        if math.isnan(v):
            continue
        n += 1
        s = weight * s + (1 - weight) * v
        out[i] = s / (1 - weight ** n) if weight > 0 else v
    return out


def history_frame(run_dir: str | os.PathLike) -> pd.DataFrame:
    """A run's ``history.jsonl`` with an ``elapsed_total`` column (seconds since the first
    epoch started, across stages) for a time axis; empty for an ensemble or a run that has not
    finished an epoch."""
    from .runs import read_history

    frame = read_history(run_dir)
    if frame.empty or "epoch" not in frame.columns:
        return pd.DataFrame()
    frame = frame.sort_values("epoch", kind="stable").reset_index(drop=True)
    if "time" in frame.columns and "elapsed" in frame.columns:
        stage_start = (frame["time"] - frame["elapsed"]).fillna(frame["time"])
        frame["elapsed_total"] = frame["time"] - float(stage_start.min())
    elif "elapsed" in frame.columns:
        frame["elapsed_total"] = frame["elapsed"].cumsum()
    else:
        frame["elapsed_total"] = frame["epoch"].astype(float)
    if "stage" not in frame.columns:
        frame["stage"] = "train"
    return frame


_NOT_METRICS = {"epoch", "stage", "stage_index", "stage_epoch", "time", "elapsed", "elapsed_total",
                "learning_rate"}


def history_metrics(frames: Iterable[pd.DataFrame]) -> list[str]:
    """The metric names found in the histories (``loss``, ``val_loss``, ``accuracy``, ...), with
    each training metric followed by its validation twin, ``loss`` first."""
    names: set[str] = set()
    for frame in frames:
        names |= {c for c in frame.columns if c not in _NOT_METRICS
                  and pd.api.types.is_numeric_dtype(frame[c])}
    base = sorted({n[4:] if n.startswith("val_") else n for n in names},
                  key=lambda n: (n != "loss", n))
    out = []
    for n in base:
        out += [m for m in (n, f"val_{n}") if m in names]
    return out


def smooth_curves(history: pd.DataFrame, metric: str, weight: float = 0.0, x: str = "epoch") -> pd.DataFrame:
    """One run's curve of ``metric``: columns ``x`` (epoch or seconds), ``raw``, ``smooth``,
    ``stage``. Smoothing restarts at each stage boundary (a new optimizer is a new curve).

    Raises:
        CnmcError: unknown metric or x axis (the message lists the choices).
    """
    if x not in ("epoch", "time"):
        raise CnmcError(f"The x axis must be 'epoch' or 'time'; got {x!r}.")
    if history.empty:
        return pd.DataFrame(columns=["x", "raw", "smooth", "stage"])
    if metric not in history.columns:
        raise CnmcError(f"Metric {metric!r} is not in this history; choose one of {history_metrics([history])}.")
    xs = history["epoch"] if x == "epoch" else history["elapsed_total"]
    raw = pd.to_numeric(history[metric], errors="coerce").to_numpy(dtype=float)
    smooth = np.empty_like(raw)
    stage_key = history["stage_index"] if "stage_index" in history.columns else history["stage"]
    for _, idx in history.groupby(stage_key, sort=False).indices.items():
        smooth[idx] = debiased_ema(raw[idx], weight)
    return pd.DataFrame({"x": xs.to_numpy(dtype=float), "raw": raw, "smooth": smooth,
                         "stage": history["stage"].to_numpy()})


def stage_boundaries(history: pd.DataFrame, x: str = "epoch") -> list[tuple[float, str]]:
    """Where each stage after the first begins: ``(x position, stage name)``, placed halfway
    between the last epoch of one stage and the first of the next."""
    if history.empty or "stage" not in history.columns:
        return []
    xs = (history["epoch"] if x == "epoch" else history["elapsed_total"]).to_numpy(dtype=float)
    stages = history["stage_index"].to_numpy() if "stage_index" in history.columns else history["stage"].to_numpy()
    out = []
    for i in range(1, len(stages)):
        if stages[i] != stages[i - 1]:
            out.append(((xs[i - 1] + xs[i]) / 2, str(history["stage"].iloc[i])))
    return out


# --------------------------------------------------------------------------- metrics and confusion
def _read_metrics(path: str | os.PathLike) -> dict:
    path = Path(path) / METRICS
    if not path.is_file():
        return {}
    try:
        data = read_json(path)
    except Exception:
        return {}
    return data if isinstance(data, dict) else {}


def metrics_table(paths: Sequence[str | os.PathLike], split: str = "test",
                  names: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per run or ensemble: protocol, weighted F1 with its 95% CI, AUC with its CI,
    accuracy, macro F1, sensitivity (recall of ALL), specificity (recall of HEM), precision of
    each class, support. Rows without metrics (unfinished runs) are left out.

    Args:
        paths: run or ensemble folders.
        split: ``val`` or ``test``.
        names: labels of the rows (default: the folder names).
    """
    if split not in ("val", "test"):
        raise CnmcError(f"split must be 'val' or 'test'; got {split!r}.")
    names = list(names) if names is not None else [Path(p).name for p in paths]
    rows = []
    for name, path in zip(names, paths):
        metrics = _read_metrics(path)
        report = metrics.get(split)
        if not report:
            continue
        try:
            config = read_json(Path(path) / CONFIG)
        except Exception:
            config = {}
        ci = report.get("ci") or {}
        f1_ci, auc_ci = ci.get("weighted_f1") or {}, ci.get("roc_auc") or {}
        rows.append({
            "run": name, "kind": config.get("kind", "run"), "model": config.get("model"),
            "protocol": metrics.get("split_protocol") or config.get("split_protocol"), "split": split,
            "weighted_f1": report.get("weighted_f1"), "f1_ci_low": f1_ci.get("low"), "f1_ci_high": f1_ci.get("high"),
            "roc_auc": report.get("roc_auc"), "auc_ci_low": auc_ci.get("low"), "auc_ci_high": auc_ci.get("high"),
            "accuracy": report.get("accuracy"), "macro_f1": report.get("macro_f1"),
            "sensitivity_all": (report.get("all") or {}).get("recall"),
            "specificity_hem": (report.get("hem") or {}).get("recall"),
            "precision_all": (report.get("all") or {}).get("precision"),
            "precision_hem": (report.get("hem") or {}).get("precision"),
            "threshold": report.get("threshold"), "n": report.get("n"),
            "n_all": report.get("n_all"), "n_hem": report.get("n_hem"),
        })
    return pd.DataFrame(rows, columns=[
        "run", "kind", "model", "protocol", "split", "weighted_f1", "f1_ci_low", "f1_ci_high", "roc_auc",
        "auc_ci_low", "auc_ci_high", "accuracy", "macro_f1", "sensitivity_all", "specificity_hem",
        "precision_all", "precision_hem", "threshold", "n", "n_all", "n_hem"])


CLASS_NAMES = ("HEM (normal)", "ALL (cancer)")


def confusion_frame(path: str | os.PathLike, split: str = "test") -> pd.DataFrame | None:
    """The confusion matrix of a run or ensemble on ``split``: a 2x2 frame of counts, rows the
    true class and columns the predicted class (HEM first, ALL second), or None when the run has
    no metrics for that split."""
    report = _read_metrics(path).get(split) or {}
    matrix = report.get("confusion")
    if matrix is None:
        return None
    return pd.DataFrame(np.asarray(matrix, dtype=int), index=[f"true {c}" for c in CLASS_NAMES],
                        columns=[f"predicted {c}" for c in CLASS_NAMES])


def row_normalised(confusion: pd.DataFrame) -> pd.DataFrame:
    """Each row divided by its total (a row with no image is 0), as fractions."""
    counts = confusion.to_numpy(dtype=float)
    totals = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(totals > 0, counts / np.where(totals == 0, 1, totals), 0.0)
    return pd.DataFrame(share, index=confusion.index, columns=confusion.columns)



def confusion_difference(a: pd.DataFrame, b: pd.DataFrame, normalise: bool = True) -> pd.DataFrame:
    """``a - b`` of two confusion matrices: row-normalised shares by default (so two runs scored
    on different numbers of images compare fairly), counts with ``normalise=False``.

    Positive on the diagonal means ``a`` gets more of that class right.

    Raises:
        CnmcError: matrices of different shapes or labels.
    """
    if a.shape != b.shape or list(a.index) != list(b.index) or list(a.columns) != list(b.columns):
        raise CnmcError("The two confusion matrices have different classes; compare runs of the same task.")
    if normalise:
        return row_normalised(a) - row_normalised(b)
    return a.astype(int) - b.astype(int)


def load_curve_points(path: str | os.PathLike, split: str = "test") -> dict | None:
    """ROC and precision-recall points of a run or ensemble from its ``predictions.csv``:
    ``{"fpr", "tpr", "roc_auc", "precision", "recall", "average_precision", "n"}``, or None when
    it has no predictions for ``split`` or only one class there."""
    from .metrics import pr_curve_points, roc_auc, roc_curve_points

    file = Path(path) / PREDICTIONS
    if not file.is_file():
        return None
    frame = pd.read_csv(file, usecols=lambda c: c in ("split", "y", "prob"))
    frame = frame[(frame["split"] == split) & frame["y"].isin([0, 1])]
    if frame.empty or frame["y"].nunique() < 2:
        return None
    y, prob = frame["y"].to_numpy(int), frame["prob"].to_numpy(float)
    fpr, tpr, _ = roc_curve_points(y, prob)
    precision, recall, _ = pr_curve_points(y, prob)
    # average precision: the step-wise area under the PR curve (sklearn's definition)
    ap = float(-np.sum(np.diff(recall) * np.asarray(precision)[:-1]))
    return {"fpr": np.asarray(fpr), "tpr": np.asarray(tpr), "roc_auc": float(roc_auc(y, prob)),
            "precision": np.asarray(precision), "recall": np.asarray(recall),
            "average_precision": ap, "n": int(len(y))}


# --------------------------------------------------------------------------- config diff
# ids, times and the cache key differ between any two runs and say nothing about the experiment
_DIFF_SKIP = {"run_id", "ensemble_id", "created", "versions.platform", "cache_key"}


def flatten_config(config: dict, prefix: str = "") -> dict[str, Any]:
    """Nested dicts and lists flattened to dotted keys (``stages.0.learning_rate``)."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten_config(value, f"{name}."))
        elif isinstance(value, list) and value and any(isinstance(v, (dict, list)) for v in value):
            out.update(flatten_config({str(i): v for i, v in enumerate(value)}, f"{name}."))
        else:
            out[name] = value
    return out


def _same(values: list) -> bool:
    first = values[0]
    return all(_norm(v) == _norm(first) for v in values[1:])


def _norm(value):
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if isinstance(value, list):
        return tuple(_norm(v) for v in value)
    return value


def config_diff(configs: dict[str, dict], hide_identical: bool = True,
                skip: Iterable[str] = _DIFF_SKIP) -> pd.DataFrame:
    """Configs side by side: one row per (flattened) field, one column per run.

    Args:
        configs: ``{run name: config dict}`` (e.g. each run's ``config.json``).
        hide_identical: drop the fields whose values are equal in every config (a field missing
            in one config counts as different: it shows as ``-``).
        skip: fields never shown (ids and creation times differ always and say nothing).

    Returns:
        A frame indexed by field name, values as text (lists joined by commas).
    """
    skip = set(skip)
    flat = {name: flatten_config(cfg) for name, cfg in configs.items()}
    keys: list[str] = []
    for f in flat.values():
        keys += [k for k in f if k not in keys and k not in skip]
    missing = object()
    rows = {}
    for key in keys:
        values = [f.get(key, missing) for f in flat.values()]
        if hide_identical and len(values) > 1 and all(v is not missing for v in values) and _same(values):
            continue
        rows[key] = [_text(v, missing) for v in values]
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=list(configs)) if rows else \
        pd.DataFrame(columns=list(configs))
    frame.index.name = "field"
    return frame


def _text(value, missing) -> str:
    if value is missing:
        return "-"
    if value is None:
        return "null"
    if isinstance(value, list):
        return ", ".join(_text(v, missing) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


# --------------------------------------------------------------------------- logs
def read_log_tail(run_dir: str | os.PathLike, max_lines: int = 60) -> str:
    """The last ``max_lines`` lines of a run's ``log.txt`` ("" when there is none)."""
    path = Path(run_dir) / "log.txt"
    if not path.is_file():
        return ""
    with open(path, "rb") as fh:
        fh.seek(0, os.SEEK_END)
        size = fh.tell()
        fh.seek(max(0, size - 200_000))
        text = fh.read().decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-max_lines:])


def experiment_status(path: str | os.PathLike) -> dict:
    """The status of a run or an ensemble, with liveness applied (a killed run or ensemble
    search reads as ``failed``)."""
    return effective_status(Path(path))

