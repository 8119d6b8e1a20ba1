"""Explanations of saved runs and ensembles, and the figure the ``explain`` verb writes.

:mod:`cnmc_core.explain` works on a Keras model and arrays. This module adds what a user of a
run needs: the run's model (loaded once, safely), the run's preprocessing of a raw image (crop,
CLAHE if the run used it, resize), an ensemble expanded into its member runs and weights, and a
readable figure (the image, the heatmap overlay, P(ALL), layer, class) composed with OpenCV.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .exceptions import ConfigError, RunError
from .fileio import read_json
from .preprocess import preprocess_image

__all__ = ["MemberExplanation", "Explanation", "expand_members", "explain_path", "render_figure",
           "METHODS", "TARGETS"]

METHODS = ("gradcam", "gradcam++", "activations")
TARGETS = ("all", "hem", "predicted")


@dataclass
class MemberExplanation:
    """One model's explanation of one image."""

    name: str
    weight: float
    image: np.ndarray  # the preprocessed image the model saw (RGB uint8)
    prob: float  # P(ALL)
    layer: str
    target: str  # "all" or "hem"
    heatmap: np.ndarray | None = None  # (h, w) in [0, 1] for Grad-CAM methods
    zero: bool = False
    grid: np.ndarray | None = None  # activation grid (RGB uint8) for method "activations"


@dataclass
class Explanation:
    """Explanations of one image by a run (one member) or an ensemble (several)."""

    source: str
    method: str
    members: list[MemberExplanation] = field(default_factory=list)
    ensemble_heatmap: np.ndarray | None = None
    ensemble_prob: float | None = None


def expand_members(path: str | os.PathLike) -> list[tuple[str, Path, float]]:
    """``[(name, run folder, weight)]`` of a run (itself, weight 1) or an ensemble (its runs,
    weights multiplied through nested ensembles and summing to 1): see
    :func:`cnmc_core.catalog.leaf_runs`.

    Raises:
        RunError: not a run or ensemble folder, a run without a model, a member that is gone, or
            an ensemble that is not completed (a search still running, failed, cancelled or
            killed: the message gives its state and what to do) or has no fitted weights.
    """
    from .catalog import leaf_runs

    path = Path(path)
    if not (path / "config.json").is_file():
        raise RunError(f"{path} is not a run or ensemble folder (no config.json).")
    return [(run.name, run, weight) for run, weight in leaf_runs(path, "explained")]


def explain_path(path: str | os.PathLike, image: np.ndarray, method: str = "gradcam",
                 layer: str | None = None, target: str = "predicted") -> Explanation:
    """Explain a raw RGB image (as read from a C-NMC file) with a run or an ensemble.

    Args:
        path: a run folder (with ``model.keras``) or an ensemble folder.
        image: the raw image; each model gets it preprocessed as its run was trained.
        method: ``gradcam``, ``gradcam++`` or ``activations``.
        layer: the layer (default: the model's Grad-CAM layer, or its first conv layer for
            activations). With an ensemble it must exist in every member.
        target: ``all``, ``hem`` or ``predicted`` (the class each model predicts; for the
            ensemble map, the class the ensemble predicts).
    """
    from .explain import activation_grid, activations, ensemble_heatmap, gradcam, list_feature_layers, load_model_cached

    if method not in METHODS:
        raise ConfigError(f"--method must be one of {list(METHODS)}; got {method!r}.")
    if target not in TARGETS:
        raise ConfigError(f"--class must be one of {list(TARGETS)}; got {target!r}.")
    members = expand_members(path)
    result = Explanation(source=str(path), method=method)
    prepared = []
    for name, run_dir, weight in members:
        config = read_json(run_dir / "config.json")
        model = load_model_cached(run_dir / "model.keras")
        seen = preprocess_image(image, int(config["image_size"]), clahe=bool(config.get("clahe", False)))
        prepared.append((name, weight, model, seen))
    total = sum(w for _, w, _, _ in prepared) or 1.0
    probs = []
    for name, weight, model, seen in prepared:
        # predict_on_batch: model.predict builds a new tf.function per call (retracing warnings)
        prob = float(np.asarray(model.predict_on_batch(seen[None].astype(np.float32))).reshape(-1)[0])
        probs.append(prob)
    ens_prob = float(np.dot([w for _, w, _, _ in prepared], probs) / total)
    result.ensemble_prob = ens_prob if len(prepared) > 1 else None
    for (name, weight, model, seen), prob in zip(prepared, probs):
        if method == "activations":
            use = layer or list_feature_layers(model)[0]
            maps = activations(model, seen, use)
            result.members.append(MemberExplanation(name, weight, seen, prob, use, "-", grid=activation_grid(maps)))
            continue
        if target == "predicted":
            # one class for the whole ensemble, so that the member maps can be combined
            basis = ens_prob if len(prepared) > 1 else prob
            cls = "all" if basis >= 0.5 else "hem"
        else:
            cls = target
        cam = gradcam(model, seen, layer=layer, target=cls, method=method)
        result.members.append(MemberExplanation(name, weight, seen, prob, cam.layer, cls,
                                                heatmap=cam.heatmaps[0], zero=bool(cam.zero_flags[0])))
    if method != "activations" and len(result.members) > 1:
        result.ensemble_heatmap = ensemble_heatmap({m.name: m.heatmap for m in result.members},
                                                   {m.name: m.weight for m in result.members})
    return result


