"""One constraint checker for parameters, with one message format (scikit-learn's):
``The 'n_boot' parameter of bootstrap_ci must be an int in the range [1, inf). Got 0 instead.``
"""

from __future__ import annotations

import numpy as np

from cnmc_core.exceptions import ConfigError

__all__ = ['check_param']

def check_param(owner: str, name: str, value, spec) -> None:
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
