"""SIGTERM (pre-emption) handling that chains to whatever handler was there before.

Only installed from the main thread, and only over the default handler or a
Python handler (an ignored SIGTERM stays ignored). After our callback ran, the
previous behaviour happens: the previous Python handler is called, or the
default action (process exit by SIGTERM) is re-raised. When a framework
installed its own handler over this one and calls it (Lightning composes the
handlers it finds, then stops training at the end of the batch), the
framework decides when the process ends: the default action is not re-raised.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

Handler = Callable[[int, FrameType | None], Any] | int | None


class SigtermHook:
    """Calls ``callback()`` on SIGTERM, then lets the previous handler act."""

    def __init__(self, callback: Callable[[], None], timeout: float) -> None:
        self._callback = callback
        self._timeout = timeout
        self._previous: Handler = None
        self._installed = False
        self._fired = False
        #: Set when SIGTERM arrives: True when this hook ends the process right after
        #: its callback (it is the process's handler and the previous one was the
        #: default). False when another handler wraps it (Lightning composes the
        #: handlers it finds and stops training itself) or comes after it: the
        #: process then lives on for a while and that handler decides its end.
        self.terminating = False

    def install(self) -> bool:
        """Install the hook (main thread only). Returns True when installed."""
        if self._installed or threading.current_thread() is not threading.main_thread():
            return False
        try:
            previous = signal.getsignal(signal.SIGTERM)
        except (ValueError, OSError):
            return False
        if previous == signal.SIG_IGN:
            return False
        self._previous = previous
        signal.signal(signal.SIGTERM, self._handle)
        self._installed = True
        return True

    def uninstall(self) -> None:
        """Put the previous handler back, if ours is still the current one."""
        if not self._installed:
            return
        self._installed = False
        try:
            if signal.getsignal(signal.SIGTERM) == self._handle:
                signal.signal(signal.SIGTERM, self._previous if self._previous is not None else signal.SIG_DFL)
        except (ValueError, OSError):
            pass

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        current = signal.getsignal(signal.SIGTERM)
        ours = current == self._handle
        previous = self._previous
        if self._fired:
            # A second SIGTERM: only the process's own handler acts (as the default would).
            if ours:
                signal.signal(signal.SIGTERM, previous if callable(previous) else signal.SIG_DFL)
                os.kill(os.getpid(), signal.SIGTERM)
            return
        self._fired = True
        self.terminating = ours and previous in (signal.SIG_DFL, None)
        # The callback runs on its own thread: the interrupted main thread may hold
        # a lock the callback needs (a queue's mutex), so it must not run here.
        worker = threading.Thread(target=self._callback, name="wandb-bridge-sigterm", daemon=True)
        worker.start()
        worker.join(self._timeout)
        self.uninstall()
        if callable(previous):
            previous(signum, frame)
        elif self.terminating:
            os.kill(os.getpid(), signal.SIGTERM)
