"""History rows handed to a helper process that logs them into the same wandb run.

One wandb row costs about 100 µs of Python CPU (building the record, the
socket round trip to wandb-core). In a background thread that CPU still
competes with the training loop for the GIL; in a second process it runs on
another core. wandb supports this: a run object, pickled, attaches to the
same run in another process (wandb's documented multiprocessing support).

Start-up. Where it is safe (:func:`fork_safe`: Linux, this process has one
Python thread and no wandb service yet) the helper is forked from this
process right before ``wandb.init``: it has wandb (and what attaching imports)
imported already and costs about 2 ms and no CPU until rows come (then about
10 ms to attach to the run). Elsewhere it is a fresh interpreter (``python -m ...row_process_child``)
that imports wandb again: about 0.45 s of CPU. The forked helper is named
:data:`HELPER_NAME` (``ps``, ``top``).

Protocol. Parent -> child, on the child's stdin: frames of a 4-byte length
and a pickle. The first frame is the header (the pickled run, how many recent
rows to keep); then ``("rows", seq, rows)``; ``("end",)`` (or the end of
input) means: finish logging, then exit. Child -> parent, on its stdout: one
JSON object per line: ``{"ack": seq, "logged": n}`` once a batch is recorded
(with ``"unsent": rows`` when wandb did not take some: the parent keeps them,
the child writes no file), ``{"broken": reason}`` or ``{"rejected": reason}``
when wandb did not take a row, and ``{"done": n}`` at the end. The child
handles frames in order, so the ack of the last batch sent means every row
sent so far is recorded (:meth:`RowProcess.sync` waits for it).
"""

from __future__ import annotations

import gc
import json
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

_LENGTH = struct.Struct("<I")
_CHILD = "wandb_bridge.adapters.row_process_child"
_PLAIN = (float, int, str, bool, type(None))
# The least time a sync waits for a child that has not confirmed anything yet (it is starting).
STARTUP_S = 30.0
#: The process name of a forked helper (``/proc/<pid>/comm``: at most 15 characters).
HELPER_NAME = "wb-log-process"


#: A process with more resident memory spawns its helper: after a fork, each page the training
#: process writes is copied once (about 0.55 s of kernel time per GiB written), which past this
#: size could cost more than a second ``import wandb`` (about 0.45 s of CPU).
FORK_MAX_RSS = 1 << 30


def fork_safe() -> bool:
    """True when the helper can be forked from this process (else it is spawned afresh).

    Forking copies only the calling thread: it is done on Linux, while this
    process runs a single Python thread (no other thread can hold a lock the
    child would need, and Python 3.12+ warns about forking with threads),
    before this process (or a parent) started a wandb service (the child
    connects to the run's service itself, and must not share a connection),
    and while it holds less than :data:`FORK_MAX_RSS` of memory.
    """
    return (
        sys.platform.startswith("linux")
        and hasattr(os, "fork")
        and threading.active_count() == 1
        and "WANDB_SERVICE" not in os.environ
        and _resident_bytes() < FORK_MAX_RSS
    )


def _resident_bytes() -> int:
    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return FORK_MAX_RSS  # unknown: spawn


class _GcFreeze:
    """Keeps the training process's older objects out of its garbage collector while forked helpers live.

    After a fork, every page either process writes is copied. A full collection in
    the training process writes to the header of every object it tracks, so it
    copies most of the heap (measured: ~22,000 pages, 0.1-0.15 s of kernel time in
    a transformers run). ``gc.freeze()`` right before the fork (what Python's
    documentation advises for a fork without exec) exempts the objects that existed
    then; they are handed back (``gc.unfreeze()``) when the last helper has ended.
    Meanwhile a reference cycle among those objects is freed only then (objects
    freed by their reference count go at once, as ever). Where the process froze
    objects itself, nothing is done.
    """

    def __init__(self) -> None:
        self._holders = 0
        self._owned = False
        self._lock = threading.Lock()

    def hold(self) -> bool:
        """Freeze before a fork (unless someone else froze objects); True: :meth:`release` later."""
        with self._lock:
            if not self._owned and gc.get_freeze_count() > 0:
                return False  # the process's own freeze: not ours to undo
            self._holders += 1
            self._owned = True
            gc.freeze()  # (again for a later helper: the objects made since are frozen too)
            return True

    def release(self) -> None:
        """One holding helper ended; the last one hands the objects back."""
        with self._lock:
            self._holders -= 1
            if self._holders == 0 and self._owned:
                self._owned = False
                gc.unfreeze()


