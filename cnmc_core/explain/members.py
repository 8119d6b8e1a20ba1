"""Explanations of saved runs and ensembles: the one way member maps are combined.

:func:`explain_path` explains an image with a run or an ensemble (expanded into its runs and
weights), each model getting the image preprocessed as its run was trained; several models'
maps are combined by :func:`ensemble_heatmap` for the class they predict together.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np

from cnmc_core.exceptions import ConfigError, RunError
from cnmc_core.explain.maps import CAM_TARGETS as TARGETS
from cnmc_core.explain.maps import ensemble_heatmap
from cnmc_core.predict import prepare_for_run, score_member
from cnmc_core.validation import check_choice

__all__ = [
    "EXPLAIN_METHODS",
    "MemberExplanation",
    "Explanation",
    "leaf_weights",
    "explain_images",
    "explain_path",
    "explain_selection",
    "run_feature_layers",
    "activation_view",
]


EXPLAIN_METHODS = ("gradcam", "gradcam++", "activations")


@dataclass
class MemberExplanation:
    """One model's explanation of one image."""

    name: str
    weight: float
    image: np.ndarray  # the preprocessed image the model saw (RGB uint8)
    prob: float  # P(ALL)
    layer: str
    target: str  # "all" or "hem" ("-" for activations)
    heatmap: np.ndarray | None = None  # (h, w) in [0, 1] for Grad-CAM methods
    zero: bool = False
    grid: np.ndarray | None = None  # activation grid (RGB uint8) for method "activations"


@dataclass
class Explanation:
    """Explanations of one image by one run, or by several runs together (an ensemble, a choice
    of runs): each run's map, and their combination.

    Attributes:
        source: the run or ensemble folder names explained (joined by ``+``).
        method: ``gradcam``, ``gradcam++`` or ``activations``.
        members: one :class:`MemberExplanation` per run (an ensemble's runs, weights multiplied
            through nested ensembles).
        ensemble_heatmap: the runs' maps combined with their weights (None for one run, or for
            activations).
        ensemble_prob: P(ALL) of the models together, as they decide (an ensemble's weighted vote
            or stacking model; the mean of several chosen models); None for a single run.
        target: the class every map explains (``all`` or ``hem``; ``-`` for activations).
        threshold: the threshold that decided the predicted class.
    """

    source: str
    method: str
    members: list[MemberExplanation] = field(default_factory=list)
    ensemble_heatmap: np.ndarray | None = None
    ensemble_prob: float | None = None
    target: str = "-"
    threshold: float = 0.5

    @property
    def prob(self) -> float:
        """P(ALL) that decides: the combination's, or the only run's."""
        return self.ensemble_prob if self.ensemble_prob is not None else self.members[0].prob

    @property
    def heatmap(self) -> np.ndarray | None:
        """The map to show for the whole: the combined map, or the only run's."""
        return self.ensemble_heatmap if self.ensemble_heatmap is not None else \
            self.members[0].heatmap

    @property
    def base_image(self) -> np.ndarray:
        """The largest of the preprocessed images the runs saw (the combined map is drawn on it)."""
        return max((m.image for m in self.members), key=lambda a: a.shape[0])


def _path_weights(paths: Sequence[Path], weights: Sequence[float] | None) -> np.ndarray:
    if not paths:
        raise ConfigError("Choose at least one run or ensemble to explain.")
    w = np.ones(len(paths)) if weights is None else np.asarray(list(weights), dtype=np.float64)
    if w.shape != (len(paths),) or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise ConfigError(f"weights must be {len(paths)} non-negative numbers, not all zero (one "
                          f"per run or ensemble); got {list(np.ravel(w))}.")
    return w / w.sum()


