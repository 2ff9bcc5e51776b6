"""The helper process of :mod:`wandb_bridge.adapters.row_process`: log the rows it is handed.

Forked from the training process before ``wandb.init`` where that is safe
(:func:`wandb_bridge.adapters.row_process.fork_safe`), else run as
``python -m wandb_bridge.adapters.row_process_child``; never by users. It
ignores SIGINT and SIGTERM: Ctrl-C and pre-emption reach the whole process
group, and the parent decides when logging ends (it closes this process's
input after its last row), so no queued row is lost to them. A spawned one
also runs in a session of its own, so that a signal to the job's process
group cannot reach it while it still imports wandb.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import struct
import sys
from collections import deque
from typing import IO, Any

from wandb_bridge.adapters import row_process, wandb_sdk

_LENGTH = struct.Struct("<I")
# Logging yields the CPU to training when cores are short; on an idle core it runs as fast as ever.
_NICENESS = 10


def _frames(stream: IO[bytes]) -> Any:
    while True:
        head = stream.read(_LENGTH.size)
        if len(head) < _LENGTH.size:
            return
        (size,) = _LENGTH.unpack(head)
        body = stream.read(size)
        if len(body) < size:
            return
        yield pickle.loads(body)


class _Logger:
    """Logs rows into the attached run; reports what wandb did not take to the parent (which keeps it)."""

    def __init__(self, handle: wandb_sdk.RunHandle, keep_recent: int, out: IO[str]) -> None:
        self.handle = handle
        self.recent: deque[dict[str, Any]] = deque(maxlen=keep_recent)
        self.out = out
        self.logged = 0
        self.broken: str | None = None

    def say(self, message: dict[str, Any]) -> None:
        try:
            self.out.write(json.dumps(message, default=str) + "\n")
            self.out.flush()
        except (OSError, ValueError):
            pass  # the parent is gone (killed): nobody to tell, keep logging what was handed over

    def log(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Log a batch, then wait until wandb-core has handled it (so that an ack means recorded).

        Returns:
            The rows wandb did not take (with the recent ones when wandb-core died), in order.
        """
        if self.broken is not None:
            return rows
        logged, unsent = row_process.log_each(self.handle.log, rows, self.recent, self._failed)
        self.logged += logged
        if self.broken is None:
            self.settle()
        if self.broken is not None:  # the recent rows may be lost with wandb-core: they are reported too
            unsent[:0] = self.recent  # (a row is either logged, and recent, or unsent)
            self.recent.clear()
        return unsent

    def _failed(self, exc: Exception) -> bool:
        if isinstance(exc, OSError):  # the connection to wandb-core is gone
            self._break(f"{type(exc).__name__}: {exc}")
            return True
        self.say({"rejected": f"{type(exc).__name__}: {exc}"})
        return False

    def settle(self) -> None:
        """Wait for wandb-core to handle what this process sent (one round trip per batch, not per row).

        wandb's ``run.log`` may return before wandb-core has the row (older wandb
        buffers it in this process): without this an ack, or this process's
        exit could come before the row is safe.
        """
        try:
            self.handle.wait_recorded()
        except Exception as exc:
            self._break(f"{type(exc).__name__}: {exc}")

    def _break(self, why: str) -> None:
        self.broken = why
        self.say({"broken": why})

    def finish(self) -> None:
        self.say({"done": self.logged})


def _stderr_to(path: str) -> None:
    """Send this process's stderr to ``path`` (the run's logs folder), when it can be opened."""
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    except OSError:
        return
    os.dup2(fd, 2)
    os.close(fd)


def main() -> int:
    """Run as ``python -m``: serve this process's stdin and stdout.

    A spawned helper is one that will be used: it imports wandb and what attaching
    imports at once, while the parent is still busy starting.
    """
    wandb_sdk.load_run_start()
    return serve(sys.stdin.buffer, sys.stdout)


def serve(frames_in: IO[bytes], out: IO[str]) -> int:
    """Read the header and the rows from ``frames_in`` until it ends; report on ``out``.

    Never returns normally once attached: after the last row it leaves with
    ``os._exit`` (the parent waits for nothing else).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        os.nice(_NICENESS)
    except OSError:
        pass
    wandb_sdk.load()  # (a forked helper has it already, and what attaching imports too)
    frames = _frames(frames_in)
    header = next(frames, None)
    if header is None:
        return 0
    _, shared, keep_recent, wandb_env, log_path = header
    os.environ.update(wandb_env)  # this helper's own environment, as wandb.init left the parent's
    if log_path:
        _stderr_to(log_path)
    try:
        logger = _Logger(wandb_sdk.attach(shared), keep_recent, out)
    except Exception as exc:
        out.write(json.dumps({"fatal": f"{type(exc).__name__}: {exc}"}) + "\n")
        out.flush()
        return 1
    for frame in frames:
        if frame[0] == "rows":
            unsent = logger.log(frame[2])
            logger.say({"ack": frame[1], "logged": logger.logged, **({"unsent": unsent} if unsent else {})})
        elif frame[0] == "end":
            break
    logger.finish()
    # Every batch was settled with wandb-core before its ack, so nothing is left in this
    # process: skip the interpreter's teardown (wandb's exit hooks: ~0.1 s), which the
    # parent would wait for.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
