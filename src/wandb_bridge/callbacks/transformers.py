"""Hugging Face transformers: :class:`WandbTrainerCallback`, a ``transformers.TrainerCallback``.

Use it with ``report_to="none"``::

    from wandb_bridge import WandbTrainerCallback

    trainer = Trainer(model, args, callbacks=[WandbTrainerCallback(project="demo")])

The callback only translates the Trainer's events into :class:`~wandb_bridge.Session`
calls; key names, the step axis, aliases and ownership are decided by the core.
"""

from __future__ import annotations

import glob
import os
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from wandb_bridge.callbacks._require import require
from wandb_bridge.core import health, hparams, sweeps
from wandb_bridge.core.errors import OnceWarner, guarded_hook
from wandb_bridge.core.session import Session
from wandb_bridge.core.settings import Settings

if sys.version_info >= (3, 12):
    from typing import override
else:
    from typing_extensions import override

if TYPE_CHECKING:
    from transformers import TrainerControl, TrainerState, TrainingArguments

transformers = require("transformers", "transformers", "WandbTrainerCallback")
_TrainerCallback: Any = transformers.TrainerCallback

__all__ = ["NEVER_UPLOAD", "WEIGHT_FILES", "WandbTrainerCallback", "apply_sweep"]

CheckpointFiles = Literal["all", "weights"]

#: Files a ``checkpoint_files="weights"`` artifact keeps: model weights, adapters,
#: model/generation config and tokenizer/processor files (no optimizer,
#: scheduler, scaler, RNG or trainer state).
WEIGHT_FILES: tuple[str, ...] = (
    "model.safetensors",
    "model-*.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model-*.bin",
    "pytorch_model.bin.index.json",
    "adapter_*",
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "*.model",
    "chat_template.jinja",
    "chat_template.json",
    "preprocessor_config.json",
    "processor_config.json",
)

#: Files never uploaded: ``training_args.bin`` is a pickle of ``TrainingArguments``
#: holding ``hub_token`` in clear (nothing reads it back when training resumes).
NEVER_UPLOAD: tuple[str, ...] = ("training_args.bin",)

#: The folder (inside ``output_dir``) where the final model is saved when
#: ``log_model`` asks for a model and the Trainer saved no checkpoint.
FINAL_MODEL_DIR = "wandb-final-model"

# Keys of the log dict the Trainer writes once, at the end of train().
_END_OF_TRAINING = ("train_runtime", "total_flos")


_guarded = guarded_hook("WandbTrainerCallback")


