"""CLI verb ``synth``: write the synthetic stand-in dataset (see :mod:`cnmc_core.data.synth`).

``python -m cnmc_core synth OUT [--subjects-all N] [--subjects-hem N] [--cells-per-subject M]
[--size PX] [--seed S]`` prints the images per split and class, the subjects and the time, and as
its last line the dataset root (``OUT/C-NMC_Leukemia``), so scripts can take it with ``tail -1``.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["register", "handler"]

_EPILOG = """\
Defaults: 25 ALL + 12 HEM subjects in fold_0/1/2, 4 + 2 unseen subjects in the labelled
preliminary set and 4 + 2 in the unlabelled final set, 40 images per subject on average:
1,960 images of 450x450, ALL:HEM = 2.06:1, seed 0 (same seed, same bytes). ALL subjects are
numbered 1, 2, ...; healthy ones H1, H2, ... (always upper-case H).

Example: python -m cnmc_core synth artifacts/demo-data --size 128"""


def register(sub) -> None:
    """Add the ``synth`` parser to the CLI's subparsers.

    Args:
        sub: the ``argparse`` subparsers object of :func:`cnmc_core.cli.main.build_parser`.
    """
    from cnmc_core.data import synth, synth_cells

    p = sub.add_parser(
        "synth",
        help="write a synthetic C-NMC-like dataset (demo data) in the Kaggle mirror layout",
        description=(
            "Write a synthetic stand-in for C-NMC 2019: one purple cell per 24-bit BMP on black, "
            "ALL (y=1) vs HEM (y=0), subject-level folds, a labelled preliminary set and an "
            "unlabelled final set of unseen subjects."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("out", metavar="OUT", help="output folder (created; must be new or empty)")
    p.add_argument("--subjects-all", type=int, default=synth.DEFAULT_SUBJECTS_ALL, metavar="N",
                   help=f"ALL subjects in the training folds (default {synth.DEFAULT_SUBJECTS_ALL})")
    p.add_argument("--subjects-hem", type=int, default=synth.DEFAULT_SUBJECTS_HEM, metavar="N",
                   help=f"HEM subjects in the training folds (default {synth.DEFAULT_SUBJECTS_HEM})")
    p.add_argument("--cells-per-subject", type=int, default=synth.DEFAULT_CELLS_PER_SUBJECT, metavar="M",
                   help=f"mean images per subject (default {synth.DEFAULT_CELLS_PER_SUBJECT})")
    p.add_argument("--size", type=int, default=synth_cells.DEFAULT_SIZE, metavar="PX",
                   help=f"image side in pixels, {synth_cells.MIN_SIZE}-{synth_cells.MAX_SIZE} (default {synth_cells.DEFAULT_SIZE})")
    p.add_argument("--seed", type=int, default=synth.DEFAULT_SEED, metavar="S",
                   help=f"random seed (default {synth.DEFAULT_SEED})")
    p.add_argument("--prelim-subjects", type=int, nargs=2, default=None, metavar=("N_ALL", "N_HEM"),
                   help="unseen subjects in the preliminary set (default: about 1 per 6 training "
                        "subjects of each class, at least 1)")
    p.add_argument("--final-subjects", type=int, nargs=2, default=None, metavar=("N_ALL", "N_HEM"),
                   help="unseen subjects in the final set (same default)")
    p.add_argument("--jobs", type=int, default=None, metavar="J",
                   help="worker processes (default: CPU count, at most 8); does not change the output")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.set_defaults(func=handler)


def handler(args: argparse.Namespace) -> int:
    """Generate the dataset and print a summary; the last line is the dataset root.

    Args:
        args: the parsed arguments of the ``synth`` parser.

    Returns:
        0 on success.

    Raises:
        ConfigError: bad arguments or a non-empty OUT (the CLI prints it as ``error: ...``).
    """
    from cnmc_core.data.synth import generate_dataset

    show = not getattr(args, "quiet", False) and sys.stderr.isatty()

    def progress(done: int, total: int) -> None:
        # Progress goes to stderr (and only on a terminal) so stdout stays a clean summary.
        if show:
            end = "\n" if done >= total else ""
            print(f"\rrendering {done}/{total} images", end=end, file=sys.stderr, flush=True)

    summary = generate_dataset(
        args.out,
        subjects_all=args.subjects_all,
        subjects_hem=args.subjects_hem,
        cells_per_subject=args.cells_per_subject,
        size=args.size,
        seed=args.seed,
        prelim_subjects=tuple(args.prelim_subjects) if args.prelim_subjects else None,
        final_subjects=tuple(args.final_subjects) if args.final_subjects else None,
        n_jobs=args.jobs,
        progress=progress,
    )
    totals = summary.class_totals()
    ratio = totals["all"] / totals["hem"] if totals["hem"] else float("inf")
    print(f"Synthetic C-NMC dataset: {summary.n_images} images of {summary.size}x{summary.size} px, "
          f"seed {summary.seed}, {summary.seconds:.1f} s")
    print(f"{'split':<8} {'ALL':>6} {'HEM':>6}  subjects (ALL | HEM)")
    for split, c in summary.counts.items():
        subs = summary.subjects[split]
        print(f"{split:<8} {c['all']:>6} {c['hem']:>6}  {len(subs['all'])} | {len(subs['hem'])}: "
              f"{' '.join(subs['all']) or '-'} | {' '.join(subs['hem']) or '-'}")
    print(f"{'total':<8} {totals['all']:>6} {totals['hem']:>6}  ALL:HEM = {ratio:.2f}:1")
    print(f"labels of the preliminary set: {summary.labels_csv}")
    print(summary.root)
    return 0
