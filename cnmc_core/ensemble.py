"""Ensembles of finished runs: alignment, combination methods, honest report, saved folders.

Three layers, used by the CLI (``python -m cnmc_core ensemble``) and the dashboard alike:

1. **Alignment.** :func:`load_predictions` reads a run (or ensemble) folder and validates it;
   :func:`align_runs` lines several up by ``(image_id, split)``. Runs scored on other images,
   splits, labels, protocols or datasets are refused with a message that says which runs differ
   and how: never a silent inner join.
2. **Combiners.** Estimator-like objects (``__init__`` stores parameters, ``fit(X_val, y_val)``
   validates them and sets ``weights_`` on the simplex and ``threshold_``, ``predict_proba(X)``
   applies them). ``X`` is ``(n_images, n_models)`` of P(ALL). Methods: ``mean``, ``weighted``
   (given weights), ``ga`` (the paper's genetic algorithm, whole population evaluated at once),
   ``greedy`` (Caruana et al. 2004 selection with replacement), ``dirichlet`` (random search),
   ``slsqp`` (log-loss over the simplex) and ``stacking`` (logistic regression).
3. **Report and artifacts.** :func:`compare_methods` fits each method on val and scores it on the
   untouched test split, with subject-bootstrap CIs and the paired difference against equal
   weights; :func:`save_ensemble` writes ``artifacts/ensembles/<id>/`` with the same files as a
   run, so anything that lists runs can show it and it can be a member of a new ensemble.
   :func:`build_ensemble` (the CLI's search) is tracked like a run: its folder, with a live
   status and the GA's history, exists from the start (:mod:`cnmc_core.ensemble_job`).
"""

from __future__ import annotations

import hashlib
import inspect
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from . import __version__
from .exceptions import CnmcError, ConfigError, RunError
from .fileio import atomic_write_csv, atomic_write_json, check_name, read_json
from .metrics import (
    _weighted_f1_pred,
    best_f1_threshold,
    binary_report,
    full_report,
    paired_bootstrap_diff,
    sensitivity_threshold,
    weighted_f1,
)
from .workspace import ensembles_dir

__all__ = [
    "PREDICTION_COLUMNS",
    "SPLITS",
    "METHODS",
    "PAPER_RESULTS",
    "MemberPredictions",
    "SplitData",
    "AlignedPredictions",
    "artifacts_root",
    "resolve_member",
    "load_predictions",
    "align_runs",
    "parse_threshold_rule",
    "choose_threshold",
    "MeanEnsemble",
    "WeightedAverage",
    "GeneticWeights",
    "GreedySelection",
    "DirichletSearch",
    "SLSQPWeights",
    "StackingEnsemble",
    "make_combiner",
    "compare_methods",
    "format_report",
    "save_ensemble",
    "build_ensemble",
]

PREDICTION_COLUMNS = ("image_id", "split", "y", "prob")
SPLITS = ("val", "test")

#: The paper's ensemble results (test, its own random split by image: leaky), for display.
PAPER_RESULTS = (
    {"method": "paper: average", "protocol": "paper (leaky: split by image)",
     "test_weighted_f1": 0.9503, "precision_hem": 0.9567, "precision_all": 0.9482,
     "recall_hem": 0.8894, "recall_all": 0.9805, "test_auc": 0.98},
    {"method": "paper: GA weights", "protocol": "paper (leaky: split by image)",
     "test_weighted_f1": 0.9552, "precision_hem": 0.9478, "precision_all": 0.9590,
     "recall_hem": 0.9138, "recall_all": 0.9756, "test_auc": None},
)


# =========================================================================== loading
@dataclass
class MemberPredictions:
    """One validated run or ensemble folder: its id, config and predictions."""

    name: str
    path: Path
    kind: str
    config: dict
    frame: pd.DataFrame
    threshold: float = 0.5


@dataclass
class SplitData:
    """One split of aligned predictions: ``probs[:, j]`` is member ``j``'s P(ALL)."""

    image_id: np.ndarray
    y: np.ndarray
    subject: np.ndarray | None
    probs: np.ndarray


@dataclass
class AlignedPredictions:
    """Members' predictions on the same images, in the first member's image order."""

    members: list[str]
    paths: list[Path]
    kinds: list[str]
    thresholds: list[float]
    split_protocol: str
    dataset_fingerprint: str
    splits: dict[str, SplitData] = field(default_factory=dict)


def artifacts_root(path: str | os.PathLike | None = None) -> Path:
    """The artifacts folder that ``path`` names, without creating anything: ``path`` itself, or
    its parent when it is a ``runs`` or ``ensembles`` folder; default ``$CNMC_ARTIFACTS`` or
    ``./artifacts``."""
    if path is None:
        return Path(os.environ.get("CNMC_ARTIFACTS", "artifacts"))
    path = Path(path)
    return path.parent if path.name in ("runs", "ensembles") else path


def resolve_member(ref: str | os.PathLike, runs_root: str | os.PathLike | None = None) -> Path:
    """The folder of a member given as a path, a run id or an ensemble id.

    A reference that is an existing folder is used as is; otherwise it must be a safe id found
    under ``<runs_root>/runs/`` or ``<runs_root>/ensembles/`` (``runs_root`` is the artifacts
    folder; default ``$CNMC_ARTIFACTS`` or ``./artifacts``), or directly under ``runs_root``.
    """
    path = Path(ref)
    if path.is_dir():
        return path
    name = check_name(str(ref), "run id")
    root = artifacts_root(runs_root)
    candidates = [root / "runs" / name, root / "ensembles" / name]
    if runs_root is not None:
        candidates.insert(0, Path(runs_root) / name)
    for cand in candidates:
        if cand.is_dir():
            return cand
    raise RunError(
        f"Run {str(ref)!r} not found: it is not a folder, and no run or ensemble of that id exists "
        f"in {', '.join(str(c.parent) for c in candidates)}."
    )


