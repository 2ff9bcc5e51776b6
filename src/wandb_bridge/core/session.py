"""The run lifecycle: lazy start, reuse, ownership, the error boundary, finish with an exit code.

:class:`Session` is the public "add W&B to any library" API and the one object
every framework callback talks to. The training thread only hands values over;
a background worker maps keys, merges one step's values into one row, reads
tensors, hashes checkpoints and calls wandb.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

from wandb_bridge.adapters import files, signals, system, wandb_sdk
from wandb_bridge.core import health, hparams
from wandb_bridge.core.distributed import RankKeys, join_shared_run, shared_group_id
from wandb_bridge.core.errors import WandbBridgeWarning
from wandb_bridge.core.metrics import (
    EPOCH_KEY,
    STEP_KEY,
    Stage,
    flatten_metrics,
)
from wandb_bridge.core.pipeline import Pipeline
from wandb_bridge.core.session_base import _CALL, _LOG, _reraise
from wandb_bridge.core.session_checkpoints import CheckpointsMixin
from wandb_bridge.core.session_worker import WorkerMixin
from wandb_bridge.core.settings import Settings


class Session(CheckpointsMixin, WorkerMixin):
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
        self._reset()

    # ------------------------------------------------------------ properties

    @property
    def run(self) -> Any:
        """The wandb run in use, or None (not started, disabled, or not rank zero)."""
        return None if self._handle is None else self._handle.run

    @property
    def enabled(self) -> bool:
        """False when this session is a no-op (disabled, non-zero rank, or failed)."""
        return not self._noop

    @property
    def started(self) -> bool:
        """True once a run is attached."""
        return self._handle is not None

    @property
    def finished(self) -> bool:
        """True once :meth:`finish` ran."""
        return self._finished

    @property
    def owns_run(self) -> bool:
        """True when this session started the run (and so finishes it)."""
        return self._handle is not None and self._handle.owned

    @property
    def sync_command(self) -> str | None:
        """``wandb sync <folder>`` for this run, once started."""
        return None if self._handle is None else self._handle.sync_command()

    @property
    def config(self) -> dict[str, Any]:
        """The run's config as wandb holds it (sweep values included); empty before start."""
        if self._handle is None:
            return {}
        return self._guard("read config", self._handle.config) or {}

    @property
    def last_step(self) -> int | None:
        """The highest global step logged so far."""
        return self._last_step

    @property
    def current_step(self) -> int:
        """The global step a value logged now without a step belongs to.

        The framework's step (:attr:`step_clock`, optimizer steps completed) when a
        callback set one, else the last step logged; at least 1 (the first row's step).
        """
        step = None
        if self.step_clock is not None:
            try:
                step = self.step_clock()
            except Exception:  # a framework object in teardown
                pass
        return max(1, int((self._last_step if step is None else step) or 0))

    @property
    def monitor(self) -> str | None:
        """The recorded key of the monitored metric, if any."""
        return self.policy.monitor

    @property
    def has_checkpoints(self) -> bool:
        """True once any checkpoint was reported with :meth:`log_checkpoint`."""
        return self._reported > 0

    # ------------------------------------------------------------- lifecycle

    def start(self) -> Any:
        """Attach to a run now (idempotent).

        Returns:
            The wandb run, or None when the session is a no-op.
        """
        if self._started:
            return self.run
        with self._lock:
            if self._started:
                return self.run
            try:
                self._attach_once()
            finally:
                # Set last: other threads calling log() meanwhile wait on the lock
                # instead of finding a half-started session.
                self._started = True
        return self.run

    def _attach_once(self) -> None:
        if self._noop:
            return
        if self.settings.rank_zero_only and not self.rank.is_zero:
            self._noop = True
            return
        resume = self.settings.resume_from_checkpoint
        if resume is not None and self._resumed is None and self.resume_from_checkpoint(resume) is None:
            self._warn(
                "resume:none",
                f"No run marker beside {resume!r} (it was not saved through wandb-bridge, or the marker file "
                "was not copied with it); this training starts a new run unless id= is given.",
            )
        self._handle = self._attach()
        self._tell_inputs()
        if self._handle is None:
            self._noop = True
            self._close_rows_out(1.0)
            return
        self._after_attach()

    def _attach(self) -> wandb_sdk.RunHandle | None:
        settings = self.settings
        existing = settings.run if settings.run is not None else None
        active = self._guard("find the active run", wandb_sdk.active_run) if existing is None else None
        if existing is None and settings.id is None:
            existing = active
        if existing is not None:
            handle = wandb_sdk.RunHandle(existing, owned=False)
            if settings.config:
                self._guard("update the config", handle.update_config, self._prepare_config(settings.config))
            return handle
        kwargs = self._init_kwargs()
        if active is not None and "reinit" not in kwargs:
            # Another run is active and this session was asked for a run of its own (id=):
            # start it beside that one; wandb.run stays the user's run.
            kwargs["reinit"] = "create_new"
        # Rank-zero mode monitors every GPU of the node (wandb's default); a run per rank its own.
        gpu = self.rank.local_rank if self.rank.distributed and not settings.rank_zero_only else None
        self._spawn_rows_out()
        shared = self._shared
        try:
            run = wandb_sdk.init(
                kwargs,
                system_stats=settings.system_stats,
                gpu_index=gpu,
                shared_label=None if shared is None else shared.label,
                primary=shared is None or shared.primary,
            )
        except Exception as exc:
            if settings.on_error == "raise":
                raise
            if settings.mode == "offline":
                self._warn("init", f"wandb.init failed ({exc!r}); logging is off for this run.")
                return None
            offline = {**kwargs, "mode": "offline"}
            wandb_sdk.discard_failed_run(kwargs)  # no empty run beside the offline one for `wandb sync`
            if settings.id is None and "id" not in settings.init_kwargs:
                offline.pop("id", None)  # wandb-core still holds the failed attempt's id
            try:
                run = wandb_sdk.init(offline, system_stats=settings.system_stats, gpu_index=gpu)
            except Exception as second:
                self._warn("init", f"wandb.init failed ({exc!r}), offline too ({second!r}); logging is off.")
                return None
            handle = wandb_sdk.RunHandle(run, owned=True)
            self._warn(
                "init",
                f"W&B could not be reached ({type(exc).__name__}: {exc}); training goes on and "
                f"this run is recorded offline. Upload it later with: {handle.sync_command()}",
            )
            return handle
        return wandb_sdk.RunHandle(run, owned=True)

    def _init_kwargs(self) -> dict[str, Any]:
        s = self.settings
        tags, notes = hparams.clean_tags(s.tags)
        self._note_input([f"tags: {note}" for note in notes])
        kwargs: dict[str, Any] = {
            "project": s.project,
            "entity": s.entity,
            "name": s.name,
            "group": s.group,
            "tags": list(tags) or None,
            "job_type": s.job_type,
            "notes": s.notes,
            "mode": s.mode,
            "dir": s.dir,
            "id": s.id,
            "resume": s.resume,
        }
        if s.config:
            kwargs["config"] = self._prepare_config(s.config)
        self._shared, why = (None, None)
        if s.shared_run and not s.rank_zero_only and self.rank.distributed:
            self._shared, why = join_shared_run(self.rank, s.id, s.mode)
            if why is not None:
                self._warn("shared-run", f"shared_run=True, but {why}: every rank records a run of its own, grouped.")
            elif self._shared is not None and not self._shared.primary:
                self._keys = RankKeys(self.rank.rank)  # values of the other ranks are labelled rank-<r>/...
        if self._shared is not None:
            kwargs["id"] = self._shared.run_id
        elif not s.rank_zero_only and self.rank.distributed:
            kwargs["group"] = s.group or shared_group_id()
            kwargs["job_type"] = f"rank-{self.rank.rank}"
            if s.name:
                kwargs["name"] = f"{s.name}-rank-{self.rank.rank}"
        if s.id is not None and s.resume is None and "resume_from" not in s.init_kwargs:
            kwargs["resume"] = "allow"
        elif s.id is None and s.mode != "offline" and "id" not in s.init_kwargs and self._shared is None:
            # Our own id for an online start: if W&B cannot be reached, the folder that
            # attempt left is found by it and removed before the offline fallback.
            kwargs["id"] = wandb_sdk.new_run_id()
        kwargs.update(s.init_kwargs)
        if s.dir is not None:
            os.makedirs(s.dir, exist_ok=True)
        return {k: v for k, v in kwargs.items() if v is not None}

    def _after_attach(self) -> None:
        handle = self._handle
        assert handle is not None
        # The user's own wandb.log / run.log / wandb.finish() go through this session
        # while it is attached: their values land at the current step, in order with
        # ours, and a finish first hands over what is still queued.
        self._guard(
            "follow the user's wandb calls", handle.intercept, self._user_log, self._user_finish, self._before_watch
        )
        self._guard("define the step axis", handle.define_step_axis, STEP_KEY, EPOCH_KEY)
        if self.policy.monitor is not None:
            self._guard(
                "define the monitored metric", handle.define_summary, self.policy.monitor, self.policy.monitor_mode
            )
        if self.settings.system_stats:
            self._sampler = system.SystemSampler(cuda_device=system.current_cuda_device())
        self._start_rows_out()
        self._take_over_console()
        self._pipeline = Pipeline(self._drain, self.settings.queue_size, name=f"wandb-bridge-{handle.id}")
        self._pipeline.start()
        if self.settings.handle_sigterm:
            self._sigterm = signals.SigtermHook(self._on_sigterm, timeout=self.settings.finish_timeout)
            self._sigterm.install()
        if not self._atexit_registered:
            atexit.register(self._at_exit)
            self._atexit_registered = True

    def finish(self, exit_code: int | None = None) -> None:
        """Flush what is queued, upload end-of-run checkpoints and finish the run if this session started it.

        Idempotent. Waits at most ``finish_timeout`` seconds for the queue; past
        that it warns with the command that uploads what was recorded. A run the
        session found active (the user's, a sweep agent's) is left open.

        Args:
            exit_code: 0 for success, non-zero for a failed run. None lets wandb
                decide (0, or 1 after an uncaught exception).
        """
        self._end(exit_code, finish_run=None)

    @property
    def ended_by_user(self) -> bool:
        """True when the run was finished by the user (``wandb.finish()``, ``run.finish()``), not by this session."""
        return self._ended_by_user

    def _user_finish(self, exit_code: int | None) -> None:
        """``wandb.finish()`` / ``run.finish()`` by the user: hand over everything queued, then finish the run."""
        self._ended_by_user = True
        self._end(exit_code, finish_run=True)

    def _user_log(self, data: Mapping[str, Any], step: int | None, commit: bool | None) -> None:
        """The user's own ``wandb.log`` / ``run.log``: keys as written, at the current step (or ``step``)."""
        del commit  # a step's values share one row whatever commit says
        if not isinstance(data, Mapping):
            raise TypeError(f"wandb.log takes a dict of values, got {type(data).__name__}")
        self.log(data, step, keep_keys=True)

    def _end(self, exit_code: int | None, finish_run: bool | None) -> None:
        """Finish: ``finish_run`` None finishes the run when this session started it."""
        with self._lock:
            if self._finished:
                return
            self._finished = True
        if self._atexit_registered:
            atexit.unregister(self._at_exit)
            self._atexit_registered = False
        if self._sigterm is not None and not self.preempted:
            self._sigterm.uninstall()
        handle, pipeline = self._handle, self._pipeline
        if handle is None or pipeline is None:
            if handle is not None and finish_run:
                self._bounded("finish the run", handle.finish_now, exit_code)
            return
        self._put((_CALL, self._upload_end, True))
        self._put((_CALL, self._close_open_row))
        if not pipeline.stop(self.settings.finish_timeout):
            self._warn(
                "finish-timeout",
                f"wandb-bridge could not hand everything to wandb within {self.settings.finish_timeout:.0f} s; "
                f"what was recorded so far can be uploaded with: {handle.sync_command()}",
            )
            self._rows_out_state = "off"  # the worker is stuck: stop the logging process, do not wait for it
        self._close_rows_out(self.settings.finish_timeout)
        self._release_console()
        for snap in self._retained.values():
            snap.release()
        self._retained.clear()
        self._record_progress()
        if finish_run is None:
            finish_run = handle.owned and (self._broken is None or self._stuck)
            if handle.owned and not finish_run:
                handle.mark_dead()  # wandb-core is gone: no later session takes this run over
        if finish_run:
            self._bounded("finish the run", handle.finish_now, exit_code)
        else:
            self._guard("stop following the user's wandb calls", handle.release)
        self._raise_pending()
        if self._unsent_path is not None:
            self._warn("unsent", f"Rows wandb could not take were kept in {self._unsent_path}.")

    def _bounded(self, what: str, fn: Any, *args: Any) -> None:
        """Call ``fn`` with a deadline (``finish_timeout``): a hung wandb never hangs the process."""
        outcome: list[BaseException] = []

        def call() -> None:
            try:
                fn(*args)
            except BaseException as exc:
                outcome.append(exc)

        worker = threading.Thread(target=call, name="wandb-bridge-finish", daemon=True)
        worker.start()
        worker.join(self.settings.finish_timeout)
        if worker.is_alive():
            handle = self._handle
            hint = "" if handle is None else f" What was recorded can be uploaded with: {handle.sync_command()}"
            self._warn(
                f"timeout:{what}", f"wandb did not {what} within {self.settings.finish_timeout:.0f} s; giving up.{hint}"
            )
            return
        if outcome:
            error = outcome[0]
            if not isinstance(error, Exception):  # wandb's teardown may raise SystemExit
                error = RuntimeError(f"wandb stopped with {error!r}")
            self._guard(what, _reraise, error)

    def _on_sigterm(self) -> None:
        """Pre-emption: flush what is queued, mark the run preempting, finish it (exit code 143).

        When the process does not end right away (a framework's own SIGTERM
        handling stops training at the end of the step, and may save a
        checkpoint first), the run is flushed and marked preempting but stays
        open: what the framework still logs and saves is recorded, and the
        framework's end (or the process exit) finishes the run.
        """
        self.preempted = True
        hook = self._sigterm
        ending = hook is None or hook.terminating
        if self._handle is not None and self.owns_run:
            self._guard("mark the run preempting", self._handle.mark_preempting)
            if ending:
                self.finish(exit_code=143)
                return
        self.flush()
        self._record_progress()

    def close(self, exit_code: int | None = None) -> None:
        """Alias of :meth:`finish`."""
        self.finish(exit_code)

    def _at_exit(self) -> None:
        try:
            self.finish(_uncaught_exit_code())
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
        self._reset()

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
        if self._noop or self._finished:
            if self._ended_by_user:
                self._warn(
                    "ended-by-user",
                    "The run was finished by wandb.finish() / run.finish(); values logged after it are not recorded "
                    "(the next fit or train starts a new run).",
                )
            return
        if not self._started:
            self.start()
            if self._noop:
                return
        if self._error is not None:
            self._raise_pending()
        if step is None and keep_keys:
            step = self.current_step  # the step in progress, not a new one
        elif step is None:
            with self._lock:
                step = 1 if self._last_step is None else self._last_step + 1
                self._last_step = step
        elif self._last_step is None or step > self._last_step:
            self._last_step = step
        if self._skip_through is not None and step <= self._skip_through:
            self._skip_recorded()
            return
        # stage None: a direct call, recorded with its keys as written (see session_worker._merge)
        op_stage, op_samples = (None, None) if keep_keys else (stage, samples)
        self._put((_LOG, step, epoch, op_stage, _hand_over(metrics), time.perf_counter(), op_samples))
        if self._watching and self._pipeline is not None:
            self._pipeline.barrier(self.settings.finish_timeout)

    def log_config(self, config: Mapping[str, Any]) -> None:
        """Add values to the run config (flattened, JSON-safe, secrets redacted)."""
        if not config or not self._ensure_started():
            return
        flat = self._prepare_config(config)
        self._tell_inputs()
        handle = self._handle
        assert handle is not None
        self._put((_CALL, handle.update_config, flat))

    def log_summary(self, values: Mapping[str, Any], stage: Stage = "train") -> None:
        """Set summary values (keys mapped like metrics), e.g. end-of-training figures."""
        if not values or not self._ensure_started():
            return
        handle = self._handle
        assert handle is not None
        mapped = {self._keys(str(k), stage): v for k, v in flatten_metrics(values)}
        self._put((_CALL, self._summary, mapped))

    def define_monitor(self, monitor: str | None, mode: str | None = None, stage: Stage = "val") -> None:
        """Set the monitored metric (and ``"min"``/``"max"``) after construction.

        Frameworks learn it late (``ModelCheckpoint(monitor=...)``,
        ``metric_for_best_model``); the summary then keeps its best value.
        """
        if monitor is None:
            return
        key = self._keys(monitor, stage)
        self.policy.monitor = key
        if mode in ("min", "max"):
            self.policy.monitor_mode = mode  # type: ignore[assignment]
        if self._handle is not None and not self._noop:
            self._put((_CALL, self._handle.define_summary, key, self.policy.monitor_mode))

    def map_key(self, key: str, stage: Stage = "train") -> str:
        """The recorded name of a framework's metric name (see :func:`~wandb_bridge.core.metrics.normalize_key`)."""
        return self._keys(key, stage)

    def flush(self, timeout: float | None = None) -> bool:
        """Close the open row and wait until everything queued reached wandb.

        Returns:
            False when ``timeout`` passed first.
        """
        if self._pipeline is None or self._finished:
            return True
        self._put((_CALL, self._close_open_row))
        done = self._pipeline.barrier(self.settings.finish_timeout if timeout is None else timeout)
        self._raise_pending()
        return done

    def wandb_type(self, kind: str, *args: Any, **kwargs: Any) -> Any:
        """Build a wandb data type (``"Table"``, ``"Image"``, ``"Audio"``, ``"Video"``, ``"Html"``)."""
        return wandb_sdk.make(kind, *args, **kwargs)

    def mark_preempting(self) -> None:
        """Mark the run as pre-empted (it may be resumed with the same id)."""
        if self._handle is not None:
            self._guard("mark the run preempting", self._handle.mark_preempting)

    def watch(self, model: Any, log: str | None = "gradients", log_freq: int = 100) -> None:
        """Log gradients and/or parameters of a torch model (``wandb.watch``)."""
        if self._ensure_started():
            handle = self._handle
            assert handle is not None
            self._before_watch()
            self._guard("watch the model", handle.watch, model, log, log_freq)

    def _before_watch(self) -> None:
        """``watch`` adds its histograms to the row this process commits next.

        So from now on rows are logged from this process, and each ``log`` waits
        until its values were handed to wandb (as with the native integrations):
        every histogram lands in the row of its step or the one after it.
        """
        self._watching = True
        self._put((_CALL, self._rows_here))

    def health_monitor(self, owner: str = "Session") -> Any:
        """A torch health monitor recording into this session, or None when ``log_health`` is off.

        Call its ``before_step(step, model)`` right before ``optimizer.step()`` and
        its ``after_step()`` right after (docs/health.md); the figures land under
        ``health/`` in the row of ``step``. It costs nothing between health steps.
        """
        return health.monitor(self.settings, self.hand_over_health, owner=owner)

    def hand_over_health(self, step: int, keys: Sequence[str], values: Any, histograms: Mapping[str, Any]) -> None:
        """Queue a health vector (one device tensor, one number per key) for ``step``; the worker reads it."""
        if not self._ensure_started() or (self._skip_through is not None and step <= self._skip_through):
            return
        self._put((_CALL, self._health_row, step, tuple(keys), values, dict(histograms)))

    def _health_row(self, step: int, keys: tuple[str, ...], values: Any, histograms: dict[str, Any]) -> None:
        from wandb_bridge.adapters import torch_health

        numbers, hists = torch_health.read(values, histograms)  # the one device read, on the worker
        row: dict[str, Any] = dict(zip(keys, numbers, strict=True))
        for key, counts_edges in hists.items():
            row[key] = wandb_sdk.make("Histogram", np_histogram=counts_edges)
        self._emit(self._merger.add(step, row, None))

    def use_artifact(self, name: str, kind: str | None = None, aliases: Sequence[str] | None = None) -> Any:
        """Declare an artifact as an input of the run and return it (None when a no-op)."""
        if not self._ensure_started():
            return None
        handle = self._handle
        assert handle is not None
        self.flush()
        return self._guard("use an artifact", handle.use_artifact, name, kind, aliases)

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
            self._fault("artifact", f"artifact {name!r} skipped: {exc}")
            return
        meta = hparams.to_json_safe(dict(metadata or {}))
        self._put((_CALL, self._upload_files, snap, name, kind, tuple(aliases), meta))


