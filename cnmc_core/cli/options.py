"""Options that several verbs share: the workspace, ``--artifacts DIR``.

Every verb that reads or writes runs takes ``--artifacts DIR`` (default ``$CNMC_ARTIFACTS`` or
``./artifacts``). ``--runs-dir`` was its old name (it never was the runs folder but the
artifacts folder that holds it): it still works, hidden from ``--help``, and prints a one-line
note on stderr saying to use ``--artifacts``.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["ARTIFACTS_HELP", "add_artifacts_option"]

ARTIFACTS_HELP = "artifacts folder (default: $CNMC_ARTIFACTS or ./artifacts)"


class _DeprecatedAlias(argparse.Action):
    """Stores the value like the option it stands for, with a note on stderr."""

    def __init__(self, option_strings, dest, new_flag: str = "--artifacts", **kwargs):
        self.new_flag = new_flag
        super().__init__(option_strings, dest, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"note: {option_string} is deprecated; use {self.new_flag} {values} (the same "
              "folder).", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_artifacts_option(parser: argparse.ArgumentParser, help: str = ARTIFACTS_HELP,
                         dest: str = "artifacts") -> None:
    """Add ``--artifacts DIR`` and its hidden, deprecated alias ``--runs-dir`` to ``parser``.

    Args:
        parser: a verb's parser.
        help: the option's help text.
        dest: the attribute of the parsed arguments that holds the folder (None when not given).
    """
    parser.add_argument("--artifacts", dest=dest, metavar="DIR", help=help)
    parser.add_argument("--runs-dir", dest=dest, action=_DeprecatedAlias, help=argparse.SUPPRESS)
