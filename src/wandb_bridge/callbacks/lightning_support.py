"""Lightning for :class:`~wandb_bridge.callbacks.lightning.WandbLogger`, translation only: the Trainer's call,
stage, facts and epochs, what happens as a Trainer call begins, its checkpoint callbacks, and
``fit(ckpt_path=...)``'s checkpoint. The ``Logger`` base is :mod:`~wandb_bridge.callbacks.lightning_base`.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from wandb_bridge.callbacks.base import calling_frames
from wandb_bridge.core import steps
from wandb_bridge.core.metrics import Stage
from wandb_bridge.core.session import Session
from wandb_bridge.core.steps import fractional_epoch

_STAGES: dict[str, Stage] = {"validate": "val", "sanity_check": "val", "test": "test", "predict": "test"}
_TRAINER_FACTS = (  # the Trainer settings worth having in the config
    "max_epochs max_steps min_epochs precision accumulate_grad_batches gradient_clip_val gradient_clip_algorithm "
    "num_devices num_nodes world_size log_every_n_steps val_check_interval check_val_every_n_epoch "
    "limit_train_batches limit_val_batches"
)


def trainer_of(model: Any) -> Any:
    """The Trainer a ``LightningModule`` is attached to, or None."""
    try:
        return model.trainer
    except Exception:  # not attached to a Trainer
        return None


def trainer_fn(trainer: Any) -> str | None:
    """The Trainer call in progress: ``"fit"``, ``"validate"``, ``"test"``, ``"predict"`` or None."""
    fn = getattr(getattr(trainer, "state", None), "fn", None)
    return None if fn is None else str(getattr(fn, "value", fn))


def stage(trainer: Any) -> Stage:
    """Where unprefixed names go, from the Trainer's running stage."""
    running = getattr(getattr(trainer, "state", None), "stage", None)
    return _STAGES.get(str(getattr(running, "value", running)), "train")


def lightning_version(trainer: Any) -> str | None:
    """The version of the Lightning distribution the Trainer comes from (any installed one without a Trainer)."""
    package = "lightning" if trainer is None else type(trainer).__module__.split(".")[0]
    module = sys.modules.get(package) or sys.modules.get("lightning") or sys.modules.get("pytorch_lightning")
    return None if module is None else str(getattr(module, "__version__", "")) or None


def trainer_facts(trainer: Any) -> dict[str, Any]:
    """The Trainer settings worth having in the config (JSON-safe values)."""
    facts: dict[str, Any] = {}
    for key in _TRAINER_FACTS.split():
        try:
            value = getattr(trainer, key)
        except Exception:
            continue
        facts["devices" if key == "num_devices" else key] = value
    strategy = getattr(trainer, "strategy", None)
    if strategy is not None:
        facts["strategy"] = getattr(strategy, "strategy_name", None) or type(strategy).__name__
    accelerator = getattr(trainer, "accelerator", None)
    if accelerator is not None:
        facts["accelerator"] = type(accelerator).__name__
    facts["lightning_package"] = type(trainer).__module__.split(".")[0]
    return facts


def global_rank(trainer: Any) -> int | None:
    """The Trainer's global rank (None without a Trainer)."""
    return None if trainer is None else int(trainer.global_rank)


def epochs_done(trainer: Any) -> float | None:
    """``trainer/epoch`` now: epochs completed, a float (Lightning's ``epoch`` is the running index); else None."""
    if trainer is None or trainer_fn(trainer) != "fit":
        return None
    try:
        batches, batch_idx = float(trainer.num_training_batches), int(trainer.fit_loop.epoch_loop.batch_idx)
        return fractional_epoch(int(trainer.current_epoch), batch_idx + 1, batches)
    except (AttributeError, TypeError, ValueError):
        return None


# ------------------------------------------------------------ checkpoint callbacks


def checkpoint_callbacks(trainer: Any) -> list[Any]:
    """The Trainer's checkpoint callbacks, in its order (none without a Trainer)."""
    return list(getattr(trainer, "checkpoint_callbacks", None) or [])


def resumed_fit_checkpoint(logger: Any) -> str | None:
    """The checkpoint a running ``Trainer.fit(ckpt_path=...)`` resumes from, read as its run is about to start.

    No public route gives it in time: Lightning's setup reads ``experiment`` (which starts the
    run, whose id must be known then) before ``trainer.ckpt_path`` is set (when the checkpoint is
    restored), and no hook reaches a logger in between. So the ``ckpt_path`` the running Trainer
    call resolved (``"last"`` already a path) is read from the frames above (``calling_frames``).
    Nothing found (another Lightning version, not ``fit``): None; ``log_graph`` then compares
    ``trainer.ckpt_path`` with the run, and ``resume_from_checkpoint=`` is the explicit way.
    """
    for _, local in calling_frames():
        owner = local.get("self")
        if owner is None or owner is logger or type(owner).__name__ != "Trainer" or "ckpt_path" not in local:
            continue
        if not any(item is logger for item in getattr(owner, "loggers", None) or []):
            continue
        if trainer_fn(owner) != "fit":
            return None
        path = local.get("ckpt_path") or getattr(owner, "ckpt_path", None)
        if isinstance(path, (str, os.PathLike)) and os.path.exists(os.fspath(path)):
            return os.fspath(path)
        return None
    return None


def call_begins(session: Session, trainer: Any, *, first: bool) -> None:
    """A Trainer call begins: a fit's rows planned and ``fit(ckpt_path=...)``'s run continued; for a
    Trainer seen the ``first`` time, its facts into the config.

    Args:
        session: the logger's started session.
        trainer: the Trainer.
        first: the first call of this Trainer seen by the logger.
    """
    fitting = trainer_fn(trainer) == "fit"
    if fitting:  # (the run may have started before the Trainer existed: logger.experiment)
        session.plan_rows(planned_rows(trainer))
    resumed = getattr(trainer, "ckpt_path", None) if fitting else None
    if resumed and session.resumed_from is None and os.path.exists(os.fspath(resumed)):
        session.resume_from_checkpoint(resumed)  # the run continues the checkpoint's run
    if not first:
        return
    session.log_framework_config({"trainer": trainer_facts(trainer)})


def planned_rows(trainer: Any) -> int:
    """The rows a fit with ``max_steps`` set will log (``max_steps / log_every_n_steps``); 0 when unknown."""
    return steps.planned_rows(getattr(trainer, "max_steps", None), getattr(trainer, "log_every_n_steps", None))
