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
as written), except that a progress bar's redraw may follow the other stream's
lines of the same burst where wandb-core renders that to the same Logs text
(:class:`Batcher`). :meth:`ConsoleBatch.release` hands over the rest and gives
wandb its callbacks back, before the run is finished.

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
# Characters that may move a stream's cursor to another line besides a newline (escape sequences, vertical
# tab, form feed): a write holding one keeps its place and hands over every held write before it.
_CURSOR_MOVES = ("\x1b", "\x0b", "\x0c")
# wandb-core keeps only the newest lines of the Logs text open to rewrites (measured with wandb 0.31: a
# "\r" redraw of a line with 31 lines below it still lands, with 32 below it is dropped). A held redraw is
# handed over while fewer than LIVE_LINES lines can be below its line, or once FROZEN_LINES certainly are.
LIVE_LINES = 24
FROZEN_LINES = 40


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
        self._batcher = Batcher()
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
        """Hand everything collected so far to the run (see :class:`Batcher` for how writes become records)."""
        with self._lock:
            chunks = self._chunks
            taken: list[tuple[str, str]] = []
            while True:
                try:
                    taken.append(chunks.popleft())
                except IndexError:
                    break
            for name, text in self._batcher.records(taken):
                self._send(name, text)

    def _send(self, name: str, text: str) -> None:
        try:
            self._publish(name, text)
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


class Batcher:
    """Turns a burst of ``(stream, text)`` writes into few records that wandb-core renders to the same Logs text.

    Adjacent writes to one stream become one record. wandb-core renders the two
    streams like a terminal with one cursor each: a line takes its place when its
    stream starts it, ``"\\r"`` rewrites the stream's current line in place, and
    only the newest lines can still change (a rewrite of an older line is
    dropped). So a write that only rewrites a line its stream has already
    started (no newline, no escape sequence: a progress bar's redraw,
    ``tqdm.write`` clearing the bar) may be handed over after the other stream's
    writes, in order within its own stream, when its line is certainly still
    open to rewrites then (fewer than :data:`LIVE_LINES` lines below it), or
    certainly closed already (at least :data:`FROZEN_LINES` below it, where the
    rewrite changes nothing either way). The Logs text (``files/output.log``)
    stays byte for byte the same, and a progress bar between printed lines no
    longer splits a burst into two records per line. A write that ends or starts
    a line keeps its place; a write that moves a cursor with an escape sequence
    (nested tqdm bars) hands over everything held before it.
    """

    def __init__(self) -> None:
        # Per stream: is its current line certainly started (text since its last newline)?
        self._open = {name: False for name in _STREAMS}
        # Per stream: at most / at least how many lines were started below its current line.
        self._most = {name: 0 for name in _STREAMS}
        self._least = {name: 0 for name in _STREAMS}

    def _rewrite_may_wait(self, name: str, added: int) -> bool:
        """Whether a held rewrite of ``name``'s line lands the same after ``added`` more lines below it."""
        return self._least[name] >= FROZEN_LINES or self._most[name] + added < LIVE_LINES

    def records(self, writes: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """The records for ``writes`` (in the order written), as ``(stream, text)``, in the order to hand over."""
        out: list[tuple[str, list[str]]] = []
        held: dict[str, list[str]] = {}  # writes that only rewrite their stream's started line, not handed over yet
        for name, text in writes:
            moves = any(c in text for c in _CURSOR_MOVES)
            was_open = self._open.get(name, False)
            if not moves and "\n" not in text and was_open and self._rewrite_may_wait(name, 0):
                held.setdefault(name, []).append(text)
                continue
            most, least = (LIVE_LINES, 0) if moves else _new_lines(text, was_open)
            for other in list(held):
                if other != name and (moves or not self._rewrite_may_wait(other, most)):
                    _append(out, other, held.pop(other))
            _append(out, name, [*held.pop(name, []), text])
            for other in self._most:
                self._most[other] = min(self._most[other] + most, LIVE_LINES)
                self._least[other] = 0 if moves else min(self._least[other] + least, FROZEN_LINES)
            if not was_open or "\n" in text or moves:  # a new current line: nothing below it yet
                self._most[name] = self._least[name] = 0
            self._open[name] = not moves and _started(text, was_open)
        for name, parts in held.items():
            _append(out, name, parts)
        return [(name, piece) for name, parts in out for piece in _pieces(parts)]


def _append(out: list[tuple[str, list[str]]], name: str, parts: list[str]) -> None:
    """Add ``parts`` of stream ``name`` to the records ``out`` (to the last one when it is the same stream)."""
    if out and out[-1][0] == name:
        out[-1][1].extend(parts)
    else:
        out.append((name, parts))


def _started(text: str, was_open: bool) -> bool:
    """Whether a stream's current line is certainly started after ``text`` (written where it was ``was_open``)."""
    _, newline, tail = text.rpartition("\n")
    started = bool(tail.strip("\r"))
    return started if newline else was_open or started


def _new_lines(text: str, was_open: bool) -> tuple[int, int]:
    """(at most, at least) how many lines ``text`` starts, written where its stream's line ``was_open``."""
    most = least = 0
    is_open = was_open
    for i, segment in enumerate(text.split("\n")):
        if i:
            if not is_open:
                most += 1  # an empty line, perhaps a line of its own
            is_open = False
        printed = bool(segment.strip("\r"))
        if segment and not is_open:
            most += 1
            least += printed
        is_open = is_open or printed
    return most, least


def _pieces(parts: list[str]) -> list[str]:
    """``parts`` joined, cut into records of at most about :data:`MAX_RECORD_CHARS` (never inside a write)."""
    pieces: list[str] = []
    current: list[str] = []
    size = 0
    for part in parts:
        if current and size >= MAX_RECORD_CHARS:
            pieces.append("".join(current))
            current, size = [], 0
        current.append(part)
        size += len(part)
    if current:
        pieces.append("".join(current))
    return pieces
