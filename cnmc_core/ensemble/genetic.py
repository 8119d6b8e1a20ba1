"""The paper's genetic algorithm over ensemble weights, the whole population evaluated at once.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from cnmc_core.ensemble.combiners import Combiner, Fitness, to_simplex
from cnmc_core.exceptions import ConfigError

__all__ = ["GeneticWeights"]

# Memory guards of the GA (float64 history, float64 + bool population x images per generation):
# 800 MB and ~2.3 GB; the paper's GA uses 1,010 values and 100 x n_val.
_GA_MAX_HISTORY = 100_000_000
_GA_MAX_BLOCK = 250_000_000


class GeneticWeights(Combiner):
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
        fitness = Fitness(X, y, self.fitness_threshold)
        pop, m = self.population_size, X.shape[1]
        n_pairs = pop // 2
        rows = np.arange(pop)
        best_w, best_f = None, -np.inf
        history = np.full((self.restarts, self.generations + 1), np.nan)
        self.stopped_early_ = False
        for r, child in enumerate(np.random.SeedSequence(self.seed).spawn(self.restarts)):
            rng = np.random.default_rng(child)
            P = to_simplex(rng.random((pop, m)))
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
                children = to_simplex(children)
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
