"""wandb's console capture for runs we start, with one record per burst of output instead of one per write.

With its default ``console="auto"`` (``"wrap"``, which wandb >= 0.19 maps to
``"wrap_raw"``) wandb patches ``sys.stdout.write`` / ``sys.stderr.write`` and,
for every single write, builds an ``OutputRawRecord`` and hands it to wandb-core
through its socket (waking the asyncio thread of the training process). A
``print(x)`` is two writes (the text, then ``"\\n"``), a progress bar one write per
refresh: on the training thread, per printed line, that costs more than logging a
row through this library does.

:class:`ConsoleBatch` keeps wandb's capture (the same patched streams, the same
``console`` setting, so wandb-core writes ``output.log`` and the W&B "Logs" tab
shows the same text), but swaps the callbacks of the run's two stream wrappers
for one that only appends the text to a queue. A daemon thread hands the queue
to the run every ``linger`` seconds, adjacent writes to the same stream joined
into one record, in the order they were written (stdout and stderr interleaved
as written). :meth:`ConsoleBatch.release` hands over the rest and gives wandb
its callbacks back, before the run is finished.

It touches only the run object it is given (no ``import wandb``). Anything it
does not recognise (another console mode, an older or newer wandb without these
attributes) leaves wandb's own capture as it is: :func:`take_over` returns None.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

# How long writes are collected before they become one record (the Logs tab is not live to the
# millisecond anyway: wandb-core itself uploads console output in periodic chunks).
LINGER_S = 0.1
_STREAMS = ("stdout", "stderr")
# A burst larger than this becomes several records (each one stays small for wandb-core).
MAX_RECORD_CHARS = 64 * 1024


def take_over(run: Any, linger: float = LINGER_S) -> ConsoleBatch | None:
    """Batch the console capture of ``run`` (a run this process started); None when it is not wandb's raw capture.

    Args:
        run: the wandb run (``wandb.init``'s result), in the process that started it.
        linger: seconds writes are collected before they are handed to the run.
    """
    redirs = (getattr(run, "_out_redir", None), getattr(run, "_err_redir", None))
    publish = getattr(run, "_console_raw_callback", None)
    if not callable(publish) or any(r is None or type(r).__name__ != "StreamRawWrapper" for r in redirs):
        return None
    if any(not isinstance(getattr(r, "cbs", None), list | tuple) for r in redirs):
        return None
    batch = ConsoleBatch(publish, linger)
    batch._install(redirs)
    return batch


class ConsoleBatch:
    """Collects what the training process writes and hands it to the run in batches (see the module docstring)."""

    def __init__(self, publish: Callable[[str, str], None], linger: float) -> None:
        self._publish = publish
        self._linger = linger
        self._chunks: deque[tuple[str, str]] = deque()
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._pid = os.getpid()
        self._redirs: tuple[Any, ...] = ()
        self._saved: list[Any] = []
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # one hand-over at a time (the thread, or release())
        self.writes = 0  # writes captured
        self.records = 0  # records handed to the run

    def _install(self, redirs: tuple[Any, ...]) -> None:
        self._redirs = redirs
        self._saved = [r.cbs for r in redirs]
        for redir, name in zip(redirs, _STREAMS, strict=True):
            redir.cbs = [self._collector(name)]
        self._thread = threading.Thread(target=self._loop, name="wandb-bridge-console", daemon=True)
        self._thread.start()

    def _collector(self, name: str) -> Callable[[str], None]:
        chunks, wake, pid = self._chunks, self._wake, self._pid

        def collect(data: str) -> None:
            if not data or os.getpid() != pid:  # a forked process (DataLoader worker): wandb drops it too
                return
            if not chunks:
                wake.set()
            chunks.append((name, data))
            self.writes += 1

        return collect

    def _loop(self) -> None:
        while not self._stopped.is_set():
            self._wake.wait()
            self._wake.clear()
            if self._stopped.wait(self._linger):  # collect a burst, then hand it over
                break
            self.flush()

    def flush(self) -> None:
        """Hand everything collected so far to the run (adjacent writes to one stream as one record)."""
        with self._lock:
            chunks = self._chunks
            name: str | None = None
            parts: list[str] = []
            size = 0
            while True:
                try:
                    stream, data = chunks.popleft()
                except IndexError:
                    break
                if parts and (stream != name or size >= MAX_RECORD_CHARS):
                    self._send(name, parts)
                    parts, size = [], 0
                name = stream
                parts.append(data)
                size += len(data)
            if parts:
                self._send(name, parts)

    def _send(self, name: str | None, parts: list[str]) -> None:
        try:
            self._publish(str(name), "".join(parts))
            self.records += 1
        except Exception:  # a finished run, a closed connection: the text is on the terminal anyway
            pass

    def release(self) -> None:
        """Hand over what is left and give wandb its own callbacks back (before the run is finished)."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5.0)
        self.flush()
        for redir, saved in zip(self._redirs, self._saved, strict=True):
            redir.cbs = saved
        self.flush()  # anything written by another thread while the callbacks were swapped back
