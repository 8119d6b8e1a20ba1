"""The live ensemble of the dashboard: weights and a threshold set by hand (sliders), scored on
val and test at once from the members' predictions only (no model is run).

- :func:`normalise_weights` turns slider positions into weights on the simplex (refusing all
  zeros with a message that says what to do);
- :func:`live_reports` scores the weighted soft vote on every split with
  :func:`cnmc_core.metrics.binary_report` (weighted F1, per-class precision/recall, confusion
  matrix, ROC points): a few milliseconds for thousands of images, so it can run on every
  slider move;
- :func:`fit_method` fits one of :data:`cnmc_core.ensemble.methods.COMBINERS` on val (a progress callback
  gets ``(done, total)``) and returns its weights and threshold, to set the sliders to;
- :func:`comparison_table` flattens :func:`cnmc_core.ensemble.report.score_methods` rows for
  display, and :func:`paper_table` the paper's own figures; a value that is not defined shows
  as :data:`MISSING`, with the reason in :data:`COLUMN_HELP`;
- :func:`save_live_ensemble` saves the slider ensemble as a ``weighted`` ensemble folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from cnmc_core.ensemble.align import AlignedPredictions
from cnmc_core.ensemble.combiners import WeightedAverage
from cnmc_core.ensemble.genetic import GeneticSearch
from cnmc_core.ensemble.methods import make_combiner, method_params
from cnmc_core.ensemble.report import PAPER_RESULTS
from cnmc_core.ensemble.store import save_ensemble
from cnmc_core.exceptions import ConfigError
from cnmc_core.metrics.report import binary_report

__all__ = [
    "SLIDER_METHODS",
    "METHOD_TITLES",
    "normalise_weights",
    "ensemble_probs",
    "live_reports",
    "fit_method",
    "MISSING",
    "COLUMN_HELP",
    "comparison_table",
    "paper_table",
    "save_live_ensemble",
    "saved_ensembles_of",
]

#: Methods whose result is a weighted average, so sliders can show it (stacking is not one).
SLIDER_METHODS = ("mean", "ga", "ga_mean", "greedy", "dirichlet", "slsqp")
#: Display names of the combination methods.
METHOD_TITLES = {
    "mean": "equal weights (mean)",
    "weighted": "given weights",
    "ga": "genetic algorithm (paper)",
    "ga_mean": "genetic algorithm (mean crossover)",
    "greedy": "greedy selection (Caruana)",
    "dirichlet": "random search (Dirichlet)",
    "slsqp": "min. log-loss (SLSQP)",
    "stacking": "stacking (logistic regression)",
}


def normalise_weights(raw: Sequence[float], members: Sequence[str] | None = None) -> np.ndarray:
    """Slider positions as weights that sum to 1.

    Raises:
        ConfigError: a negative or non-finite value, or every weight at 0 (the message says to
            raise one).
    """
    w = np.asarray(list(raw), dtype=np.float64)
    if w.ndim != 1 or w.size == 0:
        raise ConfigError("Choose at least one member to weight.")
    if members is not None and len(members) != w.size:
        raise ConfigError(f"Expected one weight per member ({len(members)}); got {w.size}.")
    if not np.isfinite(w).all() or (w < 0).any():
        raise ConfigError(f"Weights must be non-negative numbers; got {w.tolist()}.")
    if w.sum() <= 0:
        raise ConfigError("Every weight is 0: raise at least one member's weight above 0.")
    return w / w.sum()


def ensemble_probs(aligned: AlignedPredictions, weights: Sequence[float], split: str
                   ) -> np.ndarray:
    """P(ALL) of the weighted soft vote on one split (weights normalised first)."""
    w = normalise_weights(weights, aligned.members)
    return np.clip(aligned.splits[split].probs @ w, 0.0, 1.0)


def live_reports(aligned: AlignedPredictions, weights: Sequence[float], threshold: float,
                 splits: Sequence[str] = ("val", "test")) -> dict[str, dict]:
    """:func:`~cnmc_core.metrics.binary_report` (with ROC/PR curves) of the weighted soft vote
    at ``threshold`` on each split, plus ``weights`` (normalised, by member)."""
    w = normalise_weights(weights, aligned.members)
    out: dict[str, dict] = {}
    for split in splits:
        data = aligned.splits[split]
        out[split] = binary_report(data.y, np.clip(data.probs @ w, 0.0, 1.0), float(threshold),
                                   curves=True)
    out["weights"] = dict(zip(aligned.members, map(float, w)))
    return out


def fit_method(aligned: AlignedPredictions, method: str, *, threshold: float | str = 0.5,
               seed: int = 0, progress: Callable[[int, int], None] | None = None,
               params: dict | None = None) -> dict:
    """Fit ``method`` on the validation predictions.

    Args:
        method: one of :data:`SLIDER_METHODS` (``stacking`` is not a weighted average).
        threshold: a fixed threshold or a rule (``best``, ``sensitivity:0.98``) chosen on val.
        progress: called with ``(done, total)``; a GA calls it after every generation.
        params: extra parameters of the combiner (e.g. a smaller GA for tests).

    Returns:
        ``{"method", "weights" (list, member order), "threshold", "val_weighted_f1"}``.

    Raises:
        ConfigError: an unknown method or parameter.
    """
    if method not in SLIDER_METHODS:
        raise ConfigError(f"The 'method' parameter must be one of {list(SLIDER_METHODS)} to set "
                          f"the sliders. Got {method!r} instead.")
    comb = make_combiner(method, **method_params(method, seed, threshold, {method: params or {}}))
    if isinstance(comb, GeneticSearch) and progress is not None:
        total = comb.restarts * comb.generations

        def callback(info: dict) -> None:
            progress(info["restart"] * comb.generations + info["generation"], total)
        comb.callback = callback
    val = aligned.splits["val"]
    comb.fit(val.probs, val.y)
    if progress is not None:
        progress(1, 1)
    return {"method": method, "weights": [float(x) for x in comb.weights_],
            "threshold": float(comb.threshold_), "val_weighted_f1": float(comb.val_score_)}


#: What the tables show where a value is not defined (the reason is in :data:`COLUMN_HELP`).
MISSING = "\u2014"

#: Column help of :func:`comparison_table` and :func:`paper_table`: what each value is, and why
#: a cell may show :data:`MISSING`.
COLUMN_HELP = {
    "threshold": "P(ALL) at or above which an image is called ALL, chosen on val by the rule.",
    "val wF1 (fitted)": "Weighted F1 on val, where the weights and threshold were fitted: "
                        "optimistic.",
    "test wF1": "Weighted F1 on the untouched test split: the honest number.",
    "test wF1 95% CI": "95% CI from a class-stratified subject bootstrap of the test split.",
    "test AUC": f"ROC AUC on test. {MISSING}: the paper does not report it (its GA row), or "
                "the test split has a single class.",
    "vs mean": f"Test weighted F1 minus equal weights' (same threshold rule), paired bootstrap. "
               f"{MISSING}: not defined for a single member (it is no weighting of the "
               "members), or no bootstrap was run (0 resamples).",
    "vs mean 95% CI": "95% CI of that difference, on the same bootstrap resamples.",
}


def _ci(ci: dict | None) -> str:
    if not ci:
        return MISSING
    return f"[{ci['low']:.3f}, {ci['high']:.3f}] by {ci['unit']}"


def _number(value, fmt: str) -> str:
    """``value`` formatted, or :data:`MISSING` for None and NaN (a text cell, so the table never
    shows ``None``)."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return MISSING
    return format(float(value), fmt)


