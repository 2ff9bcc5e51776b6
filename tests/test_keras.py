"""WandbKerasCallback: real Keras 3 fits (torch backend unless KERAS_BACKEND says otherwise), read back from offline runs."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")  # before keras is imported; tests only

import json
import math
import sys
import warnings
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest

from keras_helpers import BatchCounter, make_data, make_model
from process_helpers import kill_wandb_core
from wandb_bridge import WandbBridgeWarning, WandbKerasCallback
from wandb_bridge.testing import RunRecord, WandbOfflineRuns

X, Y = make_data(64, seed=0)  # 4 batches of 16 per epoch
XV, YV = make_data(16, seed=1)


def fit(model: Any, callbacks: list[Any], **kwargs: Any) -> Any:
    kwargs.setdefault("epochs", 2)
    kwargs.setdefault("batch_size", 16)
    kwargs.setdefault("validation_data", (XV, YV))
    return model.fit(X, Y, verbose=0, shuffle=False, callbacks=callbacks, **kwargs)


def steps_of(run: RunRecord, key: str) -> list[int]:
    return [step for step, _ in run.values(key)]


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-7)


# --------------------------------------------------------------------- steps and names


def test_epoch_rows_match_history_and_no_batch_hook(wandb_offline: WandbOfflineRuns) -> None:
    model = make_model()
    callback = WandbKerasCallback(project="keras-test")
    # log_freq="epoch": the batch hook is Keras's own default no-op, so Keras skips it.
    assert "on_train_batch_end" not in vars(callback)
    assert type(callback).on_train_batch_end is keras.callbacks.Callback.on_train_batch_end
    assert getattr(callback.on_train_batch_end, "_is_default", False)
    history = fit(model, [callback], epochs=3)
    callback.finish()

    run = wandb_offline.run()
    assert run.exit_code == 0
    assert steps_of(run, "train/loss") == [4, 8, 12]  # no batch rows, epoch rows at optimizer steps
    assert [v for _, v in run.values("val/loss")] == pytest.approx(history.history["val_loss"], rel=1e-6)
    assert [v for _, v in run.values("val/accuracy")] == pytest.approx(history.history["val_accuracy"], rel=1e-6)
    assert [v for _, v in run.values("train/loss")] == pytest.approx(history.history["loss"], rel=1e-6)
    assert [v for _, v in run.values("train/accuracy")] == pytest.approx(history.history["accuracy"], rel=1e-6)
    assert [v for _, v in run.values("trainer/epoch")] == [1, 2, 3]
    assert [v for _, v in run.values("train/learning_rate")] == pytest.approx([0.01] * 3)
    assert steps_of(run, "val/loss") == [4, 8, 12]  # validation lands in the row of its step
    assert not any(k.startswith("test/") for row in run.history for k in row)  # fit's validation is not test/
    assert not any(k in row for row in run.history for k in ("loss", "val_loss", "accuracy"))
    assert run.metrics["*"]["step_metric"] == "trainer/global_step"
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 12
    assert "tensorflow" not in sys.modules


def test_batch_rows_at_optimizer_steps(wandb_offline: WandbOfflineRuns) -> None:
    model = make_model()
    counter = BatchCounter()
    callback = WandbKerasCallback(project="keras-test", log_freq="batch")
    assert not getattr(callback.on_train_batch_end, "_is_default", False)
    history = fit(model, [callback, counter])
    callback.finish()

    run = wandb_offline.run()
    assert counter.batches == 8
    assert sorted(steps_of(run, "train/loss")) == list(range(1, 9))  # the first training row has step 1
    epochs = dict(run.values("trainer/epoch"))
    assert epochs[1] == pytest.approx(0.25)
    assert epochs[4] == pytest.approx(1.0) and epochs[8] == pytest.approx(2.0)
    val_rows = run.rows_with("val/loss")
    assert [r["trainer/global_step"] for r in val_rows] == [4, 8]
    for row, loss, val_loss in zip(val_rows, history.history["loss"], history.history["val_loss"], strict=True):
        assert close(row["val/loss"], val_loss)
        assert close(row["train/loss"], loss)  # epoch value and last batch share one row
        assert "train/learning_rate" in row
    assert len(run.rows_with("trainer/global_step")) == len({r["trainer/global_step"] for r in run.history})


def test_every_n_steps(wandb_offline: WandbOfflineRuns) -> None:
    callback = WandbKerasCallback(project="keras-test", log_freq=3)
    fit(make_model(), [callback])
    callback.finish()
    run = wandb_offline.run()
    assert sorted(steps_of(run, "train/loss")) == [3, 4, 6, 8]  # every 3rd step plus the epoch ends
    assert steps_of(run, "val/loss") == [4, 8]


def test_learning_rate_schedule_without_sync(wandb_offline: WandbOfflineRuns) -> None:
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=2, decay_rate=0.5)
    callback = WandbKerasCallback(project="keras-test", log_freq="batch")
    fit(make_model(learning_rate=schedule), [callback], epochs=1, validation_data=None)
    callback.finish()
    run = wandb_offline.run()
    rates = dict(run.values("train/learning_rate"))
    assert sorted(rates) == [1, 2, 3, 4]
    for step, rate in rates.items():  # the rate the update that produced `step` used
        assert rate == pytest.approx(0.1 * 0.5 ** ((step - 1) / 2), rel=1e-5)


def test_gradient_accumulation_steps_count_updates(wandb_offline: WandbOfflineRuns) -> None:
    model = make_model()
    model.compile(
        optimizer=keras.optimizers.Adam(0.01, gradient_accumulation_steps=2),
        loss="binary_crossentropy",
        metrics=["accuracy"],
    )
    callback = WandbKerasCallback(project="keras-test", log_freq="batch")
    fit(model, [callback])
    callback.finish()
    run = wandb_offline.run()
    assert int(keras.ops.convert_to_numpy(model.optimizer.iterations)) == 4
    assert sorted(steps_of(run, "train/loss")) == [1, 2, 3, 4]
    assert steps_of(run, "val/loss") == [2, 4]


# ----------------------------------------------------------------- runs across calls


def test_two_fits_and_initial_epoch_continue_the_step_axis(wandb_offline: WandbOfflineRuns) -> None:
    model = make_model()
    callback = WandbKerasCallback(project="keras-test")
    first = fit(model, [callback], epochs=2)
    second = fit(model, [callback], epochs=4, initial_epoch=2)
    callback.finish()

    run = wandb_offline.run()  # one run for both fits
    assert steps_of(run, "val/loss") == [4, 8, 12, 16]
    assert [v for _, v in run.values("trainer/epoch")] == [1, 2, 3, 4]
    expected = first.history["val_loss"] + second.history["val_loss"]
    assert [v for _, v in run.values("val/loss")] == pytest.approx(expected, rel=1e-6)
    assert run.config["fit/epochs"] == 4 and run.config["fit/initial_epoch"] == 2


def test_evaluate_logs_test_values(wandb_offline: WandbOfflineRuns) -> None:
    model = make_model()
    callback = WandbKerasCallback(project="keras-test")
    fit(model, [callback])
    result = model.evaluate(XV, YV, verbose=0, callbacks=[callback], return_dict=True)
    callback.finish()

    run = wandb_offline.run()
    assert run.values("test/loss") == [(8, pytest.approx(result["loss"], rel=1e-6))]
    assert run.values("test/accuracy") == [(8, pytest.approx(result["accuracy"], rel=1e-6))]
    assert run.summary["test/loss"] == pytest.approx(result["loss"], rel=1e-6)


def test_evaluate_alone_starts_a_run(wandb_offline: WandbOfflineRuns) -> None:
    model = make_model()
    with WandbKerasCallback(project="keras-test") as callback:
        result = model.evaluate(XV, YV, verbose=0, callbacks=[callback], return_dict=True)
    run = wandb_offline.run()
    assert run.values("test/loss") == [(0, pytest.approx(result["loss"], rel=1e-6))]
    assert run.exit_code == 0


# -------------------------------------------------------------------------- config


def test_config_captures_optimizer_model_fit_and_user_values(wandb_offline: WandbOfflineRuns) -> None:
    callback = WandbKerasCallback(
        project="keras-test", config={"data": {"name": "toy"}, "api_key": "sk-not-a-real-key-123456"}
    )
    fit(make_model(), [callback])
    callback.finish()
    config = wandb_offline.run().config
    assert config["data/name"] == "toy"
    assert config["api_key"] == "<redacted>"
    assert config["keras/backend"] == keras.backend.backend()
    assert config["keras/version"] == keras.__version__
    assert config["optimizer/name"].startswith("adam")
    assert config["optimizer/class"] == "Adam"
    assert config["optimizer/learning_rate"] == pytest.approx(0.01)
    assert config["optimizer/beta_1"] == pytest.approx(0.9)
    assert config["loss"] == "binary_crossentropy"
    assert config["metrics"] == ["accuracy"]
    assert config["model/params"] == 49
    assert config["model/trainable_params"] == 49
    assert config["model/non_trainable_params"] == 0
    assert config["fit/epochs"] == 2
    assert config["fit/batch_size"] == 16
    assert config["fit/steps_per_epoch"] == 4
    assert wandb_offline.grep("sk-not-a-real-key-123456") == []


def test_the_users_config_wins_over_extracted_values(wandb_offline: WandbOfflineRuns) -> None:
    # the user names keys the callback extracts too (nested and flat): the user's values are recorded
    user = {"optimizer": {"learning_rate": 0.5}, "fit/epochs": 99, "model": {"name": "mine"}, "loss": "my-loss"}
    callback = WandbKerasCallback(project="keras-test", config=user)
    fit(make_model(), [callback])
    fit(make_model(), [callback])  # a second fit records its config again: the user's keys still win
    callback.finish()
    config = wandb_offline.run().config
    assert config["optimizer/learning_rate"] == 0.5
    assert config["fit/epochs"] == 99
    assert config["model/name"] == "mine"
    assert config["loss"] == "my-loss"
    assert config["optimizer/class"] == "Adam" and config["model/params"] == 49  # the rest is extracted


# --------------------------------------------------------------------- checkpoints


def test_checkpoint_files_followed_with_aliases(wandb_offline: WandbOfflineRuns, tmp_path: Path) -> None:
    checkpoint = keras.callbacks.ModelCheckpoint(str(tmp_path / "ckpt" / "model-{epoch:02d}.keras"))
    callback = WandbKerasCallback(project="keras-test", log_model="all")
    history = fit(make_model(), [checkpoint, callback], epochs=3)  # ModelCheckpoint first ...
    callback.finish()

    run = wandb_offline.run()
    models = [a for a in run.artifacts if a.type == "model"]
    assert [list(a.files) for a in models] == [["model-01.keras"], ["model-02.keras"], ["model-03.keras"]]
    assert all(a.name == f"model-{run.run_id}" for a in models)
    for epoch, artifact in enumerate(models, start=1):
        assert f"epoch-{epoch}" in artifact.aliases and f"step-{4 * epoch}" in artifact.aliases
        assert artifact.metadata["epoch"] == epoch and artifact.metadata["step"] == 4 * epoch
        assert artifact.metadata["framework"] == "keras"
        assert artifact.metadata["monitor"] == "val/loss"  # adopted from the ModelCheckpoint
        assert artifact.metadata["score"] == pytest.approx(history.history["val_loss"][epoch - 1], rel=1e-6)
        assert artifact.metadata["format"] == "keras"
    assert "latest" in models[-1].aliases
    best_epoch = int(np.argmin(history.history["val_loss"])) + 1
    assert "best" in run.artifact(f"model-{run.run_id}:epoch-{best_epoch}").aliases
    assert run.metrics["val/loss"]["summary"] == ["min"]
    assert run.summary["val/loss"]["min"] == pytest.approx(min(history.history["val_loss"]), rel=1e-6)


def test_save_best_only_uploads_only_written_files(wandb_offline: WandbOfflineRuns, tmp_path: Path) -> None:
    # learning_rate=0: val_loss never improves after epoch 1, so Keras writes the file once.
    path = tmp_path / "best.keras"
    checkpoint = keras.callbacks.ModelCheckpoint(str(path), monitor="val_loss", save_best_only=True)
    callback = WandbKerasCallback(project="keras-test", log_model="all")
    fit(make_model(learning_rate=0.0), [callback, checkpoint], epochs=3)  # ... or after us
    callback.finish()

    run = wandb_offline.run()
    models = [a for a in run.artifacts if a.type == "model"]
    assert len(models) == 1
    assert set(models[0].aliases) >= {"latest", "best", "epoch-1", "step-4"}
    assert list(models[0].files) == ["best.keras"]
    assert path.exists()
    assert not (tmp_path / ".wandb-bridge-staging").exists() or not any((tmp_path / ".wandb-bridge-staging").iterdir())


def test_weights_only_checkpoints(wandb_offline: WandbOfflineRuns, tmp_path: Path) -> None:
    checkpoint = keras.callbacks.ModelCheckpoint(
        str(tmp_path / "w-{epoch}-{val_loss:.3f}.weights.h5"), save_weights_only=True
    )
    callback = WandbKerasCallback(
        project="keras-test", log_model="best", monitor="val_loss", checkpoint_callback=checkpoint
    )
    history = fit(make_model(learning_rate=0.05), [callback, checkpoint], epochs=3)
    callback.finish()

    run = wandb_offline.run()
    models = [a for a in run.artifacts if a.type == "model"]
    losses = history.history["val_loss"]
    improving = [e for e in range(3) if losses[e] == min(losses[: e + 1])]
    assert [a.metadata["epoch"] for a in models] == [e + 1 for e in improving]  # log_model="best"
    for artifact in models:
        (name,) = artifact.files
        assert name.endswith(".weights.h5") and name.startswith(f"w-{artifact.metadata['epoch']}-")
        assert artifact.metadata["format"] == "weights.h5"
        assert "best" in artifact.aliases


def test_log_model_without_checkpoint_saves_once(wandb_offline: WandbOfflineRuns, tmp_path: Path) -> None:
    model = make_model()
    callback = WandbKerasCallback(project="keras-test", log_model=True)  # True means "end"
    fit(model, [callback])
    assert callback.run is not None  # the run stays open after fit
    callback.finish()

    run = wandb_offline.run()
    (artifact,) = [a for a in run.artifacts if a.type == "model"]
    assert list(artifact.files) == ["model-step-8.keras"]
    assert set(artifact.aliases) >= {"latest", "epoch-2", "step-8"}
    assert artifact.metadata["saved_by"] == "wandb_bridge"
    copy = tmp_path / "restored.keras"  # wandb's staging copy has no extension
    copy.write_bytes(Path(artifact.files["model-step-8.keras"]["local_path"]).read_bytes())
    restored = keras.saving.load_model(copy)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(restored.predict_on_batch(XV)),
        keras.ops.convert_to_numpy(model.predict_on_batch(XV)),
        rtol=1e-5,
    )


# --------------------------------------------------------------------- predictions


def test_prediction_table_per_epoch_with_samples_logged_once(wandb_offline: WandbOfflineRuns) -> None:
    model = make_model()
    callback = WandbKerasCallback(project="keras-test", log_predictions=5)
    fit(model, [callback], epochs=3)
    callback.finish()

    run = wandb_offline.run()
    rows = run.rows_with("val/predictions._type")
    assert [r["trainer/global_step"] for r in rows] == [4, 8, 12]  # one table per epoch, in the epoch row
    assert all(r["val/predictions.nrows"] == 5 and r["val/predictions.ncols"] == 4 for r in rows)
    samples = [a for a in run.artifacts if a.type == "dataset"]
    assert len(samples) == 1  # the samples are logged once, not every epoch
    assert samples[0].name == f"val-samples-{run.run_id}" == run.config["predictions/artifact"]
    data = np.load(samples[0].files["val-samples.npz"]["local_path"])
    np.testing.assert_allclose(data["x_0"], XV[:5])
    np.testing.assert_allclose(data["y_0"], YV[:5])

    table = json.loads((run.folder / "files" / rows[-1]["val/predictions.path"]).read_text())
    assert table["columns"] == ["sample", "input", "target", "prediction"]
    predictions = keras.ops.convert_to_numpy(model.predict_on_batch(XV[:5]))
    for i, (sample, summary, target, prediction) in enumerate(table["data"]):
        assert sample == i
        assert json.loads(summary) == pytest.approx(XV[i].tolist(), abs=1e-5)
        assert target == YV[i, 0]
        assert prediction == pytest.approx(float(predictions[i, 0]), rel=1e-5)


def test_predictions_from_validation_split(wandb_offline: WandbOfflineRuns) -> None:
    callback = WandbKerasCallback(project="keras-test", log_predictions=3)
    fit(make_model(), [callback], epochs=1, validation_data=None, validation_split=0.25)
    callback.finish()
    run = wandb_offline.run()
    (sample,) = [a for a in run.artifacts if a.type == "dataset"]
    data = np.load(sample.files["val-samples.npz"]["local_path"])
    np.testing.assert_allclose(data["x_0"], X[48:51])  # Keras takes the split from the end


# ------------------------------------------------------------------ faults and modes


def test_failed_fit_records_non_zero_exit_code(wandb_offline: WandbOfflineRuns) -> None:
    class Boom(keras.callbacks.Callback):  # type: ignore[misc]
        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"), WandbKerasCallback(project="keras-test") as callback:
        fit(make_model(), [callback, Boom()])
    run = wandb_offline.run()
    assert run.exit_code == 1
    assert steps_of(run, "val/loss") == [4]


class KillWandbCore(keras.callbacks.Callback):  # type: ignore[misc]
    """Kills this process's wandb-core for real at the end of the first epoch (after our callback logged it)."""

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        if epoch == 0:
            kill_wandb_core()


