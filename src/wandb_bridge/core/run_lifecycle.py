"""A session's run: attach (reuse or start, with the offline fallback), ownership, SIGTERM and exit hooks, finish.

:class:`RunLifecycle` owns the wandb run handle and the lifecycle flags
(started, finished, a no-op session, finished by the user, pre-empted), the
SIGTERM hook, the ``atexit`` registration and wandb's batched console capture
of a run the session started. It finishes only a run it started, within
``finish_timeout``.
"""

from __future__ import annotations

import atexit
import os
import threading
from collections.abc import Callable, Mapping
from typing import Any

from wandb_bridge.adapters import console, signals, wandb_sdk
from wandb_bridge.core import hparams
from wandb_bridge.core.distributed import RankInfo, SharedRun, join_shared_run, shared_group_id
from wandb_bridge.core.faults import FaultBoundary
from wandb_bridge.core.settings import Settings


def prepared_config(config: Mapping[str, Any], faults: FaultBoundary) -> dict[str, Any]:
    """Config values flattened, JSON-safe, redacted and capped (what was cut is noted for one warning)."""
    flat, notes = hparams.prepare_config(config)
    if notes:
        faults.note_input([f"config values too large to record were shortened or left out: {', '.join(notes[:10])}"])
    return flat


class RunLifecycle:
    """The run of one session and its lifecycle flags (see the module docstring)."""

    def __init__(self, settings: Settings, rank: RankInfo, faults: FaultBoundary) -> None:
        self._timeout = settings.finish_timeout
        self._rank = rank
        self._faults = faults
        self.lock = threading.RLock()
        self.handle: wandb_sdk.RunHandle | None = None
        self.shared: SharedRun | None = None
        self.started = False
        self.finished = False
        self.noop = settings.disabled
        self.ended_by_user = False
        self.preempted = False
        self._sigterm: signals.SigtermHook | None = None
        self._at_exit: Callable[[], None] | None = None
        self._console: console.ConsoleBatch | None = None

    @property
    def run(self) -> Any:
        """The wandb run, once attached."""
        return None if self.handle is None else self.handle.run

    @property
    def run_id(self) -> str | None:
        """The run id, once attached."""
        return None if self.handle is None else self.handle.id

    @property
    def run_dir(self) -> str | None:
        """The run's files folder, once attached."""
        return None if self.handle is None else self.handle.dir

    @property
    def owns_run(self) -> bool:
        """True when the session started the run (and so finishes it)."""
        return self.handle is not None and self.handle.owned

    @property
    def sync_command(self) -> str | None:
        """``wandb sync <folder>`` for the run, once attached."""
        return None if self.handle is None else self.handle.sync_command()

    @property
    def terminating(self) -> bool:
        """True when SIGTERM ends the process right after the session's handler."""
        return self._sigterm is None or self._sigterm.terminating

    # ------------------------------------------------------------------ attach

    def start_once(self, attach: Callable[[], None]) -> None:
        """Run ``attach`` once; other threads wait on the lock meanwhile instead of finding a half-started session."""
        if self.started:
            return
        with self.lock:
            if self.started:
                return
            try:
                attach()
            finally:
                self.started = True  # set last

    def disable(self) -> None:
        """Record nothing (not rank zero under ``rank_zero_only``, or no run could be had)."""
        self.noop = True

    def attach(self, settings: Settings, before_init: Callable[[], None]) -> wandb_sdk.RunHandle | None:
        """Use the given or active run, or start one (``before_init`` runs right before ``wandb.init``).

        Returns:
            The handle, or None when no run could be had (the session is a no-op then).
        """
        self.handle = self._attach(settings, before_init)
        if self.handle is None:
            self.noop = True
        return self.handle

    def _attach(self, settings: Settings, before_init: Callable[[], None]) -> wandb_sdk.RunHandle | None:
        faults = self._faults
        existing = settings.run if settings.run is not None else None
        active = faults.guard("find the active run", wandb_sdk.active_run) if existing is None else None
        if existing is None and settings.id is None:
            existing = active
        if existing is not None:
            handle = wandb_sdk.RunHandle(existing, owned=False)
            if settings.config:
                faults.guard("update the config", handle.update_config, prepared_config(settings.config, faults))
            return handle
        kwargs = self._init_kwargs(settings)
        if active is not None and "reinit" not in kwargs:
            # Another run is active and this session was asked for a run of its own (id=):
            # start it beside that one; wandb.run stays the user's run.
            kwargs["reinit"] = "create_new"
        # Rank-zero mode monitors every GPU of the node (wandb's default); a run per rank its own.
        gpu = self._rank.local_rank if self._rank.distributed and not settings.rank_zero_only else None
        before_init()
        shared = self.shared
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
            return self._offline(settings, kwargs, exc, gpu)
        return wandb_sdk.RunHandle(run, owned=True)

    def _offline(
        self, settings: Settings, kwargs: dict[str, Any], exc: Exception, gpu: int | None
    ) -> wandb_sdk.RunHandle | None:
        """``wandb.init`` failed: record the run offline (or, offline already, not at all)."""
        faults = self._faults
        if settings.mode == "offline":
            faults.warn("init", f"wandb.init failed ({exc!r}); logging is off for this run.")
            return None
        offline = {**kwargs, "mode": "offline"}
        wandb_sdk.discard_failed_run(kwargs)  # no empty run beside the offline one for `wandb sync`
        if settings.id is None and "id" not in settings.init_kwargs:
            offline.pop("id", None)  # wandb-core still holds the failed attempt's id
        try:
            run = wandb_sdk.init(offline, system_stats=settings.system_stats, gpu_index=gpu)
        except Exception as second:
            faults.warn("init", f"wandb.init failed ({exc!r}), offline too ({second!r}); logging is off.")
            return None
        handle = wandb_sdk.RunHandle(run, owned=True)
        faults.warn(
            "init",
            f"W&B could not be reached ({type(exc).__name__}: {exc}); training goes on and "
            f"this run is recorded offline. Upload it later with: {handle.sync_command()}",
        )
        return handle

    def _init_kwargs(self, s: Settings) -> dict[str, Any]:
        rank = self._rank
        tags, notes = hparams.clean_tags(s.tags)
        self._faults.note_input([f"tags: {note}" for note in notes])
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
            kwargs["config"] = prepared_config(s.config, self._faults)
        if s.shared_run and not s.rank_zero_only and rank.distributed:
            self.shared, why = join_shared_run(rank, s.id, s.mode)
            if why is not None:
                self._faults.warn(
                    "shared-run", f"shared_run=True, but {why}: every rank records a run of its own, grouped."
                )
        if self.shared is not None:
            kwargs["id"] = self.shared.run_id
        elif not s.rank_zero_only and rank.distributed:
            kwargs["group"] = s.group or shared_group_id()
            kwargs["job_type"] = f"rank-{rank.rank}"
            if s.name:
                kwargs["name"] = f"{s.name}-rank-{rank.rank}"
        if s.id is not None and s.resume is None and "resume_from" not in s.init_kwargs:
            kwargs["resume"] = "allow"
        elif s.id is None and s.mode != "offline" and "id" not in s.init_kwargs and self.shared is None:
            # Our own id for an online start: if W&B cannot be reached, the folder that
            # attempt left is found by it and removed before the offline fallback.
            kwargs["id"] = wandb_sdk.new_run_id()
        kwargs.update(s.init_kwargs)
        if s.dir is not None:
            os.makedirs(s.dir, exist_ok=True)
        return {k: v for k, v in kwargs.items() if v is not None}

    @property
    def labels_ranks(self) -> bool:
        """True when this rank writes into another rank's run (its values are labelled ``rank-<r>/``)."""
        return self.shared is not None and not self.shared.primary

    def take_over(self, handle: wandb_sdk.RunHandle) -> None:
        """Batch wandb's console capture (one record per burst of output) for a run this session started."""
        if handle.owned and self._console is None:
            try:
                self._console = console.take_over(handle.run)
            except Exception:  # wandb's own capture stays as it was
                self._console = None

    def install_hooks(self, on_sigterm: Callable[[], None] | None, at_exit: Callable[[], None]) -> None:
        """SIGTERM (when ``on_sigterm`` is given) and the interpreter's exit call the session."""
        if on_sigterm is not None:

            def fired() -> None:
                self.preempted = True
                on_sigterm()

            self._sigterm = signals.SigtermHook(fired, timeout=self._timeout)
            self._sigterm.install()
        if self._at_exit is None:
            self._at_exit = at_exit
            atexit.register(at_exit)

    # --------------------------------------------------------------------- end

    def begin_end(self, by_user: bool = False) -> bool:
        """Mark the session finished (once; ``by_user``: by ``wandb.finish()``) and remove its hooks.

        Returns:
            False when it was finished already.
        """
        with self.lock:
            if self.finished:
                return False
            self.finished = True
            self.ended_by_user = by_user
        if self._at_exit is not None:
            atexit.unregister(self._at_exit)
            self._at_exit = None
        if self._sigterm is not None and not self.preempted:
            self._sigterm.uninstall()
        return True

    def end_run(self, exit_code: int | None, finish_run: bool | None) -> None:
        """Finish the run (``finish_run`` None: when this session started it and wandb-core is there)."""
        handle = self.handle
        if handle is None:
            return
        batch, self._console = self._console, None
        if batch is not None:  # the last captured output reaches the run before it finishes
            batch.release()
        if finish_run is None:
            faults = self._faults
            finish_run = handle.owned and faults.core_alive
            if handle.owned and not finish_run:
                handle.mark_dead()  # wandb-core is gone: no later session takes this run over
        if finish_run:
            self.bounded("finish the run", handle.finish_now, exit_code)
        else:
            self._faults.guard("stop following the user's wandb calls", handle.release)

    def bounded(self, what: str, fn: Callable[..., Any], *args: Any) -> None:
        """Call ``fn`` with a deadline (``finish_timeout``): a hung wandb never hangs the process."""
        outcome: list[BaseException] = []

        def call() -> None:
            try:
                fn(*args)
            except BaseException as exc:
                outcome.append(exc)

        worker = threading.Thread(target=call, name="wandb-bridge-finish", daemon=True)
        worker.start()
        worker.join(self._timeout)
        if worker.is_alive():
            handle = self.handle
            hint = "" if handle is None else f" What was recorded can be uploaded with: {handle.sync_command()}"
            self._faults.warn(f"timeout:{what}", f"wandb did not {what} within {self._timeout:.0f} s; giving up.{hint}")
            return
        if outcome:
            error = outcome[0]
            if not isinstance(error, Exception):  # wandb's teardown may raise SystemExit
                error = RuntimeError(f"wandb stopped with {error!r}")
            self._faults.guard(what, _reraise, error)


def _reraise(exc: BaseException) -> None:
    raise exc


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


def uncaught_exit_code() -> int | None:
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
