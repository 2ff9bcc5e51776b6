"""``log_health`` for :class:`~wandb_bridge.callbacks.transformers.WandbTrainerCallback`: the Trainer's
optimizer events handed to the core's health monitor (:mod:`wandb_bridge.core.health`), on every rank.
The Keras and Lightning counterparts: :mod:`~wandb_bridge.callbacks.keras_health`,
:mod:`~wandb_bridge.callbacks.lightning_health`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from wandb_bridge.callbacks.base import SessionHolder
from wandb_bridge.core import health


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


__all__ = ["TrainerHealth"]
