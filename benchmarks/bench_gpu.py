"""Training and inference throughput of the paper's two main networks at the paper's sizes, on
whatever device the Keras backend runs on: the GPU figure of issue 17.

ResNet50 cut at ``conv4_block6_out`` + GAP + Dense 256 + Dropout (``resnet50_conv4_v1``) at
224 px, and the scratch CNN (``scratch_dd256``, Dropout + Dense 256 + Dropout) at 300 px, both
with random weights, fed one synthetic batch (batch 32, values 0-255) from host memory every
step, for a fixed number of steps after a warm-up (compilation). Each model is measured in a
fresh child process, so that its peak memory is its own. Prints JSON: per model, images per
second for training (``train_on_batch``, Adam) and inference (``predict_on_batch``, batch 64),
the time of one epoch of the paper's training set (``--epoch-images``, 10,661 images, computed
from the training throughput), peak device memory (GPU: the backend's own counter, jax's
``memory_stats()['peak_bytes_in_use']``, ``torch.cuda.max_memory_allocated()`` or TensorFlow's
``get_memory_info``; CPU: none) and peak RSS, the backend and the device name.

It imports only ``cnmc_core.models`` (the registry and its builders) and Keras: no TensorFlow
under ``KERAS_BACKEND=jax`` or ``torch`` (made unimportable there, as on the servers it is meant
for, so a run on a machine that has it proves it is not needed; ``tensorflow_imported`` in the
output says so), and no pandas, OpenCV or scikit-learn.

Run on a GPU server that has JAX (or PyTorch) but neither TensorFlow nor Keras, offline, from a
copy of this repository (``cnmc_core/`` and ``benchmarks/``), with these wheels brought along
(what ``import keras`` and a train step need, found in a fresh virtual environment holding
only ``jax[cpu]==0.10.2`` or ``torch==2.13.0`` and ``numpy``; install with ``--no-deps``):

- both backends: ``keras==3.15.1``, ``absl-py==2.5.1``, ``rich==15.0.0``, ``packaging==26.2``
  (pure Python);
- jax: ``optree==0.20.0`` (compiled: fetch the wheel of the server's Python, e.g.
  ``pip download --no-deps --only-binary=:all: --python-version 3.11
  --platform manylinux2014_x86_64 optree==0.20.0``) and ``typing_extensions`` (pure Python);
  jax brings ``ml_dtypes`` itself;
- torch: ``ml_dtypes==0.7.0`` (compiled, fetched the same way); torch brings
  ``typing_extensions`` and Keras' torch backend needs no ``optree``.

``h5py`` is not needed (nothing is saved). Then::

    pip install --no-index --no-deps wheels/*.whl
    KERAS_BACKEND=jax python benchmarks/bench_gpu.py           # or KERAS_BACKEND=torch

Options: ``--models`` (default both), ``--steps 50`` timed training steps, ``--warmup 5``,
``--predict-steps 20``, ``--batch-size 32``, ``--mixed-precision`` (Keras' ``mixed_float16``).
With the defaults it takes about a minute per model on a recent GPU (most of it compilation),
well within 5 minutes; on a 2-core CPU use ``--steps 3 --warmup 1 --predict-steps 2``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if os.environ.get("KERAS_BACKEND") in ("jax", "torch"):
    # as on the GPU servers, which have no TensorFlow: keras.utils.set_random_seed would
    # otherwise import an installed TensorFlow to seed it too, into a jax or torch process
    sys.modules["tensorflow"] = None

#: The paper's networks and input sizes.
MODELS = {"resnet50_conv4_v1": 224, "scratch_dd256": 300}


def device_name(backend: str) -> str:
    """The accelerator the backend computes on, else the CPU's model name."""
    if backend == "jax":
        import jax

        d = jax.devices()[0]
        if d.platform != "cpu":
            return f"{d.device_kind} ({d.platform}, {jax.device_count()} device(s))"
    elif backend == "torch":
        import torch

        if torch.cuda.is_available():
            return f"{torch.cuda.get_device_name(0)} (cuda, {torch.cuda.device_count()} device(s))"
    elif backend == "tensorflow":
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            details = tf.config.experimental.get_device_details(gpus[0])
            return f"{details.get('device_name', gpus[0].name)} (gpu, {len(gpus)} device(s))"
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        cpu = platform.processor() or platform.machine()
    return f"CPU: {cpu} ({os.cpu_count()} cores)"


