"""Benchmark: seconds per Grad-CAM heatmap of ResNet50 cut at conv4 (224x224), on this machine.

Builds ``resnet50_conv4_v1`` with random weights (nothing to download), saves it as a run would
(``model.keras``), loads it through :func:`cnmc_core.models.io.load_model_cached`, makes one warm-up
call, then times single-image heatmaps (the dashboard's case) and a batch of 8. Baselines
measured in the same run on the same image: the eager (``compiled=False``) Grad-CAM, i.e. the
plain GradientTape implementation, and one forward pass with ``model.predict_on_batch``.

Usage: ``python benchmarks/bench_gradcam.py [--repeats 5] [--size 224]``; prints one JSON object.
Goal: at most 1.0 s per heatmap on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from cnmc_core.explain.cam import gradcam
from cnmc_core.models.io import clear_model_cache, load_model_cached
from cnmc_core.models.registry import create_model

GOAL_S = 1.0


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet50_conv4_v1")
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()

    build_s, model = _timed(lambda: create_model(args.model, image_size=args.size))
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(args.size, args.size, 3)).astype("uint8")
    batch = rng.integers(0, 256, size=(8, args.size, args.size, 3)).astype("uint8")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.keras"
        model.save(path)
        clear_model_cache()
        load_s, loaded = _timed(lambda: load_model_cached(path))
        cached_load_s, again = _timed(lambda: load_model_cached(path))
        assert again is loaded

        warmup_s, res = _timed(lambda: gradcam(loaded, image, target="all"))
        single = [_timed(lambda: gradcam(loaded, image, target="all"))[0]
                  for _ in range(args.repeats)]
        hem = [_timed(lambda: gradcam(loaded, image, target="hem", method="gradcam++"))[0]
               for _ in range(args.repeats)]
        batch_s, bres = _timed(lambda: gradcam(loaded, batch, target="predicted"))
        gradcam(loaded, image, target="all", compiled=False)  # warm-up of the baselines too
        eager = [_timed(lambda: gradcam(loaded, image, target="all", compiled=False))[0]
                 for _ in range(args.repeats)]
        x = image[None].astype("float32")
        loaded.predict_on_batch(x)
        forward = [_timed(lambda: loaded.predict_on_batch(x))[0] for _ in range(args.repeats)]

    per_heatmap = statistics.median(single)
    baseline = statistics.median(eager)
    print(json.dumps({
        "benchmark": "gradcam",
        "model": args.model,
        "image_size": args.size,
        "layer": res.layer,
        "seconds_per_heatmap": round(per_heatmap, 4),
        "goal": GOAL_S,
        "meets_goal": per_heatmap <= GOAL_S,
        "seconds_per_heatmap_gradcam_pp_hem": round(statistics.median(hem), 4),
        "seconds_per_heatmap_in_batch_of_8": round(batch_s / len(batch), 4),
        "baseline_eager_gradcam_seconds": round(baseline, 4),
        "speedup_vs_eager": round(baseline / per_heatmap, 2) if per_heatmap > 0 else None,
        "forward_predict_seconds": round(statistics.median(forward), 4),
        "warmup_seconds": round(warmup_s, 3),
        "build_seconds": round(build_s, 3),
        "load_seconds": round(load_s, 3),
        "cached_load_seconds": round(cached_load_s, 6),
        "repeats": args.repeats,
        "heatmap_finite": bool(np.isfinite(res.heatmaps).all()
                               and np.isfinite(bres.heatmaps).all()),
        "cpu_count": os.cpu_count(),
    }, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
