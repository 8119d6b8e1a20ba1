"""CLI verb ``synth``: write the synthetic stand-in dataset (see :mod:`cnmc_core.data.synth`).

``python -m cnmc_core synth OUT [--subjects-all N] [--subjects-hem N] [--cells-per-subject M]
[--size PX] [--seed S] [--format png|bmp]`` prints the images per split and class, the subjects,
the size on disk and the time, and as its last line the dataset root (``OUT/C-NMC_Leukemia``),
so scripts can take it with ``tail -1``.

``python -m cnmc_core synth --report [DIR] [--real REAL]`` writes nothing: it prints the hand
features of the synthetic cells (of the dataset DIR, or of a small one generated in a temporary
folder) against the real samples, per class, for the half of them the generator was calibrated on
and for the held-out half (:mod:`cnmc_core.data.synth_realism`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["register", "handler"]

# The small dataset that --report generates when no DIR is given (450 px, as the real images).
_REPORT_SUBJECTS, _REPORT_CELLS = 12, 6
_REPORT_PER_CLASS = 300

_EPILOG = """\
Defaults: 25 ALL + 12 HEM subjects in fold_0/1/2, 4 + 2 unseen subjects in the labelled
preliminary set and 4 + 2 in the unlabelled final set, 40 images per subject on average:
1,960 images of 450x450, ALL:HEM = 2.06:1, seed 0 (same seed, same bytes whatever --jobs),
PNG (about 91 MB in all; --format bmp: 24-bit BMPs as C-NMC ships them, 1.2 GB). ALL subjects
are numbered 1, 2, ...; healthy ones H1, H2, ... (always upper-case H). OUT/.synth_info.json
marks the dataset as synthetic.

The cells: irregular outlines (notches, clefts, kidney shapes, flat sides, attached fragments),
chromatin with pale speckles, sometimes a thin rim of cytoplasm, stain varying by subject,
microscope image and cell. The class lives mostly in the chromatin pattern (blast-like: even,
with large pale nucleoli; mature-like: coarse dark clumps), weakly in size, outline and tint.

Examples:
  python -m cnmc_core synth artifacts/demo-data --size 128
  python -m cnmc_core synth --report                      # realism of a small fresh dataset
  python -m cnmc_core synth --report artifacts/demo-data  # realism of an existing one"""


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
            "Write a synthetic stand-in for C-NMC 2019: one purple cell per image on black "
            "(PNG, or 24-bit BMP with --format bmp), ALL (y=1) vs HEM (y=0), subject-level folds, "
            "a labelled preliminary set and an unlabelled final set of unseen subjects. With "
            "--report, compare synthetic cells with the real samples instead (writes nothing)."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("out", metavar="OUT", nargs="?", default=None,
                   help="output folder (created; must be new or empty); with --report, an "
                        "existing dataset to measure (optional)")
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
    p.add_argument("--format", dest="image_format", default=synth.DEFAULT_FORMAT,
                   choices=synth.IMAGE_FORMATS,
                   help="image files: png (default, lossless, ~50 KB each at 450 px) or bmp "
                        "(24-bit, byte-faithful to C-NMC, 608 KB each)")
    p.add_argument("--report", action="store_true",
                   help="print the realism report (hand features, synthetic vs the real samples' "
                        "calibration and held-out halves) instead of generating")
    p.add_argument("--real", default=None, metavar="DIR",
                   help="real samples for --report (default: $CNMC_REAL_SAMPLES, else "
                        "../shared/real-samples beside the repository)")
    p.add_argument("--figure", default=None, metavar="PNG",
                   help="write real and synthetic cells side by side to PNG (with OUT: an existing "
                        "synthetic dataset; without: a small fresh one in a temporary folder) and "
                        "print its path; see --real")
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
    from cnmc_core.exceptions import ConfigError

    if getattr(args, "report", False):
        return _report(args)
    if getattr(args, "figure", None):
        return _figure(args)
    if args.out is None:
        raise ConfigError("OUT is required: pass the folder to write the dataset to (e.g. "
                          "`synth artifacts/demo-data`), or --report to measure realism.")
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
        image_format=args.image_format,
        n_jobs=args.jobs,
        progress=progress,
    )
    totals = summary.class_totals()
    ratio = totals["all"] / totals["hem"] if totals["hem"] else float("inf")
    n_bytes = sum(f.stat().st_size for f in Path(summary.out).rglob("*") if f.is_file())
    print(f"Synthetic C-NMC dataset: {summary.n_images} images of {summary.size}x{summary.size} px "
          f"({args.image_format.upper()}, {n_bytes / 1e6:.1f} MB), seed {summary.seed}, "
          f"{summary.seconds:.1f} s")
    print(f"{'split':<8} {'ALL':>6} {'HEM':>6}  subjects (ALL | HEM)")
    for split, c in summary.counts.items():
        subs = summary.subjects[split]
        print(f"{split:<8} {c['all']:>6} {c['hem']:>6}  {len(subs['all'])} | {len(subs['hem'])}: "
              f"{' '.join(subs['all']) or '-'} | {' '.join(subs['hem']) or '-'}")
    print(f"{'total':<8} {totals['all']:>6} {totals['hem']:>6}  ALL:HEM = {ratio:.2f}:1")
    print(f"labels of the preliminary set: {summary.labels_csv}")
    print(summary.root)
    return 0


