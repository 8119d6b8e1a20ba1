"""Training throughput: our cache + PyDataset pipeline against the paper's pipeline, and against
the ``tf.data`` pipeline it replaced.

The paper's pipeline (as in its notebooks): cropped images saved as files in ``{hem,all}/``
folders, read each epoch by ``keras.utils.image_dataset_from_directory`` (decode + resize every
epoch). Ours: the preprocessing cache in memory, batches gathered by a ``keras.utils.PyDataset``
with NumPy in background threads (:func:`cnmc_core.training.batches.make_dataset`), the same
under every Keras backend. ``tf.data`` (TensorFlow only): the same arrays in a host variable,
batches ``tf.gather``-ed by ``tf.data`` (the project's pipeline until issue 17, kept here as
a baseline). Same model, same images, same batch size, one process; for each model the
pipelines take turns ``--rounds`` times (each a fresh model, one warm-up epoch for tracing,
then ``--epochs`` timed ones) and the best round of each is reported, which damps the noise
of a shared machine.

Prints JSON with images per second of each pipeline per model and the ratios (goal of issue 3:
ours at least 1.3x the paper's on a CPU; issue 17: the PyDataset within a few percent of
``tf.data``, else ``tf.data`` stays as the TensorFlow fast path). The paper's and the
``tf.data`` pipelines need TensorFlow installed, also under ``KERAS_BACKEND=jax`` or ``torch``
(Keras feeds a ``tf.data.Dataset`` to any backend).

    python benchmarks/bench_train.py [--images 320] [--size 128] [--epochs 2] [--rounds 2]
        [--models scratch_dd256 resnet50_conv4_v1] [--pipelines paper pydataset tf_data]

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

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PIPELINES = ("paper", "pydataset", "tf_data")


def tf_data_pipeline(images: np.ndarray, labels: np.ndarray, batch_size: int, seed: int = 0):
    """The ``tf.data`` pipeline of the project before issue 17: images in one host variable,
    shuffled index batches ``tf.gather``-ed in TensorFlow's threads."""
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices(np.arange(len(images), dtype=np.int64))
    ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True).batch(batch_size)
    with tf.device("/CPU:0"):
        images_v = tf.Variable(images, trainable=False, dtype=tf.uint8)
        labels_v = tf.constant(labels.astype(np.float32).reshape(-1, 1))

    def load(idx):
        return tf.cast(tf.gather(images_v, idx), tf.float32), tf.gather(labels_v, idx)

    return ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(2)


def _time_fit(model, dataset, epochs: int, n_images: int) -> float:
    model.fit(dataset, epochs=1, verbose=0, shuffle=False)  # warm-up: tracing, first reads
    t0 = time.perf_counter()
    model.fit(dataset, epochs=epochs, verbose=0, shuffle=False)
    return n_images * epochs / (time.perf_counter() - t0)


def _write_cropped(manifest, folder: Path) -> None:
    """The paper's input: cropped (not resized) images written as files, read every epoch."""
    import cv2

    from cnmc_core.data.images import read_image
    from cnmc_core.data.preprocess import crop_to_cell

    for row in manifest.itertuples():
        out = folder / row.label / f"{Path(row.image_id).stem}.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(out), cv2.cvtColor(crop_to_cell(read_image(row.path)), cv2.COLOR_RGB2BGR))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=320)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--models", nargs="+", default=["scratch_dd256", "resnet50_conv4_v1"])
    parser.add_argument("--pipelines", nargs="+", choices=PIPELINES, default=list(PIPELINES))
    args = parser.parse_args()

    from cnmc_core.training.backend import (
        accelerators,
        backend_versions,
        import_backend,
    )

    import_backend()  # TensorFlow's start-up lines kept off stderr
    import keras

    from cnmc_core.data.manifest import scan_dataset
    from cnmc_core.data.preprocess import build_cache
    from cnmc_core.data.synth import generate_dataset
    from cnmc_core.models.registry import create_model
    from cnmc_core.training.batches import make_dataset

    backend = keras.backend.backend()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        generate_dataset(tmp / "data", subjects_all=12, subjects_hem=6,
                         cells_per_subject=max(1, args.images // 18), prelim_subjects=(0, 0),
                         final_subjects=(0, 0))
        manifest = scan_dataset(tmp / "data").manifest
        manifest = manifest[manifest["y"] >= 0].head(args.images).reset_index(drop=True)
        n = len(manifest)
        if "paper" in args.pipelines:
            _write_cropped(manifest, tmp / "cropped")
        t0 = time.perf_counter()
        cache = build_cache(manifest, args.size, root=tmp / "art")
        images = cache.get(manifest["image_id"].tolist())
        cache_seconds = time.perf_counter() - t0
        labels = manifest["y"].to_numpy()

        def dataset(pipeline: str):
            if pipeline == "paper":
                return keras.utils.image_dataset_from_directory(
                    tmp / "cropped", class_names=["hem", "all"], label_mode="binary",
                    image_size=(args.size, args.size), batch_size=args.batch_size, shuffle=True,
                    seed=0, verbose=False)
            if pipeline == "tf_data":
                return tf_data_pipeline(images, labels, args.batch_size, seed=0)
            return make_dataset(images, labels, args.batch_size, shuffle=True, seed=0)

        for name in args.models:
            rates: dict[str, list[float]] = {p: [] for p in args.pipelines}
            for _ in range(args.rounds):
                for pipeline in args.pipelines:
                    keras.utils.set_random_seed(0)
                    model = create_model(name, image_size=args.size)
                    model.compile(optimizer="adam", loss="binary_crossentropy",
                                  jit_compile=backend == "jax")
                    rates[pipeline].append(_time_fit(model, dataset(pipeline), args.epochs, n))
                    del model
                    keras.backend.clear_session()
            best = {p: max(r) for p, r in rates.items()}
            row = {"model": name, "size": args.size, "images": n, "batch_size": args.batch_size,
                   **{f"{p}_img_per_s": round(best[p], 1) for p in args.pipelines},
                   "rounds_img_per_s": {p: [round(v, 1) for v in r] for p, r in rates.items()}}
            if "paper" in best and "pydataset" in best:
                row["ratio_pydataset_vs_paper"] = round(best["pydataset"] / best["paper"], 2)
            if "tf_data" in best and "pydataset" in best:
                row["ratio_pydataset_vs_tf_data"] = round(best["pydataset"] / best["tf_data"], 3)
            if "paper" in best and "tf_data" in best:
                row["ratio_tf_data_vs_paper"] = round(best["tf_data"] / best["paper"], 2)
            results.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)  # kept if a later model is cut off
    print(json.dumps({
        "benchmark": "training throughput, our pipeline vs the paper's and tf.data", "goal_ratio": 1.3,
        "backend": backend, "versions": {**backend_versions(backend), "keras": keras.__version__},
        "results": results, "cache_build_seconds": round(cache_seconds, 2),
        "device": accelerators(backend) or f"CPU ({os.cpu_count()} cores)",
        "load_average": [round(v, 2) for v in os.getloadavg()], "machine": platform.platform(),
    }, indent=2))


if __name__ == "__main__":
    main()
