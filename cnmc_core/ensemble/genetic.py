"""Genetic algorithms over ensemble weights, the whole population scored at once.

- :class:`GeneticWeights` (``ga``): the paper's GA with the operators of its notebook
  (``7. Ensemble.ipynb`` of Baldi & Cioffo's repository), one change disclosed: a mutated child
  is renormalised (the notebook computes the renormalised vector and drops it, so its mutated
  weights may leave the simplex).
- :class:`MeanCrossoverGA` (``ga_mean``): this project's earlier variant (whole-vector average
  crossover, mutation of any child), kept selectable under its own name.

Both share :class:`GeneticSearch`: U(0, 1) genes normalised to sum to 1, tournament selection,
restarts with the best individual ever seen kept, progress callbacks, memory guards.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from cnmc_core.ensemble.combiners import Combiner, Fitness, to_simplex
from cnmc_core.exceptions import ConfigError

__all__ = ["GA_METHODS", "GeneticSearch", "GeneticWeights", "MeanCrossoverGA"]

#: The genetic algorithms by method name (the ``--ga-*`` settings apply to each).
GA_METHODS = ("ga", "ga_mean")

# Memory guards of the GA (float64 history, float64 + bool population x images per generation):
# 800 MB and ~2.3 GB; the paper's GA uses 1,010 values and 100 x n_val.
_GA_MAX_HISTORY = 100_000_000
_GA_MAX_BLOCK = 250_000_000

_COMMON_CONSTRAINTS = {
    "population_size": ("int", 2, None),
    "generations": ("int", 1, None),
    "tournament_size": ("int", 1, None),
    "crossover_rate": ("float", 0.0, 1.0),
    "mutation_rate": ("float", 0.0, 1.0),
    "restarts": ("int", 1, None),
    "elitism": ("int", 0, None),
    "fitness_threshold": ("float", 0.0, 1.0),
    "seed": ("seed",),
    "callback": ("callable",),
}


class GeneticSearch(Combiner):
    """The loop both genetic algorithms share; subclasses give the breeding operators
    (:meth:`_offspring`) and the fitness comparison (``strict_fitness``).

    Each restart draws a population of U(0, 1) genes normalised to sum to 1 and scores it;
    then, ``generations`` times: tournament selection (each parent is the fittest of
    ``tournament_size`` picks drawn with replacement, ties to the first pick), offspring from
    consecutive pairs of parents (with an odd population the last parent passes unchanged),
    ``elitism`` best individuals copied over (0: none, as the paper), and the new population
    scored. The best individual ever seen is kept (strictly better only: ties keep the earlier
    one). So ``generations=100`` scores 101 populations per restart: the initial one and 100
    bred ones (the paper's notebook, asked for 100 generations, scores 100 and breeds a last
    one it never scores).

    Fitness is weighted F1 on the fitting data of the weighted average thresholded at
    ``fitness_threshold``: ALL where the average is above it (``strict_fitness``, the paper's
    ``np.rint`` at 0.5: a tie is HEM) or at/above it. The fitted ensemble is then reported like
    every method: at its ``threshold`` rule, ALL where ``prob >= threshold_``.

    Attributes (after fit): ``weights_``, ``threshold_``, ``best_fitness_``, ``history_``
    (restarts x (generations + 1) best fitness per population), ``n_evaluations_``,
    ``stopped_early_``.
    """

    strict_fitness = True
    _parameter_constraints = _COMMON_CONSTRAINTS

    def check_params(self, n_models: int | None = None,
                     n_images: int | None = None) -> "GeneticSearch":
        """Validate the parameters, and with ``n_images`` the memory one generation needs.

        Raises:
            ConfigError: a parameter out of its range, elitism not below the population,
                restarts x generations or population x images above the memory guards.
        """
        super().check_params(n_models, n_images)
        if n_images is not None:
            self._check_block(n_images)
        return self

    def _validate(self) -> None:
        super()._validate()
        name = type(self).__name__
        if self.elitism >= self.population_size:
            raise ConfigError(
                f"The 'elitism' parameter of {name} must be smaller than population_size "
                f"({self.population_size}). Got {self.elitism!r} instead."
            )
        cells = self.restarts * (self.generations + 1)
        if cells > _GA_MAX_HISTORY:
            raise ConfigError(
                f"{name} with restarts={self.restarts} x generations={self.generations} "
                f"keeps {cells:,} best-fitness values ({cells * 8 / 2**30:.1f} GiB); at most "
                f"{_GA_MAX_HISTORY:,} are allowed: lower restarts or generations."
            )

    def _check_block(self, n_images: int) -> None:
        # one generation scores the whole population on every image at once
        block = self.population_size * n_images
        if block > _GA_MAX_BLOCK:
            raise ConfigError(
                f"{type(self).__name__} with population_size={self.population_size} on "
                f"{n_images:,} images needs a {block:,}-value matrix per generation "
                f"({block * 9 / 2**30:.1f} GiB); at most {_GA_MAX_BLOCK:,} are allowed: lower "
                "population_size."
            )

    def _offspring(self, rng: np.random.Generator, parents: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _fit_weights(self, X, y) -> None:
        self._check_block(X.shape[0])
        fitness = Fitness(X, y, self.fitness_threshold, strict=self.strict_fitness)
        pop, m = self.population_size, X.shape[1]
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
                # Tournament selection: each slot's parent is the fittest of k random picks
                # (argmax takes the first of equal fitnesses, as the notebook's strict '>').
                picks = rng.integers(0, pop, size=(pop, self.tournament_size))
                parents = P[picks[rows, np.argmax(fit[picks], axis=1)]]
                children = self._offspring(rng, parents)
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


class GeneticWeights(GeneticSearch):
    """The paper's genetic algorithm over weight vectors on the simplex (paper 3.4.3.1), with
    the operators of its notebook, vectorised over the population.

    - crossover: each consecutive pair of parents crosses with probability ``crossover_rate``;
      ``crossover_genes`` gene positions are drawn (with replacement, so fewer may be
      distinct) and set, in both children, to the parents' mean there; the other genes stay
      each parent's own; each child is renormalised. A pair that does not cross passes as is.
    - mutation: only the two children of a crossover, each with probability
      ``mutation_rate``: one random gene replaced by U(0, 1), then the child renormalised. The
      renormalisation is this implementation's one change to the notebook, which computes the
      renormalised vector and discards it, so its mutated weights may not sum to 1.
    - fitness: weighted F1 of ``np.rint`` of the weighted average, i.e. ALL only where the
      average is strictly above ``fitness_threshold`` (0.5); no elitism; 10 restarts.

    See :class:`GeneticSearch` for the loop, the callback and the fitted attributes.

    Args:
        population_size, generations, tournament_size, crossover_rate, crossover_genes,
            mutation_rate, restarts: the paper's 100, 100, 5, 0.4, 2, 0.005, 10 by default.
        elitism: number of best individuals copied unchanged into the next generation (0 as in
            the paper).
        fitness_threshold: the fitness's threshold (ALL above it).
        seed: seeds everything (restart ``r`` uses the ``r``-th child of ``SeedSequence(seed)``).
        callback: called after every generation with a dict ``restart``, ``generation``,
            ``best_fitness`` (best so far over all restarts), ``generation_best``,
            ``mean_fitness``; returning ``False`` stops the search (the best so far is kept).
        threshold: the decision threshold rule of the fitted ensemble (0.5, ``best``,
            ``sensitivity:<target>``), chosen on the fitting data.
    """

    method = "ga"
    strict_fitness = True
    _parameter_constraints = {**_COMMON_CONSTRAINTS, "crossover_genes": ("int", 1, None)}

    def __init__(
        self,
        population_size: int = 100,
        generations: int = 100,
        tournament_size: int = 5,
        crossover_rate: float = 0.4,
        crossover_genes: int = 2,
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
        self.crossover_genes = crossover_genes
        self.mutation_rate = mutation_rate
        self.restarts = restarts
        self.elitism = elitism
        self.fitness_threshold = fitness_threshold
        self.seed = seed
        self.callback = callback
        self.threshold = threshold

    def _offspring(self, rng: np.random.Generator, parents: np.ndarray) -> np.ndarray:
        pop, m = parents.shape
        n_pairs = pop // 2
        children = parents.copy()
        cross = np.flatnonzero(rng.random(n_pairs) < self.crossover_rate)
        if cross.size == 0:
            return children
        a, b = parents[2 * cross], parents[2 * cross + 1]
        genes = rng.integers(0, m, size=(cross.size, self.crossover_genes))
        mask = np.zeros((cross.size, m), dtype=bool)
        mask[np.arange(cross.size)[:, None], genes] = True
        mean = (a + b) / 2.0
        kids = to_simplex(np.concatenate([np.where(mask, mean, a), np.where(mask, mean, b)]))
        mutate = np.flatnonzero(rng.random(kids.shape[0]) < self.mutation_rate)
        if mutate.size:
            kids[mutate, rng.integers(0, m, size=mutate.size)] = rng.random(mutate.size)
            kids[mutate] = to_simplex(kids[mutate])  # renormalised: the disclosed change
        children[2 * cross] = kids[: cross.size]
        children[2 * cross + 1] = kids[cross.size:]
        return children


class MeanCrossoverGA(GeneticSearch):
    """This project's earlier GA variant (``ga_mean``), kept for comparison with the paper's.

    Differs from :class:`GeneticWeights` in its operators and fitness threshold: a crossing
    pair's two children both become the parents' whole-vector mean; mutation may hit any child
    (probability ``mutation_rate`` each: one gene replaced by U(0, 1)); every child is
    renormalised; fitness predicts ALL where the weighted average is at or above
    ``fitness_threshold`` (as the reports do). Same parameters otherwise (no
    ``crossover_genes``); see :class:`GeneticSearch` for the loop and attributes.
    """

    method = "ga_mean"
    strict_fitness = False

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

    def _offspring(self, rng: np.random.Generator, parents: np.ndarray) -> np.ndarray:
        pop, m = parents.shape
        n_pairs = pop // 2
        children = parents.copy()
        cross = rng.random(n_pairs) < self.crossover_rate
        mean = (parents[0:2 * n_pairs:2] + parents[1:2 * n_pairs:2]) / 2.0
        children[0:2 * n_pairs:2][cross] = mean[cross]
        children[1:2 * n_pairs:2][cross] = mean[cross]
        mutate = np.flatnonzero(rng.random(pop) < self.mutation_rate)
        if mutate.size:
            genes = rng.integers(0, m, size=mutate.size)
            children[mutate, genes] = rng.random(mutate.size)
        return to_simplex(children)