def _hand_over(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Copy the values for the queue: tensors are detached (their autograd graph is freed now,
    not when the worker reads them); CPU scalars are read at once (no device sync on CPU), so
    the queue holds no tensor objects the garbage collector would walk."""
    values = dict(metrics)
    for key, value in values.items():
        if type(value).__module__.startswith("torch") and hasattr(value, "detach"):
            if value.device.type == "cpu" and value.numel() == 1:
                values[key] = value.item()
            else:
                values[key] = value.detach()
    return values


def exit_code_for(exc: BaseException | None) -> int:
    """The exit code a run ends with: 0, 130 for Ctrl-C, 143 for SIGTERM, 1 otherwise."""
    if exc is None:
        return 0
    if isinstance(exc, KeyboardInterrupt):
        return 130
    if isinstance(exc, SystemExit):
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 1


def _uncaught_exit_code() -> int | None:
    """At exit: the exit code of the uncaught exception that ends a script, else None.

    Python stores an uncaught exception in ``sys.last_exc``/``sys.last_value``
    before the atexit handlers run. Interactive interpreters keep old ones there,
    so they get None (wandb decides).
    """
    import sys

    if hasattr(sys, "ps1") or sys.flags.interactive or "IPython" in sys.modules:
        return None
    exc = getattr(sys, "last_exc", None) or getattr(sys, "last_value", None)
    return exit_code_for(exc) if isinstance(exc, BaseException) else None


__all__ = ["Session", "WandbBridgeWarning", "exit_code_for"]
