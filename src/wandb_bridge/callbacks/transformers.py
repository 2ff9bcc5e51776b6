"""Hugging Face transformers: ``Trainer(..., callbacks=[WandbTrainerCallback()])`` with ``report_to="none"``.

The callback only translates the Trainer's events into :class:`~wandb_bridge.Session` calls; keys, steps, aliases,
the monitor, the final-model rule, ownership and rank are the core's (what it reads: ``transformers_support``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeAlias

from typing_extensions import override

from wandb_bridge.callbacks import transformers_data as hf_data
from wandb_bridge.callbacks import transformers_support as hf
from wandb_bridge.callbacks._require import require
from wandb_bridge.callbacks.base import SessionHolder, guarded, picklable_state, resolve_settings
from wandb_bridge.callbacks.transformers_checkpoints import (
    FINAL_MODEL_DIR,
    NEVER_UPLOAD,
    WEIGHT_FILES,
    CheckpointFiles,
    Checkpoints,
)
from wandb_bridge.callbacks.transformers_health import TrainerHealth
from wandb_bridge.callbacks.transformers_runs import Runs
from wandb_bridge.callbacks.transformers_support import apply_sweep
from wandb_bridge.core import predictions
from wandb_bridge.core.metrics import log_stage, read_log_dict
from wandb_bridge.core.session import Session
from wandb_bridge.core.steps import step_in_progress

if TYPE_CHECKING:
    from transformers import TrainerControl as Control
    from transformers import TrainerState as State
    from transformers import TrainingArguments as Args

transformers = require("transformers", "transformers", "WandbTrainerCallback")
_TrainerCallback: Any = transformers.TrainerCallback

__all__ = ["FINAL_MODEL_DIR", "NEVER_UPLOAD", "WEIGHT_FILES", "WandbTrainerCallback", "apply_sweep"]
_Opened: TypeAlias = "Session | None"  # the started session, or None where this process does not log


class WandbTrainerCallback(_TrainerCallback):  # type: ignore[misc]
    """Log a ``transformers.Trainer`` run to W&B with wandb-bridge's run contract (docs/transformers.md).

    ``loss``, ``learning_rate``, ``grad_norm`` -> ``train/*``, ``eval_*`` -> ``val/*``, ``test_*`` -> ``test/*``
    at ``trainer/global_step`` = ``state.global_step``; end-of-training figures go to the summary. Config:
    ``TrainingArguments`` (top level), ``model/``, ``peft/``, parameter counts; your ``config=`` wins. The run
    starts at the first event with something to record and stays open after ``train()`` (for a later
    ``evaluate()``) until :meth:`finish`, the next ``train()``, another callback's run, or the process exit.

    Args:
        project: W&B project (``WANDB_PROJECT``; ``"huggingface"`` when neither is set).
        entity: W&B entity (``WANDB_ENTITY``).
        name: run name (default: ``TrainingArguments.run_name``).
        log_model: ``False``, ``True`` (= ``"end"``), ``"end"``, ``"best"`` or ``"all"``;
            ``WANDB_LOG_MODEL`` (``checkpoint`` means ``"all"``) when not given.
        log_predictions: log a table of this many validation samples at every evaluation.
        checkpoint_files: ``"all"`` uploads the whole ``checkpoint-N`` folder, ``"weights"``
            only :data:`WEIGHT_FILES`. ``training_args.bin`` is never uploaded.
        watch: ``"gradients"``, ``"parameters"``, ``"all"`` or None (``WANDB_WATCH``).
        **kwargs: the other shared arguments (docs/settings.md); unknown names go to ``wandb.init``.

    Raises:
        ValueError: an argument has a value that is not allowed.
    """

    def __init__(
        self,
        project: str | None = None,
        entity: str | None = None,
        name: str | None = None,
        *,
        log_model: bool | str | None = None,
        log_predictions: int = 0,
        checkpoint_files: CheckpointFiles = "all",
        watch: str | None = None,
        **kwargs: Any,
    ) -> None:
        self._checkpoints = Checkpoints(checkpoint_files)
        self.log_predictions = predictions.check_count(log_predictions)
        given = {"project": project, "entity": entity, "name": name, "log_model": log_model, "watch": watch}
        self.settings = resolve_settings({**given, **kwargs}, default_project="huggingface")
        self._holder = SessionHolder(self.settings, owner="WandbTrainerCallback", framework="transformers", renew="new")
        self._holder.framework_version = transformers.__version__
        self._holder.step_clock = self._clock
        self._runs = Runs(self._holder, self.settings, self._checkpoints)
        self._state: State | None = None
        self._in_step = False  # between on_step_begin and on_step_end (see _clock)
        self._samples: tuple[Args, int] | None = None  # samples per optimizer step of these arguments
        self._health = TrainerHealth(self._holder)  # log_health, on every rank

    def __getstate__(self) -> dict[str, Any]:  # Trainers are pickled (Ray Tune): the settings travel, no live run
        return picklable_state(self, "_state", "_samples")

    @property
    def checkpoint_files(self) -> CheckpointFiles:
        """Which files of a ``checkpoint-N`` folder are uploaded: ``"all"`` or ``"weights"``."""
        return self._checkpoints.files

    @property
    def session(self) -> Session | None:
        """The session of the current run (None before the first event, and where this process does not log)."""
        return self._holder.active

    @property
    def run(self) -> Any:
        """The wandb run in use, or None."""
        return getattr(self._holder.active, "run", None)

    def setup(
        self, args: Args, state: State | None = None, model: Any = None, *, new_training: bool = False
    ) -> _Opened:
        """Start (or return) the session of the current run and record its config; the Trainer's events call it.

        ``new_training``: a ``train()`` call begins (a run that saw a ``train()`` end is finished first).
        """
        return self._runs.open(args, state, model, new_training=new_training, check_sweep=True)

    def sweep_config(self, args: Args) -> Mapping[str, Any]:
        """The run's config (swept values included) for :func:`wandb_bridge.apply_sweep`; starts the run."""
        session = self._runs.open(args, None, None, new_training=False, check_sweep=False)
        return {} if session is None else session.config

    def finish(self, exit_code: int = 0) -> None:
        """Finish the current run (flush, end-of-run uploads, exit code); idempotent."""
        self._holder.finish(exit_code)

    def _clock(self) -> int | None:
        """The step of the user's own ``wandb.log`` values: the step being computed, else the steps completed."""
        state = self._state
        return None if state is None else step_in_progress(state.global_step, self._in_step)

    @override
    @guarded
    def on_train_begin(self, args: Args, state: State, control: Control, **kwargs: Any) -> None:
        """Start the run of this ``train()`` call, record the config, watch the model."""
        self._state, model, watch = state, kwargs.get("model"), self.settings.watch
        session = self.setup(args, state, model, new_training=True)
        if session is not None and model is not None and watch is not None:
            session.watch(model, log=watch, log_freq=max(100, int(args.logging_steps or 0)))

    @override
    def on_step_begin(self, args: Args, state: State, control: Control, **kwargs: Any) -> None:
        """A training step begins (values the user logs now belong to it)."""
        self._in_step = True

    @override
    def on_step_end(self, args: Args, state: State, control: Control, **kwargs: Any) -> None:
        """The optimizer step is done."""
        self._in_step = False

    @override
    @guarded
    def on_log(self, args: Args, state: State, control: Control, logs: Any = None, **kwargs: Any) -> None:
        """Record a Trainer log dict at ``state.global_step`` (the end-of-training one in the summary)."""
        session = self.setup(args, state, kwargs.get("model")) if logs else None
        if session is None:
            return
        read = read_log_dict(logs)
        if read.summary:
            session.log_summary(read.values, stage=read.stage)
            return
        if read.stage == "val":
            self._checkpoints.evaluated(state.global_step, read.values)
        samples = self._samples_per_step(args) if read.stage == "train" and "loss" in read.values else None
        session.log(read.values, step=state.global_step, stage=read.stage, samples=samples)

    def _samples_per_step(self, args: Args) -> int:
        """:func:`~wandb_bridge.callbacks.transformers_support.samples_per_step`, read once per arguments object."""
        known = self._samples
        if known is None or known[0] is not args:
            known = self._samples = (args, hf.samples_per_step(args))
        return known[1]

    @override
    @guarded
    def on_pre_optimizer_step(self, args: Args, state: State, control: Control, **kwargs: Any) -> None:
        """``log_health``: measure the gradients of the step being taken (after clipping, before the step)."""
        self._health.before_step(step_in_progress(state.global_step), kwargs)

    @override
    @guarded
    def on_optimizer_step(self, args: Args, state: State, control: Control, **kwargs: Any) -> None:
        """``log_health``: measure the weights after the step and hand the figures over."""
        self._health.after_step()

    @override
    @guarded
    def on_evaluate(self, args: Args, state: State, control: Control, metrics: Any = None, **kwargs: Any) -> None:
        """Log the predictions table (``log_predictions``) of this evaluation."""
        model, loader = kwargs.get("model"), kwargs.get("eval_dataloader")
        session = self.setup(args, state, model) if self.log_predictions > 0 else None
        if session is None or model is None or loader is None:
            return
        if args.deepspeed or args.fsdp:
            self._holder.warner.warn("predictions-sharded", hf_data.SHARDED_WARNING)
            return
        columns = hf_data.prediction_columns(model, loader, kwargs.get("processing_class"), self.log_predictions)
        if columns is not None:
            stage = log_stage(metrics) if metrics else "val"
            predictions.PredictionTable(session, stage).log(*columns, step=state.global_step)

    @override
    @guarded
    def on_predict(self, args: Args, state: State, control: Control, metrics: Any = None, **kwargs: Any) -> None:
        """Record ``trainer.predict()`` metrics under ``test/``."""
        session = self.setup(args, state, kwargs.get("model")) if metrics else None
        if session is not None:
            session.log(dict(metrics), step=state.global_step, stage="test")

    @override
    @guarded
    def on_save(self, args: Args, state: State, control: Control, **kwargs: Any) -> None:
        """Report the ``checkpoint-<global_step>`` folder just written (with ``log_model=False`` too: resume marks)."""
        session = self.setup(args, state, kwargs.get("model")) if args.should_save else None
        if session is not None:
            self._checkpoints.saved(session, args, state, self._holder.warner)

    @override
    @guarded
    def on_train_end(self, args: Args, state: State, control: Control, **kwargs: Any) -> None:
        """Save the final model when ``log_model`` wants one and no checkpoint exists; upload; the run stays open."""
        session = self._holder.active
        if session is not None:
            model, processor = kwargs.get("model"), kwargs.get("processing_class")
            self._checkpoints.end_train(session, args, state, model, processor, self.settings.log_model)
        self._holder.end_call()
