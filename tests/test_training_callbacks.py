"""cnmc_core.training.callbacks: the paper's early stopping (Keras semantics), the best epoch's
weights restored, and the small callbacks (status, history line, cancel at the next batch),
on a tiny model fitted to synthetic arrays with a forced val-loss sequence."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from cnmc_core.training.callbacks import CancelAtBatch, make_callbacks
from cnmc_core.workspace.layout import create_run, read_history
from cnmc_core.workspace.queue import CancelledError
from cnmc_core.workspace.status import Heartbeat, read_status
from run_fixtures import tensorboard_scalars

STAGE = {"name": "train", "epochs": 30, "learning_rate": 0.5}


class ForcedValLoss(keras.callbacks.Callback):
    """Replaces the logged val_loss by a given sequence (before early stopping reads it) and
    keeps a copy of the weights after every epoch."""

    def __init__(self, sequence):
        super().__init__()
        self.sequence = list(sequence)
        self.weights = []

    def on_epoch_end(self, epoch, logs=None):
        logs["val_loss"] = self.sequence[epoch]
        self.weights.append([w.copy() for w in self.model.get_weights()])


def _model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
    # a large SGD step: the weights change visibly every epoch
    model.compile(keras.optimizers.SGD(learning_rate=0.5), "binary_crossentropy")
    return model


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 4)).astype("float32")
    return x, (x[:, 0] > 0).astype("float32")


def _fit(tmp_path, sequence, patience, epochs, callbacks=None):
    run = create_run({"name": "cb", "model": "m", "stages": [{"epochs": epochs}]}, tmp_path)
    status = Heartbeat(run)
    lines = []
    if callbacks is None:
        callbacks = make_callbacks(run, status, {**STAGE, "epochs": epochs}, 0, 0, epochs,
                                   patience, lines.append)
    forced = ForcedValLoss(sequence)
    model = _model()
    x, y = _data()
    # the forced sequence must be in the logs before early stopping reads them: it goes first
    hist = model.fit(x, y, validation_data=(x, y), epochs=epochs, batch_size=8, verbose=0,
                     callbacks=[forced, *callbacks])
    return run, model, forced, len(hist.history["loss"]), callbacks, lines


def _same(a, b):
    return all(np.array_equal(u, v) for u, v in zip(a, b))


@pytest.mark.parametrize("patience", [1, 2, 5])
def test_patience_p_stops_after_exactly_p_epochs_without_improvement(tmp_path, patience):
    # best at epoch 2, then worse every epoch
    sequence = [1.0, 0.5] + [0.6 + 0.01 * k for k in range(30)]
    run, model, forced, ran, _, _ = _fit(tmp_path, sequence, patience, epochs=30)
    assert ran == 2 + patience
    assert _same(model.get_weights(), forced.weights[1])  # epoch 2's weights restored
    assert not _same(model.get_weights(), forced.weights[-1])


def test_best_weights_are_restored_when_the_stage_runs_out_of_epochs(tmp_path):
    run, model, forced, ran, callbacks, _ = _fit(tmp_path, [1.0, 0.4, 0.9], patience=5, epochs=3)
    assert ran == 3 and callbacks[-1].stopped_epoch == 0  # it did not stop early
    assert _same(model.get_weights(), forced.weights[1])


def test_an_improvement_resets_the_wait(tmp_path):
    # improvements at epochs 1, 3 and 5 (one worse epoch between them); patience 2 stops at 7
    sequence = [1.0, 1.1, 0.9, 0.95, 0.8, 0.85, 0.81, 0.5, 0.4]
    _, model, forced, ran, callbacks, _ = _fit(tmp_path, sequence, patience=2, epochs=9)
    assert ran == 7 and callbacks[-1].best_epoch == 4
    assert _same(model.get_weights(), forced.weights[4])


def test_callbacks_reset_their_state_for_another_fit(tmp_path):
    """The same callback objects serve a second fit: the wait, the best value and the timer
    start again (Keras' on_train_begin convention)."""
    sequence = [1.0, 0.5, 0.6, 0.7, 0.8, 0.9]
    _, _, _, ran, callbacks, lines = _fit(tmp_path, sequence, patience=2, epochs=6)
    assert ran == 4
    first_t0 = callbacks[2].t0
    # a second fit whose losses are all above the first fit's best: were the best kept, it would
    # stop after 2 epochs; reset, it improves at its epoch 1 and stops at epoch 3
    _, _, _, ran, _, _ = _fit(tmp_path, [2.0, 3.0, 4.0, 5.0], patience=2, epochs=4,
                              callbacks=callbacks)
    assert ran == 3 and callbacks[2].t0 > first_t0


def test_history_lines_and_status(tmp_path):
    run, _, _, ran, _, lines = _fit(tmp_path, [1.0, 0.9, 0.8], patience=5, epochs=3)
    history = read_history(run)
    assert list(history["epoch"]) == [1, 2, 3] and set(history["stage"]) == {"train"}
    assert list(history["val_loss"]) == [1.0, 0.9, 0.8]  # what early stopping saw
    assert (history["learning_rate"] == 0.5).all() and history["elapsed"].is_monotonic_increasing
    assert lines[0].startswith("[train] epoch 1/3 ") and "val_loss=1.0000" in lines[0]
    status = read_status(run)
    assert status["state"] == "running" and status["epoch"] == 3 and status["epochs"] == 3
    assert status["batches"] == 4 and status["stage"] == "train"


def test_cancel_stops_at_the_next_batch(tmp_path):
    run = create_run({"name": "cb", "model": "m", "stages": [{"epochs": 5}]}, tmp_path)
    seen = []

    class CancelAfterThird(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(batch)
            if len(seen) == 3:
                (run / "cancel.request").write_text("now")

    model = _model()
    x, y = _data()
    with pytest.raises(CancelledError):
        model.fit(x, y, epochs=5, batch_size=8, verbose=0,
                  callbacks=[CancelAfterThird(), CancelAtBatch(run)])
    assert len(seen) == 3  # no batch after the one that saw the request


def test_tensorboard_event_files_number_the_epochs_over_both_stages(tmp_path):
    run = create_run({"name": "tb", "model": "m", "stages": [{"epochs": 3}, {"epochs": 2}]}, tmp_path)
    status, model = Heartbeat(run), _model()
    x, y = _data()
    for index, (epochs, offset) in enumerate([(3, 0), (2, 3)]):
        callbacks = make_callbacks(run, status, {**STAGE, "name": f"s{index}", "epochs": epochs},
                                   index, offset, 5, 10, lambda line: None)
        model.fit(x, y, validation_data=(x, y), epochs=epochs, batch_size=8, verbose=0,
                  callbacks=callbacks)
    history = read_history(run)
    train = tensorboard_scalars(run / "tb" / "train")
    val = tensorboard_scalars(run / "tb" / "validation")
    assert sorted(train) == sorted(val) == list(history["epoch"]) == [1, 2, 3, 4, 5]
    assert [train[e] for e in history["epoch"]] == pytest.approx(list(history["loss"]), rel=1e-5)
    assert [val[e] for e in history["epoch"]] == pytest.approx(list(history["val_loss"]), rel=1e-5)
    # scalars only: no graph, no histograms, no profile
    assert not any("plugins" in p.parts for p in (run / "tb").rglob("*"))
