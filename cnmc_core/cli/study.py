"""CLI verbs for studies: ``study`` (and its hidden ``study-worker``).

``python -m cnmc_core study --presets P1 P2 ... --data ROOT --folds K --seeds S
[--protocol subject-kfold|image-kfold] [--backend local|ray] [--address ADDR] [--epochs N]
[--image-size PX] [--artifacts DIR]`` checks the whole study, creates its folder and runs,
starts its coordinator as a detached process and follows it: the study folder is printed first
and last, the progress between. Ctrl-C stops following, not the study (``runs`` shows it,
``cancel STUDY`` stops it). ``--detach`` returns at once.
"""

from __future__ import annotations

import argparse
import sys
import time

from cnmc_core.cli.options import add_artifacts_option

__all__ = ["register"]


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``study`` and ``study-worker`` verbs."""
    p = sub.add_parser(
        "study", help="train presets on K subject-grouped folds x S seeds and compare them on "
        "every subject", description="A study: every preset trained on the same K folds (fold i "
        "test, fold i+1 val) under S seeds; its pooled out-of-fold predictions score every "
        "subject, and every pair of presets is compared with a corrected resampled t-test over "
        "the folds and a paired subject bootstrap. Prints the study folder first and last.")
    p.add_argument("--presets", nargs="+", metavar="PRESET",
                   help="one or more presets (see `presets`)")
    p.add_argument("--data", help="dataset folder or manifest CSV")
    p.add_argument("--resume", metavar="STUDY", help="follow an existing study again: its "
                   "coordinator waits for the runs still active and writes the pooled results "
                   "(after a crash, or to write them again)")
    p.add_argument("--folds", type=int, default=5, help="K folds, at least 3 (default 5)")
    p.add_argument("--seeds", type=int, default=1, help="S seeds 0..S-1 (default 1): each draws "
                   "other folds")
    p.add_argument("--protocol", default="subject-kfold", help="subject-kfold (default) or "
                   "image-kfold (the paper's split as folds: leaky)")
    p.add_argument("--backend", default="local", help="local (default: the queue of detached "
                   "workers) or ray")
    p.add_argument("--address", help="Ray cluster: auto, host:port or ray://host:port")
    p.add_argument("--num-cpus", type=float, help="CPUs each run asks of the Ray cluster (default 1)")
    p.add_argument("--num-gpus", type=float, help="GPUs each run asks of the Ray cluster (default 0)")
    p.add_argument("--epochs", type=int, help="maximum epochs of every stage (default: the presets')")
    p.add_argument("--image-size", type=int, help="input side of every preset, px")
    p.add_argument("--detach", action="store_true", help="return once the study is started")
    add_artifacts_option(p)
    p.set_defaults(func=_study)

    p = sub.add_parser("study-worker", help=argparse.SUPPRESS)
    p.add_argument("study_dir")
    p.set_defaults(func=_worker)


def _follow(folder, poll: float = 2.0) -> int:
    from cnmc_core.contracts import ACTIVE_STATES
    from cnmc_core.workspace.status import effective_status

    last = None
    try:
        while True:
            status = effective_status(folder)
            line = f"{status.get('state')}: {status.get('message') or ''}"
            if line != last:
                print(line, flush=True)
                last = line
            if status.get("state") not in ACTIVE_STATES:
                break
            time.sleep(poll)
    except KeyboardInterrupt:
        print("stopped following; the study goes on (`python -m cnmc_core runs` shows it, "
              f"`python -m cnmc_core cancel {folder.name}` stops it)", file=sys.stderr)
        print(folder)
        return 130
    state = status.get("state")
    if state == "completed":
        _summary(folder)
    elif status.get("error"):
        print(f"error: {status['error']}", file=sys.stderr)
    print(folder)
    return 0 if state == "completed" else 1


def _summary(folder) -> None:
    from cnmc_core.study.report import format_study

    print(format_study(folder))


def _completed(folder) -> bool:
    """Whether the study is completed with readable results (a damaged metrics.json is resumed:
    the coordinator pools them again)."""
    from cnmc_core.exceptions import CnmcError
    from cnmc_core.study.results import read_results
    from cnmc_core.workspace.status import effective_status

    if effective_status(folder).get("state") != "completed":
        return False
    try:
        read_results(folder)
    except CnmcError:
        return False
    return True


def _study(args: argparse.Namespace) -> int:
    from cnmc_core.exceptions import ConfigError
    from cnmc_core.study.plan import plan_study
    from cnmc_core.study.store import launch_coordinator, start_study, study_path

    if args.resume:
        folder = study_path(args.resume, args.artifacts)
        print(folder, flush=True)
        if _completed(folder):  # nothing to resume: its results, and no new coordinator
            print(f"study {folder.name} is completed; nothing to resume. Its results:")
            _summary(folder)
            print(folder)
            return 0
        launch_coordinator(folder, resume=True)
        return 0 if args.detach else _follow(folder)
    if not args.presets or not args.data:
        raise ConfigError("study needs --presets P1 [P2 ...] and --data ROOT (or --resume STUDY).")

    plan = plan_study(args.presets, data=args.data, folds=args.folds, seeds=args.seeds,
                      protocol=args.protocol, backend=args.backend, address=args.address,
                      epochs=args.epochs, image_size=args.image_size, num_cpus=args.num_cpus,
                      num_gpus=args.num_gpus, artifacts=args.artifacts)
    from cnmc_core.auth.roles import local_actor

    folder = start_study(plan, args.artifacts, actor=local_actor("cli"))
    print(folder, flush=True)
    print(f"{len(plan.configs)} runs: {', '.join(plan.presets)} x {plan.folds} folds x "
          f"{len(plan.seeds)} seed(s), {plan.settings()['protocol_label']}, {plan.backend} backend",
          flush=True)
    if args.detach:
        print("started in the background; follow it with `python -m cnmc_core runs`")
        print(folder)
        return 0
    return _follow(folder)


def _worker(args: argparse.Namespace) -> int:
    from pathlib import Path

    from cnmc_core.study.runner import StudyCancelled, run_coordinator

    try:
        run_coordinator(Path(args.study_dir))
    except StudyCancelled:
        return 1
    except Exception:  # noqa: BLE001 - recorded in status.json by the coordinator
        import traceback

        traceback.print_exc()
        return 1
    return 0
