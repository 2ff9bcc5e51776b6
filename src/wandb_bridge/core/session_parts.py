"""The parts of one :class:`~wandb_bridge.core.session.Session`, built and wired together.

:class:`SessionParts` builds each part with its collaborators (constructor
injection; no part reaches into another's state), attaches them to the run at
start (:meth:`SessionParts.attach`) and closes them in turn at the end
(:meth:`SessionParts.end`). The session's public methods delegate to them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from time import perf_counter
from typing import Any, Generic, TypeVar, overload

from wandb_bridge.adapters import wandb_sdk
from wandb_bridge.adapters.markers import RunMarker
from wandb_bridge.core.checkpoint_uploads import CheckpointUploads
from wandb_bridge.core.distributed import detect_rank
from wandb_bridge.core.faults import FaultBoundary
from wandb_bridge.core.metrics import EPOCH_KEY, STEP_KEY, Stage
from wandb_bridge.core.ops import CloseRow, LogRow, Op, RowsHere, UploadEnd
from wandb_bridge.core.pipeline import Pipeline
from wandb_bridge.core.resume import Resume
from wandb_bridge.core.row_path import RowPath, hand_over
from wandb_bridge.core.row_sinks import UNSENT_FILE, RowRouter
from wandb_bridge.core.run_lifecycle import RunLifecycle, uncaught_exit_code
from wandb_bridge.core.run_markers import RunMarkers
from wandb_bridge.core.session_worker import Worker
from wandb_bridge.core.settings import Settings

T = TypeVar("T")
# Builds a LogRow from a tuple of its fields in half the time of LogRow(...) (the named tuple's own __new__).
_row = tuple.__new__


class View(Generic[T]):
    """A property of the session that reads (and, given ``write``, sets) a value one of its parts owns.

    Args:
        read: ``read(session)``: the value.
        doc: the property's docstring.
        write: ``write(session, value)``; None: read-only.
    """

    def __init__(self, read: Callable[[Any], T], doc: str, write: Callable[[Any, T], None] | None = None) -> None:
        self._read = read
        self._write = write
        self.__doc__ = doc
        self._name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> View[T]: ...

    @overload
    def __get__(self, obj: object, owner: type | None = None) -> T: ...

    def __get__(self, obj: object | None, owner: type | None = None) -> T | View[T]:
        return self if obj is None else self._read(obj)

    def __set__(self, obj: object, value: T) -> None:
        if self._write is None:
            raise AttributeError(f"property {self._name!r} of {type(obj).__name__!r} object has no setter")
        self._write(obj, value)


class SessionParts:
    """The parts of one session and the order in which they start, work and end (see the module docstring).

    Args:
        settings: the session's settings (a resume may change them before start).
        framework: the calling framework's name and version (checkpoint metadata, markers).
    """

    def __init__(self, settings: Settings, framework: tuple[str | None, str | None]) -> None:
        self.settings = settings
        self.rank = detect_rank()
        self.faults = faults = FaultBoundary(settings.on_error)
        self.life = RunLifecycle(settings, self.rank, faults)
        self.rows = rows = RowPath(faults)
        self.router = RowRouter(settings, faults, lambda: rows.stamp, lambda: rows.first_stamp, self._queue_busy)
        self.markers = RunMarkers(faults, lambda: rows.last_step, framework[0])
        self.uploads = CheckpointUploads(settings, faults, self.rank, self.markers, rows.map_key, framework, self.put)
        self.resume = Resume(faults, rows)
        self.pipeline: Pipeline | None = None
        self.watching = False  # wandb.watch is on: rows are handed over at once (see before_watch)
        if settings.monitor is not None:
            self.uploads.policy.monitor = rows.keys(settings.monitor)

    def _queue_busy(self) -> tuple[int, float | None]:
        """The queue's waits for room so far, and the hand-over time of its newest row (``log_process="auto"``)."""
        pipeline = self.pipeline
        if pipeline is None:
            return 0, None
        newest = pipeline.newest()
        return pipeline.waits, newest.stamp if isinstance(newest, LogRow) else None

    @property
    def handle(self) -> wandb_sdk.RunHandle:
        """The attached run (only called once :meth:`ensure_started` said so)."""
        handle = self.life.handle
        assert handle is not None
        return handle

    def put(self, op: Op) -> None:
        """Queue an operation for the worker (nothing once it has stopped)."""
        pipeline = self.pipeline
        if pipeline is not None and pipeline.alive:
            pipeline.put(op)

    # ---------------------------------------------------------------- start

    def start(self) -> Any:
        """Attach to a run (once); the run or None."""
        self.life.start_once(self._attach_once)
        return self.life.run

    def ensure_started(self) -> bool:
        """Start when not yet started; True when there is a run to record into."""
        life = self.life
        if life.noop or life.finished:
            return False
        if life.handle is None:
            self.start()
        return life.handle is not None and not life.noop

    def _attach_once(self) -> None:
        life, settings = self.life, self.settings
        if not life.noop and settings.rank_zero_only and not self.rank.is_zero:
            life.disable()
        if life.noop:
            return
        resume = settings.resume_from_checkpoint
        if resume is not None and self.resume.resumed is None and self.resume_from(resume, None) is None:
            self.faults.warn(
                "resume:none",
                f"No run marker beside {resume!r} (it was not saved through wandb-bridge, or the marker file "
                "was not copied with it); this training starts a new run unless id= is given.",
            )
        self._attach(self.settings)

    def _attach(self, settings: Settings) -> None:
        life, faults, policy = self.life, self.faults, self.uploads.policy
        handle = life.attach(settings, self.router.spawn)
        faults.tell_inputs()
        if handle is None:
            self.router.close(1.0)
            return
        if life.labels_ranks:
            self.rows.label_rank(self.rank.rank)
        faults.attach_run(os.path.join(handle.dir, UNSENT_FILE) if handle.dir else None, handle.sync_command())
        # The user's own wandb.log / run.log / wandb.finish() go through the session
        # while it is attached: their values land at the current step, in order with
        # ours, and a finish first hands over what is still queued.
        guard = faults.guard
        guard("follow the user's wandb calls", handle.intercept, self.user_log, self.user_finish, self.before_watch)
        guard("define the step axis", handle.define_step_axis, STEP_KEY, EPOCH_KEY)
        if policy.monitor is not None:
            guard("define the monitored metric", handle.define_summary, policy.monitor, policy.monitor_mode)
        if settings.system_stats:
            self.rows.sample_system()
        self.markers.attach(handle)
        self.uploads.attach(handle)
        self.router.start(handle)
        life.take_over(handle)
        worker = Worker(settings, handle, (faults, self.rows, self.router, self.markers, self.uploads))
        self.pipeline = Pipeline(worker.drain, settings.queue_size, name=f"wandb-bridge-{handle.id}")
        self.pipeline.start()
        life.install_hooks(self.on_sigterm if settings.handle_sigterm else None, self.at_exit)

    def resume_from(self, path: str | os.PathLike[str], step: int | None) -> RunMarker | None:
        """Resume from a checkpoint (see :meth:`Session.resume_from_checkpoint`)."""
        life = self.life
        with life.lock:
            marker, self.settings = self.resume.resume(path, step, self.settings, life.run_id, life.started)
        return marker

    # ------------------------------------------------------------------ work

    def log(
        self,
        metrics: Mapping[str, Any],
        step: int | None,
        epoch: float | None,
        stage: Stage,
        samples: int | None,
        keep_keys: bool,
    ) -> None:
        """Hand values over for the row of their step (see :meth:`Session.log`)."""
        life = self.life
        if not life.started and not life.noop and not life.finished:
            self.start()
        if life.noop or life.finished:
            if life.ended_by_user:
                self.faults.warn(
                    "ended-by-user",
                    "The run was finished by wandb.finish() / run.finish(); values logged after it are not recorded "
                    "(the next fit or train starts a new run).",
                )
            return
        faults = self.faults
        if faults.pending:
            faults.raise_pending()
        rows = self.rows
        if step is None or rows.last_step is None or step > rows.last_step:
            step = rows.step_of(step, keep_keys)
        if rows.skips(step):
            self.resume.warn_skipped(life.run_id)
            return
        # (the hot path of every metric a framework logs: written out, not delegated)
        values, plain = hand_over(metrics)
        if keep_keys:  # a direct call (wandb.log, experiment.log, log_image): keys as written
            op = _row(LogRow, (step, epoch, None, values, perf_counter(), None, plain))
        else:
            op = _row(LogRow, (step, epoch, stage, values, perf_counter(), samples, plain))
        pipeline = self.pipeline
        if pipeline is not None and pipeline.alive:
            pipeline.put(op)
        if self.watching and self.pipeline is not None:
            self.pipeline.barrier(self.settings.finish_timeout)

    def flush(self, timeout: float | None) -> bool:
        """Close the open row and wait for the worker; False when ``timeout`` passed first."""
        pipeline = self.pipeline
        if pipeline is None or self.life.finished:
            return True
        self.put(CloseRow())
        done = pipeline.barrier(self.settings.finish_timeout if timeout is None else timeout)
        self.faults.raise_pending()
        return done

    def before_watch(self) -> None:
        """``watch`` adds its histograms to the row this process commits next.

        So from now on rows are logged from this process, and each ``log`` waits
        until its values were handed to wandb (as with the native integrations):
        every histogram lands in the row of its step or the one after it.
        """
        self.watching = True
        self.put(RowsHere())

    def user_log(self, data: Mapping[str, Any], step: int | None, commit: bool | None) -> None:
        """The user's own ``wandb.log`` / ``run.log``: keys as written, at the current step (or ``step``)."""
        del commit  # a step's values share one row whatever commit says
        if not isinstance(data, Mapping):
            raise TypeError(f"wandb.log takes a dict of values, got {type(data).__name__}")
        self.log(data, step, None, "train", None, keep_keys=True)

    # ------------------------------------------------------------------- end

    def user_finish(self, exit_code: int | None) -> None:
        """``wandb.finish()`` / ``run.finish()`` by the user: hand over everything queued, then finish the run."""
        self.end(exit_code, finish_run=True, by_user=True)

    def on_sigterm(self) -> None:
        """Pre-emption: flush what is queued, mark the run preempting, finish it (exit code 143).

        When the process does not end right away (a framework's own SIGTERM
        handling stops training at the end of the step, and may save a
        checkpoint first), the run is flushed and marked preempting but stays
        open: what the framework still logs and saves is recorded, and the
        framework's end (or the process exit) finishes the run.
        """
        life = self.life
        if life.owns_run:
            self.faults.guard("mark the run preempting", self.handle.mark_preempting)
            if life.terminating:
                self.end(143, finish_run=None)
                return
        self.flush(None)
        self.markers.record_progress()

    def at_exit(self) -> None:
        """The interpreter exits: finish with the exit code of an uncaught exception, if any."""
        try:
            self.end(uncaught_exit_code(), finish_run=None)
        except Exception:
            pass

    def end(self, exit_code: int | None, finish_run: bool | None, by_user: bool = False) -> None:
        """Hand over what is queued, close each part in turn, finish the run (see :meth:`Session.finish`)."""
        life, faults = self.life, self.faults
        if not life.begin_end(by_user):
            return
        handle, pipeline = life.handle, self.pipeline
        if handle is None or pipeline is None:
            if handle is not None and finish_run:
                life.bounded("finish the run", handle.finish_now, exit_code)
            return
        timeout = self.settings.finish_timeout
        self.put(UploadEnd(only_if_new=True, final=True))
        self.put(CloseRow())
        drained = pipeline.stop(timeout)
        if not drained:
            faults.warn(
                "finish-timeout",
                f"wandb-bridge could not hand everything to wandb within {timeout:.0f} s; "
                f"what was recorded so far can be uploaded with: {handle.sync_command()}",
            )
        self.router.close(timeout, stuck=not drained)  # a stuck worker: stop the logging process, keep its rows
        self.uploads.close()
        self.markers.record_progress()
        life.end_run(exit_code, finish_run)
        faults.raise_pending()
        kept_in = self.router.kept_in
        if kept_in is not None:
            faults.warn("unsent", f"Rows wandb could not take were kept in {kept_in}.")
