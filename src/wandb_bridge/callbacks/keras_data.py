"""What a Keras ``fit`` holds, read for the core: its config, and its first validation samples and
the model's predictions on them, for a prediction table.

Framework reading only, as :mod:`wandb_bridge.callbacks.transformers_data` is for the Trainer: the
config's flattening, redaction and the user-wins rule are :mod:`wandb_bridge.core.hparams`'s, the
table itself (columns, cells, key) is :class:`~wandb_bridge.core.predictions.PredictionTable`'s.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from wandb_bridge.callbacks.keras_support import FIT_CONFIG, keras, model_folder
from wandb_bridge.core.errors import OnceWarner
from wandb_bridge.core.hparams import count_parameters
from wandb_bridge.core.predictions import PredictionTable
from wandb_bridge.core.session import Session


def fit_config(model: Any, params: Mapping[str, Any], arguments: Mapping[str, Any], size: int | None) -> dict[str, Any]:
    """The Keras facts of one ``fit``: versions, ``fit`` arguments, optimizer, compile settings, model."""
    fit = {"epochs": params.get("epochs", arguments.get("epochs")), "steps_per_epoch": params.get("steps")}
    fit.update(batch_size=size, validation=arguments.get("validation_data") is not None if arguments else None)
    fit.update(
        {k: arguments[k] for k in (*FIT_CONFIG, "shuffle") if isinstance(arguments.get(k), (bool, int, float, str))}
    )
    config: dict[str, Any] = {
        "keras": {"version": str(keras.__version__), "backend": keras.backend.backend()},
        "fit": {k: v for k, v in fit.items() if v is not None},
    }
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None:
        config["optimizer"] = {"class": type(optimizer).__name__, **_read(optimizer.get_config)}
    compiled = _read(model.get_compile_config)
    loss, metrics = compiled.get("loss", getattr(model, "loss", None)), compiled.get("metrics")
    if loss is not None:
        config["loss"] = _describe(loss)
    if metrics and isinstance(metrics, Mapping):
        config["metrics"] = {str(k): _describe(v) for k, v in metrics.items()}
    elif metrics:
        config["metrics"] = _describe(keras.tree.flatten(metrics))
    keys = ("loss_weights", "steps_per_execution", "jit_compile", "run_eagerly")
    if chosen := {k: compiled[k] for k in keys if compiled.get(k) is not None}:
        config["compile"] = chosen
    config["model"] = {"name": getattr(model, "name", None), "class": type(model).__name__}
    try:
        model.count_params()  # raises for a model not built yet
        weights = [(tuple(w.shape), True) for w in model.trainable_weights]
        counts = count_parameters(weights + [(tuple(w.shape), False) for w in model.non_trainable_weights])
        config["model"].update(params=counts.total, trainable_params=counts.trainable, layers=len(model.layers))
        config["model"]["non_trainable_params"] = counts.non_trainable
    except Exception:
        pass
    return config


def _read(config: Callable[[], Any]) -> dict[str, Any]:
    try:
        return dict(config() or {})
    except Exception:
        return {}


def _describe(item: Any) -> Any:
    """A short JSON-safe description of a serialized Keras loss or metric."""
    if isinstance(item, Mapping):
        config = item.get("config")
        return (config.get("name") if isinstance(config, Mapping) else None) or item.get("class_name") or str(item)
    if isinstance(item, (list, tuple)):
        return [_describe(i) for i in item]
    if isinstance(item, str) or item is None:
        return item
    return getattr(item, "name", None) or getattr(item, "__name__", None) or type(item).__name__


_NO_ARRAYS = (
    "log_predictions needs validation arrays: pass validation_data=(x, y) to WandbKerasCallback "
    "or arrays to fit(validation_data=...); no prediction table is logged."
)
_NOT_ARRAYS = (
    "log_predictions: the validation data is not made of arrays (a dataset or generator); "
    "pass validation_data=(x, y) arrays to WandbKerasCallback."
)


def validation_samples(given: Any, arguments: Mapping[str, Any], count: int, warner: OnceWarner) -> Any:
    """``(x, y)``: the first ``count`` validation samples (the callback's ``validation_data``, else ``fit``'s
    arrays) as numpy trees; None, with one warning, when there are none."""
    data = given
    if data is None and arguments.get("val_x") is not None:
        data = (arguments.get("val_x"), arguments.get("val_y"))
    elif data is None and isinstance(arguments.get("validation_data"), (tuple, list)):
        data = tuple(arguments["validation_data"])[:2]
    to_numpy = keras.ops.convert_to_numpy
    try:
        if data is not None and len(data) >= 2 and data[1] is not None:
            return tuple(keras.tree.map_structure(lambda a: to_numpy(a[:count]), part) for part in data[:2])
        warner.warn("predictions", _NO_ARRAYS, stacklevel=6)
    except Exception:
        warner.warn("predictions", _NOT_ARRAYS, stacklevel=6)
    return None


class EpochPredictions:
    """``log_predictions``: a table of the model's predictions on the first validation samples, every epoch.

    Args:
        count: how many samples (0: none, and nothing is read).
        given: the callback's ``validation_data``; None: ``fit``'s arrays.
    """

    def __init__(self, count: int, given: tuple[Any, Any] | None) -> None:
        self.count, self._given = count, given
        self._table: PredictionTable | None = None
        self._samples: Any = None

    def begin(self, session: Session, arguments: Mapping[str, Any], warner: OnceWarner) -> None:
        """A ``fit`` begins: a table for this run; the samples, read once (the first ``fit``)."""
        if self._table is None or self._table.session is not session:
            self._table = PredictionTable(session)
        if self.count and self._samples is None:
            self._samples = validation_samples(self._given, arguments, self.count, warner)

    def epoch_end(self, model: Any, *, step: int, epoch: float) -> None:
        """Log this epoch's table, when there are samples."""
        if self._samples is not None and self._table is not None:
            log_predictions(self._table, model, self._samples, step=step, epoch=epoch)


def log_predictions(table: PredictionTable, model: Any, samples: Any, *, step: int, epoch: float) -> None:
    """Log one prediction table of ``model`` on ``samples``; the first time also the samples (an ``.npz``)."""
    import numpy as np

    x, y = samples
    flat = keras.tree.flatten
    if not table.samples_logged:
        path = os.path.join(model_folder(table.session.run_dir), "val-samples.npz")
        np.savez(path, **{f"x_{i}": a for i, a in enumerate(flat(x))}, **{f"y_{i}": a for i, a in enumerate(flat(y))})
        table.log_samples(path, len(flat(x)[0]))
    outputs = keras.tree.map_structure(keras.ops.convert_to_numpy, model.predict_on_batch(x))
    table.log(flat(x), flat(y), flat(outputs), step=step, epoch=epoch)
