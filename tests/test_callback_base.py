"""callbacks/base.py: the one error boundary, run lifetime, renewal and pickling, in real framework hooks.

Each framework gets a small probe callback built only from the base (a ``SessionHolder`` and
``@guarded``/``boundary``), run by a real Keras ``fit``, Lightning ``Trainer.fit`` and transformers
``Trainer.train`` on CPU, recorded by real wandb offline and read back.
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")  # before keras is imported; tests only

import ast
import pickle
import warnings
from pathlib import Path
from typing import Any

import pytest

import wandb_bridge
from wandb_bridge.callbacks.base import SessionHolder, calling_frames, guarded, picklable_state, resolve_settings
from wandb_bridge.core.errors import WandbBridgeWarning
from wandb_bridge.testing import WandbOfflineRuns


def _holder(owner: str, framework: str, **kwargs: Any) -> SessionHolder:
    return SessionHolder(resolve_settings(kwargs, default_project="probe"), owner=owner, framework=framework)


def _ours(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, WandbBridgeWarning)]


# ------------------------------------------------------------------ settings


def test_resolve_settings_takes_the_framework_default_and_keeps_the_typo_error(wandb_offline: WandbOfflineRuns) -> None:
    settings = resolve_settings({"project": None, "log_model": True, "tags": None}, default_project="lightning_logs")
    assert settings.project == "lightning_logs" and settings.log_model == "end" and settings.init_kwargs == {}
    assert resolve_settings({"project": "mine"}, default_project="lightning_logs").project == "mine"
    assert resolve_settings({"log_model": True}, log_model_true="all").log_model == "all"
    assert resolve_settings({"notes": None, "job_type": "train"}).init_kwargs == {}  # None is "not given"
    with pytest.raises(TypeError, match="log_modle"):
        resolve_settings({"log_modle": "all"})
    with pytest.raises(ValueError, match="on_error"):
        resolve_settings({"on_error": "ignore"})


# ------------------------------------------------------- the error boundary


def test_keras_hook_failure_warns_once_and_fit_goes_on(wandb_offline: WandbOfflineRuns) -> None:
    pytest.importorskip("keras")
    from keras_helpers import keras, make_data, make_model

    class Probe(keras.callbacks.Callback):  # type: ignore[misc]
        def __init__(self, **kwargs: Any) -> None:
            super().__init__()
            self._holder = _holder("KerasProbe", "keras", **kwargs)
            self.epochs = 0

        def on_train_begin(self, logs: Any = None) -> None:
            self._holder.begin_call()

        @guarded("log an epoch")
        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            self.epochs += 1
            session = self._holder.start()
            assert session is not None
            session.log({"loss": float(logs["loss"])}, step=epoch + 1)
            raise RuntimeError("boom")

        def on_train_end(self, logs: Any = None) -> None:
            self._holder.end_call()

    x, y = make_data()
    probe = Probe()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = make_model().fit(x, y, epochs=3, batch_size=16, verbose=0, callbacks=[probe])
    assert len(history.history["loss"]) == 3 and probe.epochs == 3
    assert _ours(caught) == ["KerasProbe failed to log an epoch (RuntimeError: boom); training goes on."]
    probe._holder.finish()  # after a call that ended well: exit code 0
    run = wandb_offline.run()
    assert [row["trainer/global_step"] for row in run.history] == [1, 2, 3]
    assert run.exit_code == 0

    failing = Probe(on_error="raise")
    with pytest.raises(RuntimeError, match="boom"):
        make_model().fit(x, y, epochs=3, batch_size=16, verbose=0, callbacks=[failing])
    assert failing.epochs == 1 and failing._holder.running
    failing._holder.finish()  # inside the failed fit (no on_train_end): exit code 1
    assert [r.exit_code for r in wandb_offline.runs()] == [0, 1]


def test_lightning_hook_failure_warns_once_and_training_goes_on(
    wandb_offline: WandbOfflineRuns, tmp_path: Path
) -> None:
    pl = pytest.importorskip("lightning.pytorch")
    from lightning_helpers import TinyDataModule, TinyModule, trainer_kwargs

    class Probe(pl.Callback):  # type: ignore[misc,name-defined]
        def __init__(self, **kwargs: Any) -> None:
            self._holder = _holder("LightningProbe", "lightning", **kwargs)
            self.batches = 0

        @guarded
        def on_train_batch_end(self, trainer: Any, *args: Any) -> None:
            self.batches += 1
            with self._holder.boundary("count a batch"):
                raise ValueError("inner")
            session = self._holder.start()
            assert session is not None
            session.log({"loss": 1.0}, step=int(trainer.global_step))
            raise KeyError("outer")

    probe = Probe()
    trainer = pl.Trainer(**trainer_kwargs(str(tmp_path), logger=False, enable_checkpointing=False), callbacks=[probe])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(TinyModule(), datamodule=TinyDataModule())
    assert probe.batches == trainer.global_step > 2  # every batch ran the hook: training went on
    assert sorted(_ours(caught)) == [
        "LightningProbe failed to count a batch (ValueError: inner); training goes on.",
        "LightningProbe failed to run on_train_batch_end (KeyError: 'outer'); training goes on.",
    ]
    probe._holder.finish(0)
    assert [row["trainer/global_step"] for row in wandb_offline.run().history] == list(range(1, probe.batches + 1))

    strict = Probe(on_error="raise")
    trainer = pl.Trainer(**trainer_kwargs(str(tmp_path), logger=False, enable_checkpointing=False), callbacks=[strict])
    with pytest.raises(ValueError, match="inner"):
        trainer.fit(TinyModule(), datamodule=TinyDataModule())
    assert strict.batches == 1


def test_transformers_hook_failure_returns_the_default_and_training_goes_on(
    wandb_offline: WandbOfflineRuns, tmp_path: Path
) -> None:
    transformers = pytest.importorskip("transformers")
    from transformers_helpers import make_args, make_trainer

    class Probe(transformers.TrainerCallback):  # type: ignore[misc]
        def __init__(self, **kwargs: Any) -> None:
            self._holder = _holder("TrainerProbe", "transformers", **kwargs)
            self.logs: list[int] = []

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self._holder.begin_call(new_run=True)

        @guarded("record a log")  # on failure None: the Trainer keeps its control object
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> Any:
            self.logs.append(state.global_step)
            session = self._holder.start()
            assert session is not None
            session.log({"loss": logs.get("loss", 0.0)}, step=state.global_step)
            if state.global_step >= 4:
                raise OSError("disk full")
            return control

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self._holder.end_call()

        @guarded("read the epoch", default=-1.0)
        def epoch_of(self, state: Any) -> float:
            return float(state.no_such_field)

    probe = Probe()
    trainer = make_trainer(make_args(tmp_path), [probe])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.train()
        assert probe.epoch_of(trainer.state) == -1.0  # a hook that returns a value gives its default
    assert trainer.state.global_step == 6 and probe.logs[:3] == [2, 4, 6]
    assert _ours(caught) == [
        "TrainerProbe failed to record a log (OSError: disk full); training goes on.",
        "TrainerProbe failed to read the epoch (AttributeError: 'TrainerState' object has no attribute "
        "'no_such_field'); training goes on.",
    ]
    first = probe._holder.session.run_id

    trainer.train()  # begin_call(new_run=True): the first run is finished, a second one starts
    probe._holder.finish()
    runs = wandb_offline.runs()
    assert len(runs) == 2 and runs[0].run_id == first and runs[1].run_id != first
    assert [r.exit_code for r in runs] == [0, 0]
    assert [row["trainer/global_step"] for row in runs[0].history] == [2, 4, 6]


# ---------------------------------------------------------- run lifetime


def test_renewal_continues_our_run_and_starts_a_new_one_after_the_users_finish(
    wandb_offline: WandbOfflineRuns,
) -> None:
    holder = _holder("Probe", "plain")
    session = holder.start()
    assert session is not None and holder.active is session
    session.log({"loss": 1.0}, step=1)
    holder.finish(0)
    assert holder.active is None and holder.current is session

    renewed = holder.start()  # finished by us: the same run continues (by id, resume="allow")
    assert renewed is not None and renewed is not session and renewed.run_id == session.run_id
    renewed.log({"loss": 0.5}, step=2)
    renewed.run.finish()  # the user's wandb.finish()
    assert renewed.ended_by_user

    fresh = holder.start()  # finished by the user: a new run
    assert fresh is not None and fresh.run_id != session.run_id
    holder.finish()
    runs = wandb_offline.runs()
    assert [r.run_id for r in runs] == [session.run_id, session.run_id, fresh.run_id]
    assert [row["trainer/global_step"] for run in runs[:2] for row in run.history] == [1, 2]

    kept = SessionHolder(resolve_settings({}), owner="Probe", framework="plain", renew="keep")
    first = kept.start()
    kept.finish(0)
    assert kept.session is first and kept.start() is None  # "keep": calls after the end do nothing


def test_an_idle_run_is_finished_when_the_next_holder_starts_one(wandb_offline: WandbOfflineRuns) -> None:
    first, second = _holder("A", "plain"), _holder("B", "plain")
    session = first.start()
    assert session is not None
    first.begin_call()
    session.log({"loss": 1.0}, step=1)
    first.end_call()  # ended well: flushed, still open, idle
    assert not session.finished and first.active is session

    other = second.start()
    assert session.finished and other is not None and not other.finished
    second.begin_call()
    second.end_call(KeyboardInterrupt())  # an interrupted call finishes at once: 130
    assert other.finished
    assert [r.exit_code for r in wandb_offline.runs()] == [0, 130]


def test_a_failed_or_preempted_call_finishes_with_its_exit_code(wandb_offline: WandbOfflineRuns) -> None:
    codes = []
    for exc, preempted in ((RuntimeError("x"), False), (None, True), (SystemExit(0), False)):
        holder = _holder("Probe", "plain")
        holder.start()
        holder.begin_call()
        holder.end_call(exc, preempted=preempted)
        codes.append(wandb_offline.runs()[-1].exit_code)
    assert codes == [1, 143, 1]  # a failed call never ends with 0


def test_exit_finishes_with_the_exit_code_of_what_ended_the_block(wandb_offline: WandbOfflineRuns) -> None:
    holder = _holder("Probe", "plain")
    holder.start()
    holder.exit(KeyboardInterrupt())
    assert wandb_offline.run().exit_code == 130


# -------------------------------------------------------------- pickling


class _Owner:
    """A stand-in callback: its holder and a framework object that must not travel."""

    def __init__(self, pin: bool = False, **kwargs: Any) -> None:
        self._holder = SessionHolder(resolve_settings(kwargs), owner="Probe", framework="plain", pin_run_id=pin)
        self._holder.step_clock = self.step
        self._trainer_ref: Any = lambda: None

    def step(self) -> int:
        return 7

    def __getstate__(self) -> dict[str, Any]:
        return picklable_state(self, "_trainer_ref")


def test_pickling_carries_the_settings_only_and_pins_the_run_id(wandb_offline: WandbOfflineRuns) -> None:
    owner = _Owner(project="p", tags=["a"])
    session = owner._holder.start()
    assert session is not None
    copy = pickle.loads(pickle.dumps(owner))
    assert copy._trainer_ref is None and copy._holder.current is None
    assert copy._holder.settings.project == "p" and copy._holder.settings.tags == ("a",)
    assert copy._holder.settings.id is None  # not pinned: a copy starts its own run
    assert copy._holder.step_clock is not None and copy._holder.step_clock() == 7  # a method travels
    owner._holder.finish(0)

    pinned = _Owner(pin=True)
    travelled = pickle.loads(pickle.dumps(pinned))
    run_id = travelled._holder.settings.id
    assert run_id and pinned._holder.settings.id == run_id  # the parent uses the id it handed out
    started = pinned._holder.start()
    assert started is not None and started.run_id == run_id
    pinned._holder.finish(0)
    assert pickle.loads(pickle.dumps(pinned))._holder.settings.id == run_id


def test_calling_frames_reads_the_callers_locals() -> None:
    def read() -> Any:
        return next(local["marker"] for name, local in calling_frames(4) if name == "outer")

    def outer() -> Any:
        marker = os.sep  # noqa: F841  (read from the frame)
        return read()

    assert outer() == os.sep


# ---------------------------------------------------------------- arrows


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_the_arrows_point_one_way() -> None:
    """callbacks -> core -> adapters: adapters import nothing of the core, callbacks neither adapters nor wandb."""
    package = Path(wandb_bridge.__file__).parent
    for path in sorted((package / "adapters").glob("*.py")):
        wrong = {name for name in _imports(path) if name.startswith(("wandb_bridge.core", "wandb_bridge.callbacks"))}
        assert not wrong, f"{path.name} imports {sorted(wrong)}"
    for path in sorted((package / "callbacks").glob("*.py")):
        names = _imports(path)
        wrong = {name for name in names if name.startswith("wandb_bridge.adapters") or name.split(".")[0] == "wandb"}
        assert not wrong, f"{path.name} imports {sorted(wrong)}"
