"""A bounded queue of typed operations drained in order by one background thread.

The training thread only appends an operation to a deque (atomic, no lock, no
wake-up call); the worker wakes every ``linger`` seconds, or at once for a
flush, and handles everything queued in one burst: far fewer thread switches
and GIL hand-overs than waking up per operation. When ``maxsize`` operations
are queued, ``put`` waits for room (backpressure) instead of growing memory.
``barrier``/``stop`` wait, with a deadline, until everything queued before them
was handled.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from wandb_bridge.core.ops import Op, Task

_BATCH = 1024


@dataclass(frozen=True, slots=True)
class _Barrier(Task):
    done: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True, slots=True)
class _Stop(Task):
    pass


class Pipeline:
    """Runs ``handler(batch_of_ops)`` on one daemon thread, preserving order."""

    def __init__(self, handler: Callable[[list[Op]], None], maxsize: int, name: str, linger: float = 0.05) -> None:
        self._handler = handler
        self._maxsize = maxsize
        self._linger = linger
        self._items: deque[Op] = deque()
        self._wake = threading.Event()
        self._room = threading.Condition()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._started = False
        self.failed: BaseException | None = None
        self.waits = 0  # times put() had to wait for room (rows come faster than they are handled)

    def start(self) -> None:
        """Start the worker thread (once)."""
        if not self._started:
            self._started = True
            self._thread.start()

    @property
    def alive(self) -> bool:
        """True while the worker thread runs."""
        return self._thread.is_alive()

    def newest(self) -> Op | None:
        """The operation queued last and not yet taken by the worker, if any."""
        try:
            return self._items[-1]
        except IndexError:
            return None

    def put(self, op: Op) -> None:
        """Queue an operation; waits while ``maxsize`` operations are queued."""
        if len(self._items) >= self._maxsize:
            self._wait_for_room(None)
        self._items.append(op)

    def _wait_for_room(self, timeout: float | None) -> bool:
        self.waits += 1
        self._wake.set()
        with self._room:
            return self._room.wait_for(lambda: len(self._items) < self._maxsize or not self._thread.is_alive(), timeout)

    def barrier(self, timeout: float | None) -> bool:
        """Wait until every operation queued so far was handled.

        Returns:
            False when the deadline passed first (or the worker is gone).
        """
        if not self.alive:
            return not self._items
        barrier = _Barrier()
        self._items.append(barrier)
        self._wake.set()
        return barrier.done.wait(timeout)

    def stop(self, timeout: float | None) -> bool:
        """Handle everything queued, then end the thread.

        Returns:
            False when the deadline passed before the queue was drained.
        """
        if not self._started:
            return True
        if self.alive:
            self._items.append(_Stop())
            self._wake.set()
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _loop(self) -> None:
        items = self._items
        stopping = False
        while not stopping:
            if len(items) < _BATCH:
                self._wake.wait(self._linger)
                self._wake.clear()
            while items and not stopping:
                work: list[Op] = []
                while items and len(work) < _BATCH:
                    op = items.popleft()
                    if isinstance(op, _Barrier | _Stop):
                        self._run(work)
                        work = []
                        if isinstance(op, _Stop):
                            stopping = True
                            break
                        op.done.set()
                    else:
                        work.append(op)
                self._run(work)
                with self._room:
                    self._room.notify_all()
        with self._room:
            self._room.notify_all()

    def _run(self, work: list[Op]) -> None:
        if not work:
            return
        try:
            self._handler(work)
        except BaseException as exc:  # the worker must survive anything the handler does
            self.failed = exc
