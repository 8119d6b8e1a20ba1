"""Training: :func:`train_run` is the one code path that trains a run, whether the CLI runs it
in the foreground or the dashboard launches it as a detached worker process
(``python -m cnmc_core worker RUN_DIR``). It

1. resolves the dataset, the split (protocol and seed from ``config.json``) and the cache;
2. builds the model from the registry and trains it stage by stage (feature extraction with the
   base frozen, then fine-tuning), each stage with its own optimizer and learning rate, early
   stopping on val loss and the best weights restored;
3. writes ``history.jsonl`` each epoch, ``status.json`` (heartbeat every 2 s, epoch and batch),
   and at the end ``predictions.csv`` (val and test), ``metrics.json`` and ``model.keras``.

Before training it records in ``config.json`` what the data is (``provenance``: synthetic or
real, the generator's version and seed, the fingerprint) and writes ``feature_ranges.json``, the
hand features' mean and sd over the training images (:mod:`cnmc_core.data.feature_ranges`).
"""

from __future__ import annotations

import contextlib
import os
import platform
import time
import traceback
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from cnmc_core import __version__
from cnmc_core.contracts import CONFIG, FEATURE_RANGES, LOG, METRICS, PREDICTIONS, protocol_label
from cnmc_core.data.feature_ranges import training_ranges
from cnmc_core.data.provenance import dataset_record
from cnmc_core.exceptions import ConfigError
from cnmc_core.training.backend import (
    backend_versions,
    import_backend,
    prepare_runtime,
    select_backend,
)
from cnmc_core.training.pipeline import prepare_data, split_arrays, train_paths, training_arrays
from cnmc_core.workspace.fileio import atomic_write_csv, atomic_write_json, read_json
from cnmc_core.workspace.queue import CancelledError, cancel_requested, queue_slot
from cnmc_core.workspace.status import Heartbeat, process_fields
from cnmc_core.workspace.summary import write_summary

__all__ = ["optimizer", "library_versions", "train_run"]


def optimizer(name: str, learning_rate: float):
    """A fresh Keras optimizer by its name (``adam``, ``rmsprop``, ``sgd``: the config's
    :data:`~cnmc_core.training.config.OPTIMIZERS`) with Keras' defaults but the learning rate."""
    import keras

    return keras.optimizers.get({"class_name": name, "config": {"learning_rate": float(learning_rate)}})


