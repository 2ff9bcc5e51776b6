"""The parts of one :class:`~wandb_bridge.core.session.Session`, built and wired together.

:class:`SessionParts` builds each part with its collaborators (constructor
injection; no part reaches into another's state), attaches them to the run at
start (:meth:`SessionParts.attach`) and closes them in turn at the end
(:meth:`SessionParts.end`). The session's public methods delegate to them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from wandb_bridge.core.checkpoint_uploads import CheckpointUploads
from wandb_bridge.core.distributed import RankKeys, detect_rank
from wandb_bridge.core.faults import FaultBoundary
from wandb_bridge.core.metrics import EPOCH_KEY, STEP_KEY
from wandb_bridge.core.ops import CloseRow, Op, UploadEnd
from wandb_bridge.core.pipeline import Pipeline
from wandb_bridge.core.resume import Resume
from wandb_bridge.core.row_path import RowPath
from wandb_bridge.core.row_sinks import UNSENT_FILE, RowRouter
from wandb_bridge.core.run_lifecycle import RunLifecycle
from wandb_bridge.core.run_markers import RunMarkers
from wandb_bridge.core.session_worker import Worker
from wandb_bridge.core.settings import Settings


@dataclass(frozen=True)
class Hooks:
    """The session's answers to the user's own wandb calls, SIGTERM and the interpreter's exit."""

    user_log: Callable[..., None]
    user_finish: Callable[[int | None], None]
    before_watch: Callable[[], None]
    sigterm: Callable[[], None]
    at_exit: Callable[[], None]


class SessionParts:
    """The parts of one session (see the module docstring).

    Args:
        settings: the session's settings.
        framework: the calling framework's name and version (checkpoint metadata, markers).
        map_key: the session's key mapping (for checkpoint scores).
    """

    def __init__(
        self, settings: Settings, framework: tuple[str | None, str | None], map_key: Callable[[str], str]
    ) -> None:
        self.rank = detect_rank()
        self.faults = faults = FaultBoundary(settings.on_error)
        self.life = RunLifecycle(settings, self.rank, faults)
        self.rows = rows = RowPath(faults)
        self.router = RowRouter(settings, faults)
        self.markers = RunMarkers(faults, lambda: rows.last_step, framework[0])
        self.uploads = CheckpointUploads(settings, faults, self.rank, self.markers, map_key, framework)
        self.resume = Resume(faults, rows)
        self.pipeline: Pipeline | None = None
        if settings.monitor is not None:
            self.uploads.policy.monitor = rows.keys(settings.monitor)

    def put(self, op: Op) -> None:
        """Queue an operation for the worker (nothing once it has stopped)."""
        pipeline = self.pipeline
        if pipeline is not None and pipeline.alive:
            pipeline.put(op)

    def attach(self, settings: Settings, hooks: Hooks) -> None:
        """Attach to a run (the lifecycle decides which) and start the worker; a no-op session when none."""
        life, faults, policy = self.life, self.faults, self.uploads.policy
        handle = life.handle = life.attach(settings, self.router.spawn)
        faults.tell_inputs()
        if handle is None:
            life.noop = True
            self.router.close(1.0)
            return
        if life.labels_ranks:
            self.rows.keys = RankKeys(self.rank.rank)  # values of the other ranks are labelled rank-<r>/...
        faults.attach_run(os.path.join(handle.dir, UNSENT_FILE) if handle.dir else None, handle.sync_command())
        # The user's own wandb.log / run.log / wandb.finish() go through the session
        # while it is attached: their values land at the current step, in order with
        # ours, and a finish first hands over what is still queued.
        guard = faults.guard
        guard("follow the user's wandb calls", handle.intercept, hooks.user_log, hooks.user_finish, hooks.before_watch)
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
        life.install_hooks(hooks.sigterm if settings.handle_sigterm else None, hooks.at_exit)

    def end(self, exit_code: int | None, finish_run: bool | None, timeout: float) -> None:
        """Hand over what is queued, close each part in turn, finish the run (see :meth:`Session.finish`)."""
        life, faults = self.life, self.faults
        if not life.begin_end():
            return
        handle, pipeline = life.handle, self.pipeline
        if handle is None or pipeline is None:
            if handle is not None and finish_run:
                life.bounded("finish the run", handle.finish_now, exit_code)
            return
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
        if self.router.unsent.named:
            faults.warn("unsent", f"Rows wandb could not take were kept in {self.router.unsent.path}.")