def _panel(image: np.ndarray, lines: list[str], side: int = 320) -> np.ndarray:
    """An image scaled to ``side`` with caption lines above it, on white."""
    import cv2

    body = cv2.resize(image, (side, side), interpolation=cv2.INTER_NEAREST if image.shape[0] < side // 2 else cv2.INTER_AREA)
    line_h = 22
    head = np.full((line_h * len(lines) + 8, side, 3), 255, np.uint8)
    for i, text in enumerate(lines):
        cv2.putText(head, text[:44], (6, 18 + i * line_h), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (20, 20, 20), 1, cv2.LINE_AA)
    return np.vstack([head, body])


def render_figure(explanation: Explanation) -> np.ndarray:
    """A figure a person can read: per model the image it saw and the overlay (or activation
    grid), with P(ALL), the layer and the class; for an ensemble also the combined map."""
    import cv2

    from .explain import overlay

    panels = []
    for m in explanation.members:
        caption = [f"{m.name[:40]}", f"P(ALL) = {m.prob:.3f}  weight {m.weight:.2f}"]
        panels.append(_panel(m.image, caption + ["input (cropped, resized)"]))
        if m.grid is not None:
            panels.append(_panel(m.grid, [f"activations of {m.layer}", "one tile per channel", "red X = dead channel"]))
        else:
            note = " (all zero: no evidence)" if m.zero else ""
            panels.append(_panel(overlay(m.image, m.heatmap),
                                 [f"{explanation.method} for class {m.target.upper()}", f"layer {m.layer}", note or "red = supports the class"]))
    if explanation.ensemble_heatmap is not None:
        base = explanation.members[0].image
        heat = cv2.resize(explanation.ensemble_heatmap, (base.shape[1], base.shape[0]))
        panels.append(_panel(overlay(base, heat), ["weighted ensemble map", f"P(ALL) = {explanation.ensemble_prob:.3f}",
                                                   f"class {explanation.members[0].target.upper()}"]))
    height = max(p.shape[0] for p in panels)
    panels = [np.vstack([p, np.full((height - p.shape[0], p.shape[1], 3), 255, np.uint8)]) for p in panels]
    per_row = 4
    rows = []
    for i in range(0, len(panels), per_row):
        row = panels[i:i + per_row]
        row += [np.full_like(panels[0], 255)] * (per_row - len(row)) if len(panels) > per_row else []
        sep = np.full((height, 6, 3), 255, np.uint8)
        rows.append(np.hstack([x for p in row for x in (p, sep)][:-1]))
    width = max(r.shape[1] for r in rows)
    rows = [np.hstack([r, np.full((r.shape[0], width - r.shape[1], 3), 255, np.uint8)]) for r in rows]
    return np.vstack(rows)