def load_predictions(run_dir: str | os.PathLike) -> MemberPredictions:
    """Read and validate a run or ensemble folder's ``config.json``, ``status.json`` and
    ``predictions.csv`` (columns ``image_id, split, y, prob`` and optionally ``subject``).

    Raises:
        RunError: a missing file (naming it; the run may not be finished), a run that is not
            completed, a missing column or config key, bad labels or probabilities, duplicates.
    """
    path = Path(run_dir)
    if not path.is_dir():
        raise RunError(f"{path} is not a run folder (it does not exist or is not a folder).")
    for fname in ("config.json", "status.json", "predictions.csv"):
        if not (path / fname).is_file():
            raise RunError(
                f"{path} has no {fname}: the run may not be finished (or the folder is not a run)."
            )
    try:
        config = read_json(path / "config.json")
        status = read_json(path / "status.json")
    except RunError:
        raise
    except CnmcError as exc:  # a malformed JSON file: same message, as a RunError
        raise RunError(str(exc)) from exc
    if not isinstance(config, dict) or not isinstance(status, dict):
        raise RunError(f"{path}: config.json and status.json must hold JSON objects.")
    kind = config.get("kind", "run")
    id_key = "ensemble_id" if kind == "ensemble" else "run_id"
    name = config.get(id_key) or path.name
    state = status.get("state")
    if state != "completed":
        raise RunError(
            f"{kind} {name!r} is {state!r}, not 'completed'; wait for it to finish or pick a "
            "completed run."
        )
    for key in ("split_protocol", "dataset_fingerprint"):
        if key not in config:
            raise RunError(f"{path / 'config.json'} has no {key!r}; it is needed to align runs.")
    try:
        frame = pd.read_csv(path / "predictions.csv", dtype={"image_id": str, "split": str,
                                                              "subject": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise RunError(f"{path / 'predictions.csv'} cannot be read as CSV ({exc}).") from exc
    _check_frame(frame, path / "predictions.csv")
    threshold = config.get("threshold")
    if not isinstance(threshold, (int, float)) or isinstance(threshold, bool):
        threshold = 0.5
    return MemberPredictions(str(name), path, str(kind), config, frame, float(threshold))


def _check_frame(frame: pd.DataFrame, where: Path) -> None:
    missing = [c for c in PREDICTION_COLUMNS if c not in frame.columns]
    if missing:
        raise RunError(
            f"{where} lacks the column(s) {missing}; expected {list(PREDICTION_COLUMNS)}."
        )
    bad_split = sorted(set(frame["split"].dropna()) - set(SPLITS))
    if bad_split or frame["split"].isna().any():
        raise RunError(f"{where}: split must be 'val' or 'test'; got {bad_split or ['(empty)']}.")
    if frame["image_id"].isna().any():
        raise RunError(f"{where}: {int(frame['image_id'].isna().sum())} rows have no image_id.")
    y = pd.to_numeric(frame["y"], errors="coerce")
    if y.isna().any() or not y.isin((0, 1)).all():
        raise RunError(f"{where}: y must be 0 (HEM) or 1 (ALL) on every row.")
    prob = pd.to_numeric(frame["prob"], errors="coerce")
    if prob.isna().any() or (prob < 0).any() or (prob > 1).any():
        raise RunError(f"{where}: prob must be a probability P(ALL) in [0, 1] on every row.")
    dup = frame.duplicated(["image_id", "split"])
    if dup.any():
        shown = ", ".join(frame.loc[dup, "image_id"].head(5))
        raise RunError(
            f"{where}: {int(dup.sum())} duplicated (image_id, split) rows, e.g. {shown}."
        )
    frame["y"] = y.astype(np.int8)
    frame["prob"] = prob.astype(np.float64)


def _fmt_ids(ids, limit: int = 5) -> str:
    ids = sorted(ids)
    more = f" and {len(ids) - limit:,} more" if len(ids) > limit else ""
    return ", ".join(ids[:limit]) + more


def align_runs(
    members: Sequence[MemberPredictions | str | os.PathLike],
    *,
    min_members: int = 2,
) -> AlignedPredictions:
    """Line up members' predictions by ``(image_id, split)``.

    Every member must have the first member's split protocol, dataset fingerprint, set of
    (image_id, split) pairs, label of every image and (where both give one) subject. Both
    ``val`` and ``test`` must be present.

    Raises:
        RunError: fewer than ``min_members`` members, a member given twice, or members that
            differ; the message lists every difference, e.g. "run 'B' has 2,130 test images,
            run 'A' 2,133; 3 test images of 'A' are missing from 'B': ...".
    """
    loaded = [m if isinstance(m, MemberPredictions) else load_predictions(m) for m in members]
    if len(loaded) < min_members:
        raise RunError(f"At least {min_members} runs are needed; got {len(loaded)}.")
    names = [m.name for m in loaded]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise RunError(f"Run(s) {twice} given more than once; give each member once.")
    ref = loaded[0]
    problems: list[str] = []
    for key, what in (("split_protocol", "split protocol"), ("dataset_fingerprint", "dataset")):
        values = {m.name: m.config[key] for m in loaded}
        if len(set(map(str, values.values()))) > 1:
            listed = ", ".join(f"{n!r} {v!r}" for n, v in values.items())
            problems.append(f"{what} differs ({key}): {listed}")
    splits: dict[str, SplitData] = {}
    for split in SPLITS:
        ref_rows = ref.frame[ref.frame["split"] == split]
        if ref_rows.empty:
            problems.append(f"{ref.kind} {ref.name!r} has no {split} images")
            continue
        ref_ids = ref_rows["image_id"].to_numpy(dtype=str)
        ref_set = set(ref_ids)
        ref_y = ref_rows["y"].to_numpy()
        probs = np.empty((ref_ids.size, len(loaded)))
        subject = None
        for j, m in enumerate(loaded):
            rows = m.frame[m.frame["split"] == split].set_index("image_id")
            if j > 0:
                ids = set(rows.index)
                if ids != ref_set:
                    gone, extra = ref_set - ids, ids - ref_set
                    msg = (f"{m.kind} {m.name!r} has {len(ids):,} {split} images, {ref.kind} "
                           f"{ref.name!r} {len(ref_set):,}")
                    if gone:
                        msg += (f"; {len(gone):,} {split} images of {ref.name!r} are missing from "
                                f"{m.name!r}: {_fmt_ids(gone)}")
                    if extra:
                        msg += (f"; {len(extra):,} {split} images of {m.name!r} are not in "
                                f"{ref.name!r}: {_fmt_ids(extra)}")
                    problems.append(msg)
                    continue
            rows = rows.loc[ref_ids]
            if j > 0:
                diff = rows["y"].to_numpy() != ref_y
                if diff.any():
                    pairs = zip(ref_ids[diff], ref_y[diff], rows["y"].to_numpy()[diff])
                    shown = ", ".join(f"{i} ({ref.name}: {a}, {m.name}: {b})"
                                      for i, a, b in list(pairs)[:5])
                    problems.append(f"{m.name!r} labels {int(diff.sum()):,} {split} images "
                                    f"differently from {ref.name!r}: {shown}")
            if "subject" in rows.columns and rows["subject"].notna().all():
                subj = rows["subject"].to_numpy(dtype=str)
                if subject is None:
                    subject = subj
                elif (subj != subject).any():
                    n_bad = int((subj != subject).sum())
                    problems.append(f"{m.name!r} gives other subjects than the members before it "
                                    f"for {n_bad:,} {split} images, e.g. "
                                    f"{_fmt_ids(ref_ids[subj != subject])}")
            probs[:, j] = rows["prob"].to_numpy()
        splits[split] = SplitData(ref_ids, ref_y.astype(np.int8), subject, probs)
    if problems:
        raise RunError(
            f"Cannot align {len(loaded)} runs ({', '.join(names)}): they must be scored on the "
            "same images, labels, split protocol and dataset; never silently intersected.\n- "
            + "\n- ".join(problems)
        )
    return AlignedPredictions(
        members=names,
        paths=[m.path for m in loaded],
        kinds=[m.kind for m in loaded],
        thresholds=[m.threshold for m in loaded],
        split_protocol=str(ref.config["split_protocol"]),
        dataset_fingerprint=str(ref.config["dataset_fingerprint"]),
        splits=splits,
    )


# =========================================================================== thresholds
def parse_threshold_rule(rule: float | str) -> tuple[str, float | None]:
    """Parse ``0.5`` / ``"0.5"``, ``"best"`` or ``"sensitivity:0.98"``.

    Returns:
        ``("fixed", t)``, ``("best", None)`` or ``("sensitivity", target)``.
    """
    msg = ("The 'threshold' parameter must be a number in [0, 1], 'best' or "
           f"'sensitivity:<target in (0, 1]>'. Got {rule!r} instead.")
    if isinstance(rule, bool):
        raise ConfigError(msg)
    if isinstance(rule, (int, float, np.floating)):
        if np.isfinite(rule) and 0 <= rule <= 1:
            return "fixed", float(rule)
        raise ConfigError(msg)
    if not isinstance(rule, str):
        raise ConfigError(msg)
    text = rule.strip().lower()
    if text == "best":
        return "best", None
    try:
        if text.startswith("sensitivity:"):
            target = float(text.split(":", 1)[1])
            if 0 < target <= 1:
                return "sensitivity", target
            raise ConfigError(msg)
        return parse_threshold_rule(float(text))
    except ValueError:
        raise ConfigError(msg) from None


def choose_threshold(y, prob, rule: float | str) -> float:
    """The threshold a rule gives on (y, prob): fixed, best weighted F1 (see
    :func:`~cnmc_core.metrics.best_f1_threshold`) or the largest one reaching a target
    sensitivity for ALL (:func:`~cnmc_core.metrics.sensitivity_threshold`)."""
    kind, value = parse_threshold_rule(rule)
    if kind == "fixed":
        return value
    if kind == "best":
        return best_f1_threshold(y, prob)[0]
    return sensitivity_threshold(y, prob, value)


# =========================================================================== combiners
def _check_X_y(X, y=None, n_models: int | None = None):
    X = np.asarray(X, dtype=np.float64) if not isinstance(X, np.ndarray) else X
    if X.ndim != 2:
        raise CnmcError(
            f"Expected 2D array X of shape (n_images, n_models), got {X.ndim}D array instead."
        )
    if X.shape[1] < 1 or X.shape[0] < 1:
        raise CnmcError(f"X needs at least one image and one model; got shape {X.shape}.")
    if n_models is not None and X.shape[1] != n_models:
        raise CnmcError(f"X has {X.shape[1]} models, but the ensemble was fitted with {n_models}.")
    X = X.astype(np.float64, copy=False)
    if not np.isfinite(X).all() or X.min() < 0 or X.max() > 1:
        raise CnmcError("X must hold probabilities P(ALL) in [0, 1] (no NaN).")
    if y is None:
        return X
    y = np.asarray(y)
    if y.ndim != 1 or y.size != X.shape[0]:
        raise CnmcError(
            f"y must be 1D with one label per row of X ({X.shape[0]}); got shape {y.shape}."
        )
    if not np.isin(y, (0, 1)).all():
        raise CnmcError("y must hold only 0 (HEM) and 1 (ALL).")
    return X, y.astype(np.int8)


def _simplex(w: np.ndarray) -> np.ndarray:
    """Rows of ``w`` clipped at 0 and scaled to sum to 1 (a zero row becomes uniform)."""
    w = np.clip(np.asarray(w, dtype=np.float64), 0.0, None)
    s = w.sum(axis=-1, keepdims=True)
    uniform = np.full_like(w, 1.0 / w.shape[-1])
    return np.where(s > 0, w / np.where(s > 0, s, 1.0), uniform)


class _Fitness:
    """Weighted F1 at a threshold of many weight vectors at once (the GA's inner loop).

    Uses the metrics module's count kernel without re-validating the data at every call.
    """

    def __init__(self, X: np.ndarray, y: np.ndarray, threshold: float = 0.5):
        self.XT = np.ascontiguousarray(X.T)
        self.y = y
        self.threshold = threshold
        self.n = y.size
        self.evaluations = 0

    def __call__(self, W: np.ndarray) -> np.ndarray:
        self.evaluations += W.shape[0]
        return _weighted_f1_pred(self.y, (W @ self.XT) >= self.threshold)


def _log_loss_many(P: np.ndarray, y: np.ndarray) -> np.ndarray:
    P = np.clip(P, 1e-7, 1 - 1e-7)
    return -np.mean(np.where(y.astype(bool), np.log(P), np.log1p(-P)), axis=-1)


def _check_param(owner: str, name: str, value, spec) -> None:
    """One uniform error for a parameter outside its declared set (sklearn style).

    ``spec`` is ``("int"|"float", low, high[, closed])`` with ``closed`` one of ``"both"``
    (default), ``"left"``, ``"right"``, ``"neither"``; ``("seed",)``; or ``("callable",)``.
    """
    kind = spec[0]
    if kind in ("int", "float"):
        low, high = spec[1], spec[2]
        closed = spec[3] if len(spec) > 3 else "both"
        types = (int, np.integer) if kind == "int" else (int, float, np.integer, np.floating)
        ok = isinstance(value, types) and not isinstance(value, bool)
        if ok and low is not None:
            ok = value >= low if closed in ("both", "left") else value > low
        if ok and high is not None:
            ok = value <= high if closed in ("both", "right") else value < high
        bounds = (f"{'[' if closed in ('both', 'left') else '('}"
                  f"{'-inf' if low is None else low}, {'inf' if high is None else high}"
                  f"{']' if closed in ('both', 'right') else ')'}")
        rule = f"{'an int' if kind == 'int' else 'a float'} in the range {bounds}"
    elif kind == "seed":
        ok = value is None or (isinstance(value, (int, np.integer)) and not isinstance(value, bool)
                               and value >= 0)
        rule = "a non-negative int or None"
    elif kind == "callable":
        ok = value is None or callable(value)
        rule = "a callable or None"
    else:  # pragma: no cover - a programming error in a constraint table
        raise AssertionError(kind)
    if not ok:
        raise ConfigError(
            f"The {name!r} parameter of {owner} must be {rule}. Got {value!r} instead."
        )


class _Combiner:
    """Shared fit/predict logic: subclasses implement ``_fit_weights(X, y)``."""

    _parameter_constraints: dict[str, tuple] = {}
    method = ""

    def __init__(self, threshold: float | str = 0.5):
        self.threshold = threshold

    def get_params(self) -> dict[str, Any]:
        """Constructor arguments (JSON-friendly except callbacks)."""
        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        return {k: getattr(self, k) for k in names}

    def _validate(self) -> None:
        for name, spec in self._parameter_constraints.items():
            _check_param(type(self).__name__, name, getattr(self, name), spec)
        parse_threshold_rule(self.threshold)

    def check_params(self, n_models: int | None = None) -> "_Combiner":
        """Validate the parameters (for ``n_models`` models, when given) without fitting, so a
        caller can refuse bad input before it creates anything.

        Raises:
            ConfigError: the message names the parameter, its rule and the value.
        """
        self._validate()
        return self

    def fit(self, X, y) -> "_Combiner":
        """Fit the weights on (X, y) (validation predictions), then choose ``threshold_`` there.

        Sets ``weights_`` (on the simplex, one per model), ``threshold_``, ``val_score_`` (weighted
        F1 at ``threshold_`` on the data fitted) and ``n_models_``.
        """
        self._validate()
        X, y = _check_X_y(X, y)
        self.n_models_ = X.shape[1]
        self._fit_weights(X, y)
        prob = self.predict_proba(X)
        self.threshold_ = choose_threshold(y, prob, self.threshold)
        self.val_score_ = weighted_f1(y, prob, self.threshold_)
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "weights_"):
            raise CnmcError(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with "
                "validation predictions before using this estimator."
            )

    def predict_proba(self, X) -> np.ndarray:
        """P(ALL) of the ensemble for each row of X: the weighted soft vote."""
        self._check_fitted()
        X = _check_X_y(X, n_models=self.n_models_)
        return np.average(X.T, axis=0, weights=self.weights_)

    def predict(self, X) -> np.ndarray:
        """1 (ALL) where ``predict_proba(X) >= threshold_``, else 0 (HEM)."""
        return (self.predict_proba(X) >= self.threshold_).astype(np.int8)


class MeanEnsemble(_Combiner):
    """Equal weights: the paper's plain average."""

    method = "mean"

    def _fit_weights(self, X, y) -> None:
        self.weights_ = np.full(X.shape[1], 1.0 / X.shape[1])


class WeightedAverage(_Combiner):
    """Given non-negative weights (normalised to sum to 1)."""

    method = "weighted"

    def __init__(self, weights: Sequence[float] = (), threshold: float | str = 0.5):
        self.weights = weights
        self.threshold = threshold

    def _checked_weights(self, n_models: int) -> np.ndarray:
        w = np.asarray(self.weights, dtype=np.float64)
        if w.ndim != 1 or w.size != n_models or not np.isfinite(w).all() or (w < 0).any() \
                or w.sum() <= 0:
            raise ConfigError(
                f"The 'weights' parameter of WeightedAverage must be {n_models} non-negative "
                f"numbers, not all zero (one per model). Got {list(np.ravel(w))!r} instead."
            )
        return w

    def check_params(self, n_models: int | None = None) -> "WeightedAverage":
        super().check_params(n_models)
        if n_models is not None:
            self._checked_weights(n_models)
        return self

    def _fit_weights(self, X, y) -> None:
        w = self._checked_weights(X.shape[1])
        self.weights_ = w / w.sum()


# Memory guards of the GA (float64 history, float64 + bool population x images per generation):
# 800 MB and ~2.3 GB; the paper's GA uses 1,010 values and 100 x n_val.
_GA_MAX_HISTORY = 100_000_000
_GA_MAX_BLOCK = 250_000_000


class GeneticWeights(_Combiner):
    """The paper's genetic algorithm over weight vectors on the simplex (paper 3.4.3.1).

    Real genes summing to 1 (initialised as U(0, 1) draws normalised); tournament selection of
    size ``tournament_size``; average crossover of consecutive parents with probability
    ``crossover_rate`` (both children become the parents' mean, renormalised); mutation with
    probability ``mutation_rate`` per individual: one random gene replaced by U(0, 1), then the
    vector renormalised (for real: the paper's code dropped that result); fitness = weighted F1
    on the fitting data at ``fitness_threshold``; the whole GA restarted ``restarts`` times and
    the best individual ever seen kept (ties keep the earlier one). The whole population is
    evaluated in one matrix product per generation.

    Args:
        elitism: number of best individuals copied unchanged into the next generation (0 as in
            the paper).
        seed: seeds everything (restart ``r`` uses the ``r``-th child of ``SeedSequence(seed)``).
        callback: called after every generation with a dict ``restart``, ``generation``,
            ``best_fitness`` (best so far over all restarts), ``generation_best``,
            ``mean_fitness``; returning ``False`` stops the search (the best so far is kept).

    Attributes (after fit): ``weights_``, ``threshold_``, ``best_fitness_``, ``history_``
    (restarts x (generations + 1) best fitness per generation), ``n_evaluations_``,
    ``stopped_early_``.
    """

    method = "ga"
    _parameter_constraints = {
        "population_size": ("int", 2, None),
        "generations": ("int", 0, None),
        "tournament_size": ("int", 1, None),
        "crossover_rate": ("float", 0.0, 1.0),
        "mutation_rate": ("float", 0.0, 1.0),
        "restarts": ("int", 1, None),
        "elitism": ("int", 0, None),
        "fitness_threshold": ("float", 0.0, 1.0),
        "seed": ("seed",),
        "callback": ("callable",),
    }

    def __init__(
        self,
        population_size: int = 100,
        generations: int = 100,
        tournament_size: int = 5,
        crossover_rate: float = 0.4,
        mutation_rate: float = 0.005,
        restarts: int = 10,
        elitism: int = 0,
        fitness_threshold: float = 0.5,
        seed: int | None = None,
        callback: Callable[[dict], Any] | None = None,
        threshold: float | str = 0.5,
    ):
        self.population_size = population_size
        self.generations = generations
        self.tournament_size = tournament_size
        self.crossover_rate = crossover_rate
        self.mutation_rate = mutation_rate
        self.restarts = restarts
        self.elitism = elitism
        self.fitness_threshold = fitness_threshold
        self.seed = seed
        self.callback = callback
        self.threshold = threshold

    def _validate(self) -> None:
        super()._validate()
        if self.elitism >= self.population_size:
            raise ConfigError(
                f"The 'elitism' parameter of GeneticWeights must be smaller than population_size "
                f"({self.population_size}). Got {self.elitism!r} instead."
            )
        cells = self.restarts * (self.generations + 1)
        if cells > _GA_MAX_HISTORY:
            raise ConfigError(
                f"GeneticWeights with restarts={self.restarts} x generations={self.generations} "
                f"keeps {cells:,} best-fitness values ({cells * 8 / 2**30:.1f} GiB); at most "
                f"{_GA_MAX_HISTORY:,} are allowed: lower restarts or generations."
            )

    def _fit_weights(self, X, y) -> None:
        # one generation scores the whole population on every image at once
        block = self.population_size * X.shape[0]
        if block > _GA_MAX_BLOCK:
            raise ConfigError(
                f"GeneticWeights with population_size={self.population_size} on {X.shape[0]:,} "
                f"images needs a {block:,}-value matrix per generation ({block * 9 / 2**30:.1f} GiB)"
                f"; at most {_GA_MAX_BLOCK:,} are allowed: lower population_size."
            )
        fitness = _Fitness(X, y, self.fitness_threshold)
        pop, m = self.population_size, X.shape[1]
        n_pairs = pop // 2
        rows = np.arange(pop)
        best_w, best_f = None, -np.inf
        history = np.full((self.restarts, self.generations + 1), np.nan)
        self.stopped_early_ = False
        for r, child in enumerate(np.random.SeedSequence(self.seed).spawn(self.restarts)):
            rng = np.random.default_rng(child)
            P = _simplex(rng.random((pop, m)))
            fit = fitness(P)
            for g in range(self.generations + 1):
                i = int(np.argmax(fit))
                history[r, g] = fit[i]
                if fit[i] > best_f:
                    best_f, best_w = float(fit[i]), P[i].copy()
                if g > 0 and self.callback is not None:
                    info = {"restart": r, "generation": g, "best_fitness": best_f,
                            "generation_best": float(fit[i]), "mean_fitness": float(fit.mean())}
                    if self.callback(info) is False:
                        self.stopped_early_ = True
                        break
                if g == self.generations:
                    break
                # Tournament selection: each slot's parent is the fittest of k random picks.
                picks = rng.integers(0, pop, size=(pop, self.tournament_size))
                parents = P[picks[rows, np.argmax(fit[picks], axis=1)]]
                # Average crossover on consecutive pairs, then renormalisation.
                children = parents.copy()
                cross = rng.random(n_pairs) < self.crossover_rate
                mean = (parents[0:2 * n_pairs:2] + parents[1:2 * n_pairs:2]) / 2.0
                children[0:2 * n_pairs:2][cross] = mean[cross]
                children[1:2 * n_pairs:2][cross] = mean[cross]
                # Mutation: one gene <- U(0, 1), then renormalised (kept, unlike the paper's code).
                mutate = np.flatnonzero(rng.random(pop) < self.mutation_rate)
                if mutate.size:
                    genes = rng.integers(0, m, size=mutate.size)
                    children[mutate, genes] = rng.random(mutate.size)
                children = _simplex(children)
                if self.elitism:
                    elite = np.argsort(-fit, kind="stable")[: self.elitism]
                    children[: self.elitism] = P[elite]
                P = children
                fit = fitness(P)
            if self.stopped_early_:
                break
        self.weights_ = best_w
        self.best_fitness_ = best_f
        self.history_ = history
        self.n_evaluations_ = fitness.evaluations


class GreedySelection(_Combiner):
    """Ensemble selection with replacement (Caruana et al., ICML 2004).

    Starting from the single best model, repeatedly add (with replacement) the model whose
    addition gives the best weighted F1 at ``fitness_threshold`` (ties: lower log-loss, then the
    lower index); keep the bag of the best iteration. Weights are the models' counts in the bag.
    """

    method = "greedy"
    _parameter_constraints = {
        "n_iter": ("int", 1, None),
        "fitness_threshold": ("float", 0.0, 1.0),
    }

    def __init__(self, n_iter: int = 50, fitness_threshold: float = 0.5,
                 threshold: float | str = 0.5):
        self.n_iter = n_iter
        self.fitness_threshold = fitness_threshold
        self.threshold = threshold

    def _fit_weights(self, X, y) -> None:
        fitness = _Fitness(X, y, self.fitness_threshold)
        m = X.shape[1]
        counts = np.zeros(m)
        eye = np.eye(m)
        best_counts, best_key = None, None
        for _ in range(self.n_iter):
            cand = (counts[None, :] + eye) / (counts.sum() + 1)
            f1 = fitness(cand)
            loss = _log_loss_many(cand @ fitness.XT, y)
            j = int(np.lexsort((np.arange(m), loss, -f1))[0])
            counts = counts + eye[j]
            key = (f1[j], -loss[j])
            if best_key is None or key > best_key:
                best_key, best_counts = key, counts.copy()
        self.counts_ = best_counts
        self.weights_ = best_counts / best_counts.sum()
        self.best_fitness_ = float(best_key[0])


class DirichletSearch(_Combiner):
    """Random search: ``n_samples`` weight vectors from Dirichlet(``alpha``), plus equal weights
    tried first; the best weighted F1 at ``fitness_threshold`` wins (ties: the earlier one)."""

    method = "dirichlet"
    _parameter_constraints = {
        "n_samples": ("int", 1, None),
        "alpha": ("float", 0.0, None, "right"),
        "fitness_threshold": ("float", 0.0, 1.0),
        "seed": ("seed",),
    }

    def __init__(self, n_samples: int = 10000, alpha: float = 1.0, fitness_threshold: float = 0.5,
                 seed: int | None = None, threshold: float | str = 0.5):
        self.n_samples = n_samples
        self.alpha = alpha
        self.fitness_threshold = fitness_threshold
        self.seed = seed
        self.threshold = threshold

    def _fit_weights(self, X, y) -> None:
        fitness = _Fitness(X, y, self.fitness_threshold)
        m = X.shape[1]
        rng = np.random.default_rng(self.seed)
        W = np.vstack([np.full((1, m), 1.0 / m), rng.dirichlet(np.full(m, float(self.alpha)),
                                                               self.n_samples)])
        f1 = np.concatenate([fitness(W[i:i + 1000]) for i in range(0, W.shape[0], 1000)])
        i = int(np.argmax(f1))
        self.weights_ = W[i]
        self.best_fitness_ = float(f1[i])


class SLSQPWeights(_Combiner):
    """Weights minimising the log-loss of the soft vote over the simplex (scipy SLSQP, from
    equal weights, analytic gradient)."""

    method = "slsqp"
    _parameter_constraints = {"max_iter": ("int", 1, None)}

    def __init__(self, max_iter: int = 200, threshold: float | str = 0.5):
        self.max_iter = max_iter
        self.threshold = threshold

    def _fit_weights(self, X, y) -> None:
        from scipy.optimize import minimize

        m = X.shape[1]
        yb = y.astype(np.float64)
        eps = 1e-7

        def loss(w):
            p = np.clip(X @ w, eps, 1 - eps)
            g = -(yb / p - (1 - yb) / (1 - p)) / y.size
            return float(-np.mean(yb * np.log(p) + (1 - yb) * np.log1p(-p))), X.T @ g

        res = minimize(loss, np.full(m, 1.0 / m), jac=True, method="SLSQP",
                       bounds=[(0.0, 1.0)] * m,
                       constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0,
                                     "jac": lambda w: np.ones_like(w)}],
                       options={"maxiter": self.max_iter})
        self.weights_ = _simplex(res.x)
        self.log_loss_ = float(res.fun)
        self.converged_ = bool(res.success)
        self.optimizer_message_ = str(res.message)


