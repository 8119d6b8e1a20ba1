"""CLI verbs for ensembles and error analysis: ``ensemble`` and ``errors``.

``python -m cnmc_core ensemble RUN_DIR... --method ga --threshold best --seed 0`` fits the method
on val, prints the report of the methods (every method, each member alone, the paper's figures;
``--report chosen``: the chosen one beside equal weights) and,
on its last line, the folder of the saved ensemble. The folder exists from the start of the
search (``ensemble folder: PATH`` is printed then), with a live status and the GA's history, so
a long search (``--ga-generations``, ``--ga-population``, ``--ga-restarts``) can be followed,
and one that is killed shows as failed. ``python -m cnmc_core errors RUN_DIR...``
prints the error-overlap summary. Members are folders, or run/ensemble ids looked up in the
artifacts folder (``--artifacts``).
"""

from __future__ import annotations

import argparse
import json
import sys

from cnmc_core.cli.options import add_artifacts_option
from cnmc_core.exceptions import ConfigError

__all__ = ["register"]

# The methods a search fits and reports by default: cnmc_core.ensemble.methods.DEFAULT_METHODS
# (a test checks they agree), written out here so that building the parser does not import
# the ensemble modules and scikit-learn (a second and more) for every verb.
_ALL_METHODS = ("mean", "ga", "ga_mean", "greedy", "dirichlet", "slsqp", "stacking")
_GA_METHODS = ("ga", "ga_mean")
#: The GA's size on the command line: flag, GeneticWeights parameter, its default, what it sets.
_GA_OPTIONS = (("--ga-generations", "generations", 100, "generations per restart"),
               ("--ga-population", "population_size", 100, "population size"),
               ("--ga-restarts", "restarts", 10, "restarts (the best individual of all is kept)"))


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``ensemble`` and ``errors`` verbs."""
    p = sub.add_parser(
        "ensemble", help="combine finished runs into an ensemble and report it honestly",
        description="Fit an ensemble of finished runs on their validation predictions, compare "
        "the methods on the untouched test split and save the chosen one under "
        "artifacts/ensembles/. The last line printed is the ensemble folder.")
    p.add_argument("members", nargs="+", metavar="RUN_DIR",
                   help="run or ensemble folders (or ids found under --artifacts)")
    p.add_argument("--method", default="ga", choices=[*_ALL_METHODS, "weighted"],
                   help="combination method to save (default: ga, the paper's GA; ga_mean is "
                   "this project's earlier variant with whole-vector mean crossover)")
    p.add_argument("--weights",
                   help="comma-separated weights for --method weighted, one per member")
    p.add_argument("--threshold", default="0.5",
                   help="0.5 (or any number), best (best weighted F1 on val) or sensitivity:0.98 "
                   "(largest threshold reaching that ALL recall on val)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the GA, random search and bootstrap")
    p.add_argument("--report", choices=["all", "chosen"],
                   help="the methods the report covers: every method (all, the default) or the "
                   "chosen one beside equal weights (chosen)")
    # The flag was --compare all|none until the library said score_methods(methods=...):
    # "compare" also names the Compare page and the runs listing. Kept as a hidden alias so
    # that scripts keep working; it warns.
    p.add_argument("--compare", choices=["all", "none"], help=argparse.SUPPRESS)
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for the CIs")
    for flag, _, default, what in _GA_OPTIONS:
        p.add_argument(flag, type=int, metavar="N",
                       help=f"GA {what} (default {default}, the paper's; applies to every GA "
                       "that runs: --method ga or ga_mean, or --report all)")
    p.add_argument("--name", help="ensemble id (default: ens-<method>-<time>-<hash>)")
    p.add_argument("--out", help="folder to create the ensemble in, in its members' workspace "
                   "(default: that workspace's ensembles folder, e.g. of --artifacts); an "
                   "ensemble names its members as runs/<id> of its own workspace, so a folder "
                   "elsewhere is refused")
    add_artifacts_option(p, "artifacts (or runs) folder where ids are looked up "
                         "(default: $CNMC_ARTIFACTS or ./artifacts)", dest="runs_dir")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON instead")
    p.set_defaults(func=_ensemble)

    p = sub.add_parser(
        "errors", help="which images the models miss, and how their errors overlap",
        description="Error analysis of several runs on the same images: errors per model and "
        "class, images by how many models miss them, intersections of the missed sets, images "
        "only one model gets right or wrong, and pairwise diversity.")
    p.add_argument("members", nargs="+", metavar="RUN_DIR", help="run or ensemble folders or ids")
    p.add_argument("--split", default="test", choices=["test", "val"])
    p.add_argument("--threshold", type=float,
                   help="one threshold for every model (default: each member's own, else 0.5)")
    p.add_argument("--top", type=int, default=10, help="intersections to print (default 10)")
    add_artifacts_option(p, "artifacts (or runs) folder where ids are looked up", dest="runs_dir")
    p.set_defaults(func=_errors)


def _ensemble(args: argparse.Namespace) -> int:
    from cnmc_core.ensemble.combiners import parse_threshold_rule
    from cnmc_core.ensemble.report import format_report
    from cnmc_core.ensemble.search import run_search as build_ensemble
    from cnmc_core.metrics.bootstrap import MAX_N_BOOT
    from cnmc_core.validation import check_scalar, check_seed
    from cnmc_core.workspace.paths import artifacts_root

    parse_threshold_rule(args.threshold)
    check_seed(args.seed, "--seed")
    check_scalar(args.n_boot, "--n-boot", "int", low=0, high=MAX_N_BOOT,
                 fix="0 skips the CIs; 1,000 to 10,000 resamples are plenty for a 95% CI.")
    report = _report_choice(args)
    params = {}
    if args.method == "weighted":
        if not args.weights:
            raise ConfigError("--method weighted needs --weights, e.g. --weights 0.4,0.3,0.2,0.1.")
        try:
            weights = [float(w) for w in args.weights.split(",")]
        except ValueError:
            raise ConfigError(f"--weights must be comma-separated numbers; got {args.weights!r}.") \
                from None
        params["weighted"] = {"weights": weights}
    elif args.weights:
        raise ConfigError("--weights only applies to --method weighted.")
    methods = _ALL_METHODS if report == "all" else ("mean",)
    ga = _ga_params(args, runs_ga=bool(set(_GA_METHODS) & {*methods, args.method}))
    for name in _GA_METHODS if ga else ():
        params[name] = dict(ga)
    out = args.out
    if out is None and args.runs_dir is not None:  # beside the runs it combines
        out = artifacts_root(args.runs_dir) / "ensembles"

    def started(folder) -> None:
        # to stderr under --json, so that stdout stays the JSON and the folder
        print(f"ensemble folder: {folder}", file=sys.stderr if args.json else sys.stdout,
              flush=True)

    from cnmc_core.auth.roles import local_actor

    path, rows = build_ensemble(
        args.members, actor=local_actor("cli"), method=args.method, threshold=args.threshold, seed=args.seed,
        out_dir=out, runs_root=args.runs_dir, ensemble_id=args.name, methods=methods,
        params=params, n_boot=args.n_boot, on_start=started)
    if args.json:
        print(json.dumps(rows, default=float))
    else:
        print(format_report(rows, chosen=args.method))
    print(path)
    sys.stdout.flush()
    return 0


def _report_choice(args: argparse.Namespace) -> str:
    """``--report``, or the deprecated ``--compare`` it replaces (``none`` is ``chosen``), with
    a warning on stderr; both given and disagreeing is refused."""
    if args.compare is None:
        return args.report or "all"
    alias = "chosen" if args.compare == "none" else "all"
    if args.report is not None and args.report != alias:
        raise ConfigError(f"--compare {args.compare} (the old name of --report {alias}) "
                          f"contradicts --report {args.report}; give --report only.")
    print(f"warning: --compare {args.compare} is deprecated; use --report {alias}.",
          file=sys.stderr)
    return alias


def _ga_params(args: argparse.Namespace, runs_ga: bool) -> dict:
    """The ``--ga-*`` values as GeneticWeights parameters, each checked by the GA's own rules
    (the message names the flag)."""
    from cnmc_core.ensemble.genetic import GeneticWeights

    given = [(flag, name, getattr(args, flag[2:].replace("-", "_")))
             for flag, name, _, _ in _GA_OPTIONS]
    given = [(flag, name, value) for flag, name, value in given if value is not None]
    if given and not runs_ga:
        raise ConfigError(f"{', '.join(flag for flag, _, _ in given)} only apply when a GA "
                          "runs: use --method ga (or ga_mean), or --report all.")
    for flag, name, value in given:
        try:
            GeneticWeights(**{name: value}).check_params()
        except ConfigError as exc:
            raise ConfigError(f"{flag} {value}: {exc}") from None
    return {name: value for _, name, value in given}


def _errors(args: argparse.Namespace) -> int:
    from cnmc_core.analysis.errors import analyse_errors, format_error_summary
    from cnmc_core.ensemble.align import align_runs
    from cnmc_core.workspace.layout import resolve_member

    if args.threshold is not None and not 0 <= args.threshold <= 1:
        raise ConfigError(f"--threshold must be in [0, 1]; got {args.threshold}.")
    aligned = align_runs([resolve_member(m, args.runs_dir) for m in args.members])
    report = analyse_errors(aligned, args.split, args.threshold)
    print(format_error_summary(report, top=args.top))
    return 0
