"""Training: data from the preprocessing cache, two-stage fitting, and the live run folder.

:func:`train_run` is the one code path that trains a run, whether the CLI runs it in the
foreground or the dashboard launches it as a detached worker process
(``python -m cnmc_core worker RUN_DIR``). It

1. resolves the dataset, the split (protocol and seed from ``config.json``) and the cache;
2. builds the model from the registry and trains it stage by stage (feature extraction with the
   base frozen, then fine-tuning), each stage with its own optimizer and learning rate, early
   stopping on val loss and the best weights restored;
3. writes ``history.jsonl`` each epoch, ``status.json`` (heartbeat every 2 s, epoch and batch),
   and at the end ``predictions.csv`` (val and test), ``metrics.json`` and ``model.keras``.

The input pipeline is ``tf.data`` over the cache held in memory: no image is decoded per epoch.
Augmentation draws one of the 8 symmetries of the square per image (flips and 90-degree
rotations, the invariances the paper used) with TensorFlow ops.
"""

from __future__ import annotations

import contextlib
import os
import platform
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pandas as pd

from . import __version__
from .dataset import manifest_fingerprint, resolve_manifest
from .exceptions import ConfigError, DataError
from .fileio import atomic_write_csv, atomic_write_json, read_json
from .preprocess import build_cache
from .runs import (
    CONFIG, LOG, METRICS, MODEL, PREDICTIONS, Heartbeat, append_history, cancel_requested, queue_slot,
    _proc_start_time,
)
from .splits import apply_transform, balance_training, make_split

__all__ = ["DataBundle", "prepare_data", "make_dataset", "train_run", "predict_images",
           "library_versions", "check_config", "evaluate_run", "CancelledError"]

class CancelledError(Exception):
    """The run was cancelled by the user."""


def library_versions() -> dict:
    """Versions recorded in every run's config."""
    import keras
    import sklearn
    import tensorflow as tf

    return {"cnmc_core": __version__, "python": platform.python_version(), "tensorflow": tf.__version__,
            "keras": keras.__version__, "numpy": np.__version__, "pandas": pd.__version__,
            "scikit-learn": sklearn.__version__, "platform": platform.platform()}


@dataclass
class DataBundle:
    """Everything a run needs to know about its images."""

    manifest: pd.DataFrame
    split: pd.DataFrame  # image_id, split, y, subject
    cache: object  # preprocess.ImageCache
    fingerprint: str


def check_config(config: dict) -> pd.DataFrame:
    """Check, before any training starts, everything that can fail early.

    The model name, its overrides and input size, the weights (an ImageNet file missing offline
    fails here, naming the file), the dataset and the split (an empty class fails here).

    Returns:
        The split (``image_id``, ``split``) the run will use.

    Raises:
        ConfigError or DataError with the reason.
    """
    from .models import check_model

    check_model(config["model"], config["image_size"], config["weights"], what="model_args",
                **config.get("model_args", {}))
    if not config.get("data"):
        raise ConfigError("No dataset: give --data ROOT (a C-NMC folder or a manifest CSV); "
                          "`python -m cnmc_core synth artifacts/demo-data` makes a synthetic one.")
    manifest = resolve_manifest(config["data"], verify=False)
    return make_split(manifest, config["split_protocol"], seed=config["seed"],
                      fractions=tuple(config["split_fractions"]))


def _cap(split: pd.DataFrame, cap: int | None, seed: int) -> pd.DataFrame:
    """At most ``cap`` images per split, drawn stratified by class (for quick demo runs)."""
    if cap is None:
        return split
    parts = []
    for _, part in split.groupby("split", sort=False):
        if len(part) <= cap:
            parts.append(part)
            continue
        frac = cap / len(part)
        parts.append(part.groupby("y").sample(frac=frac, random_state=seed))
    return pd.concat(parts).sort_values(["split", "image_id"]).reset_index(drop=True)