class StackingEnsemble(_Combiner):
    """Logistic regression on the members' logits (fitted on the validation predictions).

    Its predictions come from the fitted model, not from a weighted average: ``weights_`` is for
    display only (the positive coefficients, normalised; equal weights if none is positive).
    ``coef_`` and ``intercept_`` hold the model.
    """

    method = "stacking"
    _parameter_constraints = {"C": ("float", 0.0, None, "right")}

    def __init__(self, C: float = 1.0, threshold: float | str = 0.5):
        self.C = C
        self.threshold = threshold

    @staticmethod
    def _features(X: np.ndarray) -> np.ndarray:
        P = np.clip(X, 1e-6, 1 - 1e-6)
        return np.log(P) - np.log1p(-P)

    def _fit_weights(self, X, y) -> None:
        from sklearn.linear_model import LogisticRegression

        if np.unique(y).size < 2:
            raise CnmcError("Stacking needs both classes in the validation predictions.")
        model = LogisticRegression(C=float(self.C), max_iter=1000)
        model.fit(self._features(X), y)
        self.coef_ = model.coef_.ravel().copy()
        self.intercept_ = float(model.intercept_[0])
        positive = np.clip(self.coef_, 0, None)
        self.weights_ = _simplex(positive)

    def predict_proba(self, X) -> np.ndarray:
        """P(ALL) from the logistic regression (not a weighted average)."""
        self._check_fitted()
        X = _check_X_y(X, n_models=self.n_models_)
        z = self._features(X) @ self.coef_ + self.intercept_
        return 1.0 / (1.0 + np.exp(-z))


