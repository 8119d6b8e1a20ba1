"""Scoring new images with finished runs and ensembles: each image prepared as the run's training
images were, scored by each run's model, and combined the way an ensemble combines its members
(weighted soft vote, or the stacking model).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from cnmc_core.contracts import CLASS_SHORT
from cnmc_core.exceptions import CnmcError, ConfigError, RunError
from cnmc_core.workspace.fileio import read_json

__all__ = [
    "prepare_for_run",
    "score_runs",
    "member_threshold",
    "score_member",
    "score_selection",
    "outside_flags",
    "format_prob",
    "results_frame",
    "results_csv",
]


def _run_config(run_path: Path) -> dict:
    try:
        config = read_json(run_path / "config.json")
    except (OSError, CnmcError) as exc:
        raise RunError(f"{run_path} has no readable config.json ({exc}).") from None
    if not isinstance(config, dict) or "image_size" not in config:
        raise RunError(f"{run_path / 'config.json'} gives no image_size; is it a run folder?")
    return config


def prepare_for_run(image: np.ndarray, run_path: str | os.PathLike) -> np.ndarray:
    """Crop, (CLAHE if the run used it) and resize an RGB image as the run's training images:
    ``(size, size, 3)`` uint8."""
    from cnmc_core.data.preprocess import preprocess_image

    config = _run_config(Path(run_path))
    return preprocess_image(image, int(config["image_size"]), bool(config.get("clahe", False)))


def score_runs(run_paths: Sequence[str | os.PathLike], images: Sequence[np.ndarray],
               progress: Callable[[int, int], None] | None = None) -> dict[str, np.ndarray]:
    """P(ALL) of each run for each image: ``{run folder name: (n,) array}``.

    Each image is prepared for each run (:func:`prepare_for_run`); each model is loaded once
    (cached) with safe loading.

    Raises:
        RunError: a run without a loadable ``model.keras``.
    """
    from cnmc_core.models.io import load_model_cached, predict_images

    out: dict[str, np.ndarray] = {}
    total = len(run_paths)
    for k, rp in enumerate(run_paths):
        rp = Path(rp)
        model = load_model_cached(rp / "model.keras")
        batch = np.stack([prepare_for_run(im, rp) for im in images]) if len(images) else \
            np.zeros((0, 1, 1, 3), np.uint8)
        out[rp.name] = predict_images(model, batch)
        if progress is not None:
            progress(k + 1, total)
    return out


def _stack_predict(config: dict, probs: np.ndarray) -> np.ndarray:
    from cnmc_core.ensemble.combiners import stacking_proba

    st = config.get("stacking") or {}
    coef = np.asarray(st.get("coef", []), dtype=np.float64)
    if coef.size != probs.shape[1]:
        raise RunError("The stacking ensemble's config.json has no coefficient per member.")
    return stacking_proba(probs, coef, float(st.get("intercept", 0.0)))


def member_threshold(member_path: str | os.PathLike) -> float:
    """The decision threshold of a run or ensemble (its config's ``threshold``, else 0.5)."""
    try:
        t = read_json(Path(member_path) / "config.json").get("threshold", 0.5)
    except (OSError, CnmcError, AttributeError):
        return 0.5
    return float(t) if isinstance(t, (int, float)) and not isinstance(t, bool) else 0.5


def score_member(member_path: str | os.PathLike, images: Sequence[np.ndarray],
                 run_probs: dict[str, np.ndarray] | None = None, _depth: int = 0) -> np.ndarray:
    """P(ALL) of a run or a saved ensemble for each image, the way the ensemble combines its
    members (weighted soft vote, or the stacking model's logistic regression).

    ``run_probs`` caches the runs' probabilities (``{run folder name: array}``) between calls.

    Raises:
        RunError: an ensemble (at any depth) that is not completed (a search still running,
            failed, cancelled or killed: the message gives its state and what to do) or has no
            fitted weights; a run without a loadable model; ensembles nested deeper than
            :data:`~cnmc_core.ensemble.members.MAX_NESTING` levels.
    """
    from cnmc_core.ensemble.members import check_nesting, ensemble_weights
    from cnmc_core.ensemble.members import member_paths as _member_paths
    from cnmc_core.workspace.status import check_completed

    path = Path(member_path)
    check_nesting(path, _depth)
    run_probs = run_probs if run_probs is not None else {}
    config = read_json(path / "config.json")
    if config.get("kind") != "ensemble":
        if path.name not in run_probs:
            run_probs.update(score_runs([path], images))
        return run_probs[path.name]
    check_completed(path, "scored")
    stacking = bool(config.get("stacking") or config.get("method") == "stacking")
    w = None if stacking else np.array(ensemble_weights(path, config))
    subs = _member_paths(path, config)
    probs = np.column_stack([score_member(s, images, run_probs, _depth + 1) for s in subs])
    if stacking:
        return _stack_predict(config, probs)
    if w.size != probs.shape[1]:
        raise RunError(f"Ensemble {path.name}: config.json has no usable weights per member.")
    return np.clip(probs @ w, 0.0, 1.0)


def score_selection(paths: Sequence[str | os.PathLike], images: Sequence[np.ndarray],
                    progress: Callable[[int, int, str], None] | None = None
                    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Score images with the runs or ensembles a user chose on the Predict page.

    Returns:
        ``(run_probs, final)``: each run's P(ALL) (an ensemble's runs included; ``{run folder
        name: (n,) array}``), and the final P(ALL): the ensemble's (its weights or stacking
        model) for one path, the mean of the chosen paths for several.

    Raises:
        RunError: as :func:`score_member`.
    """
    run_probs: dict[str, np.ndarray] = {}
    finals = []
    for k, p in enumerate(paths):
        if progress is not None:
            progress(k, len(paths), os.path.basename(str(p)))
        finals.append(score_member(p, images, run_probs))
    if progress is not None:
        progress(len(paths), len(paths), "")
    return run_probs, np.mean(np.column_stack(finals), axis=1)


def outside_flags(paths: Sequence[str | os.PathLike], images: Sequence[np.ndarray]
                  ) -> tuple[list[str], list[str]]:
    """Which images fall outside what the chosen models saw in training.

    Each image's hand features are z-scored against the training summary of every run the
    chosen runs and ensembles are made of (:func:`cnmc_core.ensemble.members.leaf_runs`); a
    feature is flagged when any run finds ``|z|`` above
    :data:`~cnmc_core.data.feature_ranges.Z_LIMIT` (the union over the members, with the largest
    ``|z|``).

    Returns:
        ``(flags, notes)``: per image ``""`` (inside) or the flagged features (``"area z=+5.2,
        mean_b z=-4.4"``); and a note for each run without a usable summary (it is left out).

    Raises:
        RunError: as :func:`cnmc_core.ensemble.members.leaf_runs`.
    """
    from cnmc_core.data.cell_features import FEATURE_NAMES
    from cnmc_core.data.feature_ranges import (
        Z_LIMIT,
        image_features,
        outside_features,
        outside_text,
        read_ranges,
        zscores,
    )
    from cnmc_core.ensemble.members import leaf_runs

    runs = list(dict.fromkeys(run for p in paths for run, _ in leaf_runs(p, "scored")))
    feats = image_features(images)
    worst = np.full((len(images), len(FEATURE_NAMES)), np.nan)
    notes = []
    for run in runs:
        ranges, why = read_ranges(run)
        if ranges is None:
            notes.append(why)
            continue
        z = zscores(feats, ranges)
        replace = np.isnan(worst) | (np.abs(z) > np.abs(worst))
        worst = np.where(replace & ~np.isnan(z), z, worst)
    if len(notes) == len(runs):
        return ["not checked: no training summary"] * len(images), notes
    flags = []
    for row, z in zip(feats, worst):
        if np.isnan(row).all():
            flags.append("not checked: no cell found")
        else:
            flags.append(outside_text(outside_features(z[None, :], Z_LIMIT)[0], prefix=False))
    return flags, notes


def format_prob(p: float, threshold: float = 0.5, digits: int = 3) -> str:
    """``p`` with ``digits`` decimals, or more (up to 6) where fewer would hide which side of
    ``threshold`` it is on (0.4996 is not shown as 0.500 when 0.5 is the threshold)."""
    p, t = float(p), float(threshold)
    for d in range(digits, 7):
        shown = round(p, d)
        if (shown >= t) == (p >= t):
            return f"{p:.{d}f}"
    return f"{p:.6f}"


def results_frame(names: Sequence[str], member_probs: dict[str, np.ndarray],
                  final: np.ndarray | None = None, threshold: float = 0.5,
                  final_name: str = "ensemble",
                  outside: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per image, the columns that decide first: ``file``, the final ``P(ALL)
    <final_name>`` (the ensemble's, or the only member's), ``predicted`` (``ALL``/``HEM`` at
    ``threshold``), ``threshold``, with ``outside`` (from :func:`outside_flags`) the column
    ``outside what this model saw`` (the flagged features, empty when inside), then ``P(ALL)
    <member>`` per member (none when the only member is the final one)."""
    if not 0.0 <= float(threshold) <= 1.0:
        raise ConfigError(f"threshold must be in [0, 1]; got {threshold!r}.")
    # A name starting like a formula would run as one in a spreadsheet: quote it.
    frame = pd.DataFrame({"file": [f"'{n}" if str(n)[:1] in ("=", "+", "-", "@") else str(n)
                                   for n in names]})
    members = dict(member_probs)
    if final is None:
        if len(members) != 1:
            raise ConfigError("Give the final probabilities when several members are scored.")
        final = members.pop(next(iter(members)))
    frame[f"P(ALL) {final_name}"] = np.round(np.asarray(final, dtype=float), 6)
    frame["predicted"] = np.where(np.asarray(final) >= float(threshold), CLASS_SHORT["all"],
                                  CLASS_SHORT["hem"])
    frame["threshold"] = float(threshold)
    if outside is not None:
        from cnmc_core.data.feature_ranges import OUTSIDE_TEXT

        if len(outside) != len(frame):
            raise ConfigError(f"outside gives {len(outside)} flags for {len(frame)} images.")
        frame[OUTSIDE_TEXT] = [str(v) for v in outside]
    for member, p in members.items():
        frame[f"P(ALL) {member}"] = np.round(np.asarray(p, dtype=float), 6)
    return frame


def results_csv(frame: pd.DataFrame) -> bytes:
    """The results as UTF-8 CSV bytes (for a download button)."""
    buf = io.StringIO()
    frame.to_csv(buf, index=False)
    return buf.getvalue().encode("utf-8")
