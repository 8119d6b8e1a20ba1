"""Cold preprocessing (read, crop, resize, write the cache) against a cache hit on the same images.

Prints JSON: images, seconds and images per second for the cold build and for a hit (open the
cache and read every image into memory, which is what a training run does), and their ratio.
Goal of issue 2: the hit at least 20x faster than the cold build. Two hit figures are printed:
the first read right after the build (on this VM the kernel reclaims the pages of a file just
written, so that read goes to disk) and the median of the next reads (pages in memory).

    python benchmarks/bench_preprocess.py [--images 1000] [--size 224] [--jobs -1]
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

import numpy as np  # noqa: E402

from cnmc_core.data.manifest import scan_dataset
from cnmc_core.data.preprocess import build_cache
from cnmc_core.data.synth import generate_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000, help="about how many 450x450 images")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--jobs", type=int, default=-1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        per_subject = max(1, -(-args.images // 18))  # 18 subjects in the folds
        generate_dataset(Path(tmp) / "data", subjects_all=12, subjects_hem=6, cells_per_subject=per_subject,
                         prelim_subjects=(2, 1), final_subjects=(2, 1))
        manifest = scan_dataset(Path(tmp) / "data").manifest
        # cold: nothing cached (the image files are in the page cache, as after a scan)
        t0 = time.perf_counter()
        cold = build_cache(manifest, args.size, root=Path(tmp) / "art", n_jobs=args.jobs)
        _ = cold.get(cold.image_ids)
        cold_s = time.perf_counter() - t0
        assert not cold.hit
        # hit: a new run opens the same cache and reads every image
        hits = []
        for _ in range(5):
            t0 = time.perf_counter()
            hit = build_cache(manifest, args.size, root=Path(tmp) / "art", n_jobs=args.jobs)
            _ = hit.get(hit.image_ids)
            hits.append(time.perf_counter() - t0)
            assert hit.hit
        first_s, hit_s = hits[0], float(np.median(hits[1:]))
        n = len(manifest)
    print(json.dumps({
        "benchmark": "preprocess cache: cold build vs hit",
        "images": n, "size": args.size, "jobs": args.jobs, "cpus": os.cpu_count(),
        "cold_seconds": round(cold_s, 3), "cold_images_per_s": round(n / cold_s, 1),
        "first_hit_seconds": round(first_s, 4), "ratio_first_hit_vs_cold": round(cold_s / first_s, 1),
        "hit_seconds": round(hit_s, 4), "hit_images_per_s": round(n / hit_s, 1),
        "ratio_hit_vs_cold": round(cold_s / hit_s, 1), "goal_ratio": 20,
        "machine": platform.platform(), "python": platform.python_version(),
    }, indent=2))


if __name__ == "__main__":
    main()