#: Combination methods by name.
METHODS: dict[str, type[_Combiner]] = {
    cls.method: cls
    for cls in (MeanEnsemble, WeightedAverage, GeneticWeights, GreedySelection, DirichletSearch,
                SLSQPWeights, StackingEnsemble)
}


def make_combiner(method: str, **params) -> _Combiner:
    """A combiner by method name; unknown names and parameters are refused with the options."""
    if method not in METHODS:
        raise ConfigError(
            f"The 'method' parameter must be one of {sorted(METHODS)}. Got {method!r} instead."
        )
    cls = METHODS[method]
    allowed = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ConfigError(
            f"{cls.__name__} got unexpected parameter(s) {unknown}; allowed: {allowed}."
        )
    return cls(**params)


# =========================================================================== report
_SEEDED = {"ga", "dirichlet"}


def _method_params(method: str, seed: int, threshold, params: dict | None) -> dict:
    p = dict((params or {}).get(method, {}))
    p.setdefault("threshold", threshold)
    if method in _SEEDED:
        p.setdefault("seed", seed)
    return p


def compare_methods(
    aligned: AlignedPredictions,
    methods: Sequence[str] = ("mean", "ga", "greedy", "dirichlet", "slsqp", "stacking"),
    *,
    threshold: float | str = 0.5,
    seed: int = 0,
    n_boot: int = 1000,
    params: dict[str, dict] | None = None,
    include_members: bool = True,
    on_fit: Callable[[str], Any] | None = None,
) -> tuple[list[dict], dict[str, _Combiner]]:
    """Fit each method on val, score it on test, and compare it with equal weights.

    Every row: ``method``, ``kind`` (``member``/``ensemble``), ``weights`` (by member),
    ``threshold``, ``val_weighted_f1`` (on the data it was fitted on: optimistic), test
    ``test_weighted_f1``, ``precision_hem/all``, ``recall_hem/all``, ``test_auc``, ``test_ci``
    (bootstrap CI of weighted F1, by subject when subjects are known) and ``diff_vs_mean``
    (paired bootstrap of test weighted F1 minus equal weights', same threshold rule), and
    ``note``. Member rows use each member's own threshold. ``on_fit(method)``, when given, is
    called before each method is fitted (progress for a tracked search).

    Returns:
        ``(rows, fitted)``: the table and the fitted combiners by method name.
    """
    val, test = aligned.splits["val"], aligned.splits["test"]
    subjects = test.subject
    rows: list[dict] = []

    def row(name, kind, val_prob, test_prob, t, weights, note=""):
        rep = binary_report(test.y, test_prob, t)
        ci = full_report(test.y, test_prob, t, subjects, n_boot=n_boot, seed=seed)["ci"] \
            if n_boot else None
        return {
            "method": name, "kind": kind,
            "weights": dict(zip(aligned.members, map(float, weights))) if weights is not None
            else None,
            "threshold": float(t),
            "val_weighted_f1": weighted_f1(val.y, val_prob, t),
            "test_weighted_f1": rep["weighted_f1"],
            "precision_hem": rep["hem"]["precision"], "precision_all": rep["all"]["precision"],
            "recall_hem": rep["hem"]["recall"], "recall_all": rep["all"]["recall"],
            "test_auc": rep["roc_auc"],
            "test_ci": None if ci is None else {
                "low": ci["weighted_f1"]["low"], "high": ci["weighted_f1"]["high"],
                "unit": ci["unit"], "n_units": ci["n_units"], "n_boot": ci["n_boot"]},
            "diff_vs_mean": None, "protocol": aligned.split_protocol, "note": note,
            "_test_prob": test_prob,
        }

    if include_members:
        for j, name in enumerate(aligned.members):
            rows.append(row(f"member:{name}", "member", val.probs[:, j], test.probs[:, j],
                            aligned.thresholds[j], None))
    fitted: dict[str, _Combiner] = {}
    mean = MeanEnsemble(threshold=threshold).fit(val.probs, val.y)
    mean_prob = mean.predict_proba(test.probs)
    for method in dict.fromkeys(methods):
        if on_fit is not None:
            on_fit(method)
        comb = mean if method == "mean" else make_combiner(
            method, **_method_params(method, seed, threshold, params)).fit(val.probs, val.y)
        fitted[method] = comb
        note = ("predictions from the fitted logistic regression; weights shown are its "
                "normalised positive coefficients" if method == "stacking" else "")
        r = row(method, "ensemble", comb.predict_proba(val.probs), comb.predict_proba(test.probs),
                comb.threshold_, comb.weights_, note)
        if n_boot:
            d = paired_bootstrap_diff(test.y, r["_test_prob"], mean_prob, subjects,
                                      threshold=(comb.threshold_, mean.threshold_),
                                      n_boot=n_boot, seed=seed)
            r["diff_vs_mean"] = {k: d[k] for k in ("estimate", "low", "high", "p_a_not_better")}
        rows.append(r)
    for r in rows:
        r.pop("_test_prob")
    return rows, fitted


