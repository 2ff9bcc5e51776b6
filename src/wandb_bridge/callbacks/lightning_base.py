"""The ``Logger`` base of :class:`~wandb_bridge.callbacks.lightning.WandbLogger`: Lightning's ``Logger`` of every
installed distribution (``lightning.pytorch``, ``pytorch_lightning``) with the ``WandbLogger`` methods that only hand
values over (tables, media, ``watch``, artifacts), and the no-op ``experiment`` of a process that does not log.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from wandb_bridge.callbacks._require import require
from wandb_bridge.core.metrics import prefixed_key
from wandb_bridge.core.session import Session
from wandb_bridge.core.steps import logger_step

_LOGGER_MODULES = ("lightning.pytorch.loggers", "pytorch_lightning.loggers")


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


__all__ = ["LoggerBase", "NoOpExperiment"]