def library_versions() -> dict:
    """Versions recorded in every run's config: the Keras backend's packages (``tensorflow``,
    or ``jax`` and ``jaxlib``, or ``torch``) among them."""
    import keras
    import sklearn

    return {"cnmc_core": __version__, "python": platform.python_version(),
            **backend_versions(keras.backend.backend()),
            "keras": keras.__version__, "numpy": np.__version__, "pandas": pd.__version__,
            "scikit-learn": sklearn.__version__, "platform": platform.platform()}


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
    status.update(**process_fields(os.getpid()))
    status.start()
    try:
        def waiting():  # also once the run was ended while it was stopped (status.ended)
            if cancel_requested(run_dir) or status.ended is not None:
                raise CancelledError()

        if config.get("backend"):  # before Keras is imported (a foreground run in a fresh process)
            select_backend(config["backend"])

        def next_in_line():
            status.update(message="next in the queue: loading Keras")
            import_backend()  # the slow import overlaps the run before this one

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
    backend = import_backend()
    import keras

    from cnmc_core.metrics.bootstrap import full_report
    from cnmc_core.models.freezing import set_trainable
    from cnmc_core.models.io import predict_images, save_model
    from cnmc_core.models.registry import create_model
    from cnmc_core.training.batches import make_dataset
    from cnmc_core.training.callbacks import make_callbacks

    if config.get("backend") not in (None, backend):
        raise ConfigError(f"The run asks for backend {config['backend']!r}, but this process runs Keras "
                          f"on {backend!r}; start it with KERAS_BACKEND={config['backend']}.")
    seed = int(config["seed"])
    runtime = prepare_runtime(config, seed)

    def cache_progress(done, total):
        status.update(message=f"preprocessing images {done}/{total}")

    bundle = prepare_data(config, artifacts, progress=cache_progress)
    with runtime.scope():
        model = create_model(config["model"], image_size=config["image_size"], weights=config["weights"],
                             **config.get("model_args", {}))
    # record what was resolved: the data fingerprint, what the data is, and the versions
    resolved = read_json(run_dir / CONFIG)
    counts = bundle.split.groupby(["split", "y"]).size()
    resolved.update(
        backend=backend, dataset_fingerprint=bundle.fingerprint, versions=library_versions(),
        provenance={**dataset_record(config["data"]), "fingerprint": bundle.fingerprint},
        split_counts={f"{s}_{'all' if y else 'hem'}": int(n) for (s, y), n in counts.items()},
        cache_key=bundle.cache.key, params=int(model.count_params()),
    )
    atomic_write_json(run_dir / CONFIG, resolved)

    status.update(message="measuring the training images")
    t0 = time.perf_counter()
    ranges = training_ranges(train_paths(bundle), seed=seed)
    atomic_write_json(run_dir / FEATURE_RANGES, ranges)
    log(f"provenance: {resolved['provenance']['kind']} data; hand features of "
        f"{ranges['n_images']} of {ranges['n_train']} training images kept in {FEATURE_RANGES} "
        f"({time.perf_counter() - t0:.1f} s)")

    train_x, train_y = training_arrays(bundle, config)
    val_part, val_x = split_arrays(bundle, "val")
    test_part, test_x = split_arrays(bundle, "test")
    batch = int(config["batch_size"])
    train_ds = make_dataset(train_x, train_y, batch, shuffle=True, augment=config.get("augment", False), seed=seed)
    val_ds = make_dataset(val_x, val_part["y"].to_numpy(), batch)
    log(runtime.describe())
    for note in runtime.notes:
        log(f"note: {note}")
    log(f"data: {len(train_x)} training examples, {len(val_x)} val, {len(test_x)} test images "
        f"at {config['image_size']} px; protocol {protocol_label(config['split_protocol'])}, seed {seed}")

    total_epochs = sum(s["epochs"] for s in config["stages"])
    offset = 0
    for index, stage in enumerate(config["stages"]):
        from_scratch = str(config["weights"]).lower() == "none"
        info = set_trainable(model, stage["trainable"], train_bn=from_scratch)
        if from_scratch:
            _fast_bn_statistics(model)
        with runtime.scope():  # optimizer and metric variables mirrored like the model's
            model.compile(optimizer=optimizer(stage["optimizer"], stage["learning_rate"]),
                          loss="binary_crossentropy", metrics=["accuracy", keras.metrics.AUC(name="auc")],
                          jit_compile=runtime.jit_compile)
            # Created eagerly here, the optimizer's slot variables take ~1 s; left to the first
            # train step, they are created inside its tf.function trace, one lifted variable at
            # a time: ~14 s for ResNet50-to-conv4's 352 slots on a 2-core CPU.
            model.optimizer.build(model.trainable_variables)
        log(f"stage {index + 1}/{len(config['stages'])} {stage['name']}: {stage['optimizer']} "
            f"lr {stage['learning_rate']:g}, {info['trainable_params']:,} trainable parameters")
        callbacks = make_callbacks(run_dir, status, stage, index, offset, total_epochs,
                                   int(config["patience"]), log)
        # shuffle=False: the dataset shuffles images itself (Keras would only reorder batches)
        hist = model.fit(train_ds, validation_data=val_ds, epochs=stage["epochs"], verbose=0,
                         callbacks=callbacks, shuffle=False)
        ran = len(hist.history.get("loss", []))
        offset += ran
        stopping = callbacks[-1]
        if stopping.best is not None:
            log(f"[{stage['name']}] {'stopped early after' if stopping.stopped_epoch else 'ran all'} "
                f"{ran} epoch(s); the weights of epoch {stopping.best_epoch + 1} (lowest val_loss "
                f"{float(stopping.best):.4f}) are kept")

    status.update(message="scoring val and test")
    rows, metrics = [], {}
    for name, part, x in (("val", val_part, val_x), ("test", test_part, test_x)):
        prob = predict_images(model, x)
        rows.append(pd.DataFrame({"image_id": part["image_id"], "split": name, "y": part["y"],
                                  "prob": prob, "subject": part["subject"]}))
        metrics[name] = full_report(part["y"].to_numpy(), prob, 0.5, subjects=part["subject"].to_numpy(),
                                    seed=seed)
    metrics.update(split_protocol=config["split_protocol"],
                   protocol_label=protocol_label(config["split_protocol"]), threshold=0.5,
                   epochs_trained=offset, paper_reported=config.get("paper_reported"))
    status.update(message="saving the model")
    save_model(model, run_dir)
    atomic_write_csv(run_dir / PREDICTIONS, pd.concat(rows, ignore_index=True))
    atomic_write_json(run_dir / METRICS, metrics)
    status.stop()
    status.update(state="completed", message="completed", finished=time.time(), epoch=offset)
    write_summary(run_dir, "run")  # what the listing shows, so it need not read the run's files
    log(f"val weighted F1 {metrics['val']['weighted_f1']:.4f}, test weighted F1 "
        f"{metrics['test']['weighted_f1']:.4f}; protocol {protocol_label(config['split_protocol'])}")
    return metrics
