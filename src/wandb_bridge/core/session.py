"""The public "add W&B to any library" API: :class:`Session`, a facade over the parts of one run.

Every framework callback talks to one :class:`Session`. The training thread
only hands values over; a background worker maps keys, merges one step's
values into one row, reads tensors, hashes checkpoints and calls wandb. The
parts that own the state (:mod:`wandb_bridge.core.session_parts`, listed in
docs/architecture.md) do the work; the session's methods delegate to them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from types import TracebackType
from typing import Any

from wandb_bridge.adapters import wandb_sdk
from wandb_bridge.adapters.markers import RunMarker
from wandb_bridge.core import health
from wandb_bridge.core.checkpoints import CheckpointPolicy
from wandb_bridge.core.errors import WandbBridgeWarning
from wandb_bridge.core.follow import CallbackMonitor, adopted_monitor
from wandb_bridge.core.hparams import extracted_config
from wandb_bridge.core.metrics import Stage, flatten_metrics
from wandb_bridge.core.ops import Call, HealthRow, Summary, UploadEnd
from wandb_bridge.core.run_lifecycle import exit_code_for, prepared_config
from wandb_bridge.core.session_parts import SessionParts, View
from wandb_bridge.core.settings import Settings


def _set_settings(session: Session, settings: Settings) -> None:
    session._parts.settings = settings


def _set_clock(session: Session, clock: Callable[[], int | None] | None) -> None:
    session._rows.step_clock = clock


def _set_api_factory(session: Session, factory: Any) -> None:
    session._parts.uploads.public_api_factory = factory


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
        self.framework = framework
        self.framework_version = framework_version
        self._compose(bridge_settings)

    def _compose(self, settings: Settings) -> None:
        """Build the parts (at construction and after unpickling)."""
        self._parts = parts = SessionParts(settings, (self.framework, self.framework_version))
        self.rank = parts.rank
        self._faults, self._life, self._rows = parts.faults, parts.life, parts.rows

    # ------------------------------------------------------------ properties

    settings: View[Settings] = View(lambda s: s._parts.settings, "The resolved settings.", _set_settings)
    run: View[Any] = View(
        lambda s: s._life.run, "The wandb run in use, or None (not started, disabled, or not rank zero)."
    )
    run_id: View[str | None] = View(lambda s: s._life.run_id, "The run id, once started.")
    run_dir: View[str | None] = View(lambda s: s._life.run_dir, "The run's local files folder, once started.")
    enabled: View[bool] = View(lambda s: not s._life.noop, "False when a no-op (disabled, non-zero rank, or failed).")
    started: View[bool] = View(lambda s: s._life.handle is not None, "True once a run is attached.")
    finished: View[bool] = View(lambda s: s._life.finished, "True once :meth:`finish` ran.")
    owns_run: View[bool] = View(lambda s: s._life.owns_run, "True when this session started the run (and finishes it).")
    ended_by_user: View[bool] = View(
        lambda s: s._life.ended_by_user, "True when the user finished the run (``wandb.finish()``, ``run.finish()``)."
    )
    preempted: View[bool] = View(lambda s: s._life.preempted, "True once SIGTERM reached the session.")
    sync_command: View[str | None] = View(lambda s: s._life.sync_command, "``wandb sync <folder>``, once started.")
    last_step: View[int | None] = View(lambda s: s._rows.last_step, "The highest global step logged so far.")
    step_clock: View[Callable[[], int | None] | None] = View(
        lambda s: s._rows.step_clock,
        "Optimizer steps completed, read from the framework (set by callbacks); see :attr:`current_step`.",
        _set_clock,
    )
    current_step: View[int] = View(
        lambda s: s._rows.current_step,
        """The global step a value logged now without a step belongs to.

        The framework's step (:attr:`step_clock`, optimizer steps completed) when a
        callback set one, else the last step logged; at least 1 (the first row's step).
        """,
    )
    rows_logged: View[int] = View(lambda s: s._parts.router.logged, "History rows logged so far (by either process).")
    policy: View[CheckpointPolicy] = View(lambda s: s._parts.uploads.policy, "The checkpoint policy (``log_model``).")
    monitor: View[str | None] = View(lambda s: s.policy.monitor, "The recorded key of the monitored metric, if any.")
    has_checkpoints: View[bool] = View(
        lambda s: s._parts.uploads.reported > 0, "True once a checkpoint was reported with :meth:`log_checkpoint`."
    )
    checkpoints_uploaded: View[int] = View(lambda s: s._parts.uploads.uploaded, "Checkpoint versions logged so far.")
    public_api_factory: View[Any] = View(
        lambda s: s._parts.uploads.public_api_factory,
        "A callable returning the public ``wandb.Api`` for ``keep_checkpoints`` (None: the real one).",
        _set_api_factory,
    )
    retention_log: View[list[Any]] = View(
        lambda s: s._parts.uploads.retention_log, "What each ``keep_checkpoints`` pass deleted (online runs)."
    )
    resumed_from: View[RunMarker | None] = View(
        lambda s: s._parts.resume.resumed, "The marker of the checkpoint resumed from (:meth:`resume_from_checkpoint`)."
    )

    @property
    def config(self) -> dict[str, Any]:
        """The run's config as wandb holds it (sweep values included); empty before start."""
        handle = self._life.handle
        return {} if handle is None else self._faults.guard("read config", handle.config) or {}

    # ------------------------------------------------------------- lifecycle

    def start(self) -> Any:
        """Attach to a run now (idempotent).

        Returns:
            The wandb run, or None when the session is a no-op.
        """
        return self._parts.start()

    def plan_rows(self, rows: int) -> None:
        """Say how many history rows the training will log (the framework callbacks call it).

        With ``log_process="auto"`` a plan of at least ``PLAN_ROWS`` (500) rows moves
        rows to the logging process without a first look at the logging rate: a
        framework that logs every step is known to pay for it: the logging process
        (forked before ``wandb.init`` where it can be, else spawned now) takes the
        rows from the next batch on. Ignored with ``log_process=True``/``False``.
        """
        self._parts.router.plan(rows)

    def finish(self, exit_code: int | None = None) -> None:
        """Flush what is queued, upload end-of-run checkpoints and finish the run if this session started it.

        Idempotent. Waits at most ``finish_timeout`` seconds for the queue; past
        that it warns with the command that uploads what was recorded. A run the
        session found active (the user's, a sweep agent's) is left open.

        Args:
            exit_code: 0 for success, non-zero for a failed run. None lets wandb
                decide (0, or 1 after an uncaught exception).
        """
        self._parts.end(exit_code, finish_run=None)

    def close(self, exit_code: int | None = None) -> None:
        """Alias of :meth:`finish`."""
        self.finish(exit_code)

    def __enter__(self) -> Session:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
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
        self.framework = state["framework"]
        self.framework_version = state["framework_version"]
        self._compose(state["settings"])

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
        self._parts.log(metrics, step, epoch, stage, samples, keep_keys)

    def log_config(self, config: Mapping[str, Any]) -> None:
        """Add values to the run config (flattened, JSON-safe, secrets redacted)."""
        if config and self._parts.ensure_started():
            flat = prepared_config(config, self._faults)
            self._faults.tell_inputs()
            self._parts.put(Call("update_config", self._parts.handle.update_config, (flat,)))

    def log_framework_config(self, extracted: Mapping[str, Any]) -> None:
        """Add the config a framework callback read (arguments, hparams, model facts); the user's ``config=`` wins.

        :func:`~wandb_bridge.core.hparams.extracted_config` drops every key the user's
        ``config=`` set, so a framework's value never overwrites the user's.
        """
        self.log_config(extracted_config(extracted, self.settings.config))

    def log_summary(self, values: Mapping[str, Any], stage: Stage = "train") -> None:
        """Set summary values (keys mapped like metrics), e.g. end-of-training figures."""
        if values and self._parts.ensure_started():
            keys = self._rows.keys
            self._parts.put(Summary({keys(str(k), stage): v for k, v in flatten_metrics(values)}))

    def adopt_monitor(
        self,
        callbacks: Sequence[CallbackMonitor],
        *,
        current: str | None,
        stage: Stage = "val",
        key: Callable[[str], str] | None = None,
        unless: CallbackMonitor | None = None,
    ) -> CallbackMonitor | None:
        """Monitor what a framework's checkpoint callbacks monitor (:func:`~wandb_bridge.core.follow.adopted_monitor`).

        Args:
            callbacks: what each checkpoint callback monitors, in the framework's order.
            current: the monitor that wins (the user's ``monitor=``, or the run's): none is adopted while set.
            stage: where an unprefixed name goes.
            key: metric name -> the recorded key (a logger's prefix); by default the name.
            unless: the one adopted before, which is not defined again.

        Returns:
            The callback monitor chosen, or None.
        """
        chosen = adopted_monitor(current, callbacks)
        if chosen is not None and chosen.monitor and chosen != unless:
            self.define_monitor(chosen.monitor if key is None else key(chosen.monitor), chosen.mode, stage=stage)
        return chosen

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
        if self._life.handle is not None and not self._life.noop:
            self._parts.put(Call("define_summary", self._parts.handle.define_summary, (key, policy.monitor_mode)))

    def map_key(self, key: str, stage: Stage = "train") -> str:
        """The recorded name of a framework's metric name (see :func:`~wandb_bridge.core.metrics.normalize_key`)."""
        return self._rows.keys(key, stage)

    def flush(self, timeout: float | None = None) -> bool:
        """Close the open row and wait until everything queued reached wandb.

        Returns:
            False when ``timeout`` passed first.
        """
        return self._parts.flush(timeout)

    def wandb_type(self, kind: str, *args: Any, **kwargs: Any) -> Any:
        """Build a wandb data type (``"Table"``, ``"Image"``, ``"Audio"``, ``"Video"``, ``"Html"``)."""
        return wandb_sdk.make(kind, *args, **kwargs)

    def mark_preempting(self) -> None:
        """Mark the run as pre-empted (it may be resumed with the same id)."""
        if self._life.handle is not None:
            self._faults.guard("mark the run preempting", self._life.handle.mark_preempting)

    def watch(self, model: Any, log: str | None = "gradients", log_freq: int = 100) -> None:
        """Log gradients and/or parameters of a torch model (``wandb.watch``)."""
        if self._parts.ensure_started():
            self._parts.before_watch()
            self._faults.guard("watch the model", self._parts.handle.watch, model, log, log_freq)

    def health_monitor(self, owner: str = "Session") -> Any:
        """A torch health monitor recording into this session, or None when ``log_health`` is off.

        Call its ``before_step(step, model)`` right before ``optimizer.step()`` and
        its ``after_step()`` right after (docs/health.md); the figures land under
        ``health/`` in the row of ``step``. It costs nothing between health steps.
        """
        return health.monitor(self.settings, self.hand_over_health, owner=owner)

    def hand_over_health(self, step: int, keys: Sequence[str], values: Any, histograms: Mapping[str, Any]) -> None:
        """Queue a health vector (one device tensor, one number per key) for ``step``; the worker reads it."""
        if self._parts.ensure_started() and not self._rows.skips(step):
            self._parts.put(HealthRow(step, tuple(keys), values, dict(histograms)))

    def use_artifact(self, name: str, kind: str | None = None, aliases: Sequence[str] | None = None) -> Any:
        """Declare an artifact as an input of the run and return it (None when a no-op)."""
        if not self._parts.ensure_started():
            return None
        self.flush()
        return self._faults.guard("use an artifact", self._parts.handle.use_artifact, name, kind, aliases)

    @staticmethod
    def download_artifact(
        name: str, save_dir: str | os.PathLike[str] | None = None, kind: str | None = None, use_artifact: bool = True
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
        if self._parts.ensure_started():
            self._parts.uploads.artifact(os.fspath(path), name, kind, aliases, metadata)

    # ----------------------------------------------------------- checkpoints

    def upload_end_checkpoints(self) -> None:
        """Upload now what ``log_model="end"`` would upload at :meth:`finish`; the run stays open.

        For frameworks whose training ends before the run does (transformers keeps
        the run open for a later ``evaluate()``/``predict()``). :meth:`finish` does
        not upload them again unless a checkpoint was reported in between.
        """
        life = self._life
        if not (life.noop or life.finished or life.handle is None):
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
        at the end, or not at all; aliases and metadata follow the run contract
        (docs/run-contract.md); the same content is never uploaded twice. The
        training thread only keeps the files' content (small files read into
        memory, large ones hard-linked); the policy, the run marker, hashing and
        the upload run in the worker, in order with everything logged before.
        References (``checkpoint_storage="reference"``, remote URLs), sharded
        folders (logged once complete) and ``keep_checkpoints``: see
        docs/checkpoints-at-scale.md.

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
                artifact (e.g. ``"model.ckpt"``); its own name is kept in the
                ``original_filename`` metadata.
        """
        if self._parts.ensure_started():
            at = self._rows.last_step if step is None else int(step)
            options = (score, is_best, aliases, metadata)
            self._parts.uploads.report(os.fspath(path), at, epoch, metrics, options, (include, exclude, payload_name))

    def resume_from_checkpoint(self, path: str | os.PathLike[str], step: int | None = None) -> RunMarker | None:
        """Declare that this training resumes from the checkpoint at ``path``: continue its run.

        Every checkpoint reported with :meth:`log_checkpoint` is marked with the
        run that wrote it (``_wandb-bridge-runs.json`` beside it). Called before
        the run starts, the session then continues that run (its id with
        ``resume="allow"``) unless an id, a run or ``resume`` was given
        explicitly, a run is already active, or ``rank_zero_only=False``: those
        win. When the run recorded steps after the checkpoint's, it is rewound to
        the checkpoint's row where wandb allows (``resume_from``); otherwise
        :meth:`log` does not record those steps again, with one warning that says
        why (docs/resume.md, docs/distributed.md).

        Args:
            path: the checkpoint file or folder training resumes from.
            step: its global step, when known (finds the run of a checkpoint
                saved without a marker, from the others in its folder).

        Returns:
            The marker found, or None (no marker: nothing changes).
        """
        return self._parts.resume_from(path, step)


__all__ = ["Session", "WandbBridgeWarning", "exit_code_for"]