@pytest.mark.timeout(180)
def test_logging_failure_does_not_stop_training(wandb_offline: WandbOfflineRuns) -> None:
    callback = WandbKerasCallback(project="keras-test", log_freq="batch")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = fit(make_model(), [callback, KillWandbCore()], epochs=3)
        callback.finish()
    assert len(history.history["loss"]) == 3  # training finished
    ours = [str(w.message) for w in caught if issubclass(w.category, WandbBridgeWarning)]
    faults = ours  # one warning for the whole fault, naming where the rows are kept
    assert len(faults) == 1 and "wandb-bridge-unsent.jsonl" in faults[0], faults
    assert callback.session is not None
    unsent = Path(callback.session.run_dir or "", "wandb-bridge-unsent.jsonl")
    kept = [json.loads(line)["trainer/global_step"] for line in unsent.read_text().splitlines()]
    assert set(range(5, 13)) <= set(kept)  # every batch after the fault kept locally, in order
    # each row carries its step; the file, written by two processes, need not be in step order


def test_bad_prediction_input_warns_and_training_goes_on(wandb_offline: WandbOfflineRuns) -> None:
    callback = WandbKerasCallback(project="keras-test", log_predictions=2, validation_data=(object(), object()))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = fit(make_model(), [callback])
    callback.finish()
    assert sum(issubclass(w.category, WandbBridgeWarning) for w in caught) == 1
    assert len(history.history["loss"]) == 2
    run = wandb_offline.run()
    assert steps_of(run, "val/loss") == [4, 8]
    assert not run.rows_with("val/predictions._type")


