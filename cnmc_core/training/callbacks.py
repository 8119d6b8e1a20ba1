"""The callbacks of a training stage, one concern each (as Keras' own ``CSVLogger`` and
``EarlyStopping``), their state reset in ``on_train_begin`` so that an instance can serve
another ``fit``:

- :class:`StatusProgress`: ``status.json``'s stage, epoch k of n and batch (the heartbeat
  thread writes the batch count; an epoch start is written at once);
- :class:`HistoryLine`: one line per epoch in ``history.jsonl`` (appended and flushed) and in
  the run's log;
- :class:`CancelAtBatch`: a cancel request (``cancel.request`` in the run folder) stops the run
  at the end of the current batch, by raising
  :class:`~cnmc_core.workspace.queue.CancelledError` (defined with the queue, so that a queued
  worker can catch it without importing Keras);
- :class:`EpochTensorBoard`: Keras' ``TensorBoard`` callback, scalars only (no graph, histograms
  or profiler), writing ``RUN/tb/train`` and ``RUN/tb/validation`` event files with the run's
  epoch numbers over all stages as steps, so that ``tensorboard --logdir artifacts/runs`` shows
  every run; Keras writes them with ``tf.summary``, so under another backend they are written
  only where TensorFlow is installed, and the log says so where it is not;
- Keras' ``EarlyStopping`` on val loss with the best epoch's weights restored (the paper's
  ``EarlyStopping(patience=5)``: training stops after ``patience`` epochs without improvement;
  Keras 3 restores the best weights also when the stage runs out of epochs first).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import keras

from cnmc_core.contracts import TENSORBOARD
from cnmc_core.workspace.layout import append_history
from cnmc_core.workspace.queue import CancelledError, cancel_requested
from cnmc_core.workspace.status import Heartbeat

__all__ = ["StatusProgress", "HistoryLine", "CancelAtBatch", "EpochTensorBoard", "make_callbacks"]


class StatusProgress(keras.callbacks.Callback):
    """Stage, epoch and batch of a stage in ``status.json``.

    Args:
        status: the run's heartbeat (epoch starts are written at once, batches every 5 by the
            heartbeat's next beat).
        stage: the stage's config (``name``).
        stage_index: its index among the run's stages.
        epoch_offset: epochs trained in the stages before it.
        total_epochs: the run's maximum epochs over all stages.
    """

    def __init__(self, status: Heartbeat, stage: dict, stage_index: int, epoch_offset: int,
                 total_epochs: int):
        super().__init__()
        self.status, self.stage, self.stage_index = status, stage, stage_index
        self.epoch_offset, self.total_epochs = epoch_offset, total_epochs
        self.batches = 0

    def on_train_begin(self, logs=None):
        self.batches = self.params.get("steps") or 0

    def on_epoch_begin(self, epoch, logs=None):
        self.status.update(state="running", stage=self.stage["name"], stage_index=self.stage_index,
                           epoch=self.epoch_offset + epoch + 1, epochs=self.total_epochs, batch=0,
                           batches=self.batches, message=f"{self.stage['name']}: epoch {epoch + 1}")

    def on_train_batch_end(self, batch, logs=None):
        if batch % 5 == 0 or batch + 1 == self.batches:
            self.status.note(batch=batch + 1)


class HistoryLine(keras.callbacks.Callback):
    """One record per epoch in ``history.jsonl`` (stage, epochs, times, learning rate and every
    logged metric) and one line in the run's log.

    Args:
        run_dir: the run folder.
        stage: the stage's config (``name``, ``epochs``, ``learning_rate``).
        stage_index: its index among the run's stages.
        epoch_offset: epochs trained in the stages before it.
        log: where the line goes (the run's log).
    """

    def __init__(self, run_dir: Path, stage: dict, stage_index: int, epoch_offset: int,
                 log: Callable[[str], None]):
        super().__init__()
        self.run_dir, self.stage, self.stage_index = Path(run_dir), stage, stage_index
        self.epoch_offset, self.log = epoch_offset, log
        self.t0 = time.time()

    def on_train_begin(self, logs=None):
        self.t0 = time.time()

    def on_epoch_end(self, epoch, logs=None):
        logs = {k: float(v) for k, v in (logs or {}).items()}
        now = time.time()
        append_history(self.run_dir, {
            "stage": self.stage["name"], "stage_index": self.stage_index,
            "epoch": self.epoch_offset + epoch + 1, "stage_epoch": epoch + 1, "time": now,
            "elapsed": now - self.t0, "learning_rate": self.stage["learning_rate"], **logs})
        self.log(f"[{self.stage['name']}] epoch {epoch + 1}/{self.stage['epochs']} "
                 + " ".join(f"{k}={v:.4f}" for k, v in logs.items()))


class CancelAtBatch(keras.callbacks.Callback):
    """Stop at the end of the current batch once the run's cancel flag exists.

    Raises :class:`CancelledError` out of ``fit`` (``stop_training`` alone would wait for the
    end of the epoch, minutes for a large model on a CPU). It also stops once ``status`` (the
    run's heartbeat) found the run ended by someone else (``Heartbeat.ended``).
    """

    def __init__(self, run_dir: Path, status: Heartbeat | None = None):
        super().__init__()
        self.run_dir = Path(run_dir)
        self.status = status

    def on_train_batch_end(self, batch, logs=None):
        if cancel_requested(self.run_dir) or (self.status is not None and
                                              self.status.ended is not None):
            self.model.stop_training = True
            raise CancelledError()


class EpochTensorBoard(keras.callbacks.TensorBoard):
    """Keras' ``TensorBoard`` callback with scalars only, its steps the run's epoch numbers.

    Each stage is its own ``fit``, whose epochs count from 0; the step written for a stage's
    epoch ``e`` is ``epoch_offset + e + 1``, the ``epoch`` of ``history.jsonl``, so the stages
    follow one another on TensorBoard's axis instead of overlapping.
    """

    def __init__(self, run_dir: Path, epoch_offset: int):
        super().__init__(log_dir=str(Path(run_dir) / TENSORBOARD), histogram_freq=0, write_graph=False,
                         write_images=False, update_freq="epoch", profile_batch=0)
        self.epoch_offset = epoch_offset

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(self.epoch_offset + epoch + 1, logs)


def tensorboard_available() -> bool:
    """Whether Keras can write TensorBoard event files here: it writes them with ``tf.summary``,
    so TensorFlow must be importable (under any backend). Imported, not only looked up: a
    TensorFlow that is present but fails to import (a broken install, or one blocked as the
    backend tests do) must leave the run without event files, not fail it."""
    try:
        import tensorflow  # noqa: F401
    except ImportError:
        return False
    return True


def make_callbacks(run_dir: Path, status: Heartbeat, stage: dict, stage_index: int, epoch_offset: int,
                   total_epochs: int, patience: int, log: Callable[[str], None]) -> list:
    """The callbacks of one stage's ``fit``, in the order they run.

    Args:
        run_dir: the run folder.
        status: the run's heartbeat.
        stage: the stage's config (``name``, ``epochs``, ``learning_rate``).
        stage_index: its index among the run's stages.
        epoch_offset: epochs trained in the stages before it.
        total_epochs: the run's maximum epochs over all stages.
        patience: epochs without a lower val loss after which the stage stops.
        log: where per-epoch lines go.

    Returns:
        ``[StatusProgress, CancelAtBatch, HistoryLine, EpochTensorBoard, EarlyStopping]``
        (without :class:`EpochTensorBoard` where TensorFlow is not installed, which the first
        stage logs); early stopping is last and restores the weights of the epoch with the
        lowest val loss when the stage ends.
    """
    callbacks = [
        StatusProgress(status, stage, stage_index, epoch_offset, total_epochs),
        CancelAtBatch(run_dir, status),
        HistoryLine(run_dir, stage, stage_index, epoch_offset, log),
    ]
    if tensorboard_available():
        callbacks.append(EpochTensorBoard(run_dir, epoch_offset))
    elif stage_index == 0:
        log(f"TensorBoard event files are not written under {keras.backend.backend()}: Keras writes "
            "them with tf.summary, and TensorFlow cannot be imported here (pip install tensorflow-cpu "
            "to get them)")
    callbacks.append(keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience,
                                                   restore_best_weights=True))
    return callbacks
