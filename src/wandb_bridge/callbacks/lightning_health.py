"""Lightning: the training-health hooks of :class:`~wandb_bridge.WandbLogger` (``log_health=True``).

A logger gets no per-step hooks, so the logger adds one small callback to the
Trainer it is attached to (:func:`attach`, from ``log_graph``, on every rank):
``on_before_optimizer_step`` (gradients accumulated and unscaled, before
Lightning clips them) measures the gradients, ``on_train_batch_end`` (after the
step) the weights. Policy, keys and steps are the core's.
"""

from __future__ import annotations

import importlib
from typing import Any

from wandb_bridge.callbacks.base import guarded

_ATTACHED = "_wandb_bridge_health"
_classes: dict[str, type] = {}


def attach(logger: Any, trainer: Any) -> None:
    """Add the health callback for ``logger`` to ``trainer`` (once per Trainer).

    Args:
        logger: the :class:`~wandb_bridge.WandbLogger` (its session records the figures).
        trainer: the Lightning Trainer.
    """
    callbacks = getattr(trainer, "callbacks", None)
    if callbacks is None or any(getattr(c, _ATTACHED, None) is logger for c in callbacks):
        return
    distribution = type(trainer).__module__.split(".")[0]  # lightning or pytorch_lightning
    cls = _classes.get(distribution)
    if cls is None:
        base = importlib.import_module(
            "pytorch_lightning.callbacks" if distribution == "pytorch_lightning" else "lightning.pytorch.callbacks"
        ).Callback
        cls = type("WandbHealthCallback", (_HealthHooks, base), {"__module__": __name__})
        _classes[distribution] = cls
    callbacks.append(cls(logger))


class _HealthHooks:
    """The hooks (mixed into the Trainer's own ``Callback`` class)."""

    def __init__(self, logger: Any) -> None:
        super().__init__()
        setattr(self, _ATTACHED, logger)
        self._holder = logger._holder  # the logger's error boundary (its warnings, its on_error)
        self._monitor: Any = None

    @property
    def state_key(self) -> str:
        """One per logger object (Lightning keys callback state by this)."""
        return f"WandbHealthCallback[{id(getattr(self, _ATTACHED))}]"

    def _get_monitor(self) -> Any:
        if self._monitor is None:
            self._monitor = getattr(self, _ATTACHED).session.health_monitor(owner="WandbLogger")
        return self._monitor

    @guarded("measure the gradients")
    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        """Measure the gradients of the step being taken (``trainer.global_step + 1``)."""
        step = int(trainer.global_step) + 1
        monitor = self._get_monitor()
        if monitor is None or not monitor.due(step):
            return
        scaler = getattr(getattr(trainer, "precision_plugin", None), "scaler", None)
        monitor.before_step(step, pl_module, scaler=scaler, optimizer=optimizer)

    @guarded("measure the weights")
    def on_train_batch_end(self, *args: Any) -> None:  # noqa: ARG002  (trainer, pl_module, outputs, batch, batch_idx)
        """After the step: the weights, and the hand-over."""
        if self._monitor is not None:
            self._monitor.after_step()
