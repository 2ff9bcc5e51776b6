"""Warnings and errors raised by wandb-bridge, and warn-once bookkeeping."""

from __future__ import annotations

import threading
import warnings
from typing import Any


class WandbBridgeWarning(UserWarning):
    """Category of every warning wandb-bridge emits (filter it with ``warnings``)."""


class OnceWarner:
    """Emits each warning at most once per key, from any thread."""

    def __init__(self) -> None:
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        # Callbacks holding one travel into spawned workers (ddp_spawn); locks do not pickle.
        return {"seen": set(self._seen)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._seen = set(state["seen"])
        self._lock = threading.Lock()

    def warn(self, key: str, message: str, stacklevel: int = 3) -> bool:
        """Warn with ``message`` unless ``key`` was already warned about.

        Returns:
            True when the warning was emitted now.
        """
        with self._lock:
            if key in self._seen:
                return False
            self._seen.add(key)
        warnings.warn(message, WandbBridgeWarning, stacklevel=stacklevel)
        return True


def hook_failed(warner: OnceWarner, on_error: str, owner: str, what: str, exc: Exception) -> None:
    """The callbacks' error boundary: training goes on after a failed hook unless ``on_error="raise"``.

    Callbacks reach it through ``SessionHolder.boundary`` (``core/holder.py``) and ``@guarded`` (``callbacks/base.py``).

    Args:
        warner: the callback's warn-once bookkeeping (one warning per hook and error type).
        on_error: ``"warn"`` or ``"raise"``.
        owner: the callback's class name, for the message.
        what: what the hook was doing.
        exc: the error.

    Raises:
        Exception: ``exc`` itself, with ``on_error="raise"``.
    """
    if on_error == "raise":
        raise exc
    warner.warn(
        f"hook:{what}:{type(exc).__name__}",
        f"{owner} failed to {what} ({type(exc).__name__}: {exc}); training goes on.",
        stacklevel=4,
    )
