"""Benchmark: does a study's score hold still where one split's does not?

On the default synthetic dataset (generated once under ``--work``), it runs

1. a ``--folds``-fold subject study of ``demo_scratch`` under ``--seeds`` seeds, and
2. the single-split run (``subject`` protocol) under the same seeds,

and prints JSON with the sd across seeds of the study's pooled out-of-fold AUC (each seed's
pooled score over every subject) next to the sd across seeds of the single split's test AUC.
Goal (issue 13): the study's sd is at most 0.03 and at most a third of the single split's.

With ``--demo-members`` it also runs the 5-fold subject study of the four demo presets and
prints each member's pooled out-of-fold AUC and how often the members disagree (issue 14: the
best at least 0.80, every one at least 0.70, disagreement on at least 10% of images). With
``--subject-effect`` it runs the same study of ``demo_scratch`` under ``image-kfold`` and
prints the pooled test AUC of the image folds minus the subject folds (issue 14: 0.02-0.08).

Every run trains on this machine's CPUs through the local queue, one at a time; the wall time
of each part is printed with the machine's load (epoch times vary up to 2x on this VM). Runs are
real training runs: expect about a minute per demo_scratch run on 2 idle cores.

Usage::

    python benchmarks/bench_study.py [--folds 5] [--seeds 3] [--demo-members] [--subject-effect]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def dataset(work: Path) -> Path:
    from cnmc_core.data.synth import generate_dataset

    out = work / "data"
    root = out / "C-NMC_Leukemia"
    if not root.is_dir():
        generate_dataset(out, seed=0)
    return root


def run_study(presets, data, art, folds, seeds, protocol="subject-kfold") -> tuple[dict, float]:
    from cnmc_core.study.plan import plan_study
    from cnmc_core.study.results import read_results
    from cnmc_core.study.runner import run_coordinator
    from cnmc_core.study.store import create_study

    t0 = time.perf_counter()
    plan = plan_study(presets, data=data, folds=folds, seeds=seeds, protocol=protocol)
    folder = create_study(plan, art)
    run_coordinator(folder, log=lambda text: print(f"  {text}", file=sys.stderr, flush=True))
    return read_results(folder) | {"folder": str(folder)}, time.perf_counter() - t0


def single_split(data, art, seeds) -> tuple[list[float], float]:
    from cnmc_core.training.config import resolve_config
    from cnmc_core.training.launch import start_run
    from cnmc_core.training.loop import train_run

    t0 = time.perf_counter()
    aucs = []
    for seed in range(seeds):
        run = start_run(resolve_config("demo_scratch", data=str(data), seed=seed), art, detach=False)
        metrics = train_run(run, log=None, artifacts=art, wait_in_queue=False)
        aucs.append(float(metrics["test"]["roc_auc"]))
    return aucs, time.perf_counter() - t0


def disagreement(folder: str) -> float:
    import pandas as pd

    pooled = pd.read_csv(Path(folder) / "pooled.csv", dtype={"image_id": str})
    pooled = pooled[~pooled["preset"].str.startswith("ensemble:")]
    calls = pooled.assign(all=pooled["prob"] >= pooled["threshold"]).pivot(
        index="image_id", columns="preset", values="all")
    return float((calls.nunique(axis=1) > 1).mean())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--work", default="/tmp/cnmc-bench-study")
    parser.add_argument("--demo-members", action="store_true")
    parser.add_argument("--subject-effect", action="store_true")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    data = dataset(work)
    art = work / f"artifacts-{int(time.time())}"
    out: dict = {"machine": f"{os.cpu_count()} cores", "load_at_start": _load()}

    study, t_study = run_study(["demo_scratch"], data, art, args.folds, args.seeds)
    per_seed = [s["roc_auc"] for s in study["presets"]["demo_scratch"]["seeds"].values()]
    split, t_split = single_split(data, art, args.seeds)
    sd_study, sd_split = float(np.std(per_seed, ddof=1)), float(np.std(split, ddof=1))
    out["study_vs_single_split"] = {
        "folds": args.folds, "seeds": args.seeds,
        "study_pooled_oof_auc_per_seed": per_seed, "study_sd": sd_study,
        "study_pooled_auc_all_seeds": study["presets"]["demo_scratch"]["pooled"]["roc_auc"],
        "single_split_test_auc_per_seed": split, "single_split_sd": sd_split,
        "ratio_sd": sd_study / sd_split if sd_split else None,
        "goal": "study sd <= 0.03 and <= 1/3 of the single split's",
        "met": bool(sd_study <= 0.03 and sd_split > 0 and sd_study <= sd_split / 3),
        "wall_s": {"study": round(t_study, 1), "single_split": round(t_split, 1)},
        "load": _load()}
    if args.demo_members:
        from cnmc_core.demo import DEMO_PRESETS

        members, t = run_study(list(DEMO_PRESETS), data, art, 5, 1)
        aucs = {p: members["presets"][p]["pooled"]["roc_auc"] for p in DEMO_PRESETS}
        dis = disagreement(members["folder"])
        out["demo_members"] = {
            "pooled_oof_auc": aucs, "disagreement": dis,
            "ensembles": {m: s["pooled"]["roc_auc"] for m, s in
                          (members.get("ensembles") or {}).get("presets", {}).items()},
            "goal": "best >= 0.80, every >= 0.70, disagreement >= 0.10",
            "met": bool(max(aucs.values()) >= 0.80 and min(aucs.values()) >= 0.70 and dis >= 0.10),
            "wall_s": round(t, 1), "load": _load()}
    if args.subject_effect:
        image, t = run_study(["demo_scratch"], data, art, 5, 1, protocol="image-kfold")
        subject_auc = study["presets"]["demo_scratch"]["seeds"]["0"]["roc_auc"] \
            if "0" in study["presets"]["demo_scratch"]["seeds"] else per_seed[0]
        gap = image["presets"]["demo_scratch"]["pooled"]["roc_auc"] - subject_auc
        out["subject_effect"] = {"image_kfold_auc": image["presets"]["demo_scratch"]["pooled"]["roc_auc"],
                                 "subject_kfold_auc_seed0": subject_auc, "gap": gap,
                                 "goal": "0.02 <= gap <= 0.08", "met": bool(0.02 <= gap <= 0.08),
                                 "wall_s": round(t, 1), "load": _load()}
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