class WandbTrainerCallback(_TrainerCallback):  # type: ignore[misc]
    """Log a ``transformers.Trainer`` run to W&B with wandb-bridge's run contract.

    Metrics: ``loss``, ``learning_rate``, ``grad_norm`` become ``train/...``,
    ``eval_*`` become ``val/*``, ``test_*`` (``predict()`` and
    ``evaluate(metric_key_prefix="test")``) become ``test/*``, all at
    ``trainer/global_step`` = ``state.global_step``; ``epoch`` is
    ``trainer/epoch``. The end-of-training figures (``train_runtime``,
    ``train_samples_per_second``, ``total_flos``, ``train_loss``...) go to the
    summary (under ``perf/``, and ``train/loss_mean``), not into the history.

    Config: ``TrainingArguments`` (top level, so sweep parameters keep their
    names), the model config under ``model/``, a PEFT config under ``peft/``,
    ``model/num_parameters`` and ``model/num_trainable_parameters``; secrets
    are redacted.

    Run lifetime: the run starts at the first event that has something to
    record and stays open after ``train()`` so that a later ``evaluate()`` /
    ``predict()`` lands in it; it is finished by :meth:`finish`, by the next
    ``train()`` call (which starts a new run), or when the process exits.

    Args:
        project: W&B project (``WANDB_PROJECT``; ``"huggingface"`` when neither is set,
            as with ``report_to="wandb"``).
        entity: W&B entity (``WANDB_ENTITY``).
        name: run name (default: ``TrainingArguments.run_name``).
        log_model: ``False``, ``True`` (= ``"end"``), ``"end"``, ``"best"`` or ``"all"``;
            ``WANDB_LOG_MODEL`` (``checkpoint`` means ``"all"``) when not given.
        log_predictions: log a table of this many validation samples (input,
            label, prediction) at every evaluation; 0 (default) logs none.
        checkpoint_files: ``"all"`` uploads the whole ``checkpoint-N`` folder,
            ``"weights"`` only the model weights, adapters, configs and tokenizer
            files (:data:`WEIGHT_FILES`). ``training_args.bin`` is never uploaded.
        watch: ``"gradients"``, ``"parameters"``, ``"all"`` or None
            (``WANDB_WATCH`` when not given).
        **kwargs: the other shared arguments of wandb-bridge (``group, tags,
            job_type, notes, config, mode, dir, id, resume, run, checkpoint_name,
            monitor, monitor_mode, system_stats, rank_zero_only, on_error``);
            unknown names go to ``wandb.init``.

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
        if checkpoint_files not in ("all", "weights"):
            raise ValueError(f"checkpoint_files={checkpoint_files!r} is not valid; use one of 'all', 'weights'")
        if isinstance(log_predictions, bool) or not isinstance(log_predictions, int):
            raise ValueError(f"log_predictions must be an int >= 0, got {log_predictions!r}")
        if log_predictions < 0:
            raise ValueError(f"log_predictions must be an int >= 0, got {log_predictions!r}")
        settings = Settings.resolve(
            project=project, entity=entity, name=name, log_model=log_model, watch=watch, **kwargs
        )
        if settings.project is None:
            settings = settings.with_changes(project="huggingface")
        self.settings = settings
        self.log_predictions = log_predictions
        self.checkpoint_files: CheckpointFiles = checkpoint_files
        self._session: Session | None = None
        self._trained = False
        self._trials = 0
        self._hf_best = False
        self._recorded: tuple[int, int] | None = None
        self._last_eval: tuple[int, dict[str, Any]] | None = None
        self._warner = OnceWarner()
        self._health: Any = None  # the log_health monitor (every rank), made at the first optimizer step
        self._in_step = False  # between on_step_begin and on_step_end (see on_train_begin's step clock)

    def __getstate__(self) -> dict[str, Any]:
        # Trainers are pickled (Ray Tune): the settings travel, a live run does not.
        state = dict(self.__dict__)
        state["_session"] = None
        state["_warner"] = None
        state["_health"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._warner = OnceWarner()

    # ------------------------------------------------------------ public API

    @property
    def session(self) -> Session | None:
        """The session of the current run (None before the first event, and on other ranks)."""
        return self._session

    @property
    def run(self) -> Any:
        """The wandb run in use, or None."""
        return None if self._session is None else self._session.run

    def setup(
        self,
        args: TrainingArguments,
        state: TrainerState | None = None,
        model: Any = None,
        *,
        new_training: bool = False,
    ) -> Session | None:
        """Start (or return) the session of the current run and record its config.

        The Trainer's events call it; call it yourself to start the run before
        training (:func:`apply_sweep` does).

        Args:
            args: the Trainer's ``TrainingArguments``.
            state: the Trainer's state (rank, hyper-parameter search trial).
            model: the model, for its config and parameter counts.
            new_training: a ``train()`` call begins: a run that already saw a
                ``train()`` end is finished and a new one started.

        Returns:
            The session, or None on a rank that does not log.
        """
        return self._open(args, state, model, new_training=new_training, check_sweep=True)

    def sweep_config(self, args: TrainingArguments) -> Mapping[str, Any]:
        """The run's config (swept values included) for :func:`wandb_bridge.apply_sweep`; starts the run."""
        session = self._open(args, None, None, check_sweep=False)
        return {} if session is None else session.config

    def _open(
        self,
        args: TrainingArguments,
        state: TrainerState | None,
        model: Any,
        *,
        new_training: bool = False,
        check_sweep: bool = True,
    ) -> Session | None:
        is_zero = True if state is None else bool(state.is_world_process_zero)
        if self.settings.rank_zero_only and not is_zero:
            return None
        hp_search = state is not None and bool(getattr(state, "is_hyper_param_search", False))
        session = self._session
        if session is not None and (session.finished or (new_training and (self._trained or hp_search))):
            if not session.finished:
                session.finish(0)
            session = self._session = None
        if session is not None:
            if new_training and session.enabled and self._recorded != (id(args), id(model)):
                # Started before train() (evaluate(), apply_sweep()): complete the config.
                self._record(session, args, state, model)
            return session
        self._trained = False
        self._last_eval = None
        settings = self.settings
        if hp_search:
            self._trials += 1
            group = settings.group or args.run_name or os.path.basename(os.path.normpath(_output_dir(args)))
            trial = getattr(state, "trial_name", None) or f"{group}-trial-{self._trials}"
            settings = settings.with_changes(name=settings.name or trial, group=group)
        elif settings.name is None and args.run_name:
            settings = settings.with_changes(name=args.run_name)
        session = Session(
            bridge_settings=settings, framework="transformers", framework_version=transformers.__version__
        )
        self._session = session
        if new_training and not hp_search and state is not None and state.global_step > 0:
            # train(resume_from_checkpoint=...): the state was loaded from checkpoint-<global_step>;
            # continue the run that wrote it.
            given = args.resume_from_checkpoint
            resumed = given if isinstance(given, str) and os.path.isdir(given) else _checkpoint_dir(args, state)
            if resumed is not None:
                session.resume_from_checkpoint(resumed, step=state.global_step)
        if session.start() is None:
            return session
        if check_sweep:
            self._check_sweep(session, args)
        self._record(session, args, state, model)
        self._warn_report_to(args)
        return session

    def _record(self, session: Session, args: TrainingArguments, state: TrainerState | None, model: Any) -> None:
        """Record the config and the monitored metric (``metric_for_best_model``)."""
        self._hf_best = False
        metric = args.metric_for_best_model
        if metric:
            raw = metric if metric.startswith("eval_") else f"eval_{metric}"
            if self.settings.monitor is None:
                session.define_monitor(raw, "max" if args.greater_is_better else "min", stage="val")
                self._hf_best = True
            else:
                self._hf_best = session.monitor == session.map_key(raw, "val")
        session.log_config(self._config(args, state, model))
        self._recorded = (id(args), id(model))

    def finish(self, exit_code: int = 0) -> None:
        """Finish the current run (flush, end-of-run uploads, exit code); idempotent.

        Args:
            exit_code: 0 for success, non-zero for a failed run.
        """
        session, self._session = self._session, None
        if session is not None:
            session.finish(exit_code)

    # ---------------------------------------------------------------- events

    @override
    @_guarded
    def on_init_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        """Warn when ``report_to`` also holds ``"wandb"``."""
        if not self.settings.disabled and (not self.settings.rank_zero_only or state.is_world_process_zero):
            self._warn_report_to(args)

    @override
    @_guarded
    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """Start the run of this ``train()`` call, record the config, watch the model."""
        session = self.setup(args, state, kwargs.get("model"), new_training=True)
        model = kwargs.get("model")
        if session is None or not session.enabled:
            return
        # The step of the user's own wandb.log values: the step being computed inside a
        # training step, else the optimizer steps completed.
        session.step_clock = lambda: state.global_step + (1 if self._in_step else 0)
        if model is None:
            return
        watch = self.settings.watch
        if watch is not None:
            session.watch(model, log=watch, log_freq=max(100, int(args.logging_steps or 0)))

    @override
    def on_step_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """A training step begins (values the user logs now belong to it)."""
        self._in_step = True

    @override
    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        """The optimizer step is done."""
        self._in_step = False

    @override
    @_guarded
    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Record a Trainer log dict at ``state.global_step``."""
        if not logs:
            return
        session = self.setup(args, state, kwargs.get("model"))
        if session is None or not session.enabled:
            return
        values = dict(logs)
        if all(key in values for key in _END_OF_TRAINING):
            values.pop("epoch", None)
            if "train_loss" in values:
                # The mean training loss of the whole train() call, kept apart from the
                # last logged train/loss.
                values["loss_mean"] = values.pop("train_loss")
            session.log_summary(values, stage="train")
            return
        stage = _stage_of(values)
        samples = None
        if stage == "val":
            self._last_eval = (state.global_step, values)
        elif stage == "train" and "loss" in values:
            samples = int(args.train_batch_size) * int(args.gradient_accumulation_steps) * int(args.world_size)
        session.log(values, step=state.global_step, stage=stage, samples=samples)

    @override
    @_guarded
    def on_pre_optimizer_step(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """``log_health``: measure the gradients of the step being taken (after clipping, before the step)."""
        if not self.settings.log_health:
            return
        if self._health is None:
            self._health = health.monitor(self.settings, self._hand_over_health, owner="WandbTrainerCallback")
        if self._health.due(state.global_step + 1) and kwargs.get("model") is not None:
            optimizer = kwargs.get("optimizer")  # accelerate's wrapper holds the fp16 GradScaler
            self._health.before_step(
                state.global_step + 1,
                kwargs["model"],
                scaler=getattr(optimizer, "scaler", None),
                optimizer=getattr(optimizer, "optimizer", optimizer),
            )

    @override
    @_guarded
    def on_optimizer_step(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """``log_health``: measure the weights after the step and hand the figures over."""
        if self._health is not None:
            self._health.after_step()

    def _hand_over_health(self, step: int, keys: Sequence[str], values: Any, histograms: Mapping[str, Any]) -> None:
        session = self._session
        if session is not None and session.enabled:
            session.hand_over_health(step, keys, values, histograms)

    @override
    @_guarded
    def on_evaluate(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        metrics: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Log the predictions table (``log_predictions``) of this evaluation."""
        if self.log_predictions <= 0:
            return
        session = self.setup(args, state, kwargs.get("model"))
        model = kwargs.get("model")
        loader = kwargs.get("eval_dataloader")
        if session is None or not session.enabled or model is None or loader is None:
            return
        if args.deepspeed or args.fsdp:
            self._warner.warn(
                "predictions-sharded",
                "log_predictions is skipped: with DeepSpeed or FSDP the parameters are sharded "
                "and a forward pass on one process would hang.",
            )
            return
        table = self._prediction_table(session, model, loader, kwargs.get("processing_class"))
        if table is not None:
            stage = _stage_of(metrics or {}) if metrics else "val"
            session.log({"predictions": table}, step=state.global_step, stage=stage)

    @override
    @_guarded
    def on_predict(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        metrics: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Record ``trainer.predict()`` metrics under ``test/``."""
        if not metrics:
            return
        session = self.setup(args, state, kwargs.get("model"))
        if session is not None and session.enabled:
            session.log(dict(metrics), step=state.global_step, stage="test")

    @override
    @_guarded
    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any) -> None:
        """Report the ``checkpoint-<global_step>`` folder the Trainer just wrote.

        Also with ``log_model=False``: the core then uploads nothing but marks the
        folder with the run, so ``train(resume_from_checkpoint=...)`` continues it.
        """
        if not args.should_save:
            return
        session = self.setup(args, state, kwargs.get("model"))
        if session is None or not session.enabled:
            return
        path = _checkpoint_dir(args, state)
        if path is None:
            self._warner.warn(
                f"no-checkpoint-{state.global_step}",
                f"The checkpoint folder of step {state.global_step} was not found under "
                f"{args.output_dir!r}; it is not uploaded.",
            )
            return
        is_best = None
        if self._hf_best and state.best_model_checkpoint:
            is_best = _same_path(state.best_model_checkpoint, path)
        self._report_checkpoint(session, state, path, is_best)

    @override
    @_guarded
    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """Save the final model when ``log_model`` wants one and no checkpoint exists; upload."""
        session = self._session
        if session is None or not session.enabled:
            self._trained = True
            return
        model = kwargs.get("model")
        if self.settings.log_model and not session.has_checkpoints and args.should_save and model is not None:
            folder = os.path.join(_output_dir(args), FINAL_MODEL_DIR)
            model.save_pretrained(folder)
            processor = kwargs.get("processing_class")
            save = getattr(processor, "save_pretrained", None)
            if callable(save):
                save(folder)
            self._report_checkpoint(session, state, folder, None, {"final_model": True})
        session.upload_end_checkpoints()
        session.flush()
        self._trained = True

    # --------------------------------------------------------------- helpers

    def _report_checkpoint(
        self,
        session: Session,
        state: TrainerState,
        path: str,
        is_best: bool | None,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        metrics = None
        if self._last_eval is not None and self._last_eval[0] == state.global_step:
            metrics = self._last_eval[1]
        session.log_checkpoint(
            path,
            step=state.global_step,
            epoch=_epoch_index(state.epoch),
            metrics=metrics,
            is_best=is_best,
            metadata={"checkpoint_files": self.checkpoint_files, **(metadata or {})},
            include=WEIGHT_FILES if self.checkpoint_files == "weights" else None,
            exclude=NEVER_UPLOAD,
        )

    def _config(self, args: TrainingArguments, state: TrainerState | None, model: Any) -> dict[str, Any]:
        # to_dict() masks every *_token field; the core redacts secrets again.
        to_dict: Any = args.to_dict
        config: dict[str, Any] = dict(to_dict())
        if model is not None:
            model_config = getattr(model, "config", None)
            if model_config is not None:
                config["model"] = dict(model_config) if isinstance(model_config, Mapping) else model_config.to_dict()
            peft = getattr(model, "peft_config", None)
            if peft:
                config["peft"] = hparams.to_json_safe(peft)
            total, trainable = _parameter_counts(model)
            if total is not None:
                config["model/num_parameters"] = total
                config["model/num_trainable_parameters"] = trainable
        trial = getattr(state, "trial_params", None) if state is not None else None
        if trial:
            config["trial"] = dict(trial)
        return config

    def _check_sweep(self, session: Session, args: TrainingArguments) -> None:
        if not os.environ.get("WANDB_SWEEP_ID"):
            return
        changes = sweeps.changes_for(args, sweeps.swept_values(session.config))
        if changes:
            shown = ", ".join(f"{k}={v!r}" for k, v in sorted(changes.items()))
            self._warner.warn(
                "sweep-not-applied",
                f"This run belongs to a W&B sweep that set {shown}, but TrainingArguments hold "
                "other values. Build them with wandb_bridge.callbacks.transformers.apply_sweep"
                "(args, callback) before creating the Trainer.",
            )

    def _warn_report_to(self, args: TrainingArguments) -> None:
        report_to = args.report_to
        names = [report_to] if isinstance(report_to, str) else list(report_to or [])
        if "wandb" in names or "all" in names:
            self._warner.warn(
                "report_to",
                "TrainingArguments.report_to includes 'wandb': every metric would be logged twice, "
                "by transformers' WandbCallback and by WandbTrainerCallback. Set report_to='none' "
                "(or remove 'wandb' from the list).",
            )

    def _prediction_table(self, session: Session, model: Any, loader: Any, processor: Any) -> Any:
        torch = require("torch", "transformers", "WandbTrainerCallback(log_predictions=...)")
        batch = _first_samples(loader, self.log_predictions)
        if batch is None:
            return None
        device = getattr(model, "device", None)
        inputs = {k: (v.to(device) if device is not None and hasattr(v, "to") else v) for k, v in batch.items()}
        labels = inputs.get("labels", inputs.get("label"))
        was_training = bool(model.training)
        model.eval()
        try:
            with torch.no_grad():
                output = model(**inputs)
        finally:
            model.train(was_training)
        logits = output.get("logits") if isinstance(output, Mapping) else getattr(output, "logits", None)
        if logits is None and isinstance(output, (tuple, list)):
            logits = output[1] if labels is not None and len(output) > 1 else output[0]
        if logits is None:
            return None
        predictions = logits.argmax(-1).detach().cpu()
        vocab = getattr(getattr(model, "config", None), "vocab_size", None)
        token_outputs = vocab is not None and int(logits.shape[-1]) == int(vocab)
        ids = batch.get("input_ids")
        rows = []
        for i in range(int(predictions.shape[0])):
            text = _decode(processor, ids[i]) if ids is not None else _describe(batch, i)
            label = None if labels is None else _render(labels[i].cpu(), processor, token_outputs)
            rows.append([text, label, _render(predictions[i], processor, token_outputs)])
        return session.wandb_type("Table", columns=["input", "label", "prediction"], data=rows)


# ---------------------------------------------------------------- functions


def apply_sweep(args: TrainingArguments, session_or_config: Any) -> TrainingArguments:
    """Return ``TrainingArguments`` updated with the values a W&B sweep chose for this run.

    A run started by a sweep agent gets its parameters in its config; a
    parameter named like a ``TrainingArguments`` field (``learning_rate``,
    ``num_train_epochs``, ``per_device_train_batch_size``...) replaces that
    field. Other config values, secrets and redacted values are ignored.

    Example:
        >>> callback = WandbTrainerCallback(project="demo")  # doctest: +SKIP
        >>> args = apply_sweep(args, callback)  # starts the run, reads the swept values
        >>> trainer = Trainer(model, args, callbacks=[callback])

    Args:
        args: the arguments to update (not modified).
        session_or_config: a :class:`WandbTrainerCallback` (its run is started
            with ``args``), a :class:`~wandb_bridge.Session` (started if needed),
            a wandb run, or a mapping of parameter values (e.g. ``wandb.config``).

    Returns:
        New ``TrainingArguments`` (``dataclasses.replace``, so derived fields are
        recomputed), or ``args`` itself when nothing changes.
    """
    # The rule lives in the core (dataclass fields, casting, secrets); no warning for the run config's
    # other keys (model config, Trainer facts), which naturally match no TrainingArguments field.
    updated: TrainingArguments = sweeps.apply_sweep(args, session_or_config, warn=False)
    return updated


def _stage_of(values: Mapping[str, Any]) -> Literal["train", "val", "test"]:
    for key in values:
        if key.startswith("eval_"):
            return "val"
        if key.startswith(("test_", "predict_")):
            return "test"
    return "train"


def _epoch_index(epoch: float | None) -> int | None:
    """Whole epochs completed when a checkpoint was written (``state.epoch`` 1.0 -> 1).

    The same count in every framework: a checkpoint at the end of the first epoch
    gets ``epoch-1``.
    """
    if epoch is None:
        return None
    return int(epoch + 1e-9)


def _checkpoint_dir(args: TrainingArguments, state: TrainerState) -> str | None:
    folder = f"checkpoint-{state.global_step}"
    root = _output_dir(args)
    candidate = os.path.join(root, folder)
    if os.path.isdir(candidate):
        return candidate
    # Hyper-parameter search trials save under <output_dir>/<trial>/checkpoint-N.
    found = [p for p in glob.glob(os.path.join(glob.escape(root), "*", folder)) if os.path.isdir(p)]
    if not found:
        return None
    return max(found, key=os.path.getmtime)


def _output_dir(args: TrainingArguments) -> str:
    return str(args.output_dir or "trainer_output")


def _same_path(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.normpath(os.path.abspath(a)) == os.path.normpath(os.path.abspath(b))


def _parameter_counts(model: Any) -> tuple[int | None, int | None]:
    counter = getattr(model, "num_parameters", None)
    if callable(counter):
        try:
            return int(counter()), int(counter(only_trainable=True))
        except Exception:  # a model's own counter may not take only_trainable
            pass
    parameters = getattr(model, "parameters", None)
    if not callable(parameters):
        return None, None
    params = list(parameters())
    total = sum(int(p.numel()) for p in params)
    trainable = sum(int(p.numel()) for p in params if getattr(p, "requires_grad", False))
    return total, trainable


def _first_samples(loader: Any, count: int) -> dict[str, Any] | None:
    """Collate the first ``count`` samples of the evaluation dataset (no distributed iteration)."""
    dataset = getattr(loader, "dataset", None)
    collate = getattr(loader, "collate_fn", None)
    if dataset is None or not callable(collate):
        return None
    items: list[Any] = []
    if hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__"):
        items = [dataset[i] for i in range(min(count, len(dataset)))]
    else:
        for item in dataset:
            items.append(item)
            if len(items) >= count:
                break
    if not items:
        return None
    batch = collate(items)
    return dict(batch) if isinstance(batch, Mapping) else None


def _decode(processor: Any, ids: Any) -> str:
    values = _ints(ids)
    decode = getattr(processor, "decode", None)
    if callable(decode) and values is not None:
        try:
            return str(decode(values, skip_special_tokens=True))
        except Exception:  # a processor without text decoding
            pass
    return str(values if values is not None else ids)


def _describe(batch: Mapping[str, Any], index: int) -> str:
    for key, value in batch.items():
        if key in ("labels", "label"):
            continue
        shape = getattr(value, "shape", None)
        if shape is not None and len(shape) > 1:
            return f"{key}: shape {tuple(int(s) for s in shape[1:])}"
    return f"sample {index}"


def _render(value: Any, processor: Any, token_outputs: bool) -> Any:
    values = _ints(value)
    if values is None:
        return str(value)
    if getattr(value, "ndim", 1) == 0:
        return values[0]
    if token_outputs:
        kept = [v for v in values if v >= 0]
        return _decode(processor, kept)
    return str([v for v in values if v != -100])


def _ints(value: Any) -> list[int] | None:
    tolist = getattr(value, "tolist", None)
    data = tolist() if callable(tolist) else value
    if isinstance(data, bool):
        return None
    if isinstance(data, int):
        return [data]
    if isinstance(data, float):
        return [int(data)] if data.is_integer() else None
    if isinstance(data, Sequence) and not isinstance(data, str) and all(isinstance(v, int) for v in data):
        return list(data)
    return None
