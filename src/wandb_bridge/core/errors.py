"""Warnings and errors raised by wandb-bridge, and warn-once bookkeeping."""

from __future__ import annotations

import threading
import warnings


class WandbBridgeWarning(UserWarning):
    """Category of every warning wandb-bridge emits (filter it with ``warnings``)."""


class OnceWarner:
    """Emits each warning at most once per key, from any thread."""

    def __init__(self) -> None:
        self._seen: set[str] = set()
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