def prepare_data(config: dict, artifacts: str | os.PathLike | None = None,
                 progress: Callable[[int, int], None] | None = None) -> DataBundle:
    """Resolve the dataset, split it by the config's protocol and seed, and open the cache.

    Raises:
        ConfigError: no dataset given.
        DataError: the dataset cannot be read or split, or a split lacks a class.
    """
    data = config.get("data")
    if not data:
        raise ConfigError("No dataset: give --data ROOT (a C-NMC folder or a manifest CSV).")
    manifest = resolve_manifest(data)
    split = make_split(manifest, config["split_protocol"], seed=config["seed"],
                       fractions=tuple(config["split_fractions"]))
    split = split.merge(manifest[["image_id", "y", "subject"]], on="image_id")
    split = _cap(split, config.get("max_images_per_split"), config["seed"])
    for name in ("train", "val", "test"):
        part = split[split["split"] == name]
        if part["y"].nunique() < 2:
            raise DataError(f"The {name} split has a single class after sampling; use more images "
                            "(raise max_images_per_split) or another seed.")
    used = manifest[manifest["image_id"].isin(split["image_id"])]
    cache = build_cache(used, config["image_size"], clahe=config.get("clahe", False),
                        root=artifacts, progress=progress)
    return DataBundle(manifest=manifest, split=split, cache=cache, fingerprint=manifest_fingerprint(manifest))


def _dihedral(images, bits):
    """Apply flip-left-right, flip-up-down and transpose per image according to 3 bits."""
    import tensorflow as tf

    def pick(mask, a, b):
        return tf.where(tf.reshape(mask, [-1, 1, 1, 1]), a, b)

    images = pick(bits[:, 0], tf.reverse(images, axis=[2]), images)
    images = pick(bits[:, 1], tf.reverse(images, axis=[1]), images)
    return pick(bits[:, 2], tf.transpose(images, [0, 2, 1, 3]), images)


