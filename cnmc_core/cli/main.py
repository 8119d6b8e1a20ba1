"""Command-line interface: ``python -m cnmc_core <verb> ...``.

Each group of verbs lives in a module of :mod:`cnmc_core.cli` with a ``register(subparsers)`` function that
adds its parsers and sets ``func`` to a handler ``handler(args) -> int``. Handlers import heavy
libraries (TensorFlow) themselves, so ``scan`` or ``split`` start fast.

A :class:`~cnmc_core.exceptions.CnmcError` is printed as ``error: <message>`` on stderr with exit
status 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from cnmc_core.exceptions import CnmcError

__all__ = ["COMMAND_MODULES", "build_parser", "main"]

# Modules that contribute verbs, in the order they appear in --help.
COMMAND_MODULES = (
    "cnmc_core.cli.data",
    "cnmc_core.cli.train",
    "cnmc_core.cli.ensemble",
    "cnmc_core.cli.synth",
    "cnmc_core.cli.explain",
    "cnmc_core.cli.predict",
    "cnmc_core.cli.study",
    "cnmc_core.cli.interop",
    "cnmc_core.cli.users",
)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every registered verb."""
    parser = argparse.ArgumentParser(
        prog="python -m cnmc_core",
        description="cnmc: classify ALL vs HEM cells of C-NMC 2019 and compare the experiments.",
    )
    sub = parser.add_subparsers(dest="verb", metavar="<verb>", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CnmcError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
