"""CLI verb ``predict``: score new images with a run or a saved ensemble, as the Predict page does.

It first says what the model is (the data it was trained on and its test or pooled out-of-fold
AUC with CI and protocol; the warning of a model trained on synthetic cells), then prints one line
per image (P(ALL), the call, and the features outside what the model saw) and, with ``--out``,
writes the same table as the page's CSV download.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cnmc_core.cli.options import add_artifacts_option

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="score new images with a run or an ensemble; says what "
                       "it was trained on and flags images outside what it saw",
                       description="Score cell images (a cell on black, as in C-NMC) with a run or "
                       "a saved ensemble. Prints the model's provenance and honest score, then "
                       "P(ALL) per image with the features outside what the model saw.")
    p.add_argument("path", help="run or ensemble folder (or id)")
    p.add_argument("images", nargs="+", help="image files (bmp, png, jpg, tif)")
    p.add_argument("--out", help="CSV file to write (the Predict page's download)")
    add_artifacts_option(p, "artifacts folder, to find runs and ensembles by id "
                         "(default: $CNMC_ARTIFACTS or ./artifacts)")
    p.set_defaults(func=_predict)


def _predict(args) -> int:
    from cnmc_core.data.feature_ranges import OUTSIDE_TEXT
    from cnmc_core.data.images import read_image
    from cnmc_core.exceptions import ConfigError
    from cnmc_core.model_cards import card_text, model_card
    from cnmc_core.predict import (
        format_prob,
        member_threshold,
        outside_flags,
        results_frame,
        score_selection,
    )
    from cnmc_core.workspace.fileio import atomic_write_csv
    from cnmc_core.workspace.layout import resolve_member

    out = Path(args.out) if args.out else None
    if out is not None and out.suffix.lower() != ".csv":
        raise ConfigError(f"--out must be a .csv file; got {out}.")
    path = resolve_member(args.path, args.artifacts)
    images = [read_image(f) for f in args.images]  # a file that cannot be read: named, nothing written
    card = model_card(path)
    print(f"{path.name}: {card_text(card)}")
    if card["warning"]:
        print(f"warning: {path.name}: {card['warning']}.", file=sys.stderr)
    from cnmc_core.training.backend import import_backend

    import_backend()  # TensorFlow's start-up lines kept off stderr
    per, final = score_selection([path], images)
    outside, notes = outside_flags([path], images)
    for note in notes:
        print(f"note: not checked against {note}.", file=sys.stderr)
    threshold = member_threshold(path)
    single = len(per) == 1 and path.name in per
    frame = results_frame([Path(f).name for f in args.images], per, None if single else final,
                          threshold, path.name, outside=outside)
    for row, flag in zip(frame.itertuples(index=False), outside):
        print(f"{row.file}  {row.predicted}  P(ALL) {format_prob(row[1], threshold)}"
              + (f"  {OUTSIDE_TEXT}: {flag}" if flag else ""))
    if out is not None:
        atomic_write_csv(out, frame)
        print(out)
    return 0
