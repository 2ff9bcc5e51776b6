"""The session of one framework callback and the lifetime of its run: the one lifecycle every callback shares.

Interface (a callback holds one :class:`SessionHolder` as ``self._holder``; composition, no base class):

* ``settings = resolve_settings(kwargs, default_project="lightning_logs")``: the shared arguments -> ``Settings``.
* ``self._holder = SessionHolder(settings, owner="WandbLogger", framework="lightning", renew="continue")``.
* ``holder.session``: the Session, made lazily; once finished, ``renew`` says: ``"continue"`` our run by id, a
  ``"new"`` run, or ``"keep"`` the finished one; a new run after the user's ``wandb.finish()``. ``holder.current``.
* ``holder.start(prepare)`` -> the started Session, or None where this process does not log (the core decides rank);
  ``holder.active``: the same without starting. ``prepare(session)`` runs once before the run starts (resume).
* ``holder.begin_call(new_run=False)`` / ``holder.end_call(exc=None, preempted=False)``: a fit/train/test call; ended
  well: flushed and idle (finished when another holder starts a run); failed: finished now, exit code 1/130/143.
* ``holder.finish(exit_code=None)`` (None: 1 inside a call, else 0); ``holder.exit(exc)`` for ``__exit__``.
* ``with holder.boundary("..."):`` / ``holder.failed(what, exc)``: the error boundary (``hook_failed`` under
  ``on_error``): one warning per hook and error type, training goes on; ``on_error="raise"`` raises.
* Pickling: the holder pickles as its settings only (``pin_run_id=True``: the id travels, as ddp_spawn needs).

No framework, no wandb: the callbacks (:mod:`wandb_bridge.callbacks.base`) add the hook decorator ``guarded``.
"""

from __future__ import annotations

import inspect
import secrets
import string
import weakref
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Literal

from wandb_bridge.core.errors import OnceWarner, hook_failed
from wandb_bridge.core.session import Session, exit_code_for
from wandb_bridge.core.settings import LogModel, Settings

Renew = Literal["continue", "new", "keep"]
_ID_ALPHABET = string.ascii_lowercase + string.digits

# Holders whose framework call ended well and whose run is still open (for a later
# validate/test/evaluate). The next holder that starts a run in this process finishes
# them first, so notebooks do not pile up open runs.
_IDLE: weakref.WeakSet[SessionHolder] = weakref.WeakSet()


def resolve_settings(
    kwargs: Mapping[str, Any], *, default_project: str | None = None, log_model_true: LogModel = "end"
) -> Settings:
    """The shared arguments of a callback as :class:`Settings` (``Settings.resolve`` validates them).

    Args:
        kwargs: the user's keyword arguments (``None`` values count as not given; unknown
            names go to ``wandb.init``, a near-miss of a shared name is a ``TypeError``).
        default_project: the framework's project when neither ``project`` nor ``WANDB_PROJECT`` is set.
        log_model_true: what ``log_model=True`` means.

    Returns:
        The resolved settings.
    """
    given = {k: v for k, v in kwargs.items() if v is not None}
    settings = Settings.resolve(default_log_model_true=log_model_true, **given)
    if settings.project is None and default_project is not None:
        settings = settings.with_changes(project=default_project)
    return settings


