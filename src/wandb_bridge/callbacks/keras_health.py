"""Keras: the training-health hooks of :class:`~wandb_bridge.WandbKerasCallback` (``log_health=True``).

Keras gives callbacks no hook between the backward pass and the optimizer
update, so on a health step the weights are copied at ``on_train_batch_begin``
and the gradients read at ``on_train_batch_end``. On the torch backend the
gradients are the variables' ``.grad`` (left there until the next step's
``zero_grad``), divided by the loss scale and, with
``gradient_accumulation_steps``, combined with the optimizer's accumulators the
way the optimizer combines them (``(g + accumulated) / steps``), before its
own clipping. JAX and TensorFlow compute gradients inside a compiled train step
and hand none out: one warning at construction, no ``health/`` keys, no hook.
"""

from __future__ import annotations

import warnings
from typing import Any

from wandb_bridge.callbacks.base import guarded
from wandb_bridge.core import health
from wandb_bridge.core.errors import WandbBridgeWarning


class KerasHealth:
    """Health measurement for one :class:`~wandb_bridge.WandbKerasCallback`.

    Args:
        callback: the Keras callback (its step bookkeeping and session are used).
        backend: the Keras backend name.
    """

    def __init__(self, callback: Any, backend: str) -> None:
        self._callback = callback
        self._backend = backend
        self._holder = callback._holder  # the callback's error boundary (its warnings, its on_error)
        session = callback.session
        self._monitor: Any = health.monitor(session.settings, session.hand_over_health, owner="WandbKerasCallback")
        self._before: list[Any] | None = None
        self._accumulated: list[Any] | None = None

    def _step(self, batch: int) -> tuple[int, bool]:
        """``(optimizer step, True when this batch's call applies an update)`` for batch index ``batch``."""
        clock = self._callback._clock
        step, raw = clock.at_batch(batch)
        return step, raw % clock.accumulation == 0

    def _usable(self) -> bool:
        if self._monitor is None:
            return False
        if self._callback._clock.per_call != 1:
            self._holder.warner.warn(
                "per-call",
                "log_health: with steps_per_execution > 1 Keras runs several steps between two callback calls, so "
                "the gradients of a given step cannot be read; no health/ figures are recorded.",
                stacklevel=5,
            )
            return False
        return True

    @guarded("copy the weights")
    def batch_begin(self, batch: int) -> None:
        """On a health step: copy the weights (and the gradient accumulators) before the update."""
        self._before = self._accumulated = None
        step, updates = self._step(batch)
        if not updates or not self._usable() or not self._monitor.due(step):
            return
        model = self._callback.model
        self._before = [v.value.detach().clone() for v in model.trainable_weights]
        inner = _inner(self._callback._clock.optimizer)
        if self._callback._clock.accumulation > 1 and inner is not None:
            self._accumulated = [a.value.detach().clone() for a in inner._accumulated_gradients]

    @guarded("measure the gradients")
    def batch_end(self, batch: int) -> None:
        """On a health step: measure the gradients and the update and hand them over."""
        before, self._before = self._before, None
        accumulated, self._accumulated = self._accumulated, None
        if before is None:
            return
        step, _ = self._step(batch)
        variables = list(self._callback.model.trainable_weights)
        named = [(v.path, v.value) for v in variables]
        grads = [v.value.grad for v in variables]
        optimizer = self._callback._clock.optimizer
        inner = _inner(optimizer)
        scale = _loss_scale(optimizer, inner)
        if scale is not None:  # unscaled first, then combined with the (unscaled) accumulators
            grads = [None if g is None else g / scale for g in grads]
        steps = self._callback._clock.accumulation
        if accumulated is not None:
            grads = [None if g is None else (g + a) / steps for g, a in zip(grads, accumulated, strict=True)]
        self._monitor.before_step(step, named, grads=grads, weights_before=before, scaler=scale)
        self._monitor.after_step()


def install(callback: Any, backend: str) -> KerasHealth | None:
    """Chain the health hooks before ``callback``'s own batch hooks; batch ends run on the training thread.

    On a backend that hands out no gradients (JAX, TensorFlow) nothing is
    installed (no per-batch hook at all) and one warning says so.

    Args:
        callback: the :class:`~wandb_bridge.WandbKerasCallback`.
        backend: the Keras backend name.

    Returns:
        The hooks, or None on a backend without gradients.
    """
    if backend != "torch":
        warnings.warn(
            f"log_health: the {backend} backend computes gradients inside its compiled train step and hands none "
            "to callbacks; no health/ figures are recorded (they need KERAS_BACKEND=torch).",
            WandbBridgeWarning,
            stacklevel=3,
        )
        return None
    hooks = KerasHealth(callback, backend)
    begin, end = callback.on_train_batch_begin, callback.on_train_batch_end

    def on_train_batch_begin(batch: int, logs: Any = None) -> None:
        hooks.batch_begin(batch)
        begin(batch, logs)

    def on_train_batch_end(batch: int, logs: Any = None) -> None:
        hooks.batch_end(batch)
        end(batch, logs)

    callback.on_train_batch_begin = on_train_batch_begin
    callback.on_train_batch_end = on_train_batch_end
    callback.async_safe = False  # the gradients must be read before the next step's zero_grad
    return hooks


def _inner(optimizer: Any) -> Any:
    return getattr(optimizer, "inner_optimizer", optimizer)


def _loss_scale(optimizer: Any, inner: Any) -> Any:
    """The factor the gradients are scaled by: a LossScaleOptimizer's dynamic scale, or ``loss_scale_factor``."""
    dynamic = getattr(optimizer, "dynamic_scale", None)
    if dynamic is not None and optimizer is not inner:
        return dynamic.value
    factor = getattr(inner, "loss_scale_factor", None)
    return factor if isinstance(factor, (int, float)) and factor != 1 else None
