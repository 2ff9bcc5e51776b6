"""The public "add W&B to any library" API: :class:`Session`, a facade over the parts of a run.

Every framework callback talks to one :class:`Session`. The training thread
only hands values over; a background worker maps keys, merges one step's
values into one row, reads tensors, hashes checkpoints and calls wandb. The
session composes parts that each own their state (docs/architecture.md):
:class:`~wandb_bridge.core.faults.FaultBoundary` (the error boundary and its
warnings), :class:`~wandb_bridge.core.run_lifecycle.RunLifecycle` (attach,
ownership, SIGTERM and exit hooks, finish),
:class:`~wandb_bridge.core.row_path.RowPath` (steps, keys, one row per step),
:class:`~wandb_bridge.core.row_sinks.RowRouter` (where rows go),
:class:`~wandb_bridge.core.checkpoint_uploads.CheckpointUploads`,
:class:`~wandb_bridge.core.run_markers.RunMarkers` and
:class:`~wandb_bridge.core.resume.Resume` (checkpoints, markers, resuming),
and the :class:`~wandb_bridge.core.session_worker.Worker` draining the
:class:`~wandb_bridge.core.pipeline.Pipeline` of typed operations.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any

from wandb_bridge.adapters import files, wandb_sdk
from wandb_bridge.adapters.markers import RunMarker
from wandb_bridge.core import health, hparams
from wandb_bridge.core.checkpoints import CheckpointPolicy
from wandb_bridge.core.errors import WandbBridgeWarning
from wandb_bridge.core.metrics import Stage, flatten_metrics
from wandb_bridge.core.ops import Call, CloseRow, HealthRow, RowsHere, Summary, UploadEnd, UploadFiles
from wandb_bridge.core.run_lifecycle import exit_code_for, prepared_config, uncaught_exit_code
from wandb_bridge.core.session_parts import Hooks, SessionParts
from wandb_bridge.core.settings import Settings


class Session:
    """A W&B run seen through wandb-bridge's run contract.

    The run starts lazily (first ``log`` or an explicit :meth:`start`). A run
    found already active (``run=`` or ``wandb.run``) is used and left open; a run
    the session started is finished by it, once, with exit code 0, or non-zero
    when the ``with`` block ends by an exception.

    Example:
        >>> with Session(project="demo", mode="offline") as session:  # doctest: +SKIP
        ...     session.log({"loss": 0.5}, step=1)       # -> train/loss at trainer/global_step=1
        ...     session.log({"val_loss": 0.6}, step=1)   # -> val/loss, same row

    Args:
        project, entity, name, group, tags, job_type, notes, config, mode, dir, id,
        resume, run, log_model, checkpoint_name, monitor, monitor_mode,
        system_stats, rank_zero_only, on_error: the shared arguments of
            docs/settings.md; ``WANDB_*`` variables fill in what is not given.
        framework: the name of the calling framework (for checkpoint metadata).
        framework_version: its version.
        bridge_settings: an already resolved :class:`Settings` (callbacks use this);
            the other arguments are ignored then.
        **init_kwargs: passed on to ``wandb.init`` (``settings=`` included).
    """

    def __init__(
        self,
        project: str | None = None,
        entity: str | None = None,
        name: str | None = None,
        *,
        framework: str | None = None,
        framework_version: str | None = None,
        bridge_settings: Settings | None = None,
        **kwargs: Any,
    ) -> None:
        if bridge_settings is None:
            bridge_settings = Settings.resolve(project=project, entity=entity, name=name, **kwargs)
        self.settings = bridge_settings
        self.framework = framework
        self.framework_version = framework_version
        self._compose()

    def _compose(self) -> None:
        """Build the parts (at construction and after unpickling)."""
        self._parts = parts = SessionParts(self.settings, (self.framework, self.framework_version), self.map_key)
        self.rank = parts.rank
        self._faults, self._life, self._rows = parts.faults, parts.life, parts.rows
        self._watching = False  # wandb.watch is on: rows are handed over at once (see _before_watch)

    # ------------------------------------------------------------ properties

    @property
    def run(self) -> Any:
        """The wandb run in use, or None (not started, disabled, or not rank zero)."""
        handle = self._life.handle
        return None if handle is None else handle.run

    @property
    def run_id(self) -> str | None:
        """The run id, once started."""
        handle = self._life.handle
        return None if handle is None else handle.id

    @property
    def run_dir(self) -> str | None:
        """The run's local files folder, once started."""
        handle = self._life.handle
        return None if handle is None else handle.dir

    @property
    def enabled(self) -> bool:
        """False when this session is a no-op (disabled, non-zero rank, or failed)."""
        return not self._life.noop

    @property
    def started(self) -> bool:
        """True once a run is attached."""
        return self._life.handle is not None

    @property
    def finished(self) -> bool:
        """True once :meth:`finish` ran."""
        return self._life.finished

    @property
    def owns_run(self) -> bool:
        """True when this session started the run (and so finishes it)."""
        handle = self._life.handle
        return handle is not None and handle.owned

    @property
    def ended_by_user(self) -> bool:
        """True when the run was finished by the user (``wandb.finish()``, ``run.finish()``), not by this session."""
        return self._life.ended_by_user

    @property
    def preempted(self) -> bool:
        """True once SIGTERM reached the session."""
        return self._life.preempted

    @property
    def sync_command(self) -> str | None:
        """``wandb sync <folder>`` for this run, once started."""
        handle = self._life.handle
        return None if handle is None else handle.sync_command()

    @property
    def config(self) -> dict[str, Any]:
        """The run's config as wandb holds it (sweep values included); empty before start."""
        handle = self._life.handle
        if handle is None:
            return {}
        return self._faults.guard("read config", handle.config) or {}

    @property
    def last_step(self) -> int | None:
        """The highest global step logged so far."""
        return self._rows.last_step

    @property
    def step_clock(self) -> Callable[[], int | None] | None:
        """Optimizer steps completed, read from the framework (set by callbacks); see :attr:`current_step`."""
        return self._rows.step_clock

    @step_clock.setter
    def step_clock(self, clock: Callable[[], int | None] | None) -> None:
        self._rows.step_clock = clock

    @property
    def current_step(self) -> int:
        """The global step a value logged now without a step belongs to.

        The framework's step (:attr:`step_clock`, optimizer steps completed) when a
        callback set one, else the last step logged; at least 1 (the first row's step).
        """
        return self._rows.current_step

    @property
    def rows_logged(self) -> int:
        """History rows logged so far (from this process and the logging process)."""
        return self._parts.router.logged

    @property
    def policy(self) -> CheckpointPolicy:
        """The checkpoint policy (``log_model``, the monitor and its mode)."""
        return self._parts.uploads.policy

    @property
    def monitor(self) -> str | None:
        """The recorded key of the monitored metric, if any."""
        return self.policy.monitor

    @property
    def has_checkpoints(self) -> bool:
        """True once any checkpoint was reported with :meth:`log_checkpoint`."""
        return self._parts.uploads.reported > 0

    @property
    def checkpoints_uploaded(self) -> int:
        """Checkpoint versions logged so far."""
        return self._parts.uploads.uploaded

    @property
    def public_api_factory(self) -> Any:
        """A callable returning the public ``wandb.Api`` used by ``keep_checkpoints`` (None: the real one)."""
        return self._parts.uploads.public_api_factory

    @public_api_factory.setter
    def public_api_factory(self, factory: Any) -> None:
        self._parts.uploads.public_api_factory = factory

    @property
    def retention_log(self) -> list[Any]:
        """What each ``keep_checkpoints`` pass deleted (online runs)."""
        return self._parts.uploads.retention_log

    @property
    def resumed_from(self) -> RunMarker | None:
        """The marker of the checkpoint this training resumes from (see :meth:`resume_from_checkpoint`)."""
        return self._parts.resume.resumed

    # ------------------------------------------------------------- lifecycle

    def start(self) -> Any:
        """Attach to a run now (idempotent).

        Returns:
            The wandb run, or None when the session is a no-op.
        """
        life = self._life
        if life.started:
            return self.run
        with life.lock:
            if life.started:
                return self.run
            try:
                self._attach_once()
            finally:
                # Set last: other threads calling log() meanwhile wait on the lock
                # instead of finding a half-started session.
                life.started = True
        return self.run

    def _attach_once(self) -> None:
        life = self._life
        if life.noop:
            return
        if self.settings.rank_zero_only and not self.rank.is_zero:
            life.noop = True
            return
        resume = self.settings.resume_from_checkpoint
        if resume is not None and self.resumed_from is None and self.resume_from_checkpoint(resume) is None:
            self._faults.warn(
                "resume:none",
                f"No run marker beside {resume!r} (it was not saved through wandb-bridge, or the marker file "
                "was not copied with it); this training starts a new run unless id= is given.",
            )
        hooks = Hooks(self._user_log, self._user_finish, self._before_watch, self._on_sigterm, self._at_exit)
        self._parts.attach(self.settings, hooks)

    def _ensure_started(self) -> bool:
        life = self._life
        if life.noop or life.finished:
            return False
        if life.handle is None:
            self.start()
        return life.handle is not None and not life.noop

    def finish(self, exit_code: int | None = None) -> None:
        """Flush what is queued, upload end-of-run checkpoints and finish the run if this session started it.

        Idempotent. Waits at most ``finish_timeout`` seconds for the queue; past
        that it warns with the command that uploads what was recorded. A run the
        session found active (the user's, a sweep agent's) is left open.

        Args:
            exit_code: 0 for success, non-zero for a failed run. None lets wandb
                decide (0, or 1 after an uncaught exception).
        """
        self._parts.end(exit_code, None, self.settings.finish_timeout)

    def close(self, exit_code: int | None = None) -> None:
        """Alias of :meth:`finish`."""
        self.finish(exit_code)

    def _user_finish(self, exit_code: int | None) -> None:
        """``wandb.finish()`` / ``run.finish()`` by the user: hand over everything queued, then finish the run."""
        self._life.ended_by_user = True
        self._parts.end(exit_code, True, self.settings.finish_timeout)

    def _user_log(self, data: Mapping[str, Any], step: int | None, commit: bool | None) -> None:
        """The user's own ``wandb.log`` / ``run.log``: keys as written, at the current step (or ``step``)."""
        del commit  # a step's values share one row whatever commit says
        if not isinstance(data, Mapping):
            raise TypeError(f"wandb.log takes a dict of values, got {type(data).__name__}")
        self.log(data, step, keep_keys=True)

    def _on_sigterm(self) -> None:
        """Pre-emption: flush what is queued, mark the run preempting, finish it (exit code 143).

        When the process does not end right away (a framework's own SIGTERM
        handling stops training at the end of the step, and may save a
        checkpoint first), the run is flushed and marked preempting but stays
        open: what the framework still logs and saves is recorded, and the
        framework's end (or the process exit) finishes the run.
        """
        life = self._life
        life.preempted = True
        handle = life.handle
        if handle is not None and handle.owned:
            self._faults.guard("mark the run preempting", handle.mark_preempting)
            if life.terminating:
                self.finish(exit_code=143)
                return
        self.flush()
        self._parts.markers.record_progress()

    def _at_exit(self) -> None:
        try:
            self.finish(uncaught_exit_code())
        except Exception:
            pass

    def __enter__(self) -> Session:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.finish(exit_code_for(exc))

    def __getstate__(self) -> dict[str, Any]:
        # Sessions travel into spawned workers (ddp_spawn): only the settings do.
        return {
            "settings": self.settings.with_changes(run=None),
            "framework": self.framework,
            "framework_version": self.framework_version,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.settings = state["settings"]
        self.framework = state["framework"]
        self.framework_version = state["framework_version"]
        self._compose()

    # --------------------------------------------------------------- logging

    def log(
        self,
        metrics: Mapping[str, Any],
        step: int | None = None,
        *,
        epoch: float | None = None,
        stage: Stage = "train",
        samples: int | None = None,
        keep_keys: bool = False,
    ) -> None:
        """Record values at a global step (hot path: only hands them to the worker).

        Keys are mapped as in the run contract, docs/run-contract.md (``val_loss`` -> ``val/loss``,
        ``loss`` -> ``<stage>/loss``); everything logged for one step lands in one
        row. Values may be Python or numpy numbers or single-element tensors
        (read later, many at once); NaN/inf are recorded with one warning per
        key; strings, None and multi-element values are skipped with one warning
        per key.

        Args:
            metrics: ``name -> value``; nested mappings are joined with ``/``.
            step: the global step (optimizer steps completed); None means the
                step after the last one logged.
            epoch: the (fractional) epoch, recorded as ``trainer/epoch``.
            stage: where unprefixed names go: ``"train"``, ``"val"`` or ``"test"``.
            samples: samples processed in this step, for ``perf/`` throughput.
            keep_keys: record the keys as written (values the user names in a direct
                call: ``wandb.log``, ``experiment.log``, ``log_image``); ``step`` None
                then means the current step (:attr:`current_step`), not the next one.
        """
        life = self._life
        if life.noop or life.finished:
            if life.ended_by_user:
                self._faults.warn(
                    "ended-by-user",
                    "The run was finished by wandb.finish() / run.finish(); values logged after it are not recorded "
                    "(the next fit or train starts a new run).",
                )
            return
        if not life.started:
            self.start()
            if life.noop:
                return
        if self._faults.pending:
            self._faults.raise_pending()
        rows = self._rows
        step = rows.step_of(step, keep_keys)
        if rows.skips(step):
            self._parts.resume.warn_skipped(self.run_id)
            return
        self._parts.put(rows.op(step, metrics, epoch, stage, samples, keep_keys))
        if self._watching and self._parts.pipeline is not None:
            self._parts.pipeline.barrier(self.settings.finish_timeout)

    def log_config(self, config: Mapping[str, Any]) -> None:
        """Add values to the run config (flattened, JSON-safe, secrets redacted)."""
        if not config or not self._ensure_started():
            return
        flat = prepared_config(config, self._faults)
        self._faults.tell_inputs()
        handle = self._life.handle
        assert handle is not None
        self._parts.put(Call("update_config", handle.update_config, (flat,)))

    def log_summary(self, values: Mapping[str, Any], stage: Stage = "train") -> None:
        """Set summary values (keys mapped like metrics), e.g. end-of-training figures."""
        if not values or not self._ensure_started():
            return
        keys = self._rows.keys
        self._parts.put(Summary({keys(str(k), stage): v for k, v in flatten_metrics(values)}))

    def define_monitor(self, monitor: str | None, mode: str | None = None, stage: Stage = "val") -> None:
        """Set the monitored metric (and ``"min"``/``"max"``) after construction.

        Frameworks learn it late (``ModelCheckpoint(monitor=...)``,
        ``metric_for_best_model``); the summary then keeps its best value.
        """
        if monitor is None:
            return
        key = self._rows.keys(monitor, stage)
        policy = self.policy
        policy.monitor = key
        if mode in ("min", "max"):
            policy.monitor_mode = mode  # type: ignore[assignment]
        handle = self._life.handle
        if handle is not None and not self._life.noop:
            self._parts.put(Call("define_summary", handle.define_summary, (key, policy.monitor_mode)))

    def map_key(self, key: str, stage: Stage = "train") -> str:
        """The recorded name of a framework's metric name (see :func:`~wandb_bridge.core.metrics.normalize_key`)."""
        return self._rows.keys(key, stage)

    def flush(self, timeout: float | None = None) -> bool:
        """Close the open row and wait until everything queued reached wandb.

        Returns:
            False when ``timeout`` passed first.
        """
        if self._parts.pipeline is None or self._life.finished:
            return True
        self._parts.put(CloseRow())
        done = self._parts.pipeline.barrier(self.settings.finish_timeout if timeout is None else timeout)
        self._faults.raise_pending()
        return done

    def wandb_type(self, kind: str, *args: Any, **kwargs: Any) -> Any:
        """Build a wandb data type (``"Table"``, ``"Image"``, ``"Audio"``, ``"Video"``, ``"Html"``)."""
        return wandb_sdk.make(kind, *args, **kwargs)

    def mark_preempting(self) -> None:
        """Mark the run as pre-empted (it may be resumed with the same id)."""
        handle = self._life.handle
        if handle is not None:
            self._faults.guard("mark the run preempting", handle.mark_preempting)

    def watch(self, model: Any, log: str | None = "gradients", log_freq: int = 100) -> None:
        """Log gradients and/or parameters of a torch model (``wandb.watch``)."""
        if self._ensure_started():
            handle = self._life.handle
            assert handle is not None
            self._before_watch()
            self._faults.guard("watch the model", handle.watch, model, log, log_freq)

    def _before_watch(self) -> None:
        """``watch`` adds its histograms to the row this process commits next.

        So from now on rows are logged from this process, and each ``log`` waits
        until its values were handed to wandb (as with the native integrations):
        every histogram lands in the row of its step or the one after it.
        """
        self._watching = True
        self._parts.put(RowsHere())

    def health_monitor(self, owner: str = "Session") -> Any:
        """A torch health monitor recording into this session, or None when ``log_health`` is off.

        Call its ``before_step(step, model)`` right before ``optimizer.step()`` and
        its ``after_step()`` right after (docs/health.md); the figures land under
        ``health/`` in the row of ``step``. It costs nothing between health steps.
        """
        return health.monitor(self.settings, self.hand_over_health, owner=owner)

    def hand_over_health(self, step: int, keys: Sequence[str], values: Any, histograms: Mapping[str, Any]) -> None:
        """Queue a health vector (one device tensor, one number per key) for ``step``; the worker reads it."""
        if not self._ensure_started() or self._rows.skips(step):
            return
        self._parts.put(HealthRow(step, tuple(keys), values, dict(histograms)))

    def use_artifact(self, name: str, kind: str | None = None, aliases: Sequence[str] | None = None) -> Any:
        """Declare an artifact as an input of the run and return it (None when a no-op)."""
        if not self._ensure_started():
            return None
        handle = self._life.handle
        assert handle is not None
        self.flush()
        return self._faults.guard("use an artifact", handle.use_artifact, name, kind, aliases)

    @staticmethod
    def download_artifact(
        name: str,
        save_dir: str | os.PathLike[str] | None = None,
        kind: str | None = None,
        use_artifact: bool = True,
    ) -> str:
        """Download an artifact (``"entity/project/name:alias"``) and return its local folder.

        Needs no session: through the active run (recorded as its input) when
        there is one and ``use_artifact`` is true, else through the public API.
        Errors (no server, no such artifact) are raised: the caller asked for
        the files.
        """
        root = None if save_dir is None else os.fspath(save_dir)
        return wandb_sdk.download_artifact(name, root, kind, use_artifact)

    def log_artifact(
        self,
        path: str | os.PathLike[str],
        name: str,
        kind: str = "dataset",
        aliases: Sequence[str] = (),
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        """Log a file or folder as an artifact (hashed and staged off the training thread)."""
        if not self._ensure_started():
            return
        try:
            snap = files.snapshot(os.fspath(path))
        except OSError as exc:
            self._faults.input_fault("artifact", f"artifact {name!r} skipped: {exc}")
            return
        meta = hparams.to_json_safe(dict(metadata or {}))
        self._parts.put(UploadFiles(snap, name, kind, tuple(aliases), meta))

    # ----------------------------------------------------------- checkpoints

    def upload_end_checkpoints(self) -> None:
        """Upload now what ``log_model="end"`` would upload at :meth:`finish`; the run stays open.

        For frameworks whose training ends before the run does (transformers keeps
        the run open for a later ``evaluate()``/``predict()``). :meth:`finish` does
        not upload them again unless a checkpoint was reported in between.
        """
        life = self._life
        if life.noop or life.finished or life.handle is None:
            return
        self._parts.put(UploadEnd())

    def log_checkpoint(
        self,
        path: str | os.PathLike[str],
        step: int | None = None,
        epoch: int | None = None,
        metrics: Mapping[str, Any] | None = None,
        *,
        score: float | None = None,
        is_best: bool | None = None,
        aliases: Sequence[str] = (),
        metadata: Mapping[str, Any] | None = None,
        include: Sequence[str] | None = None,
        exclude: Sequence[str] = (),
        payload_name: str | None = None,
    ) -> None:
        """Report a checkpoint file or folder the framework wrote.

        The checkpoint policy (``log_model``) decides whether it is uploaded now,
        at the end, or not at all; aliases and metadata follow the run
        contract (docs/run-contract.md); the same content is never uploaded twice. The training thread
        only keeps the files' content (small files read into memory, large ones
        hard-linked); the policy, the run marker, hashing and the upload run in
        the worker, in order with everything logged before.

        With ``checkpoint_storage="reference"``, or for a remote URL (``s3://``,
        ``gs://``, any ``scheme://``), the version records references (URI, size,
        digest per ``reference_digest``) and the training thread touches no file. A
        sharded folder (an ``*.index.json`` with its shards, a
        ``torch.distributed.checkpoint`` folder, a DeepSpeed folder) is one version,
        logged once the worker finds it complete. ``keep_checkpoints`` limits how
        many versions stay (see docs/checkpoints-at-scale.md).

        Args:
            path: the checkpoint file or folder, a ``file://`` URL, or a remote URL.
            step: the global step it was saved at (default: the last logged).
            epoch: the epoch, when known.
            metrics: metrics at save time; the monitored one gives the score.
            score: the monitored value, when the caller knows it directly.
            is_best: the framework's own verdict (e.g. Lightning ``best_model_path``).
            aliases: extra aliases.
            metadata: extra metadata.
            include: glob patterns of files to upload from a folder (None: all).
            exclude: glob patterns of files never to upload.
            payload_name: for a single-file checkpoint, the file's name inside the
                artifact (e.g. ``"model.ckpt"``, where the framework's own
                integration uses a fixed name); its own name is kept in the
                ``original_filename`` metadata. Same content under the same
                name is never uploaded twice.
        """
        if not self._ensure_started():
            return
        at = self._rows.last_step if step is None else int(step)
        op = self._parts.uploads.report(
            os.fspath(path),
            at,
            epoch,
            metrics,
            (score, is_best, aliases, metadata),
            (include, exclude, payload_name),
        )
        if op is not None:
            self._parts.put(op)

    def resume_from_checkpoint(self, path: str | os.PathLike[str], step: int | None = None) -> RunMarker | None:
        """Declare that this training resumes from the checkpoint at ``path``: continue its run.

        Every checkpoint reported with :meth:`log_checkpoint` is marked with the
        run that wrote it (``_wandb-bridge-runs.json`` beside it). Called before
        the run starts, the session then continues that run (its id with
        ``resume="allow"``) unless an id, a run or ``resume`` was given
        explicitly, a run is already active, or ``rank_zero_only=False`` (one
        run per rank): those win. The ``resume_from_checkpoint=`` argument does
        the same at start.

        When the run recorded steps after the checkpoint's, it is rewound to the
        checkpoint's row (``wandb.init(resume_from="<id>?_step=<n>")``, with the
        ``_step`` the run markers map the checkpoint's step to) and those steps are
        recorded again. Where no rewind is possible (``resume=`` given, a marker
        without that map, a wandb without ``resume_from``, a run already started),
        the steps the previous attempts recorded are not recorded again:
        :meth:`log` drops rows for them, with one warning that says why, so the
        history has each step once (docs/distributed.md).

        Args:
            path: the checkpoint file or folder training resumes from.
            step: its global step, when known (finds the run of a checkpoint
                saved without a marker, from the others in its folder).

        Returns:
            The marker found, or None (no marker: nothing changes).
        """
        with self._life.lock:
            marker, self.settings = self._parts.resume.resume(
                path, step, self.settings, self.run_id, self._life.started
            )
        return marker


__all__ = ["Session", "WandbBridgeWarning", "exit_code_for"]
