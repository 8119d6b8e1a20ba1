"""Training throughput: our cache + tf.data pipeline against the paper's pipeline.

The paper's pipeline (as in its notebooks): cropped images saved as files in ``{hem,all}/``
folders, read each epoch by ``keras.utils.image_dataset_from_directory`` (decode + resize every
epoch). Ours: the preprocessing cache in memory, batches gathered by ``tf.data``
(:func:`cnmc_core.training.make_dataset`). Same model, same images, same batch size, one
process; the first epoch of each is a warm-up (graph tracing), the next ones are timed.

Prints JSON with images per second of each pipeline per model and the ratio (goal of issue 3:
at least 1.3x on a CPU).

    python benchmarks/bench_train.py [--images 512] [--size 128] [--epochs 2] [--models scratch_dd256 resnet50_conv4_v1]

On a GPU, use the paper's sizes: ``--size 300`` for the scratch CNN and 224 for ResNet50.
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

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import warnings  # noqa: E402

# Keras warns that fit's default shuffle=True is ignored for tf.data inputs; both are shuffled
warnings.filterwarnings("ignore", message=".*shuffle=True.*was passed.*")


def _time_fit(model, dataset, epochs: int, n_images: int) -> float:
    model.fit(dataset, epochs=1, verbose=0)  # warm-up: tracing, first reads
    t0 = time.perf_counter()
    model.fit(dataset, epochs=epochs, verbose=0)
    return n_images * epochs / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--models", nargs="+", default=["scratch_dd256", "resnet50_conv4_v1"])
    args = parser.parse_args()

    import cv2
    import keras
    import tensorflow as tf

    from cnmc_core.data.images import read_image
    from cnmc_core.data.manifest import scan_dataset
    from cnmc_core.data.preprocess import build_cache, crop_to_cell
    from cnmc_core.data.synth import generate_dataset
    from cnmc_core.models.registry import create_model
    from cnmc_core.training.pipeline import make_dataset

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        generate_dataset(tmp / "data", subjects_all=12, subjects_hem=6,
                         cells_per_subject=max(1, args.images // 18), prelim_subjects=(0, 0),
                         final_subjects=(0, 0))
        manifest = scan_dataset(tmp / "data").manifest
        manifest = manifest[manifest["y"] >= 0].head(args.images).reset_index(drop=True)
        n = len(manifest)
        # the paper's input: cropped (not resized) images written as files, read every epoch
        for row in manifest.itertuples():
            out = tmp / "cropped" / row.label / f"{Path(row.image_id).stem}.png"
            out.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(out), cv2.cvtColor(crop_to_cell(read_image(row.path)), cv2.COLOR_RGB2BGR))
        t0 = time.perf_counter()
        cache = build_cache(manifest, args.size, root=tmp / "art")
        images = cache.get(manifest["image_id"].tolist())
        cache_seconds = time.perf_counter() - t0
        labels = manifest["y"].to_numpy()

        for name in args.models:
            baseline_ds = keras.utils.image_dataset_from_directory(
                tmp / "cropped", class_names=["hem", "all"], label_mode="binary",
                image_size=(args.size, args.size), batch_size=args.batch_size, shuffle=True, seed=0,
                verbose=False)
            ours_ds = make_dataset(images, labels, args.batch_size, shuffle=True, seed=0)
            rates = {}
            for label, ds in (("paper_image_dataset_from_directory", baseline_ds), ("ours_cache_tf_data", ours_ds)):
                keras.utils.set_random_seed(0)
                model = create_model(name, image_size=args.size)
                model.compile(optimizer="adam", loss="binary_crossentropy")
                rates[label] = _time_fit(model, ds, args.epochs, n)
                del model
                keras.backend.clear_session()
            results.append({
                "model": name, "size": args.size, "images": n, "batch_size": args.batch_size,
                "paper_pipeline_img_per_s": round(rates["paper_image_dataset_from_directory"], 1),
                "our_pipeline_img_per_s": round(rates["ours_cache_tf_data"], 1),
                "ratio": round(rates["ours_cache_tf_data"] / rates["paper_image_dataset_from_directory"], 2),
            })
    gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
    print(json.dumps({
        "benchmark": "training throughput, ours vs the paper's pipeline", "goal_ratio": 1.3,
        "results": results, "cache_build_seconds": round(cache_seconds, 2),
        "device": gpus or f"CPU ({os.cpu_count()} cores)", "machine": platform.platform(),
        "tensorflow": tf.__version__,
    }, indent=2))


if __name__ == "__main__":
    main()