def peak_device_bytes(backend: str) -> int | None:
    """Peak memory allocated on the accelerator so far, from the backend; None on a CPU."""
    if backend == "jax":
        import jax

        d = jax.devices()[0]
        stats = d.memory_stats() if d.platform != "cpu" else None
        return int(stats["peak_bytes_in_use"]) if stats and "peak_bytes_in_use" in stats else None
    if backend == "torch":
        import torch

        return int(torch.cuda.max_memory_allocated()) if torch.cuda.is_available() else None
    import tensorflow as tf

    if not tf.config.list_physical_devices("GPU"):
        return None
    return int(tf.config.experimental.get_memory_info("GPU:0")["peak"])


def measure(name: str, args) -> dict:
    """Train and predict ``name`` at its paper size for a fixed number of steps (this process)."""
    import keras
    import numpy as np

    from cnmc_core.models.registry import create_model

    backend = keras.backend.backend()
    if args.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    size = MODELS[name]
    keras.utils.set_random_seed(0)
    model = create_model(name, image_size=size, weights="none")
    # as training.backend.prepare_runtime: jax always jit-compiles, the others as the default config
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy",
                  jit_compile=backend == "jax")
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, size=(args.batch_size, size, size, 3)).astype(np.float32)
    y = (np.arange(args.batch_size) % 2).astype(np.float32).reshape(-1, 1)
    t0 = time.perf_counter()
    for _ in range(args.warmup):
        model.train_on_batch(x, y)  # returns the loss as a number: every step is waited for
    warmup_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(args.steps):
        model.train_on_batch(x, y)
    train_ips = args.steps * args.batch_size / (time.perf_counter() - t0)

    xp = rng.uniform(0, 255, size=(64, size, size, 3)).astype(np.float32)
    for _ in range(2):
        np.asarray(model.predict_on_batch(xp))
    t0 = time.perf_counter()
    for _ in range(args.predict_steps):
        np.asarray(model.predict_on_batch(xp))  # copied to the host: waited for
    predict_ips = args.predict_steps * len(xp) / (time.perf_counter() - t0)
    device_bytes = peak_device_bytes(backend)
    versions = {"keras": keras.__version__}
    for module in {"jax": ("jax", "jaxlib"), "torch": ("torch",)}.get(backend, ("tensorflow",)):
        versions[module] = __import__(module).__version__
    return {
        "backend": backend, "versions": versions, "device": device_name(backend),
        "tensorflow_imported": sys.modules.get("tensorflow") is not None,
        "model": name, "image_size": size, "params": int(model.count_params()),
        "batch_size": args.batch_size, "train_steps": args.steps, "warmup_steps": args.warmup,
        "warmup_seconds": round(warmup_s, 1),
        "train_img_per_s": round(train_ips, 1), "predict_img_per_s": round(predict_ips, 1),
        "epoch_images": args.epoch_images, "epoch_seconds": round(args.epoch_images / train_ips, 1),
        "peak_device_memory_mb": None if device_bytes is None else round(device_bytes / 2**20),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "mixed_precision": bool(args.mixed_precision),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--predict-steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epoch-images", type=int, default=10661)
    parser.add_argument("--mixed-precision", action="store_true")
    parser.add_argument("--one", choices=list(MODELS), help=argparse.SUPPRESS)  # the child's model
    args = parser.parse_args()
    for flag in ("steps", "warmup", "predict_steps", "batch_size", "epoch_images"):
        if getattr(args, flag) < (0 if flag == "warmup" else 1):
            parser.error(f"--{flag.replace('_', '-')} must be at least {0 if flag == 'warmup' else 1}; "
                         f"got {getattr(args, flag)}")
    if args.one:
        print(json.dumps(measure(args.one, args)))
        return
    started = time.perf_counter()
    results = []
    for name in args.models:
        proc = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--one", name],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"{name} failed:\n{proc.stderr[-4000:]}")
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    first = results[0]
    tf_imported = [r.pop("tensorflow_imported") for r in results]
    print(json.dumps({
        "benchmark": "training and inference throughput at the paper's sizes (random weights, synthetic batches)",
        "backend": first["backend"], "versions": first["versions"], "device": first["device"],
        "tensorflow_imported": any(tf_imported),
        "results": [{k: v for k, v in r.items() if k not in ("backend", "versions", "device")} for r in results],
        "seconds": round(time.perf_counter() - started, 1),
        "load_average": [round(v, 2) for v in os.getloadavg()], "machine": platform.platform(),
        "python": platform.python_version(),
    }, indent=2))


if __name__ == "__main__":
    main()