def _f(x, nd=4) -> str:
    return "-" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.{nd}f}"


def format_report(rows: list[dict], *, chosen: str | None = None, paper: bool = True) -> str:
    """The comparison table as text (one line per row, the chosen method marked ``*``), with the
    paper's figures below, labelled with their protocol."""
    head = (f"{'method':<24} {'thr':>5} {'val wF1':>8} {'test wF1':>8} {'95% CI':>17} "
            f"{'P hem':>6} {'P all':>6} {'R hem':>6} {'R all':>6} {'AUC':>6} "
            f"{'vs mean [95% CI]':>26}  weights")
    lines = [head, "-" * len(head)]
    for r in rows:
        ci = r.get("test_ci")
        ci_txt = f"[{_f(ci['low'])}, {_f(ci['high'])}]" if ci else "-"
        d = r.get("diff_vs_mean")
        d_txt = f"{d['estimate']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}]" if d else "-"
        w = r.get("weights")
        w_txt = " ".join(f"{k}={v:.3f}" for k, v in w.items()) if w else ""
        name = r["method"] + (" *" if r["method"] == chosen else "")
        lines.append(
            f"{name[:24]:<24} {_f(r['threshold'], 3):>5} {_f(r['val_weighted_f1']):>8} "
            f"{_f(r['test_weighted_f1']):>8} {ci_txt:>17} {_f(r['precision_hem'], 3):>6} "
            f"{_f(r['precision_all'], 3):>6} {_f(r['recall_hem'], 3):>6} "
            f"{_f(r['recall_all'], 3):>6} {_f(r['test_auc'], 3):>6} {d_txt:>26}  {w_txt}"
        )
    notes = sorted({r["note"] for r in rows if r.get("note")})
    units = {r["test_ci"]["unit"] for r in rows if r.get("test_ci")}
    if rows:
        lines.append(f"protocol: {rows[0]['protocol']}; val wF1 is measured on the data each "
                     "method was fitted on (optimistic); test is untouched"
                     + (f"; CIs resample {'/'.join(sorted(units))}s" if units else ""))
    for note in notes:
        lines.append(f"note: stacking: {note}" if "logistic" in note else f"note: {note}")
    if paper:
        for p in PAPER_RESULTS:
            lines.append(
                f"{p['method']:<24} {'0.5':>5} {'-':>8} {p['test_weighted_f1']:>8.4f} {'-':>17} "
                f"{p['precision_hem']:>6.3f} {p['precision_all']:>6.3f} {p['recall_hem']:>6.3f} "
                f"{p['recall_all']:>6.3f} {_f(p['test_auc'], 3):>6} {'-':>26}  "
                f"(the paper's figure; protocol {p['protocol']})"
            )
    return "\n".join(lines)