def comparison_table(rows: list[dict], labels: dict[str, str] | None = None) -> pd.DataFrame:
    """:func:`~cnmc_core.ensemble.report.score_methods` rows as a display table: method,
    threshold, val and test weighted F1, the test CI (and its unit), per-class
    precision/recall, AUC, the difference with equal weights and its CI, and the weights (by
    member ``labels``).

    ``test AUC``, ``vs mean`` and the CI columns are text, with :data:`MISSING` where the value
    is not defined (a member alone has no difference with equal weights; a single-class test
    split no AUC); :data:`COLUMN_HELP` says why. The other numbers are floats.
    """
    labels = labels or {}
    out = []
    for r in rows:
        d = r.get("diff_vs_mean")
        w = r.get("weights")
        name = r["method"]
        if name.startswith("member:"):
            name = "only " + labels.get(name[7:], name[7:])
        else:
            name = METHOD_TITLES.get(name, name)
        out.append({
            "method": name,
            "threshold": r["threshold"],
            "val wF1 (fitted)": r["val_weighted_f1"],
            "test wF1": r["test_weighted_f1"],
            "test wF1 95% CI": _ci(r.get("test_ci")),
            "P hem": r["precision_hem"], "P all": r["precision_all"],
            "R hem": r["recall_hem"], "R all": r["recall_all"],
            "test AUC": _number(r["test_auc"], ".4f"),
            "vs mean": _number(None if not d else d["estimate"], "+.4f"),
            "vs mean 95% CI": MISSING if not d else f"[{d['low']:+.3f}, {d['high']:+.3f}]",
            "weights": "" if not w else ", ".join(f"{labels.get(k, k)} {v:.2f}"
                                                 for k, v in w.items()),
        })
    return pd.DataFrame(out)


