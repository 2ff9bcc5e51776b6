"""Reading Keras 3 for :class:`~wandb_bridge.WandbKerasCallback`: plain values out of Keras objects.

Translation only; what is logged, under which key and step, with which alias, is the core's
decision. Beyond the public ``keras.callbacks.Callback`` contract (each with a fallback):
:func:`fit_context` reads the call stack (the one place, via ``base.calling_frames``): Keras 3
hands a callback its model and ``params`` only, so the sibling callbacks (their
``ModelCheckpoint`` files are followed; ``checkpoint_callback=`` bypasses it) and ``fit``'s other
arguments (``batch_size``, ``initial_epoch``, ``validation_data``/``val_x``/``val_y``...) have no
public route; ``optimizer._iterations``, only with ``gradient_accumulation_steps`` (the public
``optimizer.iterations`` counts updates there; batch rows need the batch count).
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from types import ModuleType
from typing import Any

from wandb_bridge.callbacks._require import require
from wandb_bridge.callbacks.base import calling_frames
from wandb_bridge.core.follow import CallbackMonitor
from wandb_bridge.core.steps import fractional_epoch, reaches_every


def import_keras() -> ModuleType:
    """Keras 3, or an ``ImportError`` that says what to install or set."""
    try:
        module = require("keras", "keras", "WandbKerasCallback")
    except ImportError as exc:
        cause = exc.__cause__
        if cause is None or importlib.util.find_spec("keras") is None:
            raise
        raise ImportError(
            f"WandbKerasCallback could not import keras ({type(cause).__name__}: {cause}). "
            "Keras 3 imports the backend named by KERAS_BACKEND (tensorflow when unset): "
            "install that backend, or set KERAS_BACKEND to 'torch' or 'jax' before keras is imported."
        ) from cause
    version = str(getattr(module, "__version__", "0"))
    if not version.split(".")[0].isdigit() or int(version.split(".")[0]) < 3:
        raise ImportError(f"WandbKerasCallback needs Keras 3 (found keras {version}): pip install 'keras>=3'")
    return module


keras = import_keras()

FIT_CONFIG = ("initial_epoch", "validation_split", "validation_freq", "validation_steps", "validation_batch_size")
#: The arguments of ``Model.fit`` read from its frame (see the module docstring).
FIT_ARGUMENTS = (*FIT_CONFIG, "shuffle", "batch_size", "epochs", "validation_data", "val_x", "val_y", "epoch_iterator")


def fit_context(callback: Any) -> tuple[list[Any] | None, dict[str, Any]]:
    """The callbacks of the same ``fit`` (None: not found) and its arguments (:data:`FIT_ARGUMENTS`)."""
    siblings: list[Any] | None = None
    for name, local in calling_frames():
        owner = local.get("self")
        if siblings is None and isinstance(owner, keras.callbacks.CallbackList):
            members = getattr(owner, "callbacks", None)
            if isinstance(members, list) and any(c is callback for c in members):
                siblings = list(members)
        elif name == "fit" and owner is not None and owner is callback.model:
            return siblings, {k: local[k] for k in FIT_ARGUMENTS if k in local}
    return siblings, {}


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


def checkpoint_callbacks(given: Sequence[Any], siblings: Sequence[Any] | None) -> list[tuple[Any, str]]:
    """``(ModelCheckpoint, file path template)`` of the given callbacks, else of the ``fit``'s ones."""
    found = list(given) or [c for c in siblings or () if isinstance(c, keras.callbacks.ModelCheckpoint)]
    return [(c, c.filepath) for c in found if isinstance(getattr(c, "filepath", None), str) and c.filepath]


def monitor_of(callback: Any) -> CallbackMonitor:
    """What a ``ModelCheckpoint`` monitors, as Keras states it (``mode="auto"`` is set at the first epoch end)."""
    monitor, mode, op = (getattr(callback, k, None) for k in ("monitor", "mode", "monitor_op"))
    if mode not in ("min", "max"):  # "auto": Keras's choice once set, else None (the core guesses from the name)
        mode = None if op is None else "max" if op is keras.ops.greater else "min"
    preferred = bool(getattr(callback, "save_best_only", False))
    return CallbackMonitor(monitor if isinstance(monitor, str) else None, mode, preferred)


def checkpoint_metadata(callback: Any, path: str) -> dict[str, Any]:
    """The Keras facts recorded with a file a ``ModelCheckpoint`` (None: the callback itself) wrote."""
    kind = "weights.h5" if path.endswith(".weights.h5") else os.path.splitext(path)[1].lstrip(".") or "unknown"
    if callback is None:
        return {"format": kind, "saved_by": "wandb_bridge", "keras_backend": keras.backend.backend()}
    flags = {k: bool(getattr(callback, k, False)) for k in ("save_best_only", "save_weights_only")}
    return {"format": kind, "filepath_template": callback.filepath, **flags, "keras_backend": keras.backend.backend()}


def model_folder(run_dir: str | None) -> str:
    """A folder for the files the callback writes (final model, samples): beside the run's ``files/``."""
    folder = os.path.join(os.path.dirname(os.path.abspath(run_dir)), "keras") if run_dir else None
    folder = folder or tempfile.mkdtemp(prefix="wandb-bridge-keras-")
    os.makedirs(folder, exist_ok=True)
    return folder