# =========================================================================== artifacts
def _ensemble_id(aligned: AlignedPredictions, method: str, seed: int, threshold) -> str:
    digest = hashlib.sha1(
        "|".join(map(str, [*aligned.members, method, seed, threshold, time.time_ns()])).encode()
    ).hexdigest()[:6]
    return f"ens-{method}-{time.strftime('%Y%m%d-%H%M%S')}-{digest}"


def _base_config(aligned: AlignedPredictions, combiner: _Combiner, *, eid: str, method: str,
                 threshold_rule: float | str, seed: int, created: float) -> dict:
    """The part of an ensemble's ``config.json`` known before it is fitted."""
    return {
        "kind": "ensemble", "ensemble_id": eid, "run_id": eid, "model": f"ensemble:{method}",
        "members": list(aligned.members), "member_paths": [str(p) for p in aligned.paths],
        "member_kinds": list(aligned.kinds), "method": method,
        "threshold_rule": str(threshold_rule),
        "split_protocol": aligned.split_protocol,
        "dataset_fingerprint": aligned.dataset_fingerprint, "seed": seed,
        "params": {k: v for k, v in combiner.get_params().items() if k != "callback"},
        "fitted_on": "val", "created": created,  # epoch seconds, as runs
        "versions": {"cnmc_core": __version__, "numpy": np.__version__, "pandas": pd.__version__},
    }


