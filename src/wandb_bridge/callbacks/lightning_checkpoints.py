"""The checkpoint side of :class:`~wandb_bridge.callbacks.lightning.WandbLogger`, translation only.

The Trainer's checkpoint monitor, what a ``ModelCheckpoint`` holds after each save, and the final
weights at the end of ``fit``, handed to the core: which process reports
(:func:`~wandb_bridge.core.checkpoint_reports.reports_files`), which files are new and their ``best``
verdict (:class:`~wandb_bridge.core.checkpoint_reports.CallbackFiles`), the monitor rule
(:meth:`~wandb_bridge.core.session.Session.adopt_monitor`) and the end of training
(:func:`~wandb_bridge.core.training_end.end_training`) are its.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from wandb_bridge.callbacks import lightning_support as support
from wandb_bridge.callbacks.base import SessionHolder
from wandb_bridge.core.checkpoint_reports import CallbackFiles, SavedFiles, SaveTime, reports_files
from wandb_bridge.core.checkpoints import score_value
from wandb_bridge.core.follow import CallbackMonitor
from wandb_bridge.core.session import Session
from wandb_bridge.core.training_end import SavedCheckpoint, end_training

_Key = Callable[[Session, str], str]
PAYLOAD_NAME = "model.ckpt"  # the file name inside model artifacts, as with Lightning's WandbLogger
_CALLBACK_FIELDS = ("monitor", "mode", "save_last", "save_top_k", "save_weights_only")


class Checkpoints:
    """One logger's checkpoint reports.

    State: the files seen (:class:`~wandb_bridge.core.checkpoint_reports.CallbackFiles`), whether the
    final weights were saved, and the epoch of the last training values Lightning logged (``train_epoch``).

    Args:
        holder: the logger's session holder.
    """

    def __init__(self, holder: SessionHolder) -> None:
        self._holder = holder
        self._reports = CallbackFiles(payload_name=PAYLOAD_NAME)
        self._final_saved = False
        self.train_epoch: Any = None

    def adopt_monitor(self, session: Session, trainer: Any, key: Callable[[str], str]) -> None:
        """Adopt the first checkpoint callback's monitor (unless the user named ``monitor=``).

        ``key``: metric name -> its recorded key (the logger's prefix).
        """
        monitors = [monitor_of(c) for c in support.checkpoint_callbacks(trainer)]
        session.adopt_monitor(monitors, current=session.monitor, key=key)

    def saved(self, trainer: Any, checkpoint_callback: Any, start: Callable[[], Session | None], key: _Key) -> None:
        """Report the files ``checkpoint_callback`` wrote since last seen (Lightning's ``after_save_checkpoint``).

        Args:
            trainer: the Trainer, or None.
            checkpoint_callback: the callback that saved (often a ``weakref.proxy``).
            start: the logger's session start (called only on the process that reports).
            key: ``(session, metric name) -> recorded key`` of a monitored metric.
        """
        session = start() if reports_files(support.global_rank(trainer)) else None
        if session is None:
            return  # with log_model=False the core still marks the files with the run (for resuming)
        callbacks = support.checkpoint_callbacks(trainer)
        if checkpoint_callback not in callbacks:  # a weakref.proxy of one of them: == finds it
            callbacks.append(checkpoint_callback)
        keys = [m and key(session, m) for m in (monitor_of(c).monitor for c in callbacks)]
        saved, at = saved_files(checkpoint_callback), save_time(trainer)
        self._reports.report(session, saved, keys, callbacks.index(checkpoint_callback), at)

    def end_fit(self, trainer: Any, folder: str) -> None:
        """The end of ``fit``: the core's end of training, with ``trainer.save_checkpoint`` as the way to save.

        The final weights are written once, on every rank (a collective), and reported by the
        process that writes files; the end uploads follow (:mod:`wandb_bridge.core.training_end`).

        Args:
            trainer: the Trainer whose ``fit`` ended.
            folder: where the logger's checkpoints go (``final.ckpt`` is written under ``folder/checkpoints``).
        """
        written = self._final_saved or wrote_files(trainer)
        reports = reports_files(support.global_rank(trainer))

        def save() -> SavedCheckpoint | None:
            self._final_saved = True
            path = trainer.strategy.broadcast(os.path.join(folder, "checkpoints", "final.ckpt"))  # rank 0's path
            trainer.save_checkpoint(path)  # collective: runs on every rank
            epoch = self.train_epoch if self.train_epoch is not None else trainer.current_epoch
            at = save_time(trainer, epoch)
            return SavedCheckpoint(path, at.step, at.epoch, at.metrics, payload_name=PAYLOAD_NAME) if reports else None

        with self._holder.boundary("save the final weights"):
            session = self._holder.active
            log_model = self._holder.settings.log_model
            end_training(session, log_model, trained=True, checkpoint_exists=written, save=save)


def monitor_of(callback: Any) -> CallbackMonitor:
    """What a checkpoint callback monitors, as the core reads it."""
    monitor = getattr(callback, "monitor", None)
    return CallbackMonitor(None if monitor is None else str(monitor), getattr(callback, "mode", None))


def wrote_files(trainer: Any) -> bool:
    """True when any checkpoint callback of the Trainer wrote a file."""
    return any(
        getattr(c, "best_model_path", "") or getattr(c, "last_model_path", "")
        for c in support.checkpoint_callbacks(trainer)
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
    done = support.epochs_done(trainer) if epoch is None else epoch
    return SaveTime(int(trainer.global_step), None if done is None else int(done), dict(trainer.callback_metrics))


__all__ = ["PAYLOAD_NAME", "Checkpoints"]
