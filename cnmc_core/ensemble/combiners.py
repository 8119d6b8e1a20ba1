"""Combiners: estimator-like objects (``__init__`` stores parameters, ``fit(X_val, y_val)``
validates them and sets ``weights_`` on the simplex and ``threshold_``, ``predict_proba(X)``
applies them). ``X`` is ``(n_images, n_models)`` of P(ALL). Also the threshold rules
(``0.5``, ``best``, ``sensitivity:0.98``).
"""

from __future__ import annotations

import inspect
from typing import Any, Sequence

import numpy as np

from cnmc_core.exceptions import CnmcError, ConfigError
from cnmc_core.metrics.classification import weighted_f1, weighted_f1_pred
from cnmc_core.metrics.curves import best_f1_threshold, sensitivity_threshold
from cnmc_core.validation import check_param

__all__ = [
    "parse_threshold_rule", "choose_threshold", "to_simplex", "Fitness", "Combiner",
    "MeanEnsemble", "WeightedAverage", "GreedySelection", "DirichletSearch", "SLSQPWeights",
    "StackingEnsemble", "logit_features", "stacking_proba",
]


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


def to_simplex(w: np.ndarray) -> np.ndarray:
    """Rows of ``w`` clipped at 0 and scaled to sum to 1 (a zero row becomes uniform)."""
    w = np.clip(np.asarray(w, dtype=np.float64), 0.0, None)
    s = w.sum(axis=-1, keepdims=True)
    uniform = np.full_like(w, 1.0 / w.shape[-1])
    return np.where(s > 0, w / np.where(s > 0, s, 1.0), uniform)


class Fitness:
    """Weighted F1 at a threshold of many weight vectors at once (the GA's inner loop).

    Uses the metrics module's count kernel without re-validating the data at every call.

    Args:
        X: (n_images, n_models) P(ALL) of each member.
        y: (n_images,) labels.
        threshold: an image is ALL where the weighted average is at or above it, or, with
            ``strict``, strictly above it (the paper's ``np.rint`` at 0.5: a tie is HEM).
    """

    def __init__(self, X: np.ndarray, y: np.ndarray, threshold: float = 0.5,
                 strict: bool = False):
        self.XT = np.ascontiguousarray(X.T)
        self.y = y
        self.threshold = threshold
        self.strict = strict
        self.n = y.size
        self.evaluations = 0

    def __call__(self, W: np.ndarray) -> np.ndarray:
        """(P,) weighted F1 of the (P, n_models) weight vectors ``W``."""
        self.evaluations += W.shape[0]
        scores = W @ self.XT
        pred = scores > self.threshold if self.strict else scores >= self.threshold
        return weighted_f1_pred(self.y, pred)


def _log_loss_many(P: np.ndarray, y: np.ndarray) -> np.ndarray:
    P = np.clip(P, 1e-7, 1 - 1e-7)
    return -np.mean(np.where(y.astype(bool), np.log(P), np.log1p(-P)), axis=-1)


class Combiner:
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
            check_param(type(self).__name__, name, getattr(self, name), spec)
        parse_threshold_rule(self.threshold)

    def check_params(self, n_models: int | None = None,
                     n_images: int | None = None) -> "Combiner":
        """Validate the parameters (for ``n_models`` models and ``n_images`` fitting images,
        when given) without fitting, so a caller can refuse bad input before it creates
        anything.

        Raises:
            ConfigError: the message names the parameter, its rule and the value.
        """
        self._validate()
        return self

    def fit(self, X, y) -> "Combiner":
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


class MeanEnsemble(Combiner):
    """Equal weights: the paper's plain average."""

    method = "mean"

    def _fit_weights(self, X, y) -> None:
        self.weights_ = np.full(X.shape[1], 1.0 / X.shape[1])


class WeightedAverage(Combiner):
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

    def check_params(self, n_models: int | None = None,
                     n_images: int | None = None) -> "WeightedAverage":
        """As :meth:`Combiner.check_params`, and one non-negative weight per model."""
        super().check_params(n_models, n_images)
        if n_models is not None:
            self._checked_weights(n_models)
        return self

    def _fit_weights(self, X, y) -> None:
        w = self._checked_weights(X.shape[1])
        self.weights_ = w / w.sum()


class GreedySelection(Combiner):
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
        fitness = Fitness(X, y, self.fitness_threshold)
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


class DirichletSearch(Combiner):
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
        fitness = Fitness(X, y, self.fitness_threshold)
        m = X.shape[1]
        rng = np.random.default_rng(self.seed)
        W = np.vstack([np.full((1, m), 1.0 / m), rng.dirichlet(np.full(m, float(self.alpha)),
                                                               self.n_samples)])
        f1 = np.concatenate([fitness(W[i:i + 1000]) for i in range(0, W.shape[0], 1000)])
        i = int(np.argmax(f1))
        self.weights_ = W[i]
        self.best_fitness_ = float(f1[i])


class SLSQPWeights(Combiner):
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
        self.weights_ = to_simplex(res.x)
        self.log_loss_ = float(res.fun)
        self.converged_ = bool(res.success)
        self.optimizer_message_ = str(res.message)


def logit_features(X: np.ndarray) -> np.ndarray:
    """The stacking model's features: the logit of each member's P(ALL), clipped to
    [1e-6, 1 - 1e-6] first so that a 0 or 1 stays finite."""
    P = np.clip(np.asarray(X, dtype=np.float64), 1e-6, 1 - 1e-6)
    return np.log(P) - np.log1p(-P)


def stacking_proba(X: np.ndarray, coef, intercept: float) -> np.ndarray:
    """P(ALL) of a stacking ensemble: the sigmoid of its logistic regression on
    :func:`logit_features` of the members' P(ALL) ``X`` (n_images, n_members). The one
    implementation: :class:`StackingEnsemble` and :func:`cnmc_core.predict.score_member` (a saved
    ensemble's ``coef``/``intercept``) both call it."""
    z = logit_features(X) @ np.asarray(coef, dtype=np.float64) + float(intercept)
    return 1.0 / (1.0 + np.exp(-z))


class StackingEnsemble(Combiner):
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

    def _fit_weights(self, X, y) -> None:
        from sklearn.linear_model import LogisticRegression

        if np.unique(y).size < 2:
            raise CnmcError("Stacking needs both classes in the validation predictions.")
        model = LogisticRegression(C=float(self.C), max_iter=1000)
        model.fit(logit_features(X), y)
        self.coef_ = model.coef_.ravel().copy()
        self.intercept_ = float(model.intercept_[0])
        positive = np.clip(self.coef_, 0, None)
        self.weights_ = to_simplex(positive)

    def predict_proba(self, X) -> np.ndarray:
        """P(ALL) from the logistic regression (not a weighted average)."""
        self._check_fitted()
        X = _check_X_y(X, n_models=self.n_models_)
        return stacking_proba(X, self.coef_, self.intercept_)
