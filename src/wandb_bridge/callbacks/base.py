"""What every callback stands on, hook side: the error-boundary decorator, session methods, pickling, the stack read.

The session and the run's lifetime are :class:`~wandb_bridge.core.holder.SessionHolder`'s (re-exported here with
``resolve_settings``; a callback holds one as ``self._holder``):

* ``@guarded`` / ``@guarded("log an epoch", default=x)`` on hooks, ``with holder.boundary("..."):`` inline:
  one warning per hook and error type, training goes on; ``on_error="raise"`` raises.
* ``session_method(Session.log_checkpoint, session_of, doc)``: a callback method that is a ``Session`` method.
* ``picklable_state(self, "_trainer_ref")`` is a callback's ``__getstate__`` (the holder pickles as its settings).
* ``calling_frames()``: the one stack read.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Concatenate, ParamSpec, TypeVar, overload

from wandb_bridge.core.holder import SessionHolder, resolve_settings
from wandb_bridge.core.session import Session

_F = TypeVar("_F", bound=Callable[..., Any])
_P = ParamSpec("_P")


@overload
def guarded(what: _F, *, default: Any = None) -> _F: ...
@overload
def guarded(what: str | None = None, *, default: Any = None) -> Callable[[_F], _F]: ...
def guarded(what: Any = None, *, default: Any = None) -> Any:
    """Decorate a callback's hook with its holder's error boundary (the instance has ``_holder``).

    ``@guarded`` (the message says ``run <hook name>``) or ``@guarded("log an epoch", default=...)``:
    a failing hook warns once and returns ``default``; with ``on_error="raise"`` it raises.
    """

    def decorate(hook: _F) -> _F:
        label = what if isinstance(what, str) else f"run {hook.__name__}"

        @functools.wraps(hook)
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            try:
                return hook(self, *args, **kwargs)
            except Exception as exc:
                self._holder.failed(label, exc)
                return default

        return wrapper  # type: ignore[return-value]

    return decorate(what) if callable(what) else decorate


def session_method(
    method: Callable[Concatenate[Session, _P], None], session_of: Callable[[Any], Session], doc: str
) -> Callable[Concatenate[Any, _P], None]:
    """A callback method that is a :class:`Session` method: the same parameters (typed and shown as ``method``'s).

    Args:
        method: the ``Session`` method (e.g. ``Session.log_checkpoint``).
        session_of: the callback's session to call it on.
        doc: the callback method's docstring (what it means in the framework).
    """

    @functools.wraps(method)
    def call(self: Any, /, *args: _P.args, **kwargs: _P.kwargs) -> None:
        method(session_of(self), *args, **kwargs)

    call.__doc__ = doc
    return call


def picklable_state(obj: object, *drop: str) -> dict[str, Any]:
    """``obj.__dict__`` for ``__getstate__``, with the named attributes (weak references, framework objects) None.

    The holder in it pickles as its settings only.
    """
    state = dict(vars(obj))
    state.update(dict.fromkeys(drop))
    return state


def calling_frames(depth: int = 12) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """``(function name, locals)`` of the caller's frame and those above it, nearest first, at most ``depth``.

    The one place a callback reads the call stack, for what a framework hands over
    through no public route (each use says why in its docstring).
    """
    frame = inspect.currentframe()
    try:
        frame = None if frame is None else frame.f_back  # the frame iterating over this generator
        while frame is not None and depth > 0:
            yield frame.f_code.co_name, frame.f_locals
            frame, depth = frame.f_back, depth - 1
    finally:
        del frame


__all__ = ["SessionHolder", "calling_frames", "guarded", "picklable_state", "resolve_settings", "session_method"]