GC_FREEZE = _GcFreeze()


class _Forked:
    """The parent's end of a forked helper: the part of ``subprocess.Popen`` that :class:`RowProcess` uses."""

    def __init__(self, pid: int, stdin: Any, stdout: Any, froze: bool) -> None:
        self.pid = pid
        self.stdin = stdin
        self.stdout = stdout
        self.returncode: int | None = None
        self._froze = froze

    @classmethod
    def start(cls) -> _Forked | None:
        """Fork the helper (it waits for its header on a pipe); None where :func:`fork_safe` says no.

        wandb and what attaching imports (:func:`wandb_sdk.load_run_start`) are imported
        here first, so that the helper attaches in milliseconds of CPU instead of importing
        them again (``wandb.init`` imports them anyway; the run starts about 0.1 s later,
        the import no longer overlapping wandb-core's start-up).
        """
        from wandb_bridge.adapters import row_process_child, wandb_sdk

        # Imported once, here: the child has it for free (an import that started a thread makes
        # fork_safe say no).
        wandb_sdk.load_run_start()
        if not fork_safe():
            return None
        child_in, to_child = os.pipe()
        from_child, child_out = os.pipe()
        froze = GC_FREEZE.hold()
        try:
            pid = os.fork()
        except OSError:
            if froze:
                GC_FREEZE.release()
            for fd in (child_in, to_child, from_child, child_out):
                os.close(fd)
            return None
        if pid == 0:  # the helper: never returns into the training process's code
            code = 1
            try:
                os.close(to_child)
                os.close(from_child)
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
                gc.freeze()  # the parent's objects stay as they are (and their pages shared)
                # (frozen already where the parent froze them: see _GcFreeze)
                _release_std_streams((child_in, child_out))
                _name_helper()
                code = row_process_child.serve(os.fdopen(child_in, "rb"), os.fdopen(child_out, "w", encoding="utf-8"))
            except BaseException:  # the child must never return into the parent's code
                code = 1
            finally:
                os._exit(code)
        os.close(child_in)
        os.close(child_out)
        return cls(pid, os.fdopen(to_child, "wb"), os.fdopen(from_child, "rb"), froze)

    def poll(self) -> int | None:
        """The exit code once the helper ended (reaped), else None."""
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere
                self.returncode = -1
                return self.returncode
            if pid == self.pid:
                self.returncode = os.waitstatus_to_exitcode(status)
            if self.returncode is not None and self._froze:
                self._froze = False
                GC_FREEZE.release()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the helper to end (``subprocess.TimeoutExpired`` past ``timeout``)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = 0.0002  # (a helper told to end, or killed, is gone within a millisecond or two)
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(HELPER_NAME, timeout or 0.0)
            time.sleep(pause)
            pause = min(0.01, pause * 2)
        return code

    def kill(self) -> None:
        """Stop the helper at once (and reap it: a killed process is gone within milliseconds)."""
        if self.poll() is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                self.wait(1.0)
            except subprocess.TimeoutExpired:
                pass


def _release_std_streams(keep: tuple[int, int]) -> None:
    """Point the forked helper's stdin and stdout at ``/dev/null``: it must not hold the training
    process's terminal or pipes open (a caller waiting for their end would wait for the helper)."""
    try:
        null = os.open(os.devnull, os.O_RDWR)
    except OSError:
        return
    for fd in (0, 1):
        if fd not in keep and null != fd:
            try:
                os.dup2(null, fd)
            except OSError:
                pass
    if null not in (0, 1):
        os.close(null)


def _name_helper() -> None:
    try:
        with open("/proc/self/comm", "w", encoding="ascii") as handle:
            handle.write(HELPER_NAME)
    except OSError:
        pass


def plain(row: dict[str, Any]) -> bool:
    """True when every value of ``row`` is a number, string, bool or None (safe to hand to the child)."""
    return all(type(value) in _PLAIN or _plain_nested(value) for value in row.values())


