"""The step axis: which optimizer step (``trainer/global_step``) and epoch a framework's value belongs to.

Every framework counts differently (Lightning's 0-based logger step, Keras's
optimizer iterations and batch calls, the Trainer's completed steps); the
callbacks hand over the counts they read, the rules here decide the row's step.
Pure: no wandb, no framework, no threads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class LoggerStep:
    """The row step of values a framework's logger was handed (see :func:`logger_step`).

    Attributes:
        step: the global step of the row (None: the session's current step).
        eval_batch: the framework's step was an evaluation batch count, so the
            values went to the training step they were computed at instead.
    """

    step: int | None
    eval_batch: bool


def logger_step(step: int | None, *, global_step: int | None, in_fit: bool, eval_batch: bool) -> LoggerStep:
    """The row step of values a logger gets with its framework's 0-based step (Lightning, Fabric).

    The framework's step counts optimizer steps completed before the value, so
    ``step + 1`` is the step it belongs to; the trainer's optimizer step count
    wins when it is larger (one batch stepping several optimizers).

    Args:
        step: the framework's step, if it gave one.
        global_step: the trainer's optimizer steps completed; None when no
            trainer is known (the logger is used on its own: ``step + 1``).
        in_fit: a training call is running (outside one, values go to ``global_step``).
        eval_batch: the values are per-batch evaluation values (their step is an
            evaluation batch count, no training step).
    """
    if global_step is None:
        return LoggerStep(None if step is None else int(step) + 1, False)
    if step is None or not in_fit:
        return LoggerStep(global_step, False)
    if eval_batch:
        return LoggerStep(global_step, True)
    return LoggerStep(max(global_step, int(step) + 1), False)


def fractional_epoch(epoch: int, batches_done: int, batches_per_epoch: float | None) -> float:
    """``trainer/epoch`` of a value: epochs completed, as a float (0.125 after 1 of 8 batches, 1.0 at the epoch's end).

    Args:
        epoch: the running epoch's 0-based index.
        batches_done: the batches of that epoch done when the value was produced.
        batches_per_epoch: the epoch's batch count; None, 0 or infinite (an
            iterable dataset): the epoch index is all that is known.
    """
    if not batches_per_epoch or not 0 < batches_per_epoch < math.inf:
        return float(epoch)
    return epoch + min(batches_done, batches_per_epoch) / batches_per_epoch


def epochs_completed(epoch: float | None) -> int | None:
    """Whole epochs completed at a (fractional) epoch: 1.0 -> 1, 1.5 -> 1; None stays None.

    The epoch count of a checkpoint in every framework: one written at the end
    of the first epoch gets ``epoch-1``.
    """
    if epoch is None:
        return None
    return int(epoch + 1e-9)


def step_in_progress(completed: int, in_step: bool = True) -> int:
    """The row step of a value recorded while a framework trains, from its count of optimizer steps completed.

    Inside an optimizer step (between its begin and end events, or just before the
    optimizer steps) a value belongs to the step being computed, ``completed + 1``;
    between steps, to the last completed one.
    """
    return completed + 1 if in_step else completed


def evaluation_step(optimizer_steps: int, last_step: int | None) -> int:
    """The row step of evaluation results recorded outside training (Keras ``evaluate()``).

    Args:
        optimizer_steps: the optimizer's step count now.
        last_step: the run's last recorded step, if any.

    Returns:
        ``optimizer_steps``; when the optimizer has not stepped (0: a fresh or
        reloaded model evaluated after training), the run's last step, so the
        results share the row of the training they evaluate.
    """
    return last_step if optimizer_steps == 0 and last_step else optimizer_steps


def reaches_every(step: int, batches: int, *, per_call: int, accumulation: int, every: int) -> bool:
    """True when the batch call that ended at ``step`` reached ``every`` optimizer steps more (a logged batch).

    Args:
        step: optimizer steps done once the call ran.
        batches: batches run once the call ran.
        per_call: batches one call runs (Keras ``steps_per_execution``).
        accumulation: batches per optimizer step (gradient accumulation).
        every: log every this many optimizer steps.
    """
    return step // every > ((batches - per_call) // accumulation) // every


__all__ = [
    "LoggerStep",
    "epochs_completed",
    "evaluation_step",
    "fractional_epoch",
    "logger_step",
    "reaches_every",
    "step_in_progress",
]


def planned_rows(steps: float | None, every: float | None) -> int:
    """About how many history rows a training of ``steps`` optimizer steps logs, once every ``every`` steps.

    For :meth:`Session.plan_rows`; ``every`` below 1 is a fraction of ``steps``
    (the transformers Trainer's ``logging_steps=0.1``). 0 when either is unknown.
    """
    if not steps or not every or steps <= 0 or every <= 0 or math.isinf(steps):
        return 0
    interval = every * steps if every < 1 else every
    return int(steps // max(1.0, interval))