def test_disabled_mode_writes_nothing(wandb_offline: WandbOfflineRuns) -> None:
    callback = WandbKerasCallback(project="keras-test", mode="disabled", log_freq="batch", log_model="all")
    history = fit(make_model(), [callback])
    callback.finish()
    assert len(history.history["loss"]) == 2
    assert wandb_offline.runs() == []


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="log_freq"):
        WandbKerasCallback(log_freq="step")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="log_freq"):
        WandbKerasCallback(log_freq=0)
    with pytest.raises(ValueError, match="log_predictions"):
        WandbKerasCallback(log_predictions=-1)


CRASHING_SCRIPT = """
import os, sys
os.environ.setdefault("KERAS_BACKEND", "torch")
sys.path.insert(0, sys.argv[1])
import keras
from keras_helpers import make_data, make_model
from wandb_bridge import WandbKerasCallback

class Boom(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1:
            raise RuntimeError("boom")

x, y = make_data(64)
callback = WandbKerasCallback(project="keras-test", log_freq="batch")
make_model().fit(x, y, batch_size=16, epochs=3, verbose=0, callbacks=[callback, Boom()])
"""


@pytest.mark.slow
def test_process_dying_in_fit_finishes_the_run_with_exit_code_1(wandb_offline: WandbOfflineRuns) -> None:
    import subprocess

    env = {**os.environ, **wandb_offline.env, "KERAS_BACKEND": keras.backend.backend()}
    done = subprocess.run(
        [sys.executable, "-c", CRASHING_SCRIPT, str(Path(__file__).parent)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0 and "boom" in done.stderr
    run = wandb_offline.run()
    assert run.exit_code == 1  # no finish() call: the callback's exit hook knew fit had not ended
    assert sorted(steps_of(run, "train/loss")) == list(range(1, 9))  # every batch row of both epochs kept


def test_learning_rate_changed_by_a_callback(wandb_offline: WandbOfflineRuns) -> None:
    scheduler = keras.callbacks.LearningRateScheduler(lambda epoch: 0.01 * 0.5**epoch)
    callback = WandbKerasCallback(project="keras-test", log_freq="batch")
    fit(make_model(), [callback, scheduler], validation_data=None)  # the scheduler runs after us
    callback.finish()
    rates = dict(wandb_offline.run().values("train/learning_rate"))
    assert sorted(rates) == list(range(1, 9))
    assert [rates[s] for s in range(1, 9)] == pytest.approx([0.01] * 4 + [0.005] * 4)


@pytest.mark.slow
def test_missing_backend_gives_an_actionable_import_error() -> None:
    import subprocess

    env = {**os.environ, "KERAS_BACKEND": "tensorflow"}
    if "tensorflow" in sys.modules or __import__("importlib").util.find_spec("tensorflow") is not None:
        pytest.skip("TensorFlow is installed here")
    done = subprocess.run(
        [sys.executable, "-c", "from wandb_bridge import WandbKerasCallback"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "KERAS_BACKEND" in done.stderr and "'torch' or 'jax'" in done.stderr