def _fitted_config(aligned: AlignedPredictions, combiner: _Combiner, base: dict) -> dict:
    """``base`` with the fitted weights by member, the threshold and any stacking model."""
    config = dict(base)
    config["weights"] = dict(zip(aligned.members, map(float, combiner.weights_)))
    config["threshold"] = float(combiner.threshold_)
    if isinstance(combiner, StackingEnsemble):
        config["stacking"] = {"coef": combiner.coef_.tolist(), "intercept": combiner.intercept_,
                              "features": "logit of each member's P(ALL)",
                              "note": "weights are display only; predictions come from the LR"}
    return config


def _ensemble_outputs(aligned: AlignedPredictions, combiner: _Combiner, *, method: str, seed: int,
                      comparison: list[dict] | None, n_boot: int) -> tuple[pd.DataFrame, dict]:
    """A fitted ensemble's ``predictions.csv`` frame and ``metrics.json`` content."""
    frames, metrics = [], {}
    for split in SPLITS:
        data = aligned.splits[split]
        prob = combiner.predict_proba(data.probs)
        frame = pd.DataFrame({"image_id": data.image_id, "split": split, "y": data.y,
                              "prob": prob})
        if data.subject is not None:
            frame["subject"] = data.subject
        frames.append(frame)
        metrics[split] = full_report(data.y, prob, combiner.threshold_, data.subject,
                                     n_boot=n_boot, seed=seed)
    metrics["method"] = method
    metrics["comparison"] = comparison or []
    metrics["paper_reference"] = list(PAPER_RESULTS)
    return pd.concat(frames, ignore_index=True), metrics


