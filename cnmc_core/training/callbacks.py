"""The callbacks of a training stage: progress and cancellation, the per-epoch history line, and
early stopping on val loss with the best weights restored.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np

from cnmc_core.workspace.layout import append_history
from cnmc_core.workspace.queue import cancel_requested
from cnmc_core.workspace.status import Heartbeat

__all__ = ["CancelledError", "make_callbacks"]


class CancelledError(Exception):
    """The run was cancelled by the user."""


def make_callbacks(run_dir: Path, status: Heartbeat, stage: dict, stage_index: int, epoch_offset: int,
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
