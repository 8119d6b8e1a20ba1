"""Explanations of saved runs and ensembles: the one way member maps are combined.

:func:`explain_path` explains an image with a run or an ensemble (expanded into its runs and
weights), each model getting the image preprocessed as its run was trained; several models'
maps are combined by :func:`ensemble_heatmap` for the class they predict together.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import cv2
import numpy as np

from cnmc_core.data.preprocess import preprocess_image
from cnmc_core.exceptions import ConfigError, DataError, RunError
from cnmc_core.explain.cam import CAM_TARGETS as TARGETS
from cnmc_core.explain.cam import ZERO_TOL, normalise_maps
from cnmc_core.predict import prepare_for_run, score_member
from cnmc_core.workspace.fileio import read_json

__all__ = [
    "ensemble_heatmap",
    "EXPLAIN_METHODS",
    "MemberExplanation",
    "Explanation",
    "expand_members",
    "explain_path",
    "run_heatmaps",
    "explain_selection",
]


def ensemble_heatmap(heatmaps_by_member: Mapping[str, np.ndarray] | Sequence[np.ndarray],
                     weights: Mapping[str, float] | Sequence[float] | None = None,
                     size: tuple[int, int] | None = None, normalize: bool = False) -> np.ndarray:
    """Weighted combination of the members' heatmaps of one image.

    Each member's map is first scaled to [0, 1] by its own maximum (an all-zero map stays zero),
    then resized (bilinear) to a common grid, then averaged with the weights scaled to sum 1.
    The result is 1 only where every weighted member puts its maximum.

    Args:
        heatmaps_by_member: ``{member: (h_i, w_i)}`` or a list of 2-D maps.
        weights: ``{member: w}`` (same keys) or a list (same order); default equal. Non-negative,
            not all zero.
        size: ``(h, w)`` of the common grid; default the largest member map.
        normalize: rescale the result so that its maximum is 1 (when it is not all zero).

    Returns:
        ``(h, w)`` float32 in [0, 1].

    Raises:
        ConfigError: no members, weights that do not match the members, negative or all-zero
            weights. DataError: a map that is not 2-D.
    """
    if isinstance(heatmaps_by_member, Mapping):
        names = list(heatmaps_by_member)
        maps = [heatmaps_by_member[k] for k in names]
    else:
        maps = list(heatmaps_by_member)
        names = list(range(len(maps)))
    if not maps:
        raise ConfigError("ensemble_heatmap needs at least one member heatmap.")
    if weights is None:
        w = np.ones(len(maps))
    elif isinstance(weights, Mapping):
        if set(weights) != set(names):
            raise ConfigError(
                f"weights must name exactly the members {sorted(map(str, names))}; got "
                f"{sorted(map(str, weights))}."
            )
        w = np.array([float(weights[k]) for k in names])
    else:
        w = np.asarray(list(weights), dtype="float64")
        if w.shape != (len(maps),):
            raise ConfigError(f"weights must have one value per member ({len(maps)}); got "
                              f"{len(w)}.")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ConfigError(
            f"weights must be finite, non-negative and not all zero; got {w.tolist()}.")
    w = w / w.sum()
    arrays = []
    for name, m in zip(names, maps):
        m = np.asarray(m, dtype="float32")
        if m.ndim != 2 or m.size == 0:
            raise DataError(f"heatmap of member {name!r} must be 2-D; got shape {m.shape}.")
        arrays.append(m)
    if size is None:
        size = max((m.shape for m in arrays), key=lambda s: s[0] * s[1])
    h, w_px = int(size[0]), int(size[1])
    total = np.zeros((h, w_px), dtype="float64")
    normed, _ = normalise_maps(np.stack([
        cv2.resize(m, (w_px, h), interpolation=cv2.INTER_LINEAR) for m in arrays]))
    for weight, m in zip(w, normed):
        total += weight * m
    total = np.clip(total, 0.0, 1.0)
    if normalize and total.max() > ZERO_TOL:
        total = total / total.max()
    return total.astype("float32")


EXPLAIN_METHODS = ("gradcam", "gradcam++", "activations")


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
    :func:`cnmc_core.ensemble.members.leaf_runs`.

    Raises:
        RunError: not a run or ensemble folder, a run without a model, a member that is gone, or
            an ensemble that is not completed (a search still running, failed, cancelled or
            killed: the message gives its state and what to do) or has no fitted weights.
    """
    from cnmc_core.ensemble.members import leaf_runs

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
    from cnmc_core.explain.activations import activation_grid, activations
    from cnmc_core.explain.cam import gradcam
    from cnmc_core.explain.inputs import list_feature_layers
    from cnmc_core.models.io import load_model_cached

    if method not in EXPLAIN_METHODS:
        raise ConfigError(f"--method must be one of {list(EXPLAIN_METHODS)}; got {method!r}.")
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