def _plain_nested(value: Any) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain_nested(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return all(_plain_nested(v) for v in value)
    return isinstance(value, _PLAIN)


def log_each(
    log: Callable[[dict[str, Any]], None],
    rows: list[dict[str, Any]],
    recent: deque[dict[str, Any]],
    failed: Callable[[Exception], bool],
) -> tuple[int, list[dict[str, Any]]]:
    """Log rows one by one (in this process, or in the helper), keeping the logged ones in ``recent``.

    Args:
        log: logs one row (``RunHandle.log``).
        rows: the rows.
        recent: the last rows logged (wandb-core buffers its writes: when it dies these may be lost).
        failed: told of each failure; True stops logging (wandb-core is gone).

    Returns:
        How many rows were logged, and the rows that were not, in order.
    """
    logged = 0
    unsent: list[dict[str, Any]] = []
    going = True
    for row in rows:
        if going:
            try:
                log(row)
                logged += 1
                recent.append(row)
                continue
            except Exception as exc:
                going = not failed(exc)
        unsent.append(row)
    return logged, unsent


class RowProcessGone(Exception):
    """The helper process ended early; ``rows`` were handed to it but not confirmed."""

    def __init__(self, message: str, rows: list[dict[str, Any]]) -> None:
        super().__init__(message)
        self.rows = rows


class RowProcess:
    """The parent's end of the helper process.

    Used by the session's worker thread; only :meth:`kill` and :meth:`reap` may come from
    another thread (finish stopping a stuck helper while the worker still waits on it).
    """

    def __init__(self, proc: subprocess.Popen[bytes] | _Forked, on_message: Callable[[dict[str, Any]], None]) -> None:
        self._proc = proc
        self._on_message = on_message
        self._out = proc.stdout
        assert proc.stdin is not None and self._out is not None
        self._in = proc.stdin
        self._fd = self._out.fileno()
        os.set_blocking(self._fd, False)
        self._buffer = b""
        self._seq = 0
        self._unconfirmed: deque[tuple[int, list[dict[str, Any]]]] = deque()
        self._lock = threading.Lock()  # (around taking the unconfirmed rows, and dropping confirmed ones)
        self.done: int | None = None
        self.gone: str | None = None

    @classmethod
    def fork(cls, on_message: Callable[[dict[str, Any]], None]) -> RowProcess | None:
        """Fork the helper process where :func:`fork_safe` (else None); it waits for :meth:`attach`.

        Args:
            on_message: called with every message the child sends.
        """
        forked = _Forked.start()
        return None if forked is None else cls(forked, on_message)

    @classmethod
    def spawn(cls, on_message: Callable[[dict[str, Any]], None]) -> RowProcess:
        """Start the helper process, forked where it can be (:meth:`fork`), else a fresh interpreter.

        Started before ``wandb.init``, a fresh interpreter imports wandb while
        wandb-core starts.

        Args:
            on_message: called with every message the child sends.
        """
        forked = cls.fork(on_message)
        if forked is not None:
            return forked
        env = dict(os.environ)  # a copy, for the child only: it needs our import path
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        # A session of its own: it imports wandb (about 0.5 s) before it can ignore signals, and
        # a job's SIGTERM or a terminal's Ctrl-C goes to the whole process group meanwhile.
        proc = subprocess.Popen(
            [sys.executable, "-m", _CHILD],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            close_fds=True,
            start_new_session=True,
        )
        return cls(proc, on_message)

    def attach(self, shared_run: bytes, keep_recent: int, log_path: str | None = None) -> None:
        """Send the header: the run to log into (:meth:`RunHandle.share`).

        wandb's own variables (the address of wandb-core among them, set by
        ``wandb.init``) travel with it: the child may have started before them.

        Args:
            shared_run: the pickled wandb run.
            keep_recent: how many recently logged rows the child reports too when wandb-core dies.
            log_path: a file for the child's stderr from now on (wandb's own error output
                there would otherwise reach the user's terminal twice); None keeps it inherited.
        """
        wandb_env = {k: v for k, v in os.environ.items() if k.startswith("WANDB_")}
        self._write(("header", shared_run, keep_recent, wandb_env, log_path))

    @property
    def used(self) -> bool:
        """True once rows were sent (before that, it can be stopped without waiting)."""
        return self._seq > 0

    def send(self, rows: list[dict[str, Any]]) -> None:
        """Hand rows over (waits only while the pipe is full).

        Raises:
            RowProcessGone: the child ended; the exception carries the rows it did not confirm.
        """
        self._seq += 1
        self._unconfirmed.append((self._seq, rows))
        self._write(("rows", self._seq, rows))
        self._read(0.0)

    def sync(self, timeout: float) -> bool:
        """Wait until the child confirmed every batch sent so far.

        Returns:
            False when it confirmed nothing for ``timeout`` seconds (it is stuck).

        Raises:
            RowProcessGone: the child ended first.
        """
        # "Stuck" means no progress for ``timeout`` seconds: every ack restarts the wait. Before
        # its first ack the child is still starting (importing wandb, attaching), which a loaded
        # machine can make slow: that gets at least STARTUP_S.
        deadline = self._deadline(timeout)
        while self._unconfirmed:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if self._read(left):
                deadline = self._deadline(timeout)
        return True

    def _deadline(self, timeout: float) -> float:
        return time.monotonic() + (timeout if self._acked else max(timeout, STARTUP_S))

    @property
    def _acked(self) -> bool:
        """True once the child confirmed a batch (it has started)."""
        return self._seq > len(self._unconfirmed)

    def close(self, timeout: float) -> list[dict[str, Any]]:
        """End input, wait for the child to log what it has (killed past ``timeout``).

        Returns:
            The rows it did not confirm: none when it finished (:attr:`done` holds how
            many it logged), else it ended early (:attr:`gone` says why) or was too slow.
        """
        try:
            # An explicit end, not only end of input: a process forked from ours meanwhile (a
            # DataLoader worker) holds a copy of this pipe, and the child would see no EOF.
            self._write(("end",))
        except RowProcessGone as exc:
            self._unconfirmed.appendleft((0, exc.rows))
        try:
            self._in.close()
        except OSError:
            pass
        deadline = time.monotonic() + timeout
        try:
            while self.done is None and self.gone is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._read(left)
        except RowProcessGone as exc:
            self._unconfirmed.appendleft((0, exc.rows))
        try:
            self._proc.wait(max(0.0, deadline - time.monotonic()) + 1.0)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._out.close()  # type: ignore[union-attr]
        return self.kill()

    def kill(self) -> list[dict[str, Any]]:
        """Stop the child at once (a hung wandb); return the rows it had not confirmed."""
        if self._proc.poll() is None:
            self._proc.kill()
        return self._take()

    def _take(self) -> list[dict[str, Any]]:
        """The unconfirmed rows, taken once (finish may stop the child while the worker thread reads acks)."""
        with self._lock:
            batches, self._unconfirmed = self._unconfirmed, deque()
        return [row for _, batch in batches for row in batch]

    def reap(self, timeout: float) -> None:
        """Wait up to ``timeout`` for a killed child to exit, leaving the pipes open.

        The worker thread may still wait on the child's output (a sync): the
        child's exit ends that wait (end of output); closing the pipe under it
        would not. The pipes close with this object.
        """
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass

    def release(self) -> None:
        """Close the pipes of a child that was stopped (:meth:`kill`), once nothing waits on them."""
        for pipe in (self._in, self._out):
            try:
                pipe.close()  # type: ignore[union-attr]
            except (OSError, ValueError):
                pass

    def _write(self, message: tuple[Any, ...]) -> None:
        payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            self._in.write(_LENGTH.pack(len(payload)) + payload)
            self._in.flush()
        except (OSError, ValueError) as exc:
            self._lost(f"{type(exc).__name__}: {exc}")

    def _read(self, timeout: float) -> bool:
        """Handle what the child said (waiting up to ``timeout`` for it); True when it said anything."""
        if timeout > 0:
            ready, _, _ = select.select([self._fd], [], [], timeout)
            if not ready:
                return False
        ended = False
        while True:
            try:
                chunk = os.read(self._fd, 65536)
            except BlockingIOError:
                break
            if not chunk:
                ended = True
                break
            self._buffer += chunk
            if len(chunk) < 65536:
                break
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            if line:
                self._handle(json.loads(line))
        if ended:
            self._lost("it exited")
        return bool(lines)

    def _handle(self, message: dict[str, Any]) -> None:
        if "ack" in message:
            seq = message["ack"]
            with self._lock:
                unconfirmed = self._unconfirmed
                while unconfirmed and unconfirmed[0][0] <= seq:
                    unconfirmed.popleft()
            self._on_message(message)
        else:
            if "done" in message:
                self.done = int(message["done"])
            self._on_message(message)

    def _lost(self, why: str) -> None:
        if self.done is not None:
            return
        code = self._proc.poll()
        if code is None:
            try:
                code = self._proc.wait(1.0)
            except subprocess.TimeoutExpired:
                code = None
        self.gone = f"the logging process ended ({why}; exit code {code})"
        rows = self._take()
        raise RowProcessGone(self.gone, rows)
