"""Reading Keras 3 for :class:`~wandb_bridge.WandbKerasCallback`: plain values out of Keras objects.

Translation only; what is logged, under which key and step, with which alias, is the core's
decision. Beyond the public ``keras.callbacks.Callback`` contract (each with a fallback):
:func:`fit_context` reads the call stack (the one place, via ``base.calling_frames``): Keras 3
hands a callback its model and ``params`` only, so the sibling callbacks (their
``ModelCheckpoint`` files are followed; ``checkpoint_callback=`` bypasses it) and ``fit``'s other
arguments (``batch_size``, ``initial_epoch``, ``validation_data``/``val_x``/``val_y``...) have no
public route. The optimizer's step and learning rate: :mod:`~wandb_bridge.callbacks.keras_steps`.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from wandb_bridge.callbacks._require import require
from wandb_bridge.callbacks.base import calling_frames
from wandb_bridge.core.follow import CallbackMonitor


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


def check_log_freq(log_freq: Any) -> int:
    """Every how many optimizer steps a row is logged: ``"batch"`` 1, an int N, ``"epoch"`` 0 (epoch rows only).

    Raises:
        ValueError: ``log_freq`` is none of these.
    """
    if log_freq in ("epoch", "batch"):
        return 1 if log_freq == "batch" else 0
    if isinstance(log_freq, int) and not isinstance(log_freq, bool) and log_freq > 0:
        return log_freq
    raise ValueError(f"log_freq={log_freq!r} is not valid; use 'epoch', 'batch' or a positive int")


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
