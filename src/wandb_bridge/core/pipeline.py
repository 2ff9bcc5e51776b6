"""A bounded queue drained in order by one background thread.

The training thread only appends a tuple; the worker does everything else
(key mapping, merging, reading tensors, calling wandb). ``put`` blocks when the
queue is full, so memory stays bounded (backpressure), and ``flush``/``stop``
wait, with a deadline, until everything queued before them was handled.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

Op = tuple[Any, ...]
_STOP = "__stop__"
_BARRIER = "__barrier__"
_BATCH = 1024


class Pipeline:
    """Runs ``handler(batch_of_ops)`` on one daemon thread, preserving order."""

    def __init__(
        self, handler: Callable[[list[Op]], None], maxsize: int, name: str, linger: float = 0.1
    ) -> None:
        self._handler = handler
        self._linger = linger
        self._urgent = threading.Event()
        self._queue: queue.Queue[Op] = queue.Queue(maxsize=maxsize)
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._started = False
        self.failed: BaseException | None = None

    def start(self) -> None:
        """Start the worker thread (once)."""
        if not self._started:
            self._started = True
            self._thread.start()

    @property
    def alive(self) -> bool:
        """True while the worker thread runs."""
        return self._thread.is_alive()

    @property
    def pending(self) -> int:
        """Approximate number of queued operations."""
        return self._queue.qsize()

    def put(self, op: Op) -> None:
        """Queue an operation; blocks while the queue is full."""
        self._queue.put(op)

    def barrier(self, timeout: float | None) -> bool:
        """Wait until every operation queued so far was handled.

        Returns:
            False when the deadline passed first (or the worker is gone).
        """
        if not self.alive:
            return self._queue.empty()
        done = threading.Event()
        try:
            self._queue.put((_BARRIER, done), timeout=timeout)
            self._urgent.set()
        except queue.Full:
            return False
        return done.wait(timeout)

    def stop(self, timeout: float | None) -> bool:
        """Handle everything queued, then end the thread.

        Returns:
            False when the deadline passed before the queue was drained.
        """
        if not self._started:
            return True
        if self.alive:
            try:
                self._queue.put((_STOP,), timeout=timeout)
                self._urgent.set()
            except queue.Full:
                return False
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _loop(self) -> None:
        stopping = False
        while not stopping:
            batch = [self._queue.get()]
            # Linger so that many operations are handled in one burst: far fewer
            # thread switches (and GIL hand-overs) than waking up for each one.
            if self._linger > 0 and not self._urgent.is_set() and self._queue.qsize() < _BATCH:
                self._urgent.wait(self._linger)
            self._urgent.clear()
            while len(batch) < _BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            work: list[Op] = []
            for op in batch:
                kind = op[0]
                if kind == _BARRIER or kind == _STOP:
                    self._run(work)
                    work = []
                    if kind == _BARRIER:
                        op[1].set()
                    else:
                        stopping = True
                else:
                    work.append(op)
            self._run(work)

    def _run(self, work: list[Op]) -> None:
        if not work:
            return
        try:
            self._handler(work)
        except BaseException as exc:  # the worker must survive anything the handler does
            self.failed = exc
