"""One constraint checker, with one message format (scikit-learn's ``_param_validation``):

    The 'n_boot' parameter of bootstrap_ci must be an int in the range [1, 100000]. Got 0
    instead.

Every check names the argument (a parameter, a CLI flag or a config key), the rule and the
value, and adds the fix where there is one. A check raises :class:`~cnmc_core.exceptions.
ConfigError` unless told another kind of :class:`~cnmc_core.exceptions.CnmcError`.

- :func:`check_scalar`: an int or a float within bounds (bools refused; NaN and infinity are
  never in range);
- :func:`check_choice`: one of a set of allowed values;
- :func:`check_seed`: a seed NumPy accepts (0 to 2**32 - 1);
- :func:`check_param`: the same rules declared as data, for tables of constraints
  (``{"restarts": ("int", 1, None), "seed": ("seed",)}``).
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np

from cnmc_core.exceptions import CnmcError, ConfigError

__all__ = ["MAX_SEED", "check_scalar", "check_choice", "check_seed", "check_param"]

#: The largest seed NumPy's generators take (2**32 - 1).
MAX_SEED = 2**32 - 1


def _subject(name: str, owner: str | None) -> str:
    return f"The {name!r} parameter" + (f" of {owner}" if owner else "")


def _raise(error: type[CnmcError], name: str, owner: str | None, rule: str, value: Any,
           fix: str | None) -> None:
    message = f"{_subject(name, owner)} must be {rule}. Got {value!r} instead."
    raise error(message + (f" {fix}" if fix else ""))


def _bounds(low, high, closed: str) -> str:
    left = "[" if closed in ("both", "left") else "("
    right = "]" if closed in ("both", "right") else ")"
    return f"{left}{'-inf' if low is None else low}, {'inf' if high is None else high}{right}"


def check_scalar(value: Any, name: str, kind: str = "int", *, low=None, high=None,
                 closed: str = "both", owner: str | None = None, fix: str | None = None,
                 error: type[CnmcError] = ConfigError) -> int | float:
    """Return ``value`` (as ``int`` or ``float``) if it is a number of ``kind`` in range.

    Args:
        value: the value to check.
        name: the argument as the user knows it (``n_boot``, ``--seed``, ``stages.0.epochs``).
        kind: ``"int"`` (integers only) or ``"float"`` (any real number, ints included).
        low, high: the bounds (None: unbounded on that side).
        closed: which bounds are included: ``"both"``, ``"left"``, ``"right"`` or ``"neither"``.
        owner: the function or class the argument belongs to, for the message.
        fix: a sentence that says what to do, appended to the message.
        error: the exception class to raise.

    Raises:
        ``error``: not a number of that kind (a bool, a string, NaN, infinity) or out of range.
    """
    if kind not in ("int", "float") or closed not in ("both", "left", "right", "neither"):
        raise ValueError(f"kind={kind!r}, closed={closed!r}")  # a programming error
    types = (int, np.integer) if kind == "int" else (int, float, np.integer, np.floating)
    rule = f"{'an int' if kind == 'int' else 'a float'} in the range {_bounds(low, high, closed)}"
    ok = isinstance(value, types) and not isinstance(value, (bool, np.bool_))
    if ok and kind == "float" and not math.isfinite(float(value)):
        ok = False
    if ok and low is not None:
        ok = value >= low if closed in ("both", "left") else value > low
    if ok and high is not None:
        ok = value <= high if closed in ("both", "right") else value < high
    if not ok:
        _raise(error, name, owner, rule, value, fix)
    return int(value) if kind == "int" else float(value)


def check_choice(value: Any, name: str, options: Iterable, *, owner: str | None = None,
                 fix: str | None = None, error: type[CnmcError] = ConfigError):
    """Return ``value`` if it is one of ``options``, else raise naming them all."""
    options = list(options)
    try:
        ok = value in options
    except TypeError:  # an unhashable value and a dict or set of options
        ok = False
    if not ok:
        shown = "{" + ", ".join(repr(o) for o in options) + "}"
        _raise(error, name, owner, f"one of {shown}", value, fix)
    return value


def check_seed(value: Any, name: str = "seed", *, owner: str | None = None,
               error: type[CnmcError] = ConfigError) -> int:
    """Return ``value`` if it is a seed NumPy takes: an int from 0 to :data:`MAX_SEED`."""
    return check_scalar(value, name, "int", low=0, high=MAX_SEED, owner=owner, error=error,
                        fix="Use a whole number such as 0, 1 or 42.")


def check_param(owner: str, name: str, value: Any, spec: tuple) -> None:
    """Check one parameter against its declared constraint (a constraint table's entry).

    ``spec`` is ``("int"|"float", low, high[, closed])``, ``("seed",)`` (None allowed),
    ``("choice", options)`` or ``("callable",)`` (None allowed).

    Raises:
        ConfigError: the message names the owner, the parameter, its rule and the value.
    """
    kind = spec[0]
    if kind in ("int", "float"):
        check_scalar(value, name, kind, low=spec[1], high=spec[2],
                     closed=spec[3] if len(spec) > 3 else "both", owner=owner)
    elif kind == "seed":
        if value is not None:
            check_seed(value, name, owner=owner)
    elif kind == "choice":
        check_choice(value, name, spec[1], owner=owner)
    elif kind == "callable":
        if value is not None and not callable(value):
            _raise(ConfigError, name, owner, "a callable or None", value, None)
    else:  # pragma: no cover - a programming error in a constraint table
        raise AssertionError(kind)
