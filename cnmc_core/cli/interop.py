"""CLI verbs that take results out of the workspace: ``mlflow-export`` and ``report``.

``python -m cnmc_core mlflow-export [RUN_OR_ENSEMBLE ...] --tracking-uri URI`` exports runs,
ensembles and studies (all completed ones of the workspace when none is named) to MLflow, one
line per MLflow run created or updated; exporting again updates the same MLflow runs.
``python -m cnmc_core report RUN... --out report.html`` writes one self-contained HTML file (or,
with ``--format pdf``, a PDF printed by Chromium) that compares them.
"""

from __future__ import annotations

import argparse
import sys

from cnmc_core.cli.options import add_artifacts_option

__all__ = ["register"]

_ARTIFACTS_HELP = "artifacts folder where ids are looked up (default: $CNMC_ARTIFACTS or ./artifacts)"


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``mlflow-export`` and ``report`` verbs."""
    p = sub.add_parser(
        "mlflow-export", help="export runs, ensembles and studies to an MLflow tracking server",
        description="Export completed runs and ensembles (params, tags with the split protocol, "
        "per-epoch and final metrics with CI bounds, predictions, config, metrics, figures, the "
        "model) and studies (a parent run, its runs nested) to MLflow. Exporting again updates "
        "the same MLflow runs: their ids are recorded in each folder's mlflow.json.")
    p.add_argument("items", nargs="*", metavar="RUN_OR_ENSEMBLE",
                   help="run, ensemble or study ids or folders (default: every completed one)")
    p.add_argument("--tracking-uri", required=True, metavar="URI",
                   help="MLflow tracking URI, e.g. http://127.0.0.1:5000")
    p.add_argument("--experiment", default="cnmc", metavar="NAME",
                   help="MLflow experiment (created when missing; default: cnmc)")
    p.add_argument("--no-model", action="store_true", help="do not upload model.keras")
    p.add_argument("--no-figures", action="store_true",
                   help="do not render the figures to PNG (they need Chromium)")
    add_artifacts_option(p, _ARTIFACTS_HELP)
    p.set_defaults(func=_mlflow_export)

    p = sub.add_parser(
        "report", help="one self-contained HTML (or PDF) report comparing runs",
        description="Write one HTML file that works offline (plotly.js inlined once): the "
        "comparison table with CIs and protocols, learning curves, confusion matrices, ROC/PR, "
        "a study's paired tests, ensemble weights, images every model misses, each config.")
    p.add_argument("items", nargs="+", metavar="RUN_OR_ENSEMBLE_OR_STUDY",
                   help="run, ensemble or study ids or folders")
    p.add_argument("--out", required=True, metavar="FILE", help="the file to write")
    p.add_argument("--format", default=None, choices=["html", "pdf"],
                   help="html (default; pdf when --out ends in .pdf): pdf is Chromium's print "
                   "of the HTML")
    p.add_argument("--title", help="the report's title")
    add_artifacts_option(p, _ARTIFACTS_HELP)
    p.set_defaults(func=_report)


def _mlflow_export(args: argparse.Namespace) -> int:
    from cnmc_core.interop.mlflow_export import export_to_mlflow

    results = export_to_mlflow(args.items, args.tracking_uri, experiment=args.experiment,
                               include_model=not args.no_model,
                               include_figures=not args.no_figures, artifacts=args.artifacts,
                               progress=lambda line: print(line, flush=True))
    created = sum(r.action == "created" for r in results)
    print(f"{len(results)} MLflow run(s) in experiment {args.experiment!r}: {created} created, "
          f"{len(results) - created} updated", file=sys.stderr)
    return 0


def _report(args: argparse.Namespace) -> int:
    from cnmc_core.interop.report import write_report

    fmt = args.format or ("pdf" if str(args.out).lower().endswith(".pdf") else "html")
    path = write_report(args.items, args.out, fmt=fmt, artifacts=args.artifacts, title=args.title)
    print(path)
    return 0
