"""CLI verbs for training: ``train``, ``worker``, ``runs``, ``cancel``, ``evaluate``, ``presets``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from cnmc_core.cli.options import add_artifacts_option

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a preset; prints progress and, last, the run folder",
                       description="Train a model from a preset. The run folder holds config, status, "
                       "history, predictions, metrics, the model and the log.")
    p.add_argument("--preset", required=True, help="preset name (see `presets`)")
    p.add_argument("--data", help="dataset folder or manifest CSV (default: the preset's)")
    p.add_argument("--split", dest="split_protocol", help="subject (default), paper (leaky) or official")
    p.add_argument("--epochs", type=int, help="maximum epochs of every stage")
    p.add_argument("--image-size", type=int, help="input side in pixels")
    p.add_argument("--weights", help="imagenet, none, or a path to a notop .h5 file")
    p.add_argument("--seed", type=int, help="seed of split, balancing, init and shuffling, 0 to 2**32-1")
    p.add_argument("--backend", help="Keras backend: tensorflow, jax or torch (default: $KERAS_BACKEND, "
                   "else tensorflow); recorded in the run's config")
    add_artifacts_option(p)
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. stages.0.learning_rate=1e-4 (repeatable)")
    p.add_argument("--detach", action="store_true", help="start in the background (queued) and return")
    p.set_defaults(func=_train)

    p = sub.add_parser("worker", help=argparse.SUPPRESS)
    p.add_argument("run_dir")
    p.set_defaults(func=_worker)

    p = sub.add_parser("runs", help="list runs, ensembles and studies with state and key metrics")
    add_artifacts_option(p)
    p.add_argument("--json", action="store_true", help="print JSON records")
    p.set_defaults(func=_runs)

    p = sub.add_parser("cancel", help="cancel a queued or running run")
    p.add_argument("run", help="run or study id, or its folder")
    add_artifacts_option(p)
    p.set_defaults(func=_cancel)

    p = sub.add_parser("evaluate", help="re-score a trained run on another dataset or split")
    p.add_argument("run", help="run id or folder")
    p.add_argument("--data", required=True, help="dataset folder or manifest CSV")
    p.add_argument("--split", default="all", help="all (every labelled image, default) or a protocol "
                   "whose test split is scored: subject, paper, official")
    p.add_argument("--source", help="only images of this source: fold_0, fold_1, fold_2, prelim, "
                   "final or unknown")
    add_artifacts_option(p)
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("presets", help="list the presets with their model and settings")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_presets)


def _train(args) -> int:
    from cnmc_core.contracts import protocol_label
    from cnmc_core.training.backend import select_backend
    from cnmc_core.training.config import resolve_config
    from cnmc_core.training.launch import start_run
    from cnmc_core.training.loop import train_run
    from cnmc_core.workspace.queue import CancelledError
    from cnmc_core.workspace.status import read_status

    config = resolve_config(args.preset, data=args.data, split_protocol=args.split_protocol,
                            epochs=args.epochs, image_size=args.image_size, weights=args.weights,
                            seed=args.seed, backend=args.backend, sets=args.sets)
    if not args.detach and config.get("backend"):  # this process trains: Keras is not imported yet
        select_backend(config["backend"])
    # checked completely (model, arguments, weights, data and split) before a run folder exists
    from cnmc_core.auth.roles import local_actor

    run_dir = start_run(config, args.artifacts, detach=args.detach, actor=local_actor("cli"))
    if args.detach:
        pid = read_status(run_dir).get("pid")
        print(f"run queued in the background (pid {pid}); follow it with `python -m cnmc_core runs`")
        print(run_dir)
        return 0
    print(f"run {run_dir.name}: {config['model']} at {config['image_size']} px, protocol "
          f"{protocol_label(config['split_protocol'])}, seed {config['seed']}", flush=True)
    try:
        train_run(run_dir, log=lambda text: print(text, flush=True), artifacts=args.artifacts)
    except CancelledError:
        print(run_dir)
        return 1
    except Exception as exc:  # the run folder records it; the user gets the message and the folder
        print(f"error: the run failed: {exc}")
        print(run_dir)
        return 1
    print(run_dir)
    return 0


def _worker(args) -> int:
    from cnmc_core.training.loop import train_run
    from cnmc_core.workspace.queue import CancelledError

    try:
        # stdout is log.txt already (see workspace.queue.launch_run): train_run writes its lines there
        train_run(Path(args.run_dir), log=None)
    except CancelledError:
        return 1
    except Exception:
        return 1
    return 0


def _fmt(value, digits=4):
    return "" if value is None or value != value else f"{value:.{digits}f}"


def _score(value, low, high) -> str:
    """``0.8123 [0.701, 0.902]``: a weighted F1 with its subject-bootstrap CI, "-" if none."""
    if value is None or value != value:
        return "-"
    ci = f" [{_fmt(low, 3)}, {_fmt(high, 3)}]" if low is not None and low == low else ""
    return f"{_fmt(value)}{ci}"


def _runs(args) -> int:
    import pandas as pd

    from cnmc_core.contracts import DAMAGED, protocol_label
    from cnmc_core.model_cards import run_provenance
    from cnmc_core.study.listing import format_studies, list_studies
    from cnmc_core.workspace.listing import list_experiments

    frame = list_experiments(args.artifacts)
    # runs, then ensembles; each oldest first, damaged folders last. A running job shows its
    # progress (read at this listing), a killed one failed (liveness applied).
    frame = (frame.assign(_ensemble=frame["kind"] != "run", _damaged=frame["state"] == DAMAGED,
                          _created=pd.to_numeric(frame["created_ts"], errors="coerce"))
             .sort_values(["_ensemble", "_damaged", "_created", "run_id"], na_position="last",
                          kind="stable")
             .drop(columns=["_ensemble", "_damaged", "_created", "created_ts"])
             .reset_index(drop=True))
    # the protocol as every score names it (the paper's reads "paper (leaky: split by image)")
    frame.insert(frame.columns.get_loc("protocol") + 1, "protocol_label",
                 frame["protocol"].map(protocol_label))
    studies = list_studies(args.artifacts)
    if args.json:
        records = json.loads(frame.to_json(orient="records"))
        # studies after the runs and ensembles, as records of kind "study" (oldest first)
        records += [{"kind": "study", **r} for r in json.loads(
            studies.iloc[::-1].drop(columns=["created_ts"]).to_json(orient="records"))]
        print(json.dumps(records, indent=2))
        return 0
    if frame.empty and studies.empty:
        print("no runs yet: start one with `python -m cnmc_core train --preset demo_scratch --data DIR`")
        return 0
    for row in frame.itertuples():
        problem = row.state in ("failed", DAMAGED) and isinstance(row.error, str) and row.error
        data_kind = row.data_kind or "unknown"
        if data_kind == "unknown" and row.kind == "run" and isinstance(row.path, str):
            # trained before provenance was kept: derived from its dataset, as the model cards do
            derived = run_provenance(row.path)
            if derived["kind"] != "unknown":
                data_kind = f"{derived['kind']} (derived)"
        print(f"{row.run_id}  {row.state:<9} {row.model or '':<20} {row.protocol_label:<8} "
              f"val F1 {_score(row.val_weighted_f1, row.val_f1_low, row.val_f1_high)}  "
              f"test F1 {_score(row.test_weighted_f1, row.test_f1_low, row.test_f1_high)}  "
              f"test AUC {_fmt(row.test_auc, 3) or '-'}  data {data_kind}"
              f" {row.progress}" + (f"  error: {row.error}" if problem else ""))
    if len(studies):
        print("studies:")
        for line in format_studies(studies):
            print(f"  {line}")
    return 0


def _cancel(args) -> int:
    from cnmc_core.auth.roles import local_actor
    from cnmc_core.workspace.layout import run_path
    from cnmc_core.workspace.queue import cancel_run

    if str(args.run).startswith("study-") or (Path(args.run) / "study.json").is_file():
        from cnmc_core.study.runner import cancel_study
        from cnmc_core.study.store import study_path

        done = cancel_study(study_path(args.run, args.artifacts), actor=local_actor("cli"))
        print(f"study cancel requested; {done['cancelled']} active run(s) cancelled")
        return 0
    status = cancel_run(run_path(args.run, args.artifacts), actor=local_actor("cli"))
    print(f"cancel requested; state now {status['state']}")
    return 0


def _evaluate(args) -> int:
    from cnmc_core.training.evaluate import evaluate_run
    from cnmc_core.workspace.layout import run_path

    # evaluate_run checks --split and --source, and loads the model, before writing anything
    out, _ = evaluate_run(run_path(args.run, args.artifacts), args.data, split=args.split,
                          source=args.source, artifacts=args.artifacts)
    print(out)
    return 0


def _presets(args) -> int:
    from cnmc_core.training.config import list_presets, load_preset

    records = [load_preset(name) for name in list_presets()]
    if args.json:
        print(json.dumps(records, indent=2))
        return 0
    for c in records:
        stages = " then ".join(f"{s['name']} ({s['optimizer']} {s['learning_rate']:g}, {s['epochs']} ep)"
                               for s in c["stages"])
        print(f"{c['name']:<28} {c['model']:<20} {c['image_size']:>4}px weights={c['weights']:<8} {stages}")
    return 0
