"""What :class:`~wandb_bridge.callbacks.transformers.WandbTrainerCallback` reads from transformers.

Translation only, no policy: ``checkpoint-N`` folders and their files, a search trial's run name,
``metric_for_best_model`` offered to the core's monitor rule, the final model's folder, the health
monitor's inputs, the warning texts, ``apply_sweep``. Config and prediction inputs: ``transformers_data``.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from wandb_bridge.callbacks.base import SessionHolder
from wandb_bridge.core import follow, health, sweeps
from wandb_bridge.core.steps import epochs_completed, planned_rows
from wandb_bridge.core.training_end import SavedCheckpoint

if TYPE_CHECKING:
    from transformers import TrainerState, TrainingArguments

    from wandb_bridge.core.session import Session
    from wandb_bridge.core.settings import Settings

#: Files a ``checkpoint_files="weights"`` artifact keeps: model weights, adapters,
#: model/generation config and tokenizer/processor files (no optimizer,
#: scheduler, scaler, RNG or trainer state).
# fmt: off
WEIGHT_FILES: tuple[str, ...] = (
    "model.safetensors", "model-*.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
    "pytorch_model-*.bin", "pytorch_model.bin.index.json", "adapter_*", "config.json", "generation_config.json",
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "vocab.txt",
    "vocab.json", "merges.txt", "*.model", "chat_template.jinja", "chat_template.json", "preprocessor_config.json",
    "processor_config.json",
)
# fmt: on

CheckpointFiles = Literal["all", "weights"]

#: Files never uploaded: ``training_args.bin`` is a pickle of ``TrainingArguments``
#: holding ``hub_token`` in clear (nothing reads it back when training resumes).
NEVER_UPLOAD: tuple[str, ...] = ("training_args.bin",)

#: The folder (inside ``output_dir``) where the final model is saved when
#: ``log_model`` asks for a model and the Trainer saved no checkpoint.
FINAL_MODEL_DIR = "wandb-final-model"


def output_dir(args: TrainingArguments) -> str:
    """Where the Trainer saves (``output_dir``, or transformers' default)."""
    return str(args.output_dir or "trainer_output")


def checkpoint_dir(args: TrainingArguments, state: TrainerState) -> str | None:
    """The ``checkpoint-<global_step>`` folder the Trainer just wrote, or None when it is not there."""
    folder = f"checkpoint-{state.global_step}"
    root = output_dir(args)
    candidate = os.path.join(root, folder)
    if os.path.isdir(candidate):
        return candidate
    # Hyper-parameter search trials save under <output_dir>/<trial>/checkpoint-N.
    found = [p for p in glob.glob(os.path.join(glob.escape(root), "*", folder)) if os.path.isdir(p)]
    if not found:
        return None
    return max(found, key=os.path.getmtime)


def resumed_checkpoint(args: TrainingArguments, state: TrainerState) -> tuple[str, int] | None:
    """The checkpoint ``train(resume_from_checkpoint=...)`` loaded and its step, or None when training starts afresh."""
    if state.global_step <= 0:
        return None
    given = args.resume_from_checkpoint
    path = given if isinstance(given, str) and os.path.isdir(given) else checkpoint_dir(args, state)
    return None if path is None else (path, state.global_step)


def resume_from(path: str, step: int) -> Callable[[Session], None]:
    """``train(resume_from_checkpoint=...)``: before the run starts, continue the run that wrote ``path``."""

    def prepare(session: Session) -> None:
        session.resume_from_checkpoint(path, step)

    return prepare


def plan_rows(session: Session, args: TrainingArguments, state: TrainerState) -> None:
    """A ``train()`` call begins: tell the session how many rows it logs (``max_steps / logging_steps``)."""
    if str(getattr(args.logging_strategy, "value", args.logging_strategy)) == "steps":
        session.plan_rows(planned_rows(state.max_steps, args.logging_steps))


def trainer_verdict(role: follow.Role | None, state: TrainerState, path: str) -> bool | None:
    """``is_best`` of a saved folder: the Trainer's ``best_model_checkpoint`` verdict as the core's role counts it."""
    best = state.best_model_checkpoint
    if role is None or not best:
        return None
    try:
        same = os.path.samefile(best, path)
    except OSError:
        same = os.path.normpath(os.path.abspath(best)) == os.path.normpath(os.path.abspath(path))
    return follow.verdict(role, None, same).is_best


def samples_per_step(args: TrainingArguments) -> int:
    """Training samples in one optimizer step over all processes."""
    return int(args.train_batch_size) * int(args.gradient_accumulation_steps) * int(args.world_size)


def run_settings(base: Settings, args: TrainingArguments, state: TrainerState | None, trial: int | None) -> Settings:
    """The settings of a run started now: hyper-parameter search trial ``trial``'s name and group, or ``run_name``."""
    if trial is not None:
        group = base.group or args.run_name or os.path.basename(os.path.normpath(output_dir(args)))
        name = getattr(state, "trial_name", None) or f"{group}-trial-{trial}"
        return base.with_changes(name=base.name or name, group=group)
    if base.name is None and args.run_name:
        return base.with_changes(name=args.run_name)
    return base


def adopt_trainer_monitor(session: Session, args: TrainingArguments, user_monitor: str | None) -> follow.Role | None:
    """Offer ``metric_for_best_model`` to the core as the monitor; how the Trainer's best verdict counts (None: none).

    The core adopts it unless the user named a ``monitor=``; the Trainer's
    ``best_model_checkpoint`` decides ``best`` only while both watch one metric.
    """
    metric = args.metric_for_best_model
    if not metric:
        return None
    name = metric if metric.startswith("eval_") else f"eval_{metric}"
    trainer_best = follow.CallbackMonitor(name, "max" if args.greater_is_better else "min")
    adopted = follow.adopted_monitor(user_monitor, [trainer_best])
    if adopted is not None:
        session.define_monitor(adopted.monitor, adopted.mode, stage="val")
    return follow.checkpoint_role(session.monitor, [session.map_key(name, "val")], 0)


def save_final_model(model: Any, processor: Any, args: TrainingArguments) -> str:
    """Save the model (and its processor) into :data:`FINAL_MODEL_DIR` of ``output_dir``; returns the folder."""
    folder = os.path.join(output_dir(args), FINAL_MODEL_DIR)
    model.save_pretrained(folder)
    save = getattr(processor, "save_pretrained", None)
    if callable(save):
        save(folder)
    return folder


class TrainerHealth:
    """``log_health`` on the Trainer's optimizer events; the monitor is made at the first optimizer step.

    Args:
        holder: the callback's session holder (the figures go to its active session).
    """

    def __init__(self, holder: SessionHolder) -> None:
        self._holder = holder
        self._monitor: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {"_holder": self._holder, "_monitor": None}

    def before_step(self, step: int, hook_kwargs: Mapping[str, Any]) -> None:
        """``on_pre_optimizer_step``: measure the gradients of ``step`` (after clipping, before the step)."""
        settings, model = self._holder.settings, hook_kwargs.get("model")
        if not settings.log_health:
            return
        if self._monitor is None:
            self._monitor = health.monitor(settings, self._hand_over, owner="WandbTrainerCallback")
        if model is not None and self._monitor.due(step):
            optimizer = hook_kwargs.get("optimizer")  # accelerate's wrapper holds the fp16 GradScaler
            scaler = getattr(optimizer, "scaler", None)
            self._monitor.before_step(step, model, scaler=scaler, optimizer=getattr(optimizer, "optimizer", optimizer))

    def after_step(self) -> None:
        """``on_optimizer_step``: measure the weights after the step and hand the figures over."""
        if self._monitor is not None:
            self._monitor.after_step()

    def _hand_over(self, step: int, keys: Sequence[str], values: Any, histograms: Mapping[str, Any]) -> None:
        session = self._holder.active
        if session is not None:
            session.hand_over_health(step, keys, values, histograms)


def check_arguments(checkpoint_files: str) -> None:
    """Refuse a ``checkpoint_files`` value that is not allowed (``ValueError``)."""
    if checkpoint_files not in ("all", "weights"):
        raise ValueError(f"checkpoint_files={checkpoint_files!r} is not valid; use one of 'all', 'weights'")


def missing_checkpoint_warning(args: TrainingArguments, state: TrainerState) -> str:
    """The warning for an ``on_save`` whose ``checkpoint-N`` folder is not there."""
    step = state.global_step
    return f"The checkpoint folder of step {step} was not found under {args.output_dir!r}; it is not uploaded."


def run_warnings(args: TrainingArguments, config: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """``(key, message)`` of a new run's warnings: ``report_to`` holds wandb, or sweep values were not applied."""
    warnings = []
    report_to = args.report_to
    names = [report_to] if isinstance(report_to, str) else list(report_to or [])
    if "wandb" in names or "all" in names:
        warnings.append(("report_to", REPORT_TO_WARNING))
    swept = sweeps.swept_values(config) if config is not None and os.environ.get("WANDB_SWEEP_ID") else None
    changes = sweeps.changes_for(args, swept) if swept else None
    if changes:
        shown = ", ".join(f"{k}={v!r}" for k, v in sorted(changes.items()))
        warnings.append(("sweep-not-applied", SWEEP_WARNING.format(shown=shown)))
    return warnings


REPORT_TO_WARNING = (
    "TrainingArguments.report_to includes 'wandb': every metric would be logged twice, by transformers' "
    "WandbCallback and by WandbTrainerCallback. Set report_to='none' (or remove 'wandb' from the list)."
)
SWEEP_WARNING = (
    "This run belongs to a W&B sweep that set {shown}, but TrainingArguments hold other values. Build them "
    "with wandb_bridge.callbacks.transformers.apply_sweep(args, callback) before creating the Trainer."
)


def saved_model(
    state: TrainerState, path: str, files: str, last_eval: tuple[int, dict[str, Any]] | None, **metadata: Any
) -> SavedCheckpoint:
    """A folder the Trainer (or the callback) saved, with the evaluation of its step (``files``: which files)."""
    return SavedCheckpoint(
        path,
        step=state.global_step,
        epoch=epochs_completed(state.epoch),
        metrics=last_eval[1] if last_eval is not None and last_eval[0] == state.global_step else None,
        metadata={"checkpoint_files": files, **metadata},
        include=WEIGHT_FILES if files == "weights" else None,
        exclude=NEVER_UPLOAD,
    )


def apply_sweep(args: TrainingArguments, session_or_config: Any) -> TrainingArguments:
    """``TrainingArguments`` with the values a W&B sweep chose for this run (:func:`wandb_bridge.apply_sweep`).

    ``args = apply_sweep(args, callback)`` before creating the Trainer: starts the callback's run and
    replaces each ``TrainingArguments`` field a sweep parameter names (``dataclasses.replace``; ``args``
    itself when nothing changes). ``session_or_config``: a ``WandbTrainerCallback``, a
    :class:`~wandb_bridge.Session`, a wandb run, or a mapping of parameter values.
    """
    # No warning for the run config's other keys (model config, Trainer facts): they match no field.
    updated: TrainingArguments = sweeps.apply_sweep(args, session_or_config, warn=False)
    return updated
