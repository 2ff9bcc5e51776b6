"""What the parts of a :class:`~wandb_bridge.core.session.Session` share: its state and its error boundary.

The session is split by job: ``session.py`` (the public API and the run's
lifecycle), ``session_worker.py`` (what the background worker does with the
queued operations), ``session_rows.py`` (where finished rows go: the logging
process, wandb in this process, or the unsent-rows file) and
``session_checkpoints.py`` (checkpoint reports, markers and resuming). All of
them read and write the state set up here.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from wandb_bridge.adapters import files, signals, system, wandb_sdk
from wandb_bridge.adapters.markers import RunMarker
from wandb_bridge.adapters.row_process import RowProcess
from wandb_bridge.core import hparams
from wandb_bridge.core.checkpoints import CheckpointPolicy, Upload
from wandb_bridge.core.distributed import RankInfo, detect_rank
from wandb_bridge.core.errors import OnceWarner
from wandb_bridge.core.metrics import KeyNormalizer, RowMerger
from wandb_bridge.core.pipeline import Op, Pipeline
from wandb_bridge.core.settings import Settings

# Operations on the worker's queue.
_LOG, _CALL = "log", "call"
# Rows wandb could not take are kept in this JSON-lines file in the run folder.
UNSENT_FILE = "wandb-bridge-unsent.jsonl"
# Warning keys of W&B faults: one warning per session for all of them (see SessionBase._warn).
_FAULT_KEYS = ("fault:", "broken", "rows-out", "finish-timeout", "timeout:", "unsent")
# What a guarded worker call returns when wandb failed.
_FAILED = object()


class SessionBase:
    """State and error boundary of a session (see :class:`~wandb_bridge.core.session.Session`)."""

    settings: Settings
    framework: str | None
    framework_version: str | None

    def _reset(self) -> None:
        settings = self.settings
        self.rank: RankInfo = detect_rank()
        self.policy = CheckpointPolicy(settings.log_model, None, settings.monitor_mode)
        self._handle: wandb_sdk.RunHandle | None = None
        self._pipeline: Pipeline | None = None
        self._lock = threading.RLock()
        self._started = False
        self._finished = False
        self._noop = settings.disabled
        self._error: BaseException | None = None
        self._last_step: int | None = None
        self._keys = KeyNormalizer()
        self._merger = RowMerger()
        self._warner = OnceWarner()
        self._retained: dict[int, files.Snapshot] = {}
        self._digests: set[str] = set()
        self._alias_holder: dict[str, str] = {}  # alias -> digest of the version that holds it
        self._sampler: system.SystemSampler | None = None
        self._timing: tuple[int, float] | None = None
        self._atexit_registered = False
        self._end_uploaded: tuple[int, int] | None = None
        self._sigterm: signals.SigtermHook | None = None
        self._broken: str | None = None
        # Set with _broken when the logging process stopped taking rows: wandb-core may be
        # alive, so finish() still tries (with its deadline) to finish the run.
        self._stuck = False
        # The last rows handed to wandb: wandb-core buffers its writes, so when it dies
        # these may be missing from the run file; they are saved with the unsent rows.
        self._recent: deque[dict[str, Any]] = deque(maxlen=settings.queue_size)
        self._unsent_path: str | None = None
        # The helper process that logs plain rows (settings.log_process); started by the
        # worker with the first row. ``_rows_out_state``: "new", "on", or "off" (not
        # wanted, not possible, or ended: rows are logged from this process then).
        self._rows_out: RowProcess | None = None
        self._rows_out_state = "new"
        self.preempted = False
        self._ended_by_user = False
        self._fault_warned = False
        self._input_notes: list[str] = []
        self._watching = False  # wandb.watch is on: rows are handed over at once (see Session._before_watch)
        # Optimizer steps completed, read from the framework (set by callbacks); see Session.current_step.
        self.step_clock: Callable[[], int | None] | None = None
        # Resuming (resume_from_checkpoint): the marker found, and the highest step the
        # previous attempts recorded; log() does not record those steps again.
        self._resumed: RunMarker | None = None
        self._skip_through: int | None = None
        self._marker_indexes: set[str] = set()
        self._identity: dict[str, str | None] | None = None
        self.rows_logged = 0
        self._reported = 0  # checkpoints reported (training thread; the policy counts in the worker)
        self.checkpoints_uploaded = 0
        if settings.monitor is not None:
            self.policy.monitor = self._keys(settings.monitor)

    def _prepare_config(self, config: Mapping[str, Any]) -> dict[str, Any]:
        flat, notes = hparams.prepare_config(config)
        if notes:
            self._note_input([f"config values too large to record were shortened or left out: {', '.join(notes[:10])}"])
        return flat

    def _ensure_started(self) -> bool:
        if self._noop or self._finished:
            return False
        if self._handle is None:
            self.start()
        return self._handle is not None and not self._noop

    def _put(self, op: Op) -> None:
        pipeline = self._pipeline
        if pipeline is None:
            return
        if pipeline.alive:
            pipeline.put(op)

    def _guard(self, what: str, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except Exception as exc:
            if self.settings.on_error == "raise":
                raise
            self._warn(f"fault:{what}", f"wandb failed to {what} ({type(exc).__name__}: {exc}); training goes on.")
            return None

    def _guard_worker(self, what: str, fn: Any, *args: Any) -> Any:
        if self._broken is not None:
            return _FAILED
        try:
            return fn(*args)
        except Exception as exc:
            if self.settings.on_error == "raise" and self._error is None:
                self._error = exc
            else:
                self._warn(f"fault:{what}", f"wandb failed to {what} ({type(exc).__name__}: {exc}); training goes on.")
            return _FAILED

    def _fault(self, what: str, message: str) -> None:
        if self.settings.on_error == "raise":
            raise RuntimeError(message)
        self._warn(f"input:{what}:{message}", message)

    def _raise_pending(self) -> None:
        error, self._error = self._error, None
        if error is not None:
            raise error

    def _warn(self, key: str, message: str) -> None:
        """Warn once per ``key``; W&B faults (wandb-core gone, stuck, failing) once per session in all.

        The first fault warning says where the data is kept and how to upload it;
        what goes wrong after it is the same fault seen again (a rejected row, a
        missing checkpoint or a bad input are told each on their own).
        """
        if key.startswith(_FAULT_KEYS):
            if self._fault_warned:
                return
            self._fault_warned = True
            message = f"{message}{self._fault_hint(message)}"
        self._warner.warn(key, message, stacklevel=4)

    def _fault_hint(self, message: str) -> str:
        """What the first fault warning adds: where rows are kept and how to upload the run (unless it says so)."""
        handle = self._handle
        if handle is None:
            return ""
        parts = []
        unsent = self._unsent_file()
        if self.run_dir and unsent not in message:
            parts.append(f"Rows wandb cannot take are kept in {unsent}.")
        command = handle.sync_command()
        if command not in message:
            parts.append(f"What was recorded can be uploaded with: {command}")
        return "".join(f" {part}" for part in parts)

    def _unsent_file(self) -> str:
        """The unsent-rows file: ``wandb-bridge-unsent.jsonl`` in the run's files folder."""
        return os.path.join(self.run_dir or self.settings.dir or ".", UNSENT_FILE)

    def _note_input(self, notes: list[str]) -> None:
        """Inputs changed to fit W&B's limits (tags, config sizes): told in one warning (see :meth:`_tell_inputs`)."""
        self._input_notes.extend(notes)

    def _tell_inputs(self) -> None:
        notes, self._input_notes = self._input_notes, []
        if notes:
            self._warn("inputs:" + "|".join(notes), f"Inputs changed to fit W&B's limits: {'; '.join(notes[:10])}.")

    @property
    def run_id(self) -> str | None:
        """The run id, once started."""
        return None if self._handle is None else self._handle.id

    @property
    def run_dir(self) -> str | None:
        """The run's local files folder, once started."""
        return None if self._handle is None else self._handle.dir

    def start(self) -> Any:
        """Attach to a run (implemented by :class:`~wandb_bridge.core.session.Session`)."""
        raise NotImplementedError

    def _upload_checkpoint(self, upload: Upload, snap: files.Snapshot) -> Any:
        """Upload one checkpoint (worker; implemented in ``session_worker.py``); the logged artifact or None."""
        raise NotImplementedError


def _reraise(exc: BaseException) -> None:
    raise exc
