"""``WandbKerasCallback``: Keras 3 (any backend) -> the shared wandb-bridge core.

The callback translates Keras events into :class:`~wandb_bridge.core.session.Session` calls;
key names, the step axis, aliases, the monitor, which checkpoint files are new, the final-model
rule and run ownership are the core's. It talks to the backend only through ``keras.ops`` and
``keras.backend``; how it reads Keras is in :mod:`wandb_bridge.callbacks.keras_support` (a
fit's config and samples in :mod:`~wandb_bridge.callbacks.keras_data`), the ``ModelCheckpoint``
callbacks it follows in :mod:`wandb_bridge.callbacks.keras_checkpoints`.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Literal

from wandb_bridge.callbacks import keras_data as data
from wandb_bridge.callbacks import keras_support as support
from wandb_bridge.callbacks.base import SessionHolder, guarded, resolve_settings
from wandb_bridge.callbacks.keras_checkpoints import Checkpoints
from wandb_bridge.callbacks.keras_steps import StepReader
from wandb_bridge.callbacks.keras_support import keras
from wandb_bridge.core import predictions, steps
from wandb_bridge.core.errors import WandbBridgeWarning
from wandb_bridge.core.session import Session

if sys.version_info >= (3, 12):
    from typing import override
else:
    from typing_extensions import override

_Callback: Any = keras.callbacks.Callback
LogFreq = Literal["epoch", "batch"] | int


class WandbKerasCallback(_Callback):  # type: ignore[misc]
    """Log a Keras 3 ``fit``/``evaluate`` to Weights & Biases, on any backend (docs/keras.md).

    Example:
        >>> callback = WandbKerasCallback(project="demo", log_model="best")  # doctest: +SKIP
        >>> model.fit(x, y, validation_data=(xv, yv), callbacks=[callback])  # doctest: +SKIP
        >>> model.evaluate(xt, yt, callbacks=[callback])   # -> test/loss  # doctest: +SKIP

    One callback object is one run, started at the first ``fit`` (or ``evaluate``) and finished by
    :meth:`finish`, a ``with`` block or the process's exit (docs/keras.md: what is recorded, when).

    Args:
        project, entity, name: where the run goes.
        log_freq: ``"epoch"`` (default), ``"batch"`` (a row every optimizer step) or an int N (every N steps).
        log_predictions: when > 0, a table of that many validation samples at ``val/predictions`` every epoch.
        validation_data: ``(x, y)`` arrays for ``log_predictions``; by default ``fit``'s.
        checkpoint_callback: the ``ModelCheckpoint`` (or a list) to follow; by default every one of the ``fit``.
        **kwargs: the shared arguments of docs/settings.md; other names go to ``wandb.init``.

    Raises:
        ValueError: an argument is not one of its allowed values.
    """

    def __init__(
        self,
        project: str | None = None,
        entity: str | None = None,
        name: str | None = None,
        *,
        log_freq: LogFreq = "epoch",
        log_predictions: int = 0,
        validation_data: tuple[Any, Any] | None = None,
        checkpoint_callback: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        self._every = support.check_log_freq(log_freq)
        self.log_freq: LogFreq = log_freq
        self.log_predictions = predictions.check_count(log_predictions)
        settings = resolve_settings({"project": project, "entity": entity, "name": name, **kwargs})
        self._holder = SessionHolder(
            settings, owner="WandbKerasCallback", framework="keras", framework_version=keras.__version__
        )
        self._predictions = data.EpochPredictions(self.log_predictions, validation_data)
        self._checkpoints = Checkpoints(checkpoint_callback)
        self._clock = StepReader()
        self._epoch = 0
        if self._every:  # per-batch hooks only with batch logging (else Keras's no-op defaults stay)
            self.on_train_batch_end = self._train_batch_end
            if keras.backend.backend() == "jax":
                self.on_train_batch_begin = self._train_batch_begin
        if settings.log_health:  # chained before the batch hooks above (callbacks/keras_health.py)
            from wandb_bridge.callbacks import keras_health

            keras_health.install(self, keras.backend.backend())

    #: Lets Keras's ``CallbackList`` run batch ends in a thread pool when the other callbacks
    #: allow it too: the batch hook only reads its arguments and state fixed for the epoch.
    async_safe = True

    @property
    def session(self) -> Session:
        """The :class:`~wandb_bridge.Session` of this ``fit`` (a run the user finished stays so until the next)."""
        return self._holder.current or self._holder.session

    @property
    def run(self) -> Any:
        """The wandb run, once started (None before the first ``fit``, or on a no-op rank)."""
        return self.session.run

    def finish(self, exit_code: int | None = None) -> None:
        """Upload what is pending and finish the run if this callback started it.

        Args:
            exit_code: the run's exit code; by default 1 while a ``fit`` is running (it raised), else 0.
        """
        self._holder.finish(exit_code)

    def __enter__(self) -> WandbKerasCallback:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._holder.exit(exc)

    def _step(self) -> int:
        """The optimizer's step now (one device read)."""
        self._clock.bind(self.model)  # (outside a fit, e.g. evaluate(), nothing bound it yet)
        return self._clock.read()[0]

    @override
    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        """Start the run, record the config, find the checkpoints to follow, read the optimizer step."""
        self._holder.begin_call()
        self._checkpoints.clear()
        with self._holder.boundary("start logging this fit"):
            siblings, arguments = support.fit_context(self)
            warner = self._holder.warner
            session = self._holder.start(lambda s: self._checkpoints.resume(s, self._step, siblings, arguments, warner))
            if session is None:
                return
            model, params = self.model, self.params or {}
            if self._every:  # batch logging: this fit's rows
                planned = (params.get("steps") or 0) * (params.get("epochs") or 0)
                session.plan_rows(steps.planned_rows(planned, self._every))
            self._clock.bind(model, params, arguments)
            self._checkpoints.begin(session, siblings)
            self._predictions.begin(session, arguments, warner)
            extracted = data.fit_config(model, params, arguments, self._clock.batch_size)
            extracted["wandb_bridge"] = {"log_freq": self.log_freq, "log_predictions": self.log_predictions}
            session.log_framework_config(extracted)

    @override
    @guarded("follow the checkpoint")
    def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        """Report the previous epoch's checkpoint files; remember the epoch."""
        self._epoch = epoch
        self._checkpoints.report_written(lambda: self.session)  # the last epoch's files

    @guarded("read the learning rate")
    def _train_batch_begin(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:  # noqa: ARG002
        """JAX, batch logging: the epoch's learning rate before its first step (the JAX trainer holds
        the model state inside its train step during an epoch)."""
        if batch == 0:
            self._clock.epoch_rate = self._clock.learning_rate(self._clock.raw_base)

    @guarded("log a batch")
    def _train_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        """The per-batch hook: no device read unless the batch is logged (the learning rate goes as a
        tensor); stateless, as Keras may run it for several batches at once in a thread pool."""
        clock = self._clock
        if not clock.completes(batch, self._every):
            return
        step, raw = clock.at_batch(batch)
        values = {k: v for k, v in (logs or {}).items() if k not in ("batch", "size")}
        rate = clock.learning_rate(raw - 1, in_batch=True)
        if rate is not None:
            values["learning_rate"] = rate
        self.session.log(values, step=step, epoch=clock.epoch_at(self._epoch, batch), samples=clock.batch_size)

    @override
    @guarded("log an epoch")
    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        """Log the epoch's training and validation values in the row of the epoch's last step."""
        session = self.session
        if not session.enabled:
            return
        logs = dict(logs or {})
        step, raw = self._clock.read()
        self._clock.raw_base = raw
        rate = self._clock.learning_rate(raw - 1)
        values = logs if rate is None else {**logs, "learning_rate": rate}
        session.log(values, step=step, epoch=float(epoch + 1), samples=self._clock.batch_size)
        self._predictions.epoch_end(self.model, step=step, epoch=float(epoch + 1))
        self._checkpoints.epoch_ended(session, step, epoch + 1, logs)

    @override
    def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
        """Report the last checkpoint files; save the model once when ``log_model`` asks and no checkpoint ran."""
        with self._holder.boundary("log the end of fit"):
            try:
                self._checkpoints.end_fit(self._holder.active, lambda: self.session, self.model, self._step)
            finally:
                self._holder.end_call()

    @override
    @guarded("log evaluate() results")
    def on_test_end(self, logs: Mapping[str, Any] | None = None) -> None:
        """Log ``evaluate()`` results under ``test/`` (validation inside ``fit`` comes with the epoch row)."""
        if self._holder.running or not logs:
            return
        session = self._holder.current
        if session is None or not session.ended_by_user:  # after wandb.finish(), the next fit starts a run
            session = self._holder.start()
        if session is None:
            return
        session.log(dict(logs), step=steps.evaluation_step(self._step(), session.last_step), stage="test")


__all__ = ["WandbBridgeWarning", "WandbKerasCallback"]