def run_heatmaps(run_path: str | os.PathLike, images: Sequence[np.ndarray], *,
                 method: str = "gradcam", target: str = "predicted") -> tuple[np.ndarray, object]:
    """Grad-CAM maps of a run for RGB images: ``(prepared images (n, s, s, 3), CamResult)``;
    the maps are at the prepared images' size (the crop the model saw)."""
    from cnmc_core.explain.cam import gradcam
    from cnmc_core.models.io import load_model_cached

    rp = Path(run_path)
    model = load_model_cached(rp / "model.keras")
    batch = np.stack([prepare_for_run(im, rp) for im in images])
    return batch, gradcam(model, batch, target=target, method=method)


def explain_selection(paths: Sequence[str | os.PathLike], image: np.ndarray, *,
                      method: str = "gradcam", target: str = "predicted",
                      weights: Sequence[float] | None = None):
    """Explain one raw RGB image with several runs (or ensembles) together.

    One path is :func:`cnmc_core.explain.members.explain_path` itself. With several, each is
    explained for the same class (with ``target="predicted"``: the class their weighted vote
    predicts at 0.5, so that the maps can be combined), and their maps are combined with
    ``weights`` (default equal; an ensemble's own weights multiply in).

    Returns:
        a :class:`cnmc_core.explain.members.Explanation` (``ensemble_heatmap`` and
        ``ensemble_prob`` set when more than one model is involved).

    Raises:
        ConfigError: no path, bad weights, method or target. RunError: a run without a model.
    """
    from dataclasses import replace

    from cnmc_core.explain.cam import CAM_TARGETS as TARGETS

    paths = [Path(p) for p in paths]
    if not paths:
        raise ConfigError("Choose at least one run to explain.")
    if target not in TARGETS:
        raise ConfigError(f"target must be one of {list(TARGETS)}; got {target!r}.")
    if len(paths) == 1:
        return explain_path(paths[0], image, method=method, target=target)
    w = np.ones(len(paths)) if weights is None else np.asarray(list(weights), dtype=np.float64)
    if w.shape != (len(paths),) or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise ConfigError(f"weights must be {len(paths)} non-negative numbers, not all zero; "
                          f"got {list(np.ravel(w))}.")
    w = w / w.sum()
    probs = np.array([float(score_member(p, [image])[0]) for p in paths])
    ens_prob = float(probs @ w)
    cls = target
    if target == "predicted" or method == "activations":
        cls = "all" if ens_prob >= 0.5 else "hem"
    members = []
    for p, wi in zip(paths, w):
        part = explain_path(p, image, method=method, target=cls)
        members += [replace(m, weight=float(wi * m.weight)) for m in part.members]
    result = Explanation(source="+".join(p.name for p in paths), method=method, members=members,
                         ensemble_prob=ens_prob)
    if method != "activations":
        result.ensemble_heatmap = ensemble_heatmap(
            [m.heatmap for m in members], [max(m.weight, 0.0) for m in members])
    return result
