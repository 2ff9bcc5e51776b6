"""Keras 3: the wandb Keras docs' pattern, run with ``WandbKerasCallback``.

wandb's own Keras callbacks (``wandb.integration.keras``) need TensorFlow, so there
is no native side to run here: the snippets follow the docs' pattern
(``wandb.init()`` -> ``model.fit(callbacks=[...])`` -> ``wandb.finish()``) with
our callback, and check what the docs promise: every epoch recorded in the
user's run, nothing left behind in ``wandb-bridge-unsent.jsonl``, no warning
about rows that could not be sent.
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")  # before keras is imported; tests only

import time
import warnings
from typing import Any

import pytest

pytest.importorskip("keras")

import keras
import wandb

import wandb_bridge
from keras_helpers import make_data, make_model
from wandb_bridge.testing import RunRecord, WandbOfflineRuns

X, Y = make_data(64, seed=0)  # 4 batches of 16 per epoch
XV, YV = make_data(16, seed=1)
EPOCH_STEPS = [4, 8, 12]


def fit(model: Any, callbacks: list[Any], epochs: int = 3) -> Any:
    return model.fit(
        X, Y, epochs=epochs, batch_size=16, validation_data=(XV, YV), verbose=0, shuffle=False, callbacks=callbacks
    )


def unsent_files(wandb_offline: WandbOfflineRuns) -> list[Any]:
    return list(wandb_offline.root.rglob("wandb-bridge-unsent.jsonl"))


def our_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    """Every warning of ours (unsent rows, a slow hand-over, a failed finish: none is expected here)."""
    return [str(w.message) for w in caught if issubclass(w.category, wandb_bridge.WandbBridgeWarning)]


def assert_epoch_rows(run: RunRecord, history: Any) -> None:
    assert [s for s, _ in run.values("train/loss")] == EPOCH_STEPS
    assert [v for _, v in run.values("train/loss")] == pytest.approx(history.history["loss"], rel=1e-6)
    assert [s for s, _ in run.values("val/loss")] == EPOCH_STEPS
    assert [v for _, v in run.values("val/loss")] == pytest.approx(history.history["val_loss"], rel=1e-6)


class UserEpochLog(keras.callbacks.Callback):  # type: ignore[misc]
    """User code: ``wandb.log`` at every epoch end (the value is the epoch number, 1-based)."""

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        wandb.log({"custom_epoch": float(epoch + 1)})


@pytest.mark.parametrize("pause", [False, True], ids=["finish_at_once", "pause_before_finish"])
def test_wandb_docs_pattern_init_fit_finish(wandb_offline: WandbOfflineRuns, pause: bool) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = wandb.init(project="compat-keras", config={"user_lr": 0.01})
        history = fit(make_model(), [wandb_bridge.WandbKerasCallback()])
        if pause:  # the user does something else before finishing (the issue saw the last epoch lost then)
            time.sleep(1.5)
        wandb.finish()
    assert wandb.run is None

    recorded = wandb_offline.run()
    assert recorded.run_id == run.id
    assert recorded.exit_code == 0
    assert_epoch_rows(recorded, history)  # all 3 epoch rows, in the user's run
    assert recorded.config["user_lr"] == 0.01  # the user's config is kept
    assert any(key.startswith("optimizer/") for key in recorded.config)  # and ours is added
    assert not unsent_files(wandb_offline)
    assert not our_warnings(caught)


def test_run_finish_on_the_users_run(wandb_offline: WandbOfflineRuns) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = wandb.init(project="compat-keras")
        history = fit(make_model(), [wandb_bridge.WandbKerasCallback()])
        run.finish()

    recorded = wandb_offline.run()
    assert recorded.exit_code == 0
    assert_epoch_rows(recorded, history)
    assert not unsent_files(wandb_offline)
    assert not our_warnings(caught)


def test_wandb_log_in_a_user_callback_lands_at_the_epoch_step(wandb_offline: WandbOfflineRuns) -> None:
    wandb.init(project="compat-keras")
    history = fit(make_model(), [wandb_bridge.WandbKerasCallback(), UserEpochLog()])
    wandb.finish()

    run = wandb_offline.run()
    assert run.exit_code == 0
    assert_epoch_rows(run, history)
    pairs = run.values("custom_epoch")
    assert [v for _, v in pairs] == [1.0, 2.0, 3.0]  # key as written, every call
    for step, value in pairs:  # the epoch's own step (4, 8, 12) or the next one, never 0
        assert step is not None and 4 * value <= step <= 4 * value + 1, pairs
    assert not run.rows_with("train/custom_epoch")


def test_the_callback_starts_a_run_the_users_wandb_calls_reach(wandb_offline: WandbOfflineRuns) -> None:
    callback = wandb_bridge.WandbKerasCallback(project="compat-keras")
    history = fit(make_model(), [callback, UserEpochLog()])
    wandb.config.update({"user_note": "hello"})
    wandb.summary["user_best"] = 0.25
    wandb.finish()

    run = wandb_offline.run()
    assert run.exit_code == 0
    assert_epoch_rows(run, history)
    assert [v for _, v in run.values("custom_epoch")] == [1.0, 2.0, 3.0]
    assert run.config["user_note"] == "hello"
    assert run.summary["user_best"] == 0.25
    assert not unsent_files(wandb_offline)


def test_fit_again_after_wandb_finish_gets_a_new_run(wandb_offline: WandbOfflineRuns) -> None:
    # notebooks: fit, wandb.finish(), fit again with the same callback
    callback = wandb_bridge.WandbKerasCallback(project="compat-keras")
    first = fit(make_model(), [callback], epochs=1)
    wandb.finish()
    second = fit(make_model(), [callback], epochs=1)
    callback.finish()

    runs = wandb_offline.runs()
    assert len(runs) == 2 and runs[0].run_id != runs[1].run_id
    for run, history in zip(runs, (first, second), strict=True):
        assert run.exit_code == 0
        assert [v for _, v in run.values("train/loss")] == pytest.approx(history.history["loss"], rel=1e-6)


def test_init_kwarg_that_wandb_accepts(wandb_offline: WandbOfflineRuns) -> None:
    callback = wandb_bridge.WandbKerasCallback(project="compat-keras", save_code=False, notes="kwargs pass through")
    history = fit(make_model(), [callback])
    callback.finish()

    run = wandb_offline.run()
    assert run.exit_code == 0
    assert run.notes == "kwargs pass through"
    assert_epoch_rows(run, history)


def test_misspelt_keyword_raises_type_error_naming_the_valid_one(wandb_offline: WandbOfflineRuns) -> None:
    with pytest.raises(TypeError, match="log_model"):
        wandb_bridge.WandbKerasCallback(project="compat-keras", log_mdoel="all")
    assert not wandb_offline.runs()
