"""Reading Keras 3 for :class:`~wandb_bridge.WandbKerasCallback`: steps, learning rates, fit arguments, files.

Translation only: each function reads a Keras object and returns plain values;
what is logged, under which key, at which step, with which alias is decided by
the core. Keras routes used beyond the public ``keras.callbacks.Callback``
contract (each with a fallback when it is missing):

* :func:`fit_context` reads the call stack (the one place, through
  :func:`~wandb_bridge.callbacks.base.calling_frames`). Keras 3 hands a callback
  its model and ``params`` (``epochs``, ``steps``, ``verbose``) only, so two things
  have no public route: the sibling callbacks (``CallbackList.callbacks``, to
  follow the ``ModelCheckpoint`` files of the same ``fit``; ``checkpoint_callback=``
  bypasses it) and ``fit``'s other arguments (``batch_size``, ``initial_epoch``,
  ``validation_data``/``val_x``/``val_y``, ``validation_split``... for the config,
  ``log_predictions`` and resuming; ``validation_data=`` and
  ``resume_from_checkpoint=`` bypass them).
* ``optimizer._iterations``, only with ``gradient_accumulation_steps``: the public
  ``optimizer.iterations`` counts updates there, batch rows need the batch count.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from wandb_bridge.callbacks._require import require
from wandb_bridge.callbacks.base import calling_frames
from wandb_bridge.core.follow import CallbackMonitor
from wandb_bridge.core.hparams import count_parameters
from wandb_bridge.core.settings import infer_monitor_mode


def import_keras() -> ModuleType:
    """Keras 3, or an ``ImportError`` that says what to install or set."""
    try:
        module = require("keras", "keras", "WandbKerasCallback")
    except ImportError as exc:
        cause = exc.__cause__
        if cause is not None and importlib.util.find_spec("keras") is not None:
            raise ImportError(
                f"WandbKerasCallback could not import keras ({type(cause).__name__}: {cause}). "
                "Keras 3 imports the backend named by KERAS_BACKEND (tensorflow when unset): "
                "install that backend, or set KERAS_BACKEND to 'torch' or 'jax' before keras is imported."
            ) from cause
        raise
    version = str(getattr(module, "__version__", "0"))
    if not version.split(".")[0].isdigit() or int(version.split(".")[0]) < 3:
        raise ImportError(f"WandbKerasCallback needs Keras 3 (found keras {version}): pip install 'keras>=3'")
    return module


keras = import_keras()

#: The arguments of ``Model.fit`` read from its frame (see the module docstring).
FIT_ARGUMENTS = (
    "batch_size",
    "epochs",
    "initial_epoch",
    "steps_per_epoch",
    "validation_split",
    "validation_freq",
    "validation_steps",
    "validation_batch_size",
    "shuffle",
    "validation_data",
    "val_x",
    "val_y",
    "epoch_iterator",
)
_FIT_CONFIG = ("initial_epoch", "validation_split", "validation_freq", "validation_steps", "validation_batch_size")


@dataclass
class FitContext:
    """What a ``fit`` call holds that Keras hands a callback no public route to."""

    siblings: list[Any] | None = None
    arguments: dict[str, Any] = field(default_factory=dict)


def fit_context(callback: Any) -> FitContext:
    """The callbacks of the same ``fit`` and its arguments (:data:`FIT_ARGUMENTS`), from the call stack."""
    found = FitContext()
    for name, local in calling_frames():
        owner = local.get("self")
        if found.siblings is None and isinstance(owner, keras.callbacks.CallbackList):
            members = getattr(owner, "callbacks", None)
            if isinstance(members, list) and any(c is callback for c in members):
                found.siblings = list(members)
        elif name == "fit" and owner is not None and owner is callback.model:
            found.arguments = {k: local[k] for k in FIT_ARGUMENTS if k in local}
            break
    return found


def batch_size(arguments: Mapping[str, Any]) -> int | None:
    """The batch size of ``fit`` (its argument, or its data adapter's)."""
    size = arguments.get("batch_size")
    if not (isinstance(size, int) and size > 0):
        try:
            size = getattr(getattr(arguments.get("epoch_iterator"), "data_adapter", None), "batch_size", None)
        except Exception:
            size = None
    return size if isinstance(size, int) and size > 0 else None


class StepReader:
    """The optimizer's step and learning rate, read at fit and epoch boundaries only.

    ``raw_base`` is the batch count at the start of the epoch (= the step
    without gradient accumulation); a batch's step is computed from it.
    """

    def __init__(self) -> None:
        self.optimizer: Any = None
        self.accumulation = 1
        self.raw_base = 0
        self.per_call = 1
        self.epoch_rate: Any = None
        self._schedule: Callable[[Any], Any] | None = None
        self._frozen = False

    def bind(self, model: Any, *, fit: bool = False) -> None:
        """Read the model's optimizer (and with ``fit``, its schedule and ``steps_per_execution``)."""
        self.optimizer = getattr(model, "optimizer", None)
        inner = getattr(self.optimizer, "inner_optimizer", self.optimizer)
        accumulation = getattr(inner, "gradient_accumulation_steps", None)
        self.accumulation = accumulation if isinstance(accumulation, int) and accumulation > 1 else 1
        if fit:
            per_call = getattr(model, "steps_per_execution", 1)
            self.per_call = per_call if isinstance(per_call, int) and per_call > 0 else 1
            self._schedule = _schedule_of(self.optimizer)
            self._frozen = keras.backend.backend() == "jax"
            self.raw_base = self.read()[1]

    def read(self) -> tuple[int, int]:
        """``(optimizer steps, optimizer iterations)`` now (one device read)."""
        optimizer = self.optimizer
        if optimizer is None:
            return 0, 0
        step = _to_int(optimizer.iterations)
        if self.accumulation == 1:
            return step, step
        counter = getattr(getattr(optimizer, "inner_optimizer", optimizer), "_iterations", None)
        return step, _to_int(counter) if counter is not None else step * self.accumulation

    def learning_rate(self, iteration: int, in_batch: bool = False) -> Any:
        """The learning rate of update ``iteration + 1``, without a device read.

        A schedule is evaluated on the step number (a tensor the core reads in its
        worker); a learning-rate variable is copied on its device (on JAX, inside an
        epoch, the variables hold no value: the copy taken at the epoch's first batch).
        """
        optimizer = self.optimizer
        if optimizer is None:
            return None
        if self._schedule is not None:
            value = self._schedule(max(iteration, 0))
        elif in_batch and self._frozen:
            return self.epoch_rate
        else:
            value = optimizer.learning_rate
            if isinstance(value, keras.Variable):
                value = keras.ops.copy(value)
        if value is None or isinstance(value, (int, float)) or keras.backend.backend() in ("torch", "jax", "numpy"):
            return value  # torch tensors, jax and numpy arrays are read in the core's worker
        return float(keras.ops.convert_to_numpy(value))


def _to_int(value: Any) -> int:
    if isinstance(value, keras.Variable):
        value = value.value
    return int(keras.ops.convert_to_numpy(value))


def _schedule_of(optimizer: Any) -> Callable[[Any], Any] | None:
    """A copy of the optimizer's learning-rate schedule (public ``get_config`` + ``deserialize``), if any."""
    try:
        rate = optimizer.get_config().get("learning_rate")
        schedule = keras.optimizers.schedules.deserialize(dict(rate)) if isinstance(rate, Mapping) else None
    except Exception:
        return None
    return schedule if callable(schedule) else None


# ------------------------------------------------------------- checkpoints


def checkpoint_callbacks(given: Sequence[Any], siblings: Sequence[Any] | None) -> list[tuple[Any, str]]:
    """``(ModelCheckpoint, file path template)`` of the given callbacks, else of the ``fit``'s ones."""
    found = list(given) or [c for c in siblings or () if isinstance(c, keras.callbacks.ModelCheckpoint)]
    return [(c, c.filepath) for c in found if isinstance(getattr(c, "filepath", None), str) and c.filepath]


def monitor_of(callback: Any) -> CallbackMonitor:
    """What a ``ModelCheckpoint`` monitors, as Keras states it (``"auto"`` is decided at the first epoch end)."""
    monitor = getattr(callback, "monitor", None)
    mode = getattr(callback, "mode", None)
    op = getattr(callback, "monitor_op", None)
    if mode not in ("min", "max"):
        if op is not None:
            mode = "max" if op is keras.ops.greater else "min"
        else:
            mode = infer_monitor_mode(str(monitor or "").removeprefix("val_"))
    preferred = bool(getattr(callback, "save_best_only", False))
    return CallbackMonitor(monitor if isinstance(monitor, str) else None, mode, preferred)


def checkpoint_metadata(callback: Any, path: str) -> dict[str, Any]:
    """The Keras facts recorded with a checkpoint file a ``ModelCheckpoint`` (or None: the callback) wrote."""
    meta: dict[str, Any] = {"format": _format_of(path)}
    if callback is None:
        meta["saved_by"] = "wandb_bridge"
    else:
        meta["filepath_template"] = callback.filepath
        meta["save_best_only"] = bool(getattr(callback, "save_best_only", False))
        meta["save_weights_only"] = bool(getattr(callback, "save_weights_only", False))
    return {**meta, "keras_backend": keras.backend.backend()}


def _format_of(path: str) -> str:
    if path.endswith(".weights.h5"):
        return "weights.h5"
    return os.path.splitext(path)[1].lstrip(".") or "unknown"


# ------------------------------------------------------------------ config


def fit_config(model: Any, params: Mapping[str, Any], context: FitContext, size: int | None) -> dict[str, Any]:
    """The Keras facts of one ``fit``: versions, ``fit`` arguments, optimizer, compile settings, model."""
    arguments = context.arguments
    fit = {"epochs": params.get("epochs", arguments.get("epochs")), "steps_per_epoch": params.get("steps")}
    fit["batch_size"] = size
    for key in (*_FIT_CONFIG, "shuffle"):
        if arguments.get(key) is None or isinstance(arguments.get(key), (bool, int, float, str)):
            fit[key] = arguments.get(key)
    fit["validation"] = arguments.get("validation_data") is not None if arguments else None
    config: dict[str, Any] = {
        "keras": {"version": str(keras.__version__), "backend": keras.backend.backend()},
        "fit": {k: v for k, v in fit.items() if v is not None},
    }
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None:
        try:
            config["optimizer"] = {"class": type(optimizer).__name__, **optimizer.get_config()}
        except Exception:
            config["optimizer"] = {"class": type(optimizer).__name__}
    config.update(_compile_config(model))
    config["model"] = _model_facts(model)
    return config


def _compile_config(model: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    try:
        compiled = model.get_compile_config() or {}
    except Exception:
        compiled = {}
    loss = compiled.get("loss", getattr(model, "loss", None))
    if loss is not None:
        out["loss"] = _describe(loss)
    metrics = compiled.get("metrics")
    if metrics:
        out["metrics"] = (
            {str(k): _describe(v) for k, v in metrics.items()}
            if isinstance(metrics, Mapping)
            else [_describe(m) for m in keras.tree.flatten(metrics)]
        )
    for key in ("loss_weights", "steps_per_execution", "jit_compile", "run_eagerly"):
        if compiled.get(key) is not None:
            out.setdefault("compile", {})[key] = compiled[key]
    return out


def _describe(item: Any) -> Any:
    """A short JSON-safe description of a serialized Keras loss or metric."""
    if isinstance(item, Mapping):
        config = item.get("config")
        name = config.get("name") if isinstance(config, Mapping) else None
        return name or item.get("class_name") or str(item)
    if isinstance(item, (list, tuple)):
        return [_describe(i) for i in item]
    if isinstance(item, str) or item is None:
        return item
    return getattr(item, "name", None) or getattr(item, "__name__", None) or type(item).__name__


def _model_facts(model: Any) -> dict[str, Any]:
    facts: dict[str, Any] = {"name": getattr(model, "name", None), "class": type(model).__name__}
    try:
        weights = [(tuple(w.shape), True) for w in model.trainable_weights]
        weights += [(tuple(w.shape), False) for w in model.non_trainable_weights]
        model.count_params()  # raises for a model not built yet
        counts = count_parameters(weights)
        facts.update(params=counts.total, trainable_params=counts.trainable, layers=len(model.layers))
        facts["non_trainable_params"] = counts.non_trainable
    except Exception:
        pass
    return facts


# ------------------------------------------------------------- predictions


def validation_arrays(given: tuple[Any, Any] | None, arguments: Mapping[str, Any], count: int) -> Any:
    """The first ``count`` validation samples ``(x, y)`` as numpy trees.

    Returns:
        The samples; None when ``fit`` has no validation arrays. Raises when they
        are not arrays (a dataset or a generator).
    """
    data = given
    if data is None and arguments.get("val_x") is not None:
        data = (arguments.get("val_x"), arguments.get("val_y"))
    elif data is None and isinstance(arguments.get("validation_data"), (tuple, list)):
        data = tuple(arguments["validation_data"])[:2]
    if data is None or len(data) < 2 or data[1] is None:
        return None
    to_numpy = keras.ops.convert_to_numpy
    return tuple(keras.tree.map_structure(lambda a: to_numpy(a[:count]), part) for part in data[:2])


def save_samples(folder: str, x: Any, y: Any) -> str:
    """Write the samples to ``<folder>/val-samples.npz`` (``x_<i>``, ``y_<i>``); its path."""
    import numpy as np

    path = os.path.join(folder, "val-samples.npz")
    arrays = {f"x_{i}": a for i, a in enumerate(keras.tree.flatten(x))}
    arrays.update({f"y_{i}": a for i, a in enumerate(keras.tree.flatten(y))})
    np.savez(path, **arrays)
    return path


def predict(model: Any, x: Any) -> list[Any]:
    """The model's outputs for ``x``, flattened to numpy arrays."""
    return list(keras.tree.flatten(keras.tree.map_structure(keras.ops.convert_to_numpy, model.predict_on_batch(x))))