def leaf_weights(paths: Sequence[str | os.PathLike], weights: Sequence[float] | None = None,
                 use: str = "explained") -> list[tuple[str, Path, float]]:
    """``[(run name, run folder, weight)]`` of the runs that several runs or ensembles are made
    of: each path's weight (default equal) times its own leaf weights
    (:func:`cnmc_core.ensemble.members.leaf_runs`), a run met twice counted once with the sum,
    weights summing to 1.

    Raises:
        ConfigError: no path, or bad weights. RunError: not a run or ensemble folder, a run
            without a model, a member that is gone, or an ensemble that is not completed (the
            message gives its state and what to do) or has no fitted weights.
    """
    from cnmc_core.ensemble.members import leaf_runs

    paths = [Path(p) for p in paths]
    w = _path_weights(paths, weights)
    merged: dict[Path, float] = {}
    for path, wp in zip(paths, w):
        if not (path / "config.json").is_file():
            raise RunError(f"{path} is not a run or ensemble folder (no config.json).")
        for run, wr in leaf_runs(path, use):
            merged[run] = merged.get(run, 0.0) + float(wp * wr)
    return [(run.name, run, weight) for run, weight in merged.items()]


def _check_choice(method: str, target: str) -> None:
    check_choice(method, "--method", EXPLAIN_METHODS)
    check_choice(target, "--class", TARGETS)


def explain_images(paths: Sequence[str | os.PathLike], images: Sequence[np.ndarray], *,
                   method: str = "gradcam", target: str = "predicted", layer: str | None = None,
                   weights: Sequence[float] | None = None, threshold: float | None = None,
                   progress: Callable[[int, int, str], None] | None = None) -> list[Explanation]:
    """Explain raw RGB images (as read from C-NMC files) with runs or ensembles, together.

    The one way the maps of several models are combined, for the Explain and Predict pages and
    the ``explain`` verb alike:

    1. P(ALL) of the models together is what they decide: each path scored as it combines its
       members (:func:`cnmc_core.predict.score_member`: an ensemble's weighted vote, or its
       stacking model), the paths averaged with ``weights`` (default equal).
    2. The class explained is ``target`` (``all``/``hem``), or with ``"predicted"`` the class
       that P(ALL) gives at ``threshold`` (default: the only path's own threshold, else 0.5),
       the same for every run, so that their maps can be combined.
    3. Every run the paths are made of (:func:`leaf_weights`) explains that class on the image
       prepared as its training images were; the maps are combined with the runs' weights by
       :func:`ensemble_heatmap`. For a stacking ensemble those are its display weights (its
       positive coefficients), while its P(ALL) and class come from the stacking model.

    Args:
        paths: run or ensemble folders.
        images: raw RGB images.
        method: ``gradcam``, ``gradcam++`` or ``activations`` (the activation grid of ``layer``,
            default each model's first convolution).
        layer: the layer to explain (default: each model's Grad-CAM layer); it must exist in every
            run.
        progress: called as ``progress(done, total, run name)`` while the runs are worked through.

    Returns:
        One :class:`Explanation` per image, in order.

    Raises:
        ConfigError: no path, a bad method, class, layer, threshold or weights. RunError: a run
            without a loadable model, or an ensemble that cannot be used (see
            :func:`leaf_weights`).
    """
    from cnmc_core.explain.activations import activation_grid, activations
    from cnmc_core.explain.cam import gradcam
    from cnmc_core.explain.inputs import list_feature_layers
    from cnmc_core.models.io import load_model_cached
    from cnmc_core.predict import member_threshold

    _check_choice(method, target)
    paths = [Path(p) for p in paths]
    w = _path_weights(paths, weights)
    leaves = leaf_weights(paths, w)
    images = list(images)
    if threshold is None:
        threshold = member_threshold(paths[0]) if len(paths) == 1 else 0.5
    if not 0.0 <= float(threshold) <= 1.0:
        raise ConfigError(f"threshold must be in [0, 1]; got {threshold!r}.")
    run_probs: dict[str, np.ndarray] = {}
    together = np.column_stack([score_member(p, images, run_probs) for p in paths]) @ w
    classes = np.full(len(images), "-", dtype=object) if method == "activations" else \
        np.where(together >= threshold, "all", "hem") if target == "predicted" else \
        np.full(len(images), target, dtype=object)
    single = len(leaves) == 1 and len(paths) == 1 and paths[0] == leaves[0][1]
    out = [Explanation(source="+".join(p.name for p in paths), method=method,
                       ensemble_prob=None if single else float(together[i]),
                       target=str(classes[i]), threshold=float(threshold))
           for i in range(len(images))]
    for k, (name, run, weight) in enumerate(leaves):
        if progress is not None:
            progress(k, len(leaves), name)
        model = load_model_cached(run / "model.keras")
        seen = np.stack([prepare_for_run(image, run) for image in images])
        probs = run_probs[run.name]
        if method == "activations":
            use = layer or list_feature_layers(model)[0]
            for i in range(len(images)):
                grid = activation_grid(activations(model, seen[i], use))
                out[i].members.append(MemberExplanation(name, weight, seen[i], float(probs[i]),
                                                        use, "-", grid=grid))
            continue
        cams = {}
        for cls in ("all", "hem"):
            idx = np.flatnonzero(classes == cls)
            if idx.size:
                cams[cls] = (idx, gradcam(model, seen[idx], layer=layer, target=cls, method=method))
        for cls, (idx, cam) in cams.items():
            for j, i in enumerate(idx):
                out[i].members.append(MemberExplanation(
                    name, weight, seen[i], float(probs[i]), cam.layer, cls,
                    heatmap=cam.heatmaps[j], zero=bool(cam.zero_flags[j])))
    if progress is not None:
        progress(len(leaves), len(leaves), "")
    if method != "activations":
        for ex in out:
            if len(ex.members) > 1:
                ex.ensemble_heatmap = ensemble_heatmap([m.heatmap for m in ex.members],
                                                       [m.weight for m in ex.members])
    return out