def paper_table() -> pd.DataFrame:
    """The paper's reported ensembles (:data:`~cnmc_core.ensemble.report.PAPER_RESULTS`) with
    the column names of :func:`comparison_table`; ``test AUC`` is text, :data:`MISSING` where
    the paper does not report it (its GA row)."""
    return pd.DataFrame([{
        "method": p["method"], "protocol": p["protocol"], "test wF1": p["test_weighted_f1"],
        "P hem": p["precision_hem"], "P all": p["precision_all"], "R hem": p["recall_hem"],
        "R all": p["recall_all"], "test AUC": _number(p["test_auc"], ".2f"),
    } for p in PAPER_RESULTS])


def save_live_ensemble(aligned: AlignedPredictions, weights: Sequence[float], threshold: float,
                       *, name: str | None = None, seed: int = 0,
                       out_dir: str | os.PathLike | None = None,
                       comparison: list[dict] | None = None,
                       n_boot: int = 200, actor=None) -> Path:
    """Save the slider ensemble as ``<ensembles>/<name>/`` (method ``weighted``, the given
    weights and fixed threshold; fitted on nothing, scored on val and test).

    ``actor``: who saves it (see :func:`~cnmc_core.ensemble.store.save_ensemble`).

    Raises:
        AccessError: the actor may not save ensembles. ConfigError: bad weights or threshold.
            RunError: the folder exists. CnmcError: an unsafe name.
    """
    from cnmc_core.auth.roles import require

    actor = require(actor, "save_ensemble")
    w = normalise_weights(weights, aligned.members)
    t = float(threshold)
    if not 0.0 <= t <= 1.0:
        raise ConfigError(f"The threshold must be in [0, 1]; got {threshold!r}.")
    comb = WeightedAverage(weights=w.tolist(), threshold=t)
    val = aligned.splits["val"]
    comb.fit(val.probs, val.y)
    return save_ensemble(aligned, comb, method="weighted", threshold_rule=t, seed=seed,
                         out_dir=out_dir, ensemble_id=name or None, comparison=comparison,
                         n_boot=n_boot, actor=actor)


def saved_ensembles_of(ensemble_paths: dict[str, str | os.PathLike], members: Sequence[str]
                       ) -> list[dict]:
    """The saved ensembles made of exactly ``members`` (in any order), to load their weights into
    the sliders: ``[{"id", "method", "threshold", "weights" {member: w}}]`` in the order given.

    Args:
        ensemble_paths: ``{ensemble id: folder}`` of the completed ensembles to look through.
        members: the member ids chosen on the page.

    A folder whose ``config.json`` cannot be read, or that gives no weights, is left out: it is
    listed as damaged by the workspace listing, not here.
    """
    from cnmc_core.exceptions import CnmcError
    from cnmc_core.workspace.fileio import read_json

    wanted = sorted(members)
    out = []
    for eid, path in ensemble_paths.items():
        try:
            config = read_json(Path(path) / "config.json")
        except (OSError, CnmcError, UnicodeDecodeError):
            continue
        if not isinstance(config, dict) or sorted(map(str, config.get("members") or [])) != wanted:
            continue
        weights = config.get("weights")
        if not isinstance(weights, dict) or not weights:
            continue
        threshold = config.get("threshold", 0.5)
        out.append({"id": eid, "method": config.get("method"),
                    "threshold": float(threshold) if isinstance(threshold, (int, float)) else 0.5,
                    "weights": {str(k): float(v) for k, v in weights.items()}})
    return out
