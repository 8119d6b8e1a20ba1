"""How long a run of a preset takes here: its epoch time measured on the runs of that preset
this workspace has completed, else the figure documented for the preset.

- :func:`preset_timing`: seconds per epoch (the median epoch of the latest completed runs of the
  preset, from their ``history.jsonl``: ``elapsed`` is the time since the stage began, so an
  epoch's time is the difference of two consecutive lines), the start-up of a run (its wall time
  from ``started`` to ``finished`` less its epochs), the share of the labelled images it trained
  on, and where the figure comes from;
- :func:`expected_run_seconds`: what a queued run of ``epochs`` epochs should take;
- :data:`DOCUMENTED` holds the demo presets' figures (``benchmarks/bench_demo.py`` on an idle
  2-core machine, README "Presets"), used until a run of the preset has completed here.

A figure measured on this machine is the one that counts: a loaded machine trains slower than
the documented idle one, and the estimate says which it used.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = [
    "DEFAULT_STARTUP",
    "DOCUMENTED",
    "PresetTiming",
    "expected_run_seconds",
    "format_duration",
    "preset_timing",
    "queued_expectations",
    "run_epochs",
    "sources_text",
]

#: Seconds per epoch of the demo presets, whole runs timed by ``bench_demo.py`` on an idle
#: 2-core machine (commit cc11d9b: scratch CNN 43 s for 8 epochs, VGG16-BN 62 s for 5,
#: ResNet50 v1 78 s for 7, v2 61 s for 7), on the subject split of the default dataset.
DOCUMENTED = {"demo_scratch": 43 / 8, "demo_vgg16": 62 / 5, "demo_resnet50_v1": 78 / 7,
              "demo_resnet50_v2": 61 / 7}
#: Seconds a run spends outside its epochs (start-up, data, the final scoring) when no run of
#: its preset has been timed here.
DEFAULT_STARTUP = 15.0
#: The share of the labelled images a subject-split run trains on (60/20/20).
SUBJECT_TRAIN_SHARE = 0.6


@dataclass(frozen=True)
class PresetTiming:
    """How long a preset's runs take: ``epoch_seconds``, ``startup_seconds``, ``train_share``
    (of the labelled images, in the runs timed), ``n_runs`` timed (0: the documented figure) and
    ``source`` (a phrase for the page)."""

    preset: str
    epoch_seconds: float
    startup_seconds: float
    train_share: float
    n_runs: int
    source: str


def _epoch_times(history: pd.DataFrame) -> list[float]:
    if history.empty or "elapsed" not in history.columns:
        return []
    history = history.sort_values("epoch", kind="stable")
    stage = history["stage_index"] if "stage_index" in history.columns else pd.Series(0, index=history.index)
    times = []
    for _, part in history.groupby(stage, sort=False):
        elapsed = pd.to_numeric(part["elapsed"], errors="coerce").to_numpy(dtype=float)
        times += [float(t) for t in np.diff(elapsed, prepend=0.0) if np.isfinite(t) and t > 0]
    return times


def _timed(path: str) -> tuple[list[float], float | None, float | None]:
    """A completed run's epoch times, its start-up (wall time less its epochs) and train share."""
    from cnmc_core.workspace.fileio import read_json
    from cnmc_core.workspace.layout import read_history

    try:
        times = _epoch_times(read_history(path))
        status = read_json(Path(path) / "status.json", expect=dict)
        config = read_json(Path(path) / "config.json", expect=dict)
    except (OSError, ValueError):  # CnmcError included: a damaged run is not timed
        return [], None, None
    startup = None
    started, finished = status.get("started"), status.get("finished")
    if isinstance(started, (int, float)) and isinstance(finished, (int, float)) and times:
        startup = max(0.0, float(finished) - float(started) - sum(times))
    counts = config.get("split_counts") or {}
    total = sum(v for v in counts.values() if isinstance(v, (int, float)))
    train = sum(v for k, v in counts.items() if k.startswith("train_") and isinstance(v, (int, float)))
    return times, startup, (train / total if total and train else None)