def explain_path(path: str | os.PathLike, image: np.ndarray, method: str = "gradcam",
                 layer: str | None = None, target: str = "predicted") -> Explanation:
    """Explain one raw RGB image with a run or an ensemble (:func:`explain_images`)."""
    return explain_images([path], [image], method=method, target=target, layer=layer)[0]


def explain_selection(paths: Sequence[str | os.PathLike], image: np.ndarray, *,
                      method: str = "gradcam", target: str = "predicted",
                      weights: Sequence[float] | None = None) -> Explanation:
    """Explain one raw RGB image with several runs or ensembles together
    (:func:`explain_images`)."""
    return explain_images(paths, [image], method=method, target=target, weights=weights)[0]


def run_feature_layers(run_path: str | os.PathLike) -> list[str]:
    """The convolution and pooling layers of a run's model, in graph order (what the activations
    view offers).

    Raises:
        RunError: the run has no loadable ``model.keras``.
    """
    from cnmc_core.explain.inputs import list_feature_layers
    from cnmc_core.models.io import load_model_cached

    return list_feature_layers(load_model_cached(Path(run_path) / "model.keras"))


def activation_view(run_path: str | os.PathLike, image: np.ndarray, layer: str,
                    max_channels: int = 32) -> tuple[np.ndarray, tuple[int, int, int]]:
    """The activation grid of ``layer`` for a raw RGB image prepared as the run's training images
    were: ``(grid RGB uint8, (h, w, channels) of the layer's maps)``; the first ``max_channels``
    channels are drawn, each on its own range, dead channels crossed out.

    Raises:
        ConfigError: an unknown layer. RunError: no loadable model.
    """
    from cnmc_core.explain.activations import activation_grid, activations
    from cnmc_core.models.io import load_model_cached

    run_path = Path(run_path)
    model = load_model_cached(run_path / "model.keras")
    maps = activations(model, prepare_for_run(image, run_path), layer)
    return activation_grid(maps, max_channels=max_channels, colormap=cv2.COLORMAP_VIRIDIS), \
        tuple(maps.shape)
