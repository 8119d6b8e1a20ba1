"""Realism of the synthetic cells against the real samples, measured in the same run.

Prints JSON. The hand features (cnmc_core.data.cell_features) of the synthetic dataset's labelled
images (training folds and preliminary set) and of the 40 real samples, and the targets of
issue 14, each with its value, the real reference, the target and pass/fail:

(a) the per-image sd of circularity, area, mean red and mean blue, per class, within +-30 % of
    the real samples' sd;
(b) a logistic regression on the 8 features, 5-fold CV grouped by subject, pooled out-of-fold
    AUC in 0.60-0.80 (real: about 0.70);
(c) each single feature's AUC for ALL within +-0.10 of its value on the real samples.

The real reference is all 40 samples, as the targets are stated; each check also shows the value
on the held-out half (the 20 samples the generator was not calibrated on) and whether it passes
against that half alone.

    python benchmarks/bench_synth.py                 # generates the default dataset (1,960 PNGs)
    python benchmarks/bench_synth.py --data DIR      # an existing dataset
    python benchmarks/bench_synth.py --per-class 400 # a subsample (seeded) for speed
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cnmc_core.data.cell_features import FEATURE_NAMES  # noqa: E402
from cnmc_core.data.synth import generate_dataset  # noqa: E402
from cnmc_core.data.synth_realism import (  # noqa: E402
    class_stats,
    default_real_samples,
    feature_aucs,
    grouped_lr_auc,
    real_tables,
    synthetic_table,
)

SD_FEATURES = ("circularity", "area", "mean_r", "mean_b")
SD_TOLERANCE = 0.30
AUC_TOLERANCE = 0.10
LR_RANGE = (0.60, 0.80)


def _r(v: float) -> float:
    return round(float(v), 4)


def checks(syn, real_all, real_held) -> list[dict]:
    """Every figure with its target and pass/fail (see the module docstring)."""
    out = []
    s_syn, s_all, s_held = class_stats(syn), class_stats(real_all), class_stats(real_held)
    for cls in ("all", "hem"):
        for name in SD_FEATURES:
            v, ref, held = s_syn[cls][name]["sd"], s_all[cls][name]["sd"], s_held[cls][name]["sd"]
            out.append({"check": f"(a) sd of {name}, {cls.upper()}", "value": _r(v), "real": _r(ref),
                        "target": f"{_r(ref * (1 - SD_TOLERANCE))}..{_r(ref * (1 + SD_TOLERANCE))}",
                        "pass": abs(v - ref) <= SD_TOLERANCE * ref,
                        "held_out_real": _r(held),
                        "held_out_pass": abs(v - held) <= SD_TOLERANCE * held})
    lr_syn, lr_all, lr_held = grouped_lr_auc(syn), grouped_lr_auc(real_all), grouped_lr_auc(real_held)
    out.append({"check": "(b) 8-feature logistic regression, subject-grouped 5-fold CV, AUC",
                "value": _r(lr_syn), "real": _r(lr_all), "target": f"{LR_RANGE[0]}..{LR_RANGE[1]}",
                "pass": LR_RANGE[0] <= lr_syn <= LR_RANGE[1], "held_out_real": _r(lr_held),
                "held_out_pass": LR_RANGE[0] <= lr_syn <= LR_RANGE[1]})
    a_syn, a_all, a_held = feature_aucs(syn), feature_aucs(real_all), feature_aucs(real_held)
    for name in FEATURE_NAMES:
        v, ref, held = a_syn[name], a_all[name], a_held[name]
        out.append({"check": f"(c) AUC of {name}", "value": _r(v), "real": _r(ref),
                    "target": f"{_r(ref - AUC_TOLERANCE)}..{_r(ref + AUC_TOLERANCE)}",
                    "pass": abs(v - ref) <= AUC_TOLERANCE, "held_out_real": _r(held),
                    "held_out_pass": abs(v - held) <= AUC_TOLERANCE})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="an existing dataset (default: generate the default one)")
    parser.add_argument("--per-class", type=int, default=None,
                        help="at most this many images per class (default: all labelled images)")
    parser.add_argument("--real", default=None, help="real samples folder (default: ../shared/real-samples)")
    parser.add_argument("--seed", type=int, default=0, help="generator seed and subsample draw")
    args = parser.parse_args()
    real_dir = Path(args.real) if args.real else default_real_samples()
    t0 = time.perf_counter()
    real = real_tables(real_dir)
    with tempfile.TemporaryDirectory() as tmp:
        gen_s = 0.0
        if args.data:
            data = Path(args.data)
        else:
            summary = generate_dataset(Path(tmp) / "data", seed=args.seed)
            data, gen_s = summary.root, summary.seconds
        t1 = time.perf_counter()
        syn = synthetic_table(data, per_class=args.per_class, seed=args.seed)
        feat_s = time.perf_counter() - t1
    rows = checks(syn, real["all"], real["held_out"])
    passed = sum(r["pass"] for r in rows)
    print(json.dumps({
        "benchmark": "synthetic cells vs the real samples: hand features (issue 14)",
        "data": str(args.data) if args.data else f"default dataset, seed {args.seed} (generated)",
        "synthetic_images": {"all": int((syn.y == 1).sum()), "hem": int((syn.y == 0).sum()),
                             "subjects": int(len(set(syn.groups)))},
        "real_images": {k: {"all": int((t.y == 1).sum()), "hem": int((t.y == 0).sum())}
                        for k, t in real.items()},
        "calibrated_on": "fit half of the real samples (cnmc_core.data.cell_features.real_sample_halves)",
        "checks": rows,
        "passed": passed, "failed": len(rows) - passed,
        "held_out_passed": sum(r["held_out_pass"] for r in rows),
        "generate_seconds": round(gen_s, 1), "feature_seconds": round(feat_s, 1),
        "total_seconds": round(time.perf_counter() - t0, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count(),
        "machine": platform.platform(), "python": platform.python_version(),
    }, indent=1))


if __name__ == "__main__":
    main()
