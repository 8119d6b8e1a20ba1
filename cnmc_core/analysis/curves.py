"""Learning curves: a run's history as a frame, the metrics it logged, TensorBoard-style
debiased EMA smoothing restarted at each stage, and where each stage begins.
"""

from __future__ import annotations

import math
import os
from typing import Iterable

import numpy as np
import pandas as pd

from cnmc_core.exceptions import CnmcError

__all__ = [
    "ema",
    "debiased_ema",
    "history_frame",
    "history_metrics",
    "smooth_curves",
    "stage_boundaries",
]


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
    from cnmc_core.workspace.layout import read_history

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