def _report(args: argparse.Namespace) -> int:
    """``synth --report [DIR]``: print the realism report; nothing is written outside a temp folder."""
    import shutil
    import tempfile

    from cnmc_core.data.provenance import dataset_provenance
    from cnmc_core.data.synth import generate_dataset
    from cnmc_core.data.synth_realism import (
        default_real_samples,
        format_report,
        real_tables,
        realism_report,
        synthetic_table,
    )
    from cnmc_core.exceptions import ConfigError

    real_dir = Path(args.real) if args.real else default_real_samples()
    if not (real_dir / "all").is_dir() or not (real_dir / "hem").is_dir():
        raise ConfigError(f"--real {real_dir} does not hold the real samples (all/ and hem/ "
                          "folders of C-NMC BMPs); pass --real DIR or set $CNMC_REAL_SAMPLES.")
    if args.out is not None:
        data = Path(args.out)
        if not data.is_dir():
            raise ConfigError(f"DIR {data} is not an existing folder; pass a dataset made by "
                              "`python -m cnmc_core synth OUT`, or no DIR to measure a small fresh one.")
        real = real_tables(real_dir)
        table = synthetic_table(data, per_class=_REPORT_PER_CLASS, seed=0)
        source = f"dataset {data} (at most {_REPORT_PER_CLASS} images per class, drawn with seed 0)"
        if dataset_provenance(data) != "synthetic":
            source += "; note: it has no synth marker, so it may not be synthetic"
    else:
        real = real_tables(real_dir)
        tmp = Path(tempfile.mkdtemp(prefix="cnmc-synth-report-"))
        try:
            summary = generate_dataset(tmp / "ds", subjects_all=_REPORT_SUBJECTS,
                                       subjects_hem=_REPORT_SUBJECTS, cells_per_subject=_REPORT_CELLS,
                                       seed=args.seed, prelim_subjects=(0, 0), final_subjects=(0, 0),
                                       n_jobs=args.jobs)
            table = synthetic_table(summary.root)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        source = (f"a fresh dataset of {_REPORT_SUBJECTS} + {_REPORT_SUBJECTS} subjects x "
                  f"{_REPORT_CELLS} cells at 450 px, seed {args.seed} (generated in a temporary "
                  "folder, removed)")
    print(f"synthetic: {source}")
    print(f"real: {real_dir}")
    print(format_report(realism_report(table, real)))
    return 0


def _figure(args: argparse.Namespace) -> int:
    """``synth --figure PNG [OUT]``: real and synthetic cells side by side."""
    import shutil
    import tempfile

    import cv2

    from cnmc_core.data.synth import generate_dataset
    from cnmc_core.data.synth_figure import side_by_side
    from cnmc_core.data.synth_realism import default_real_samples
    from cnmc_core.exceptions import ConfigError

    target = Path(args.figure)
    if target.suffix.lower() != ".png":
        raise ConfigError(f"--figure must name a .png file; got {target}.")
    real_dir = Path(args.real) if args.real else default_real_samples()
    tmp = None
    try:
        if args.out is not None:
            root = Path(args.out)
            if not root.is_dir():
                raise ConfigError(f"OUT {root} is not an existing synthetic dataset folder.")
        else:
            tmp = Path(tempfile.mkdtemp(prefix="cnmc-synth-figure-"))
            root = generate_dataset(tmp / "ds", subjects_all=6, subjects_hem=6, cells_per_subject=4,
                                    seed=args.seed, prelim_subjects=(0, 0), final_subjects=(0, 0),
                                    n_jobs=args.jobs).root
        figure = side_by_side(real_dir, root, seed=args.seed)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(target), figure[:, :, ::-1]):
        raise ConfigError(f"Could not write {target}; check the folder is writable.")
    print(target)
    return 0
