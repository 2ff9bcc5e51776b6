"""The optimizer's step and learning rate, read for :class:`~wandb_bridge.WandbKerasCallback`.

Read at ``fit`` and epoch boundaries only (one device read each); a batch's step is computed from
the batch count at the start of the epoch. Which batches reach ``log_freq`` steps and the fractional
epoch are the core's (:mod:`wandb_bridge.core.steps`). Beyond the public optimizer API:
``optimizer._iterations``, only with ``gradient_accumulation_steps`` (the public
``optimizer.iterations`` counts updates there; batch rows need the batch count).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from wandb_bridge.callbacks.keras_support import keras
from wandb_bridge.core.steps import fractional_epoch, reaches_every


class StepReader:
    """The optimizer's step and learning rate, read at ``fit`` and epoch boundaries only; a batch's
    step is computed from ``raw_base``, the batch count at the start of the epoch, with no device read."""

    def __init__(self) -> None:
        self.optimizer: Any = None
        self.accumulation = self.per_call = 1
        self.raw_base = 0
        self.epoch_rate: Any = None
        self.steps: int | None = None  # batches per epoch
        self.batch_size: int | None = None
        self._schedule: Callable[[Any], Any] | None = None
        self._frozen = False

    def bind(self, model: Any, params: Mapping[str, Any] | None = None, fit: Mapping[str, Any] | None = None) -> None:
        """Read the model's optimizer; at a ``fit``'s start (its ``params`` and arguments) also the rest."""
        self.optimizer = getattr(model, "optimizer", None)
        inner = getattr(self.optimizer, "inner_optimizer", self.optimizer)
        accumulation = getattr(inner, "gradient_accumulation_steps", None)
        self.accumulation = accumulation if isinstance(accumulation, int) and accumulation > 1 else 1
        if params is None:
            return
        fit = fit or {}
        self.per_call = _positive(getattr(model, "steps_per_execution", 1)) or 1
        self.steps, self.batch_size = _positive(params.get("steps")), _positive(fit.get("batch_size"))
        if self.batch_size is None:
            try:  # fit(x=<dataset>): its data adapter's
                adapter = getattr(fit.get("epoch_iterator"), "data_adapter", None)
                self.batch_size = _positive(getattr(adapter, "batch_size", None))
            except Exception:
                pass
        self._schedule = _schedule_of(self.optimizer)
        self._frozen = keras.backend.backend() == "jax"
        self.raw_base = self.read()[1]

    def read(self) -> tuple[int, int]:
        """``(optimizer steps, optimizer iterations)`` now (one device read)."""
        if self.optimizer is None:
            return 0, 0
        step = _to_int(self.optimizer.iterations)
        if self.accumulation == 1:
            return step, step
        counter = getattr(getattr(self.optimizer, "inner_optimizer", self.optimizer), "_iterations", None)
        return step, _to_int(counter) if counter is not None else step * self.accumulation

    def at_batch(self, batch: int) -> tuple[int, int]:
        """``(optimizer step, batch count)`` once batch ``batch`` of this epoch ran (no device read)."""
        raw = self.raw_base + batch + 1
        return raw // self.accumulation, raw

    def completes(self, batch: int, every: int) -> bool:
        """True when the call that ran batch ``batch`` (of ``per_call`` batches) reached ``every`` steps more."""
        step, raw = self.at_batch(batch)
        return reaches_every(step, raw, per_call=self.per_call, accumulation=self.accumulation, every=every)

    def epoch_at(self, epoch: int, batch: int) -> float:
        """The fractional epoch once batch ``batch`` of epoch ``epoch`` ran."""
        return fractional_epoch(epoch, batch + 1, self.steps)

    def learning_rate(self, iteration: int, in_batch: bool = False) -> Any:
        """The learning rate of update ``iteration + 1``, without a device read: a schedule's value on the
        step (a tensor), or a copy of the variable (on JAX, in an epoch: the copy of its first batch)."""
        if self.optimizer is None:
            return None
        if self._schedule is not None:
            value = self._schedule(max(iteration, 0))
        elif in_batch and self._frozen:
            return self.epoch_rate
        else:
            value = self.optimizer.learning_rate
            if isinstance(value, keras.Variable):
                value = keras.ops.copy(value)
        if value is None or isinstance(value, (int, float)) or keras.backend.backend() in ("torch", "jax", "numpy"):
            return value  # torch tensors, jax and numpy arrays are read in the core's worker
        return float(keras.ops.convert_to_numpy(value))


def _positive(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _to_int(value: Any) -> int:
    return int(keras.ops.convert_to_numpy(value.value if isinstance(value, keras.Variable) else value))


def _schedule_of(optimizer: Any) -> Callable[[Any], Any] | None:
    """A copy of the optimizer's learning-rate schedule (public ``get_config`` + ``deserialize``), if any."""
    try:
        rate = optimizer.get_config().get("learning_rate")
        schedule = keras.optimizers.schedules.deserialize(dict(rate)) if isinstance(rate, Mapping) else None
    except Exception:
        return None
    return schedule if callable(schedule) else None


__all__ = ["StepReader"]
