"""Documented claims (docs/, README) about ``WandbKerasCallback`` that had no test: a user's run is left open,
``log_model="end"`` uploads the newest and the best file (``ModelCheckpoint`` per epoch,
``save_freq=<int>``, ``.h5``), a weights-only checkpoint resumes nothing."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")  # before keras is imported; tests only

import warnings
from pathlib import Path
from typing import Any

import keras
import numpy as np

from keras_helpers import make_data, make_model
from wandb_bridge import WandbKerasCallback
from wandb_bridge.testing import WandbOfflineRuns

X, Y = make_data(64, seed=0)  # 4 batches of 16 per epoch
XV, YV = make_data(16, seed=1)


def fit(model: Any, callbacks: list[Any], **kwargs: Any) -> Any:
    kwargs.setdefault("epochs", 3)
    kwargs.setdefault("batch_size", 16)
    kwargs.setdefault("validation_data", (XV, YV))
    return model.fit(X, Y, verbose=0, shuffle=False, callbacks=callbacks, **kwargs)


def _models(wandb_offline: WandbOfflineRuns) -> list[Any]:
    return [a for a in wandb_offline.run().artifacts if a.type == "model"]


def test_a_run_you_started_is_used_and_left_open(wandb_offline: WandbOfflineRuns) -> None:
    import wandb

    mine = wandb.init(project="mine", id="userrun1")
    callback = WandbKerasCallback(project="ignored")
    fit(make_model(), [callback], epochs=2)
    callback.finish()
    assert wandb.run is mine
    mine.log({"after": 1.0})
    mine.finish(exit_code=7)
    run = wandb_offline.run()
    assert run.run_id == "userrun1"
    assert [s for s, _ in run.values("val/loss")] == [4, 8]
    assert run.exit_code == 7


def test_log_model_end_uploads_the_newest_and_the_best_checkpoint(
    wandb_offline: WandbOfflineRuns, tmp_path: Path
) -> None:
    checkpoint = keras.callbacks.ModelCheckpoint(str(tmp_path / "m-{epoch:02d}.keras"))
    callback = WandbKerasCallback(project="keras-end", log_model="end")
    # a high learning rate makes the loss move around: the best epoch is rarely the last
    history = fit(make_model(learning_rate=0.3), [checkpoint, callback], epochs=4)
    callback.finish()
    best_epoch = int(np.argmin(history.history["val_loss"])) + 1
    models = _models(wandb_offline)
    by_epoch = {a.metadata["epoch"]: a for a in models}
    assert set(by_epoch) == {best_epoch, 4}
    assert "best" in by_epoch[best_epoch].aliases
    assert list(by_epoch[4].files) == ["m-04.keras"]
    assert len(models) == len(by_epoch)  # each once


def test_log_model_end_with_save_freq_steps_uploads_the_newest_file(
    wandb_offline: WandbOfflineRuns, tmp_path: Path
) -> None:
    checkpoint = keras.callbacks.ModelCheckpoint(str(tmp_path / "s-{epoch}-{batch}.keras"), save_freq=2)
    callback = WandbKerasCallback(project="keras-end", log_model="end", monitor="val_loss")
    fit(make_model(), [checkpoint, callback], epochs=2)
    callback.finish()
    written = sorted(p.name for p in tmp_path.glob("s-*.keras"))
    assert written  # Keras wrote files during the epochs
    assert written == ["s-1-2.keras", "s-1-4.keras", "s-2-2.keras", "s-2-4.keras"]
    models = _models(wandb_offline)
    by_file = {name: a for a in models for name in a.files}
    assert "s-2-4.keras" in by_file and len(models) == len(by_file) <= 2  # the newest file, each once
    assert any("best" in a.aliases for a in models)
    assert all(a.metadata["step"] == 8 for a in models)  # reported at the end of the epoch that wrote them


def test_log_model_end_with_h5_files(wandb_offline: WandbOfflineRuns, tmp_path: Path) -> None:
    checkpoint = keras.callbacks.ModelCheckpoint(str(tmp_path / "h-{epoch}.h5"))
    callback = WandbKerasCallback(project="keras-end", log_model="end")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras calls .h5 a legacy format
        fit(make_model(), [checkpoint, callback], epochs=2)
    callback.finish()
    models = _models(wandb_offline)
    newest = next(a for a in models if a.metadata["epoch"] == 2)
    assert list(newest.files) == ["h-2.h5"] and newest.metadata["format"] == "h5"
    assert any("best" in a.aliases for a in models)


def test_a_weights_only_checkpoint_resumes_nothing(wandb_offline: WandbOfflineRuns, tmp_path: Path) -> None:
    template = str(tmp_path / "w-{epoch}.weights.h5")
    first = WandbKerasCallback(project="keras-resume")
    fit(make_model(), [keras.callbacks.ModelCheckpoint(template, save_weights_only=True), first], epochs=2)
    first.finish()
    first_id = first.session.run_id if first.session is not None else None

    model = make_model()
    model.load_weights(str(tmp_path / "w-2.weights.h5"))  # the optimizer starts at step 0 again
    second = WandbKerasCallback(project="keras-resume")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(
            model,
            [keras.callbacks.ModelCheckpoint(template, save_weights_only=True), second],
            epochs=3,
            initial_epoch=2,
        )
    second.finish()
    runs = wandb_offline.runs()
    assert len({r.run_id for r in runs}) == 2 and first_id in {r.run_id for r in runs}  # a new run
    assert sum("weights" in str(w.message) for w in caught if issubclass(w.category, UserWarning)) == 1


def test_resume_continues_from_the_checkpoint_at_the_restored_step(
    wandb_offline: WandbOfflineRuns, tmp_path: Path
) -> None:
    # three epochs' checkpoints exist; training restarts from the middle one: its marker, not the newest, is picked
    template = str(tmp_path / "ckpt-{epoch:02d}.keras")
    first = WandbKerasCallback(project="keras-resume")
    fit(make_model(), [keras.callbacks.ModelCheckpoint(template), first], epochs=3)
    first.finish()

    model = keras.models.load_model(tmp_path / "ckpt-02.keras")  # restores the optimizer at step 8
    second = WandbKerasCallback(project="keras-resume")
    fit(model, [keras.callbacks.ModelCheckpoint(template), second], epochs=3, initial_epoch=2)
    second.finish()
    assert second.session.resumed_from is not None
    assert (second.session.resumed_from.step, second.session.resumed_from.epoch) == (8, 2)
    assert second.session.run_id == first.session.run_id  # the same run continues


def test_two_callbacks_keep_two_runs_and_evaluate_goes_to_its_own(wandb_offline: WandbOfflineRuns) -> None:
    # one lifecycle for every callback (callbacks/base.py): a run left open after a fit is finished when
    # another callback starts one; this callback's later evaluate() continues its own run by id
    first, second = WandbKerasCallback(project="keras-two"), WandbKerasCallback(project="keras-two")
    model = make_model()
    fit(model, [first], epochs=1)
    fit(make_model(), [second], epochs=1)
    model.evaluate(X, Y, verbose=0, callbacks=[first])
    first.finish()
    second.finish()
    first_id, second_id = first.session.run_id, second.session.run_id
    assert first_id is not None and second_id is not None and first_id != second_id
    runs = wandb_offline.runs()
    assert {r.run_id for r in runs} == {first_id, second_id}
    assert all(r.exit_code == 0 for r in runs)
    (evaluated,) = [r for r in runs if r.values("test/loss")]
    assert evaluated.run_id == first_id
    assert [step for step, _ in evaluated.values("test/loss")] == [4]  # at the first model's optimizer step
