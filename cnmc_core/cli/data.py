"""CLI verbs for data: ``scan``, ``split``, ``preprocess``.

Each verb checks its arguments, with the flag's name in the message, before it reads the dataset
or writes anything.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from cnmc_core.exceptions import ConfigError

__all__ = ["print_progress", "register"]


def print_progress(label: str):
    """A ``progress(done, total)`` callback that draws one updating line on stderr."""
    start = time.perf_counter()

    def progress(done: int, total: int) -> None:
        width = 30
        filled = int(width * done / max(total, 1))
        rate = done / max(time.perf_counter() - start, 1e-9)
        end = "\n" if done >= total else ""
        sys.stderr.write(f"\r{label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} ({rate:.0f}/s){end}")
        sys.stderr.flush()

    return progress


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("scan", help="find C-NMC images under ROOT and write a manifest",
                       description="Find the images of a C-NMC dataset (Kaggle mirror, TCIA package or a "
                       "plain ROOT/{all,hem}/ folder), print a summary and write the manifest CSV.")
    p.add_argument("root", help="dataset folder")
    p.add_argument("--out", help="manifest CSV to write (default: artifacts/manifests/<folder name>.csv)")
    p.add_argument("--labels-csv", help="preliminary-phase labels CSV (default: found under ROOT)")
    p.add_argument("--no-verify", action="store_true", help="do not decode every image (faster, misses corrupt files)")
    p.set_defaults(func=_scan)

    p = sub.add_parser("split", help="assign images to train/val/test by protocol",
                       description="Split a dataset into train/val/test and write image_id,split.")
    p.add_argument("manifest", help="manifest CSV (from `scan`) or a dataset folder")
    p.add_argument("--protocol", default="subject", help="subject (default), paper (leaky) or official")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fractions", default="0.6,0.2,0.2", help="train,val,test shares (default 0.6,0.2,0.2)")
    p.add_argument("--kfold", type=int, help="subject-grouped k-fold instead: K folds ...")
    p.add_argument("--fold", type=int, default=0, help="... with fold FOLD as test and the next as val")
    p.add_argument("--out", required=True, help="split CSV to write")
    p.set_defaults(func=_split)

    p = sub.add_parser("preprocess", help="crop, resize and cache a dataset's images",
                       description="Crop every image to its cell, resize and store the result in the "
                       "cache that training reuses.")
    p.add_argument("root", help="dataset folder or manifest CSV")
    p.add_argument("--size", type=int, required=True, help="output side in pixels")
    p.add_argument("--clahe", action="store_true", help="CLAHE on the Y channel (clip 2.0, 8x8 tiles)")
    p.add_argument("--jobs", type=int, default=-1, help="worker processes (default: all cores)")
    p.add_argument("--force", action="store_true", help="rebuild even if the cache exists")
    p.add_argument("--artifacts", help="artifacts folder (default: $CNMC_ARTIFACTS or ./artifacts)")
    p.set_defaults(func=_preprocess)


def _scan(args) -> int:
    from cnmc_core.data.manifest import save_manifest, scan_dataset
    from cnmc_core.workspace.paths import workspace_dir

    if args.out:
        out = Path(args.out)
    else:  # resolved first: a workspace that cannot be written is refused before the scan
        out = workspace_dir("manifests") / f"{Path(args.root).resolve().name or 'dataset'}.csv"
    result = scan_dataset(args.root, labels_csv=args.labels_csv, verify=not args.no_verify,
                          progress=print_progress("verifying images"))
    print(result.summary())
    out.parent.mkdir(parents=True, exist_ok=True)
    save_manifest(result.manifest, out)
    print(f"manifest written: {out}")
    print(out)
    return 0


def _number(text: str) -> float | str:
    """A number given on the command line, or the text itself for the check to refuse."""
    try:
        return float(text)
    except ValueError:
        return text.strip()


def _split(args) -> int:
    from cnmc_core.contracts import protocol_info
    from cnmc_core.data.manifest import resolve_manifest
    from cnmc_core.data.splits import (
        check_fractions,
        check_kfold,
        grouped_kfold,
        make_split,
        save_split,
    )
    from cnmc_core.contracts import SPLIT_PROTOCOLS
    from cnmc_core.validation import check_choice, check_seed

    # every argument is checked before the dataset is read (a scan can take minutes)
    fractions = check_fractions([_number(x) for x in args.fractions.split(",")], "--fractions")
    check_seed(args.seed, "--seed")
    check_choice(args.protocol, "--protocol", SPLIT_PROTOCOLS,
                 fix="For K folds by subject give --kfold K --fold I; a study (cnmc study) runs every fold.")
    info = protocol_info(args.protocol)
    if args.kfold is not None:
        if args.protocol != "subject":
            raise ConfigError("--kfold is subject-grouped; use it with --protocol subject (the default).")
        check_kfold(args.kfold, args.fold, args.seed, ("--kfold", "--fold", "--seed"))
    manifest = resolve_manifest(args.manifest)
    if args.kfold is not None:
        split = grouped_kfold(manifest, k=args.kfold, fold=args.fold, seed=args.seed)
        name = f"subject {args.kfold}-fold, fold {args.fold}"
    else:
        split = make_split(manifest, args.protocol, seed=args.seed, fractions=fractions)
        name = info.label()
    merged = split.merge(manifest[["image_id", "label", "subject"]], on="image_id")
    table = merged.pivot_table(index="split", columns="label", values="image_id", aggfunc="count", fill_value=0)
    table["subjects"] = merged.groupby("split")["subject"].nunique()
    print(f"protocol: {name}, seed {args.seed}")
    print(table.reindex(["train", "val", "test"]).to_string())
    if info.leaky and args.kfold is None:
        print("WARNING: the paper protocol splits by image: cells of one subject are in train and "
              "test, so its scores are inflated (leaky). Use --protocol subject for honest scores.")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_split(split, out)
    print(out)
    return 0


def _preprocess(args) -> int:
    from cnmc_core.data.manifest import resolve_manifest
    from cnmc_core.data.preprocess import build_cache, check_input_size
    from cnmc_core.workspace.paths import artifacts_root

    check_input_size(args.size, "--size")  # before the dataset is read
    artifacts_root(args.artifacts)  # a workspace that cannot be used is refused before any work
    manifest = resolve_manifest(args.root, progress=print_progress("verifying images"))
    cache = build_cache(manifest, args.size, clahe=args.clahe, root=args.artifacts, n_jobs=args.jobs,
                        progress=print_progress("preprocessing"), force=args.force)
    what = "found (cache hit)" if cache.hit else "built"
    rate = len(cache.image_ids) / max(cache.seconds, 1e-9)
    print(f"cache {what}: {len(cache.image_ids)} images at {cache.size}x{cache.size}"
          f"{' with CLAHE' if cache.clahe else ''} in {cache.seconds:.2f} s ({rate:.0f} img/s)")
    print(cache.path)
    return 0
