"""Lightning for :class:`~wandb_bridge.callbacks.lightning.WandbLogger`, translation only: the ``Logger`` base
(every installed distribution's) with the plain ``log_*`` methods, the no-op ``experiment``, the Trainer's call,
stage, facts and epochs, what a ``ModelCheckpoint`` holds, and ``fit(ckpt_path=...)``'s checkpoint.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from wandb_bridge.callbacks._require import require
from wandb_bridge.callbacks.base import calling_frames
from wandb_bridge.core import steps
from wandb_bridge.core.checkpoint_reports import SavedFiles, SaveTime
from wandb_bridge.core.checkpoints import score_value
from wandb_bridge.core.follow import CallbackMonitor
from wandb_bridge.core.metrics import Stage, prefixed_key
from wandb_bridge.core.session import Session
from wandb_bridge.core.steps import fractional_epoch, logger_step

_LOGGER_MODULES = ("lightning.pytorch.loggers", "pytorch_lightning.loggers")
_CALLBACK_FIELDS = ("monitor", "mode", "save_last", "save_top_k", "save_weights_only")
_STAGES: dict[str, Stage] = {"validate": "val", "sanity_check": "val", "test": "test", "predict": "test"}
_TRAINER_FACTS = (  # the Trainer settings worth having in the config
    "max_epochs max_steps min_epochs precision accumulate_grad_batches gradient_clip_val gradient_clip_algorithm "
    "num_devices num_nodes world_size log_every_n_steps val_check_interval check_val_every_n_epoch "
    "limit_train_batches limit_val_batches"
)


def _combined_base() -> type:
    """One class deriving from the ``Logger`` base of every installed distribution (``isinstance`` holds for each)."""
    bases: list[type] = []
    for module in _LOGGER_MODULES:
        try:
            bases.append(importlib.import_module(module).Logger)
        except Exception:  # not installed, or an install that does not import
            continue
    if not bases:
        require("lightning.pytorch", "lightning", "wandb_bridge.WandbLogger")
    try:
        return bases[0] if len(bases) == 1 else type("_LightningLoggerBase", tuple(bases), {"__module__": __name__})
    except TypeError:  # incompatible versions side by side: serve the first one
        return bases[0]


if TYPE_CHECKING:
    from lightning.pytorch.loggers import Logger as _Base
else:
    _Base = _combined_base()


class LoggerBase(_Base):
    """Lightning's ``Logger`` base with the ``WandbLogger`` methods that only hand values over: tables and media
    (keys as written, with the ``prefix``, at Lightning's 0-based ``step`` or now), ``watch``, artifacts.

    The subclass gives ``_start()`` (the started session, or None) and ``_prefix``.
    """

    LOGGER_JOIN_CHAR = "-"
    _prefix: str
    _start: Callable[[], Session | None]

    def log_table(
        self,
        key: str,
        columns: list[str] | None = None,
        data: list[list[Any]] | None = None,
        dataframe: Any = None,
        step: int | None = None,
    ) -> None:
        """Log a ``wandb.Table`` (from ``columns`` and ``data``, or a ``dataframe``); ``log_text`` is the same."""
        session = self._start()
        if session is not None:
            table = session.wandb_type("Table", columns=columns, data=data, dataframe=dataframe)
            self._log_direct(session, {key: table}, step)

    log_text = log_table

    def log_image(self, key: str, images: list[Any], step: int | None = None, **kwargs: Any) -> None:
        """Log images (tensors, arrays, PIL images or paths); ``kwargs`` are per-image lists (``caption``...)."""
        self._log_media("Image", key, images, step, kwargs)

    def log_audio(self, key: str, audios: list[Any], step: int | None = None, **kwargs: Any) -> None:
        """Log audio (arrays or paths); ``kwargs`` are per-item lists (``sample_rate``, ``caption``...)."""
        self._log_media("Audio", key, audios, step, kwargs)

    def log_video(self, key: str, videos: list[Any], step: int | None = None, **kwargs: Any) -> None:
        """Log videos (arrays or paths); ``kwargs`` are per-item lists (``fps``, ``format``...)."""
        self._log_media("Video", key, videos, step, kwargs)

    def _log_media(self, kind: str, key: str, items: list[Any], step: int | None, kwargs: dict[str, Any]) -> None:
        if not isinstance(items, list):
            raise TypeError(f'Expected a list as "{kind.lower()}s", found {type(items)}')
        for name, value in kwargs.items():
            if len(value) != len(items):
                raise ValueError(f"Expected {len(items)} items but only found {len(value)} for {name}")
        session = self._start()
        if session is not None:
            media = [session.wandb_type(kind, x, **{k: v[i] for k, v in kwargs.items()}) for i, x in enumerate(items)]
            self._log_direct(session, {key: media}, step)

    def _log_direct(self, session: Session, values: Mapping[str, Any], step: int | None) -> None:
        join = self.LOGGER_JOIN_CHAR
        named = {prefixed_key(k, self._prefix, join, step_keys_too=True): v for k, v in values.items()}
        session.log(named, logger_step(step, global_step=None, in_fit=False, eval_batch=False).step, keep_keys=True)

    def watch(self, model: Any, log: str | None = "gradients", log_freq: int = 100, log_graph: bool = True) -> None:
        """Log gradients and/or parameters of ``model`` (``wandb.watch``; ``log_graph`` is not used)."""
        del log_graph  # accepted for compatibility with Lightning's logger
        session = self._start()
        if session is not None:
            session.watch(model, log=log, log_freq=log_freq)

    def use_artifact(self, artifact: str, artifact_type: str | None = None) -> Any:
        """Record an artifact as an input of the run and return it (None on a process that does not log)."""
        session = self._start()
        return None if session is None else session.use_artifact(artifact, artifact_type)

    @staticmethod
    def download_artifact(
        artifact: str,
        save_dir: str | os.PathLike[str] | None = None,
        artifact_type: str | None = None,
        use_artifact: bool | None = True,
    ) -> str:
        """Download an artifact and return its folder (through the active run when ``use_artifact``)."""
        return Session.download_artifact(artifact, save_dir, artifact_type, bool(use_artifact))


class NoOpExperiment:
    """What ``experiment`` is on a process that does not log: accepts every call."""

    def __getattr__(self, name: str) -> Any:
        return lambda *_args, **_kwargs: None

    def __getitem__(self, idx: Any) -> NoOpExperiment:
        return self

    def __setitem__(self, key: Any, value: Any) -> None:
        return None


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


def monitor_of(callback: Any) -> CallbackMonitor:
    """What a checkpoint callback monitors, as the core reads it."""
    monitor = getattr(callback, "monitor", None)
    return CallbackMonitor(None if monitor is None else str(monitor), getattr(callback, "mode", None))


def wrote_files(trainer: Any) -> bool:
    """True when any checkpoint callback of the Trainer wrote a file."""
    return any(
        getattr(c, "best_model_path", "") or getattr(c, "last_model_path", "") for c in checkpoint_callbacks(trainer)
    )


def saved_files(callback: Any) -> SavedFiles:
    """What a ``ModelCheckpoint`` holds (its last, top k and best files with their scores; its settings)."""
    found = {getattr(callback, "last_model_path", "") or "": getattr(callback, "current_score", None)}
    found.update((str(path), score) for path, score in (getattr(callback, "best_k_models", None) or {}).items())
    best = getattr(callback, "best_model_path", "") or ""
    found[best] = getattr(callback, "best_model_score", None)
    fields = {name: getattr(callback, name) for name in _CALLBACK_FIELDS if hasattr(callback, name)}
    files = {path: score_value(score) for path, score in found.items() if path}
    return SavedFiles(files, best, callback.__class__.__name__, fields)  # a weakref.proxy's class too


def save_time(trainer: Any, epoch: float | None = None) -> SaveTime:
    """The Trainer's step, epochs completed (or ``epoch``) and metrics now (all None without a Trainer)."""
    if trainer is None:
        return SaveTime()
    done = epochs_done(trainer) if epoch is None else epoch
    return SaveTime(int(trainer.global_step), None if done is None else int(done), dict(trainer.callback_metrics))


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


def planned_rows(trainer: Any) -> int:
    """The rows a fit with ``max_steps`` set will log (``max_steps / log_every_n_steps``); 0 when unknown."""
    return steps.planned_rows(getattr(trainer, "max_steps", None), getattr(trainer, "log_every_n_steps", None))