def preset_timing(preset: str, experiments: pd.DataFrame | None = None,
                  latest: int = 5) -> PresetTiming | None:
    """The epoch time of ``preset``: measured on the latest ``latest`` completed runs of it in
    ``experiments`` (the workspace listing), else :data:`DOCUMENTED`; None when neither has one."""
    if experiments is not None and len(experiments):
        runs = experiments[(experiments["kind"] == "run") & (experiments["preset"] == preset)
                           & (experiments["state"] == "completed")].head(4 * latest)
        times, startups, shares = [], [], []
        n = 0
        for path in runs["path"]:
            if n >= latest:
                break
            t, startup, share = _timed(path)  # a run without epoch times is skipped
            if t:
                n += 1
                times += t
                if startup is not None:
                    startups.append(startup)
                if share is not None:
                    shares.append(share)
        if times:
            return PresetTiming(preset, float(np.median(times)),
                                float(np.median(startups)) if startups else DEFAULT_STARTUP,
                                float(np.median(shares)) if shares else SUBJECT_TRAIN_SHARE, n,
                                f"measured here on {n} completed run{'s' if n != 1 else ''} of "
                                f"{preset}")
    if preset in DOCUMENTED:
        return PresetTiming(preset, DOCUMENTED[preset], DEFAULT_STARTUP, SUBJECT_TRAIN_SHARE, 0,
                            f"{preset}'s documented figure (an idle 2-core machine; a loaded "
                            "one is slower)")
    return None


def run_epochs(config: dict) -> int:
    """The most epochs a run config trains (the sum over its stages)."""
    return int(sum(int(s.get("epochs") or 0) for s in config.get("stages") or []))


def expected_run_seconds(timing: PresetTiming, epochs: int, train_share: float | None = None
                         ) -> float:
    """Seconds a run of ``epochs`` epochs should take: start-up plus epochs, each epoch scaled
    by the share of the images it trains on (``train_share``, default the timed runs' share:
    a 5-fold study's runs train on 3 folds of 5, a subject-split run on 60 %)."""
    scale = (train_share / timing.train_share) if train_share and timing.train_share else 1.0
    return timing.startup_seconds + epochs * timing.epoch_seconds * scale


def format_duration(seconds: float) -> str:
    """``45 s``, ``3.5 min``, ``1.2 h``."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def queued_expectations(queued: pd.DataFrame, experiments: pd.DataFrame) -> dict[str, dict]:
    """For each queued or running run of ``queued`` (rows of the listing, in queue order): its
    expected time (``preset``, ``seconds``, ``epochs``, ``epoch_seconds``, ``source``), or nothing
    when its preset has no figure or its epochs are unknown. Reads each run's ``config.json``
    (active runs only)."""
    from cnmc_core.workspace.fileio import read_json

    out: dict[str, dict] = {}
    cache: dict[str, PresetTiming | None] = {}
    for row in queued.itertuples():
        preset = row.preset if isinstance(row.preset, str) else ""
        if preset not in cache:
            cache[preset] = preset_timing(preset, experiments)
        timing = cache[preset]
        if timing is None:
            continue
        try:
            config = read_json(os.path.join(row.path, "config.json"), expect=dict)
        except (OSError, ValueError):
            continue
        epochs = run_epochs(config)
        if not epochs:
            continue
        kfold = config.get("kfold") or {}
        share = (int(kfold["k"]) - 2) / int(kfold["k"]) if kfold.get("k") else None
        out[row.run_id] = {"preset": preset,
                           "seconds": expected_run_seconds(timing, epochs, share),
                           "epochs": epochs, "epoch_seconds": timing.epoch_seconds,
                           "source": timing.source}
    return out


def sources_text(sources: dict[str, str]) -> str:
    """Where the epoch times of several presets come from, in one phrase: ``measured here for
    demo_vgg16, demo_scratch; documented (an idle 2-core machine) for demo_resnet50_v1``."""
    measured = [p for p, s in sources.items() if s.startswith("measured")]
    documented = [p for p in sources if p not in measured]
    parts = ([f"measured here for {', '.join(measured)}"] if measured else []) + \
        ([("documented (an idle 2-core machine; a loaded one is slower) for "
           f"{', '.join(documented)}")] if documented else [])
    return "; ".join(parts)
