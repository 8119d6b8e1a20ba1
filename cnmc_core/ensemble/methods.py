"""The combination methods by name, and the parameters each gets from a search.
"""

from __future__ import annotations

import inspect

from cnmc_core.ensemble.combiners import (
    Combiner,
    DirichletSearch,
    GreedySelection,
    MeanEnsemble,
    SLSQPWeights,
    StackingEnsemble,
    WeightedAverage,
)
from cnmc_core.ensemble.genetic import GA_METHODS, GeneticWeights, MeanCrossoverGA
from cnmc_core.exceptions import ConfigError

__all__ = ["COMBINERS", "DEFAULT_METHODS", "make_combiner", "method_params"]

#: Combination methods by name.
COMBINERS: dict[str, type[Combiner]] = {
    cls.method: cls
    for cls in (MeanEnsemble, WeightedAverage, GeneticWeights, MeanCrossoverGA, GreedySelection,
                DirichletSearch, SLSQPWeights, StackingEnsemble)
}


#: The methods a search fits and reports by default (``weighted`` needs weights given).
DEFAULT_METHODS = ("mean", "ga", "ga_mean", "greedy", "dirichlet", "slsqp", "stacking")


def make_combiner(method: str, **params) -> Combiner:
    """A combiner by method name, built with ``params``.

    Raises:
        ConfigError: an unknown method or parameter (the message lists the allowed ones).
    """
    if method not in COMBINERS:
        raise ConfigError(
            f"The 'method' parameter must be one of {sorted(COMBINERS)}. Got {method!r} instead."
        )
    cls = COMBINERS[method]
    allowed = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ConfigError(
            f"{cls.__name__} got unexpected parameter(s) {unknown}; allowed: {allowed}."
        )
    return cls(**params)


_SEEDED = {*GA_METHODS, "dirichlet"}


def method_params(method: str, seed: int, threshold, params: dict | None) -> dict:
    """The parameters ``method`` gets in a search: its entry of ``params`` (by method name),
    with the search's threshold rule and, for the seeded methods (the GAs, the random search),
    its seed, where ``params`` does not set them."""
    p = dict((params or {}).get(method, {}))
    p.setdefault("threshold", threshold)
    if method in _SEEDED:
        p.setdefault("seed", seed)
    return p