def save_ensemble(
    aligned: AlignedPredictions,
    combiner: _Combiner,
    *,
    method: str,
    threshold_rule: float | str,
    seed: int,
    out_dir: str | os.PathLike | None = None,
    ensemble_id: str | None = None,
    comparison: list[dict] | None = None,
    n_boot: int = 1000,
) -> Path:
    """Write a fitted ensemble as ``<out_dir>/<ensemble_id>/`` with a run's files.

    ``config.json`` (kind, ensemble_id, members, member paths, method, weights by member,
    threshold and its rule, split protocol, dataset fingerprint, seed, parameters, stacking
    coefficients), ``status.json`` (completed), ``predictions.csv`` (``image_id, split, y, prob,
    subject``) and ``metrics.json`` (``val``/``test`` full reports, plus ``comparison`` and the
    paper's figures). The folder is built under a temporary name and renamed into place, so a
    reader never sees half an ensemble. (A search, :func:`build_ensemble`, writes the same files
    into a folder that exists, with a live status, from its start.)

    Raises:
        RunError: the ensemble folder already exists; CnmcError: an unsafe ``ensemble_id``.
    """
    root = Path(out_dir) if out_dir is not None else ensembles_dir()
    root.mkdir(parents=True, exist_ok=True)
    eid = check_name(ensemble_id or _ensemble_id(aligned, method, seed, threshold_rule),
                     "ensemble id")
    target = root / eid
    if target.exists():
        raise RunError(f"{target} already exists; choose another ensemble id.")
    created = time.time()
    config = _fitted_config(aligned, combiner, _base_config(
        aligned, combiner, eid=eid, method=method, threshold_rule=threshold_rule, seed=seed,
        created=created))
    predictions, metrics = _ensemble_outputs(aligned, combiner, method=method, seed=seed,
                                             comparison=comparison, n_boot=n_boot)
    tmp = Path(tempfile.mkdtemp(prefix=f".{eid}.", suffix=".tmp", dir=root))
    try:
        atomic_write_json(tmp / "config.json", config)
        atomic_write_csv(tmp / "predictions.csv", predictions)
        atomic_write_json(tmp / "metrics.json", metrics)
        atomic_write_json(tmp / "status.json", {"state": "completed", "kind": "ensemble",
                                                "created": created, "heartbeat": created,
                                                "error": None})
        os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def build_ensemble(
    members: Sequence[str | os.PathLike],
    *,
    method: str = "ga",
    threshold: float | str = 0.5,
    seed: int = 0,
    out_dir: str | os.PathLike | None = None,
    runs_root: str | os.PathLike | None = None,
    ensemble_id: str | None = None,
    compare: Sequence[str] | None = ("mean", "ga", "greedy", "dirichlet", "slsqp", "stacking"),
    params: dict[str, dict] | None = None,
    n_boot: int = 1000,
    on_start: Callable[[Path], Any] | None = None,
) -> tuple[Path, list[dict]]:
    """Resolve, load and align ``members``, fit ``method`` on val, compare, save: a tracked
    search (see :mod:`cnmc_core.ensemble_job`).

    Bad arguments and members that do not align are refused before anything is written. Then
    ``<out_dir>/<ensemble_id>/`` is created at once with ``status.json`` ``running`` (pid,
    heartbeat, progress), ``on_start(folder)`` is called, the GA logs its generations to
    ``history.jsonl``, and the status ends ``completed`` (or ``failed`` with the error, which is
    re-raised); a killed search reads as ``failed`` through
    :func:`cnmc_core.runs.effective_status`.

    Returns:
        ``(ensemble folder, comparison rows)``.

    Raises:
        ConfigError: a bad method, threshold or parameter; RunError: members that cannot be
            aligned, or an ensemble folder that exists; CnmcError: an unsafe ``ensemble_id``.
    """
    from .ensemble_job import run_search

    return run_search(members, method=method, threshold=threshold, seed=seed, out_dir=out_dir,
                      runs_root=runs_root, ensemble_id=ensemble_id, compare=compare,
                      params=params, n_boot=n_boot, on_start=on_start)
