"""Child processes for the tests: output to files (never an undrained pipe), every wait bounded.

A child's stdout and stderr go to files in the test's folder, so a chatty child can
never block on a full pipe, and a test waits for a line the child prints (an
observable event) with a deadline instead of sleeping a fixed time.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import psutil


class Child:
    """A child process whose stdout and stderr are written to files.

    Attributes:
        process: The running process.
        stdout_path: File receiving its stdout.
        stderr_path: File receiving its stderr.
    """

    def __init__(
        self,
        command: Sequence[str],
        *,
        env: dict[str, str],
        folder: Path,
        name: str = "child",
        cwd: Path | None = None,
        new_session: bool = False,
    ) -> None:
        """Start ``command``; its output goes to ``folder/<name>.stdout`` and ``.stderr``."""
        folder.mkdir(parents=True, exist_ok=True)
        self.stdout_path = folder / f"{name}.stdout"
        self.stderr_path = folder / f"{name}.stderr"
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.process = subprocess.Popen(
                list(command),
                env={**env, "PYTHONFAULTHANDLER": "1"},  # (a hung child's stacks: see wait)
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                cwd=cwd,
                start_new_session=new_session,
            )

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self.process.pid

    def stdout(self) -> str:
        """Everything the child printed to stdout so far."""
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        """Everything the child printed to stderr so far."""
        return self.stderr_path.read_text(errors="replace")

    def wait_for_line(self, line: str, timeout: float) -> None:
        """Return once the child printed ``line`` (a whole stdout line).

        Raises:
            AssertionError: The child ended, or ``timeout`` seconds passed, first
                (the child is killed then and its stderr tail is in the message).
        """
        deadline = time.monotonic() + timeout
        while True:
            if line in (text.strip() for text in self.stdout().splitlines()):
                return
            if self.process.poll() is not None:
                raise AssertionError(
                    f"the child ended ({self.process.returncode}) before printing {line!r}:\n{self.stderr()[-3000:]}"
                )
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(
                    f"the child did not print {line!r} within {timeout:.0f} s:\n{self.stderr()[-3000:]}"
                )
            time.sleep(0.02)  # polling an event with a deadline, not a fixed wait

    def wait(self, timeout: float) -> int:
        """Wait for the child to end and return its exit status; kill it (and fail) after ``timeout``."""
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._dump_stacks()
            self.kill()
            raise AssertionError(f"the child did not end within {timeout:.0f} s:\n{self.stderr()[-6000:]}") from None

    def _dump_stacks(self) -> None:
        """Make a hung child (and its Python helpers) print every thread's stack to stderr (faulthandler)."""
        with contextlib.suppress(psutil.Error):
            procs = [psutil.Process(self.pid), *psutil.Process(self.pid).children(recursive=True)]
            for proc in reversed(procs):
                with contextlib.suppress(psutil.Error):
                    if "wandb-core" not in proc.name():
                        proc.send_signal(signal.SIGABRT)
            time.sleep(2.0)  # (the dumps are written by the dying processes themselves)

    def kill(self) -> None:
        """Kill the child and its own children (no-op when it already ended)."""
        with contextlib.suppress(psutil.Error):
            for proc in psutil.Process(self.pid).children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    proc.kill()
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=30)

    def wandb_core(self) -> list[psutil.Process]:
        """The wandb-core processes the child started (ask while it runs: they outlive it for a moment)."""
        try:
            return wandb_core_processes(psutil.Process(self.pid))
        except psutil.Error:
            return []

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process.poll() is None:
            self.kill()


def wandb_core_processes(parent: psutil.Process | None = None) -> list[psutil.Process]:
    """The wandb-core service processes started by ``parent`` (default: this test process)."""
    found = []
    for proc in (parent or psutil.Process()).children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "wandb-core" in proc.name():
                found.append(proc)
    return found


def kill_wandb_core() -> int:
    """Kill this process's wandb-core service for real and wait until it is gone.

    Returns:
        How many processes were killed (at least one, or the test is wrong).
    """
    procs = wandb_core_processes()
    assert procs, "no wandb-core process to kill"
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    _gone, alive = psutil.wait_procs(procs, timeout=30)
    assert not alive, alive
    return len(procs)


def wait_until_gone(procs: Sequence[psutil.Process], timeout: float) -> None:
    """Wait until ``procs`` have exited (a killed child's wandb-core, see :meth:`Child.wandb_core`).

    A child that a signal ends runs no exit hook (no ``wandb.teardown()``), so nothing in it
    waits for its wandb-core to close the run file: wandb-core closes it itself, shortly
    after. A test reads the file once wandb-core has exited, as it is left for the user.
    """
    _gone, alive = psutil.wait_procs(list(procs), timeout=timeout)
    assert not alive, f"wandb-core still running {timeout:.0f} s after the child ended: {alive}"


def staged_files(data_dir: Path) -> list[Path]:
    """The files wandb copied into its artifact staging folder (``WANDB_DATA_DIR``).

    wandb copies an artifact's files there when the artifact is logged, in the
    process that logs it: an empty list means no artifact was logged yet.
    """
    return sorted(p for p in Path(data_dir).rglob("*") if p.is_file())


def rows_logged_here(monkeypatch: object) -> list[dict[str, object]]:
    """Record every row wandb is asked to log from this (the training) process.

    Wraps our own ``wandb_bridge.adapters.wandb_sdk.RunHandle.log`` (the one call
    through which this process hands a history row to wandb; wandb itself is not
    touched). Rows logged by the logging process are not seen: it is another
    process. Returns the list the wrapper appends to.
    """
    from wandb_bridge.adapters.wandb_sdk import RunHandle

    calls: list[dict[str, object]] = []
    original = RunHandle.log

    def counting(self: RunHandle, row: object) -> None:
        calls.append(dict(row))  # type: ignore[call-overload]
        original(self, row)  # type: ignore[arg-type]

    monkeypatch.setattr(RunHandle, "log", counting)  # type: ignore[attr-defined]
    return calls
