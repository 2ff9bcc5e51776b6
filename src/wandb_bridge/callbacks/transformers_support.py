"""What :class:`~wandb_bridge.callbacks.transformers.WandbTrainerCallback` reads from transformers.

Translation only, no policy: where the Trainer saves (``checkpoint-N``, the resumed one), a run's
settings (a search trial's name), the rows a ``train()`` plans, samples per step, the warnings of a
new run, ``apply_sweep``. Config and prediction inputs: ``transformers_data``; checkpoint folders and
the final model: ``transformers_checkpoints``; ``log_health``: ``transformers_health``.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from wandb_bridge.core import sweeps
from wandb_bridge.core.steps import planned_rows

if TYPE_CHECKING:
    from transformers import TrainerState, TrainingArguments

    from wandb_bridge.core.session import Session
    from wandb_bridge.core.settings import Settings


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