def make_dataset(images: np.ndarray, labels: np.ndarray, batch_size: int, shuffle: bool = False,
                 augment: bool = False, seed: int = 0):
    """A ``tf.data.Dataset`` of (float32 image batch 0-255, float32 label) from in-memory arrays.

    Args:
        images: uint8 (N, S, S, 3), already preprocessed (from the cache).
        labels: 0/1 per image.
        batch_size: images per batch.
        shuffle: reshuffle every epoch (seeded).
        augment: random flips/rot90 per image (the 8 symmetries of the square).
        seed: seed of shuffling and augmentation.
    """
    import tensorflow as tf

    n = len(images)
    ds = tf.data.Dataset.from_tensor_slices(np.arange(n, dtype=np.int64))
    if shuffle:
        ds = ds.shuffle(n, seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    # The images live in one non-trainable variable on the host: batches are tf.gather'ed in
    # TensorFlow's threads, without the GIL of a py_function, and a variable (unlike a constant
    # captured by the dataset function) has no 2 GB graph limit.
    with tf.device("/CPU:0"):
        images_v = tf.Variable(images, trainable=False, dtype=tf.uint8)
        labels_v = tf.constant(labels.astype(np.float32).reshape(-1, 1))

    def load(idx):
        x = tf.cast(tf.gather(images_v, idx), tf.float32)
        if augment:
            bits = tf.random.uniform([tf.shape(x)[0], 3], 0, 2, dtype=tf.int32, seed=seed) > 0
            x = _dihedral(x, bits)
        return x, tf.gather(labels_v, idx)

    return ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(2)


def _training_arrays(bundle: DataBundle, config: dict) -> tuple[np.ndarray, np.ndarray]:
    train = bundle.split[bundle.split["split"] == "train"]
    if config.get("balance"):
        plan = balance_training(train[["image_id", "y"]], seed=config["seed"])
    else:
        plan = train[["image_id", "y"]].assign(transform="none")
    images = bundle.cache.get(plan["image_id"].tolist())
    for i, t in enumerate(plan["transform"].to_numpy()):
        if t != "none":
            images[i] = apply_transform(images[i], t)
    return images, plan["y"].to_numpy()


def _split_arrays(bundle: DataBundle, name: str) -> tuple[pd.DataFrame, np.ndarray]:
    part = bundle.split[bundle.split["split"] == name].reset_index(drop=True)
    return part, bundle.cache.get(part["image_id"].tolist())


def _optimizer(name: str, lr: float):
    import keras

    return {"adam": keras.optimizers.Adam, "rmsprop": keras.optimizers.RMSprop,
            "sgd": keras.optimizers.SGD}[name](learning_rate=lr)


def _callbacks(run_dir: Path, status: Heartbeat, stage: dict, stage_index: int, epoch_offset: int,
               total_epochs: int, patience: int, log: Callable[[str], None]):
    import keras

    class Progress(keras.callbacks.Callback):
        """Batch progress, per-epoch history line, cancellation at the next batch."""

        def on_train_begin(self, logs=None):
            self.t0 = time.time()
            self.batches = self.params.get("steps") or 0

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch
            status.update(state="running", stage=stage["name"], stage_index=stage_index,
                          epoch=epoch_offset + epoch + 1, epochs=total_epochs, batch=0,
                          batches=self.batches, message=f"{stage['name']}: epoch {epoch + 1}")

        def on_train_batch_end(self, batch, logs=None):
            if cancel_requested(run_dir):
                self.model.stop_training = True
                raise CancelledError()
            if batch % 5 == 0 or batch + 1 == self.batches:
                status.note(batch=batch + 1)

        def on_epoch_end(self, epoch, logs=None):
            logs = {k: float(v) for k, v in (logs or {}).items()}
            record = {"stage": stage["name"], "stage_index": stage_index, "epoch": epoch_offset + epoch + 1,
                      "stage_epoch": epoch + 1, "time": time.time(), "elapsed": time.time() - self.t0,
                      "learning_rate": stage["learning_rate"], **logs}
            append_history(run_dir, record)
            log(f"[{stage['name']}] epoch {epoch + 1}/{stage['epochs']} " +
                " ".join(f"{k}={v:.4f}" for k, v in logs.items()))

    class BestWeights(keras.callbacks.Callback):
        """Early stopping on val loss; the weights of the best epoch are restored at the end."""

        def on_train_begin(self, logs=None):
            self.best, self.weights, self.wait, self.best_epoch = np.inf, None, 0, None

        def on_epoch_end(self, epoch, logs=None):
            val = (logs or {}).get("val_loss")
            if val is None:
                return
            if val < self.best:
                self.best, self.weights, self.wait, self.best_epoch = val, self.model.get_weights(), 0, epoch + 1
            else:
                self.wait += 1
                if self.wait > patience:
                    self.model.stop_training = True

        def on_train_end(self, logs=None):
            if self.weights is not None:
                self.model.set_weights(self.weights)

    return [Progress(), BestWeights()]


def _strategy():
    """``MirroredStrategy`` over all GPUs when several are visible, else the default strategy."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def _fast_bn_statistics(model, momentum: float = 0.9) -> None:
    """Let BatchNorm's moving statistics catch up within a few short epochs.

    They start at mean 0, variance 1; with Keras' momentum 0.99 and the ~100 steps of a CPU demo
    run, the variance used at inference stays dominated by that 1 while the true variance of the
    dark, low-contrast cell images is ~1e-3: every val prediction then collapses to one value.
    Only for random initialisation (ImageNet statistics are kept frozen).
    """
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = momentum


def predict_images(model, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """P(ALL) for uint8 images (N, S, S, 3), as a float array."""
    probs = model.predict(images.astype(np.float32), batch_size=batch_size, verbose=0)
    return np.asarray(probs, dtype=np.float64).reshape(-1)


def _save_model(model, run_dir: Path) -> None:
    """Save ``model.keras`` through a temporary file, so a partial file never looks complete."""
    tmp = run_dir / ".model.partial.keras"
    try:
        model.save(tmp)
        os.replace(tmp, run_dir / MODEL)
    finally:
        if tmp.exists():
            tmp.unlink()


def train_run(run_dir: str | os.PathLike, log: Callable[[str], None] | None = print,
              artifacts: str | os.PathLike | None = None, wait_in_queue: bool = True) -> dict:
    """Train the run in ``run_dir`` (which holds its ``config.json``); returns its metrics.

    Status goes ``queued`` -> ``running`` -> ``completed`` / ``failed`` / ``cancelled``; on
    failure the error and traceback are in ``status.json`` and the log, the history is kept.
    """
    run_dir = Path(run_dir)
    config = read_json(run_dir / CONFIG)
    echo = log

    def log(text: str) -> None:  # every line goes to log.txt, and to the caller's output
        with open(run_dir / LOG, "a", encoding="utf-8") as fh:
            fh.write(f"{time.strftime('%H:%M:%S')} {text}\n")
        if echo is not None:
            echo(text)

    status = Heartbeat(run_dir)
    status.update(pid=os.getpid(), pid_start=_proc_start_time(os.getpid()))
    status.start()
    try:
        def waiting():
            if cancel_requested(run_dir):
                raise CancelledError()

        def next_in_line():
            status.update(message="next in the queue: loading TensorFlow")
            import keras  # noqa: F401 - the slow import overlaps the run before this one
            import tensorflow  # noqa: F401

            status.update(message="next in the queue")
            waiting()  # a cancel asked for during the import

        with (queue_slot(run_dir, on_wait=waiting, on_next=next_in_line) if wait_in_queue
              else contextlib.nullcontext()):
            if cancel_requested(run_dir):
                raise CancelledError()
            status.update(state="running", started=time.time(), message="preparing data")
            return _train(run_dir, config, status, log, artifacts)
    except BaseException as exc:
        log("run cancelled" if isinstance(exc, CancelledError) else traceback.format_exc())
        status.finish(exc, cancelled=CancelledError, cancel_message="cancelled by the user",
                      cancel_error=False,
                      on_write_error=lambda e: log(f"could not record the failure in status.json: {e}"))
        raise
    finally:
        status.stop()


def _train(run_dir: Path, config: dict, status: Heartbeat, log, artifacts) -> dict:
    import keras
    import tensorflow as tf

    from .metrics import full_report
    from .models import create_model, set_trainable

    # Keras warns that fit's default shuffle=True is ignored for a tf.data input; ours shuffles
    warnings.filterwarnings("ignore", message=".*shuffle=True.*was passed.*")

    seed = int(config["seed"])
    keras.utils.set_random_seed(seed)
    try:
        tf.config.experimental.enable_op_determinism()
    except Exception:  # pragma: no cover - older TF
        pass
    if config.get("mixed_precision"):
        keras.mixed_precision.set_global_policy("mixed_float16")

    def cache_progress(done, total):
        status.update(message=f"preprocessing images {done}/{total}")

    bundle = prepare_data(config, artifacts, progress=cache_progress)
    strategy = _strategy()
    with strategy.scope():
        model = create_model(config["model"], image_size=config["image_size"], weights=config["weights"],
                             **config.get("model_args", {}))
    # record what was resolved: the data fingerprint and the versions
    resolved = read_json(run_dir / CONFIG)
    counts = bundle.split.groupby(["split", "y"]).size()
    resolved.update(
        dataset_fingerprint=bundle.fingerprint, versions=library_versions(),
        split_counts={f"{s}_{'all' if y else 'hem'}": int(n) for (s, y), n in counts.items()},
        cache_key=bundle.cache.key, params=int(model.count_params()),
    )
    atomic_write_json(run_dir / CONFIG, resolved)

    train_x, train_y = _training_arrays(bundle, config)
    val_part, val_x = _split_arrays(bundle, "val")
    test_part, test_x = _split_arrays(bundle, "test")
    batch = int(config["batch_size"])
    train_ds = make_dataset(train_x, train_y, batch, shuffle=True, augment=config.get("augment", False), seed=seed)
    val_ds = make_dataset(val_x, val_part["y"].to_numpy(), batch)
    log(f"devices: {strategy.num_replicas_in_sync} replica(s) ({type(strategy).__name__})")
    log(f"data: {len(train_x)} training examples, {len(val_x)} val, {len(test_x)} test images "
        f"at {config['image_size']} px; protocol {config['split_protocol']}, seed {seed}")

    total_epochs = sum(s["epochs"] for s in config["stages"])
    offset = 0
    for index, stage in enumerate(config["stages"]):
        from_scratch = str(config["weights"]).lower() == "none"
        info = set_trainable(model, stage["trainable"], train_bn=from_scratch)
        if from_scratch:
            _fast_bn_statistics(model)
        with strategy.scope():  # optimizer and metric variables mirrored like the model's
            model.compile(optimizer=_optimizer(stage["optimizer"], stage["learning_rate"]),
                          loss="binary_crossentropy", metrics=["accuracy", keras.metrics.AUC(name="auc")],
                          jit_compile=bool(config.get("jit_compile")))
            # Created eagerly here, the optimizer's slot variables take ~1 s; left to the first
            # train step, they are created inside its tf.function trace, one lifted variable at
            # a time: ~14 s for ResNet50-to-conv4's 352 slots on a 2-core CPU.
            model.optimizer.build(model.trainable_variables)
        log(f"stage {index + 1}/{len(config['stages'])} {stage['name']}: {stage['optimizer']} "
            f"lr {stage['learning_rate']:g}, {info['trainable_params']:,} trainable parameters")
        hist = model.fit(train_ds, validation_data=val_ds, epochs=stage["epochs"], verbose=0,
                         callbacks=_callbacks(run_dir, status, stage, index, offset, total_epochs,
                                              int(config["patience"]), log))
        offset += len(hist.history.get("loss", []))

    status.update(message="scoring val and test")
    rows, metrics = [], {}
    for name, part, x in (("val", val_part, val_x), ("test", test_part, test_x)):
        prob = predict_images(model, x)
        rows.append(pd.DataFrame({"image_id": part["image_id"], "split": name, "y": part["y"],
                                  "prob": prob, "subject": part["subject"]}))
        metrics[name] = full_report(part["y"].to_numpy(), prob, 0.5, subjects=part["subject"].to_numpy(),
                                    seed=seed)
    metrics.update(split_protocol=config["split_protocol"], threshold=0.5,
                   epochs_trained=offset, paper_reported=config.get("paper_reported"))
    status.update(message="saving the model")
    _save_model(model, run_dir)
    atomic_write_csv(run_dir / PREDICTIONS, pd.concat(rows, ignore_index=True))
    atomic_write_json(run_dir / METRICS, metrics)
    status.stop()
    status.update(state="completed", message="completed", finished=time.time(), epoch=offset)
    log(f"val weighted F1 {metrics['val']['weighted_f1']:.4f}, test weighted F1 "
        f"{metrics['test']['weighted_f1']:.4f} ({config['split_protocol']} protocol)")
    return metrics


def evaluate_run(run_dir: str | os.PathLike, data: str | os.PathLike, split: str = "all",
                 source: str | None = None, artifacts: str | os.PathLike | None = None,
                 log: Callable[[str], None] | None = print) -> tuple[Path, dict]:
    """Re-score a trained run's model on a dataset (e.g. the labelled preliminary set).

    Args:
        run_dir: a completed run (its ``model.keras`` is loaded with safe loading).
        data: dataset folder or manifest CSV.
        split: ``all`` (every labelled image), or a protocol (``subject``, ``paper``,
            ``official``) whose test split is scored with the run's seed.
        source: keep only images of this source (``prelim``, ``fold_2``, ...).

    Returns:
        The evaluation folder ``<run>/evaluations/<fingerprint>-<split>[-<source>]`` (holding
        ``predictions.csv`` and ``metrics.json``) and the metrics.

    Raises:
        RunError: the run has no model. DataError: no labelled image to score.
    """
    import keras

    from .exceptions import RunError
    from .metrics import full_report

    run_dir = Path(run_dir)
    if not (run_dir / MODEL).is_file():
        raise RunError(f"Run {run_dir.name} has no {MODEL}; only completed runs can be evaluated.")
    config = read_json(run_dir / CONFIG)
    manifest = resolve_manifest(data)
    images = manifest[manifest["y"].isin([0, 1])]
    if source is not None:
        images = images[images["source"] == source]
    if split != "all":
        test_ids = make_split(manifest, split, seed=config.get("seed", 0)).query("split == 'test'")["image_id"]
        images = images[images["image_id"].isin(set(test_ids))]
    if images.empty or images["y"].nunique() < 2:
        raise DataError(f"No labelled images of both classes to score in {data} (split {split!r}"
                        f"{', source ' + source if source else ''}).")
    images = images.sort_values("image_id").reset_index(drop=True)
    cache = build_cache(images, int(config["image_size"]), clahe=config.get("clahe", False), root=artifacts)
    model = keras.models.load_model(run_dir / MODEL, safe_mode=True)
    prob = predict_images(model, cache.get(images["image_id"].tolist()))
    fingerprint = manifest_fingerprint(manifest)
    tag = f"{fingerprint}-{split}" + (f"-{source}" if source else "")
    out = run_dir / "evaluations" / tag
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_csv(out / PREDICTIONS, pd.DataFrame({"image_id": images["image_id"], "split": "test",
                                                      "y": images["y"], "prob": prob, "subject": images["subject"]}))
    metrics = {"test": full_report(images["y"].to_numpy(), prob, 0.5, subjects=images["subject"].to_numpy(),
                                   seed=int(config.get("seed", 0))),
               "data": str(data), "dataset_fingerprint": fingerprint, "split": split, "source": source}
    atomic_write_json(out / METRICS, metrics)
    if log is not None:
        log(f"{len(images)} images scored: weighted F1 {metrics['test']['weighted_f1']:.4f}, "
            f"AUC {metrics['test']['roc_auc']:.4f}")
    return out, metrics