class SessionHolder:
    """A callback's session and the lifetime of its run, its error boundary and its pickled form.

    Args:
        settings: the resolved settings (see :func:`resolve_settings`).
        owner: the callback's class name, for warnings.
        framework: the framework's name (checkpoint metadata).
        framework_version: its version (settable later: :attr:`framework_version`).
        renew: once the run was finished by us, the next use ``"continue"``s it by id
            (``resume="allow"``), starts a ``"new"`` one, or ``"keep"``s the finished session
            (its calls do nothing). After the user's ``wandb.finish()``: always a new run.
        pin_run_id: when pickled, fix the run id (rank zero of spawned workers logs into one run).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        owner: str,
        framework: str,
        framework_version: str | None = None,
        renew: Renew = "continue",
        pin_run_id: bool = False,
    ) -> None:
        self.settings = settings
        self.owner = owner
        self.framework = framework
        self.renew: Renew = renew
        self.pin_run_id = pin_run_id
        self.warner = OnceWarner()
        self._step_clock: Callable[[], int | None] | None = None
        self._framework_version = framework_version
        self._session: Session | None = None
        self._prepared = False  # prepare() ran for the current session
        self._running = False  # inside a framework call (fit, train)
        self._called = False  # a framework call ended with the current session

    # ----------------------------------------------------------- session

    @property
    def framework_version(self) -> str | None:
        """The framework's version, given to every session made (and to the current one when set)."""
        return self._framework_version

    @framework_version.setter
    def framework_version(self, version: str | None) -> None:
        self._framework_version = version
        if self._session is not None:
            self._session.framework_version = version

    @property
    def step_clock(self) -> Callable[[], int | None] | None:
        """The framework's step for values logged without one (``Session.step_clock``), given to every session.

        Pickled along when it is a method (of the callback), else set it again after unpickling.
        """
        return self._step_clock

    @step_clock.setter
    def step_clock(self, clock: Callable[[], int | None] | None) -> None:
        self._step_clock = clock
        if self._session is not None:
            self._session.step_clock = clock

    @property
    def current(self) -> Session | None:
        """The session made so far (finished or not), or None; makes nothing."""
        return self._session

    @property
    def session(self) -> Session:
        """The session; made at first use, and made again once finished (see ``renew``)."""
        session = self._session
        if session is None or session.finished:
            if session is not None and self.renew == "keep" and not session.ended_by_user:
                return session
            settings = self.settings
            if session is not None and session.ended_by_user:
                settings = settings.with_changes(run=None)  # the user finished that run: a new one
            elif session is not None and self.renew == "continue" and session.owns_run and session.run_id:
                settings = settings.with_changes(id=session.run_id, resume="allow")
            session = self.new_session(settings)
        return session

    def new_session(self, settings: Settings | None = None) -> Session:
        """Finish the current run (exit code 0) if open and make a new session (default: the holder's settings)."""
        old = self._session
        if old is not None and not old.finished:
            self.finish(0)
        _IDLE.discard(self)
        session = Session(
            bridge_settings=self.settings if settings is None else settings,
            framework=self.framework,
            framework_version=self._framework_version,
        )
        session.step_clock = self._step_clock
        self._session, self._prepared, self._called = session, False, False
        return session

    def start(self, prepare: Callable[[Session], None] | None = None) -> Session | None:
        """Start the run if needed; the started session, or None where this process does not log.

        The first time for a session: other holders' idle runs are finished, then
        ``prepare(session)`` (e.g. resume from a checkpoint), then the run starts.
        """
        if self._running and self._prepared:  # (every step of a call: its run, nothing to prepare or wake)
            active = self.active
            if active is not None:
                return active
        session = self.session
        if not self._prepared:
            self._prepared = True
            if not session.started:
                for other in list(_IDLE):
                    if other is not self:
                        other.finish(0)
                if prepare is not None:
                    prepare(session)
                session.start()
        _IDLE.discard(self)
        return self.active

    @property
    def active(self) -> Session | None:
        """The started, unfinished session of a process that logs, else None; starts nothing."""
        session = self._session
        if session is None or not session.enabled or not session.started or session.finished:
            return None
        return session

    # ---------------------------------------------------------- lifetime

    @property
    def running(self) -> bool:
        """True between :meth:`begin_call` and :meth:`end_call`."""
        return self._running

    def begin_call(self, *, new_run: bool = False) -> None:
        """A framework call (fit, train) begins.

        Args:
            new_run: a run that already saw a call end is finished and the next use starts a new one.
        """
        if new_run and self._called and self._session is not None:
            self.new_session()
        _IDLE.discard(self)  # (a run in use is not idle: see start)
        self._running = True

    def end_call(self, exc: BaseException | None = None, *, preempted: bool = False) -> None:
        """A framework call ended: well (``exc`` None, not ``preempted``) or not.

        Ended well: what is queued is handed to wandb and the run stays open, idle
        (finished when another holder starts a run, by :meth:`finish`, or at exit).
        Failed: the run is finished now, exit code 143 when ``preempted`` (marked
        preempting), 130 for Ctrl-C, else 1.
        """
        self._running = False
        session = self._session
        if session is None:
            return
        if exc is None and not preempted:
            self._called = True
            if session.started and not session.finished:
                session.flush()
                if session.owns_run:
                    _IDLE.add(self)
            return
        if preempted:
            session.mark_preempting()
        code = 143 if preempted else exit_code_for(exc)
        self.finish(code if code != 0 else 1)

    def finish(self, exit_code: int | None = None) -> None:
        """Flush and finish the run if we started it; idempotent. ``exit_code`` None: 1 inside a call, else 0."""
        _IDLE.discard(self)
        session = self._session
        if session is not None:
            session.finish((1 if self._running else 0) if exit_code is None else exit_code)

    def exit(self, exc: BaseException | None) -> None:
        """A callback's ``with`` block ended (``exc``: what ended it): finish the run with its exit code."""
        self.finish(exit_code_for(exc))

    # ---------------------------------------------------- error boundary

    def failed(self, what: str, exc: Exception) -> None:
        """A hook failed: warn once per ``what`` and error type and go on; raise with ``on_error="raise"``."""
        hook_failed(self.warner, self.settings.on_error, self.owner, what, exc)

    def boundary(self, what: str) -> _Boundary:
        """``with holder.boundary("log an epoch"): ...``: the error boundary around a block."""
        return _Boundary(self, what)

    # ---------------------------------------------------------- pickling

    def __getstate__(self) -> dict[str, Any]:
        # Callbacks travel into spawned workers and Ray Tune trials: the settings do, a live run does not.
        settings = self.settings
        if self.pin_run_id and settings.rank_zero_only and settings.id is None:
            session = self._session
            run_id = None if session is None else session.run_id
            if run_id is None:
                run_id = "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))
            elif session is not None:
                session.flush()
            self.settings = settings = settings.with_changes(id=run_id)  # later sessions here use it too
        state = {**self.__dict__, "settings": settings.with_changes(run=None), "_session": None}
        if not inspect.ismethod(self._step_clock):
            state["_step_clock"] = None
        return {**state, "_prepared": False, "_running": False, "_called": False}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


class _Boundary:
    """The error boundary as a context manager (see :meth:`SessionHolder.boundary`)."""

    def __init__(self, holder: SessionHolder, what: str) -> None:
        self._holder, self._what = holder, what

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        if not isinstance(exc, Exception):
            return False  # no error, or KeyboardInterrupt/SystemExit: not ours to stop
        self._holder.failed(self._what, exc)
        return True


__all__ = ["Renew", "SessionHolder", "resolve_settings"]
