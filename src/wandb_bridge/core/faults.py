"""A session's fault boundary: W&B failures become one warning each, or an error under ``on_error="raise"``.

:class:`FaultBoundary` owns the session's fault state: whether wandb-core is
gone (``broken``) or only stopped taking rows (``stuck``), the error the worker
keeps for the training thread, the one-warning-per-W&B-fault latch and the
hint that first warning carries (where rows are kept, how to upload the run).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from wandb_bridge.core.errors import OnceWarner

# Warning keys of W&B faults: one warning per session for all of them (see FaultBoundary.warn).
_FAULT_KEYS = ("fault:", "broken", "rows-out", "finish-timeout", "timeout:", "unsent")


class Failed:
    """What a guarded worker call returns when wandb failed (:data:`FAILED`)."""

    __slots__ = ()


FAILED = Failed()


class FaultBoundary:
    """The error boundary of one session (see the module docstring).

    Args:
        on_error: ``"warn"`` or ``"raise"`` (the ``on_error`` setting).
    """

    def __init__(self, on_error: Literal["warn", "raise"] | str) -> None:
        self.on_error = on_error
        self.warner = OnceWarner()
        self.broken: str | None = None  # why wandb takes no more rows (see break_off)
        # Set with broken when the logging process stopped taking rows: wandb-core may be
        # alive, so finishing still tries (with its deadline) to finish the run.
        self._stuck = False
        self._error: BaseException | None = None
        self._fault_warned = False
        self._input_notes: list[str] = []
        self._unsent_file: str | None = None
        self._sync_command: str | None = None

    def attach_run(self, unsent_file: str | None, sync_command: str) -> None:
        """What the first fault warning names: the unsent-rows file (None: no run folder) and the upload command."""
        self._unsent_file, self._sync_command = unsent_file, sync_command

    def break_off(self, why: str, stuck: bool = False) -> None:
        """wandb takes no more rows (``stuck``: it stopped answering, but may still be there); later calls are cheap."""
        self.broken = why
        self._stuck = stuck

    @property
    def core_alive(self) -> bool:
        """False once wandb-core is known to be gone (a run is then marked dead, not finished)."""
        return self.broken is None or self._stuck

    @property
    def sync_command(self) -> str | None:
        """``wandb sync <folder>`` for the run, once attached."""
        return self._sync_command

    def guard(self, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        """Call ``fn`` on the training thread; a failure warns (None returned) or raises under ``on_error="raise"``."""
        try:
            return fn(*args)
        except Exception as exc:
            if self.on_error == "raise":
                raise
            self.warn(f"fault:{what}", f"wandb failed to {what} ({type(exc).__name__}: {exc}); training goes on.")
            return None

    def guard_worker(self, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        """Call ``fn`` on the worker: :data:`FAILED` when it failed or wandb-core is gone (not called then).

        Under ``on_error="raise"`` the first error is kept for the training thread (:meth:`raise_pending`).
        """
        if self.broken is not None:
            return FAILED
        try:
            return fn(*args)
        except Exception as exc:
            if not self.keep_error(exc):
                self.warn(f"fault:{what}", f"wandb failed to {what} ({type(exc).__name__}: {exc}); training goes on.")
            return FAILED

    def keep_error(self, error: BaseException) -> bool:
        """Under ``on_error="raise"``, keep the first error for the training thread; True when kept."""
        if self.on_error == "raise" and self._error is None:
            self._error = error
            return True
        return False

    @property
    def pending(self) -> bool:
        """True while an error waits for the training thread."""
        return self._error is not None

    def raise_pending(self) -> None:
        """Raise (once) the error the worker kept."""
        error, self._error = self._error, None
        if error is not None:
            raise error

    def input_fault(self, what: str, message: str) -> None:
        """A bad input (a missing checkpoint, say): a warning per message, an error under ``on_error="raise"``."""
        if self.on_error == "raise":
            raise RuntimeError(message)
        self.warn(f"input:{what}:{message}", message)

    def warn(self, key: str, message: str) -> None:
        """Warn once per ``key``; W&B faults (wandb-core gone, stuck, failing) once per session in all.

        The first fault warning says where the data is kept and how to upload it;
        what goes wrong after it is the same fault seen again (a rejected row, a
        missing checkpoint or a bad input are told each on their own).
        """
        if key.startswith(_FAULT_KEYS):
            if self._fault_warned:
                return
            self._fault_warned = True
            message = f"{message}{self._hint(message)}"
        self.warner.warn(key, message, stacklevel=4)

    def _hint(self, message: str) -> str:
        command = self._sync_command
        if command is None:
            return ""
        parts = []
        unsent = self._unsent_file
        if unsent is not None and unsent not in message:
            parts.append(f"Rows wandb cannot take are kept in {unsent}.")
        if command not in message:
            parts.append(f"What was recorded can be uploaded with: {command}")
        return "".join(f" {part}" for part in parts)

    def note_input(self, notes: list[str]) -> None:
        """Inputs changed to fit W&B's limits (tags, config sizes): told in one warning (see :meth:`tell_inputs`)."""
        self._input_notes.extend(notes)

    def tell_inputs(self) -> None:
        """The one warning for the inputs noted so far."""
        notes, self._input_notes = self._input_notes, []
        if notes:
            self.warn("inputs:" + "|".join(notes), f"Inputs changed to fit W&B's limits: {'; '.join(notes[:10])}.")
