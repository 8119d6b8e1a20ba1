"""The Compare page's tables: runs and ensembles side by side, metric tables with CIs, confusion
matrices and their difference, ROC/PR points, config diffs and log tails. Pages only draw what
these return.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from cnmc_core.contracts import (
    CLASS_TITLES,
    CLASSES,
    CONFIG,
    DEFAULT_BACKEND,
    METRICS,
    PREDICTIONS,
)
from cnmc_core.exceptions import CnmcError
from cnmc_core.workspace.fileio import read_json
from cnmc_core.workspace.listing import display_name

__all__ = [
    "runs_table",
    "default_selection",
    "metrics_table",
    "confusion_frame",
    "row_normalised",
    "confusion_difference",
    "load_curve_points",
    "flatten_config",
    "read_configs",
    "config_diff",
    "read_log_tail",
]


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
    from cnmc_core.contracts import PROTOCOLS

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
    """One row per run or ensemble: its model and Keras backend (a run from before runs
    recorded one trained on TensorFlow; an ensemble has none), protocol, weighted F1 with its
    95% CI, AUC with its CI, accuracy, macro F1, sensitivity (recall of ALL), specificity (recall of HEM), precision of
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
            "backend": _backend(config), "protocol": metrics.get("split_protocol") or config.get("split_protocol"), "split": split,
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
        "run", "kind", "model", "backend", "protocol", "split", "weighted_f1", "f1_ci_low", "f1_ci_high", "roc_auc",
        "auc_ci_low", "auc_ci_high", "accuracy", "macro_f1", "sensitivity_all", "specificity_hem",
        "precision_all", "precision_hem", "threshold", "n", "n_all", "n_hem"])




def _backend(config: dict) -> str | None:
    """The Keras backend a run trained on, as its config records it."""
    if config.get("backend"):
        return str(config["backend"])
    versions = config.get("versions")
    return DEFAULT_BACKEND if isinstance(versions, dict) and "tensorflow" in versions else None


def confusion_frame(path: str | os.PathLike, split: str = "test") -> pd.DataFrame | None:
    """The confusion matrix of a run or ensemble on ``split``: a 2x2 frame of counts, rows the
    true class and columns the predicted class (HEM first, ALL second), or None when the run has
    no metrics for that split."""
    report = _read_metrics(path).get(split) or {}
    matrix = report.get("confusion")
    if matrix is None:
        return None
    return pd.DataFrame(np.asarray(matrix, dtype=int), index=[f"true {CLASS_TITLES[c]}" for c in CLASSES],
                        columns=[f"predicted {CLASS_TITLES[c]}" for c in CLASSES])


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
    from cnmc_core.metrics.curves import (
        average_precision,
        pr_curve_points,
        roc_auc,
        roc_curve_points,
    )

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
    return {"fpr": np.asarray(fpr), "tpr": np.asarray(tpr), "roc_auc": roc_auc(y, prob),
            "precision": np.asarray(precision), "recall": np.asarray(recall),
            "average_precision": average_precision(y, prob), "n": int(len(y))}


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


def read_configs(paths: Mapping[str, str | os.PathLike]) -> tuple[dict[str, dict], dict[str, str]]:
    """Each run's or ensemble's ``config.json``, for a config diff.

    Args:
        paths: ``{name: run or ensemble folder}``.

    Returns:
        ``(configs, problems)``: ``{name: config}`` of the readable ones, and ``{name: why}`` of
        the others (missing, not JSON, not an object: a damaged folder is named, not fatal).
    """
    configs, problems = {}, {}
    for name, path in paths.items():
        try:
            config = read_json(Path(path) / CONFIG)
        except (OSError, CnmcError, UnicodeDecodeError) as exc:
            problems[name] = str(exc)
            continue
        if not isinstance(config, dict):
            problems[name] = f"{Path(path) / CONFIG} holds {type(config).__name__}, not an object"
            continue
        configs[name] = config
    return configs, problems


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
