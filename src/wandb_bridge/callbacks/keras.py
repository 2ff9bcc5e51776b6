"""``WandbKerasCallback``: Keras 3 (any backend) -> the shared wandb-bridge core.

The callback translates Keras events into :class:`~wandb_bridge.core.session.Session`
calls; key names, the step axis, checkpoint aliases and run ownership are decided
by the core. It never imports TensorFlow (nor torch or JAX): it talks to the
backend only through ``keras.ops`` and ``keras.backend``.

Keras APIs used beyond the public ``keras.callbacks.Callback`` contract (each with a
graceful fallback when it is missing):

* ``keras.callbacks.CallbackList.callbacks``: to find the ``ModelCheckpoint``
  callbacks of the same ``fit``. Keras hands a callback its model and params but
  not its siblings, so :meth:`WandbKerasCallback.on_train_begin` looks one or
  two frames up the call stack (``inspect.currentframe``) for the
  ``CallbackList`` that is calling it. ``checkpoint_callback=`` bypasses this.
* The locals of the ``Model.fit`` frame above it (``batch_size``,
  ``initial_epoch``, ``val_x``/``val_y``...), read once per ``fit`` for the
  config, for ``log_predictions`` and for resuming (``initial_epoch > 0``
  continues the run of the checkpoint trained from);
  ``validation_data=`` and ``resume_from_checkpoint=`` bypass this.
* ``optimizer._iterations`` only with ``gradient_accumulation_steps`` (the
  public ``optimizer.iterations`` is the floor-divided count there, and the
  callback needs the per-batch count to place batch rows).
"""

from __future__ import annotations

import glob
import importlib.util
import inspect
import os
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType, TracebackType
from typing import Any, Literal

from wandb_bridge.callbacks._require import require
from wandb_bridge.core.checkpoints import find_run_marker
from wandb_bridge.core.errors import OnceWarner, WandbBridgeWarning, hook_failed
from wandb_bridge.core.predictions import PredictionTable
from wandb_bridge.core.session import Session, exit_code_for
from wandb_bridge.core.settings import Settings, infer_monitor_mode

if sys.version_info >= (3, 12):
    from typing import override
else:
    from typing_extensions import override


def _import_keras() -> ModuleType:
    try:
        module = require("keras", "keras", "WandbKerasCallback")
    except ImportError as exc:
        cause = exc.__cause__
        if cause is not None and importlib.util.find_spec("keras") is not None:
            raise ImportError(
                f"WandbKerasCallback could not import keras ({type(cause).__name__}: {cause}). "
                "Keras 3 imports the backend named by KERAS_BACKEND (tensorflow when unset): "
                "install that backend, or set KERAS_BACKEND to 'torch' or 'jax' before keras is imported."
            ) from cause
        raise
    version = str(getattr(module, "__version__", "0"))
    if not version.split(".")[0].isdigit() or int(version.split(".")[0]) < 3:
        raise ImportError(f"WandbKerasCallback needs Keras 3 (found keras {version}): pip install 'keras>=3'")
    return module


keras = _import_keras()
_Callback: Any = keras.callbacks.Callback

LogFreq = Literal["epoch", "batch"] | int

_FIT_LOCALS = (
    "batch_size",
    "epochs",
    "initial_epoch",
    "steps_per_epoch",
    "validation_split",
    "validation_freq",
    "validation_steps",
    "validation_batch_size",
    "shuffle",
    "validation_data",
    "val_x",
    "val_y",
    "epoch_iterator",
)
_STACK_DEPTH = 12


@dataclass
class _Watch:
    """A ``ModelCheckpoint`` whose files are followed: a glob and the files seen before."""

    callback: Any
    pattern: str
    seen: dict[str, tuple[int, int, int]] = field(default_factory=dict)


@dataclass
class _Pending:
    """An epoch whose checkpoint files are looked for once every callback's ``on_epoch_end`` ran."""

    step: int
    epoch: int
    logs: dict[str, Any]


class WandbKerasCallback(_Callback):  # type: ignore[misc]
    """Log a Keras 3 ``fit``/``evaluate`` to Weights & Biases, on any backend.

    Example:
        >>> callback = WandbKerasCallback(project="demo", log_model="best")  # doctest: +SKIP
        >>> model.fit(x, y, validation_data=(xv, yv), callbacks=[callback])  # doctest: +SKIP
        >>> model.evaluate(xt, yt, callbacks=[callback])   # -> test/loss  # doctest: +SKIP
        >>> callback.finish()   # or leave it to the end of the process  # doctest: +SKIP

    What is recorded (the run contract, docs/run-contract.md): ``trainer/global_step`` is the
    optimizer's iteration count, so it continues across several ``fit`` calls
    and ``initial_epoch`` resumes; ``trainer/epoch`` counts completed epochs
    (``1.0`` at the end of the first); ``loss`` -> ``train/loss``,
    ``val_loss`` -> ``val/loss``, ``val_<m>`` -> ``val/<m>``, other metrics ->
    ``train/<m>``; ``train/learning_rate``; ``evaluate()`` -> ``test/<m>``.

    The run starts at the first ``fit`` (or ``evaluate``). One callback object
    is one run: it stays open across ``fit`` and ``evaluate`` calls and is
    finished by :meth:`finish`, by leaving a ``with`` block, or when the
    process exits (exit code 1 when it exits during ``fit``).

    Args:
        project, entity, name, group, tags, job_type, notes, config, mode, dir,
            id, resume, run, log_model, checkpoint_name, monitor, monitor_mode,
            system_stats, rank_zero_only, on_error: the shared arguments of
            docs/settings.md. ``log_model=True`` means ``"end"``.
        log_freq: ``"epoch"`` (default: one row per epoch, and no per-batch
            hook runs at all), ``"batch"`` (a row for every optimizer step), or
            an int N (a row every N optimizer steps) plus the epoch rows.
        log_predictions: when > 0, a table of that many validation samples
            (input summary, target, prediction) is logged at ``val/predictions``
            every epoch; the samples themselves are logged once as a
            ``dataset`` artifact ``val-samples-<run id>``.
        validation_data: ``(x, y)`` arrays for ``log_predictions``; by default
            the validation data of ``fit`` (``validation_data=`` or
            ``validation_split=``) when it is made of arrays.
        checkpoint_callback: the ``keras.callbacks.ModelCheckpoint`` (or a list
            of them) to follow; by default every ``ModelCheckpoint`` in the same
            ``fit`` is found automatically.
        **init_kwargs: passed on to ``wandb.init``.

    Raises:
        ValueError: an argument is not one of its allowed values.
    """

    def __init__(
        self,
        project: str | None = None,
        entity: str | None = None,
        name: str | None = None,
        *,
        group: str | None = None,
        tags: Sequence[str] | None = None,
        job_type: str | None = None,
        notes: str | None = None,
        config: Mapping[str, Any] | Any = None,
        mode: Literal["online", "offline", "disabled"] | None = None,
        dir: str | os.PathLike[str] | None = None,
        id: str | None = None,
        resume: str | bool | None = None,
        run: Any = None,
        log_model: bool | Literal["end", "best", "all"] | None = None,
        checkpoint_name: str | None = None,
        monitor: str | None = None,
        monitor_mode: Literal["min", "max"] | None = None,
        system_stats: bool | None = None,
        rank_zero_only: bool | None = None,
        on_error: Literal["warn", "raise"] | None = None,
        log_freq: LogFreq = "epoch",
        log_predictions: int = 0,
        validation_data: tuple[Any, Any] | None = None,
        checkpoint_callback: Any = None,
        **init_kwargs: Any,
    ) -> None:
        super().__init__()
        if log_freq not in ("epoch", "batch") and not (
            isinstance(log_freq, int) and not isinstance(log_freq, bool) and log_freq > 0
        ):
            raise ValueError(f"log_freq={log_freq!r} is not valid; use 'epoch', 'batch' or a positive int")
        if not isinstance(log_predictions, int) or isinstance(log_predictions, bool) or log_predictions < 0:
            raise ValueError(f"log_predictions must be an int >= 0, got {log_predictions!r}")
        shared = {
            "group": group,
            "tags": tags,
            "job_type": job_type,
            "notes": notes,
            "config": config,
            "mode": mode,
            "dir": None if dir is None else os.fspath(dir),
            "id": id,
            "resume": resume,
            "run": run,
            "log_model": log_model,
            "checkpoint_name": checkpoint_name,
            "monitor": monitor,
            "monitor_mode": monitor_mode,
            "system_stats": system_stats,
            "rank_zero_only": rank_zero_only,
            "on_error": on_error,
        }
        settings = Settings.resolve(
            project=project,
            entity=entity,
            name=name,
            default_log_model_true="end",
            **{k: v for k, v in shared.items() if v is not None},
            **init_kwargs,
        )
        self._session = Session(bridge_settings=settings, framework="keras", framework_version=str(keras.__version__))
        self.log_freq: LogFreq = log_freq
        self.log_predictions = log_predictions
        self._every = 1 if log_freq == "batch" else (log_freq if isinstance(log_freq, int) else 0)
        self._validation_data = validation_data
        self._checkpoint_callbacks = _as_list(checkpoint_callback)
        self._warner = OnceWarner()
        # Per-fit state (set in on_train_begin / on_epoch_begin).
        self._in_fit = False
        self._optimizer: Any = None
        self._accumulation = 1
        self._raw_base = 0
        self._per_call = 1
        self._frozen_variables = False
        self._epoch_rate: Any = None
        self._epoch = 0
        self._steps: int | None = None
        self._batch_size: int | None = None
        self._schedule: Callable[[Any], Any] | None = None
        self._watches: list[_Watch] = []
        self._pending: _Pending | None = None
        self._last_epoch_logs: dict[str, Any] = {}
        self._last_epoch: int | None = None
        self._samples: tuple[Any, Any] | None = None
        self._table = PredictionTable(self._session)
        self._user_config_keys: frozenset[str] = frozenset()
        if self._every:
            # Only with batch logging does this object get per-batch hooks (as
            # instance attributes). With log_freq="epoch" the class keeps Keras's
            # own no-op defaults (marked @keras.utils.default), so no code of
            # ours runs per batch.
            self.on_train_batch_end = self._train_batch_end
            if keras.backend.backend() == "jax":
                self.on_train_batch_begin = self._train_batch_begin
        if settings.log_health:  # chained before the batch hooks above (callbacks/keras_health.py)
            from wandb_bridge.callbacks import keras_health

            keras_health.install(self, keras.backend.backend())

    #: Lets Keras's ``CallbackList`` run batch ends (and its reading of the
    #: logs) in a thread pool when the other callbacks allow it too (thread-safe
    #: backends, e.g. ``verbose=0``). The batch hook is stateless: it only reads
    #: its arguments and state fixed for the epoch, and hands values to the core.
    async_safe = True

    # --------------------------------------------------------------- public

    @property
    def session(self) -> Session:
        """The :class:`~wandb_bridge.core.session.Session` behind this callback (log extra values with it)."""
        return self._session

    @property
    def run(self) -> Any:
        """The wandb run, once started (None before the first ``fit``, or on a no-op rank)."""
        return self._session.run

    def finish(self, exit_code: int | None = None) -> None:
        """Upload what is pending and finish the run if this callback started it.

        Args:
            exit_code: the run's exit code; by default 1 when called while a
                ``fit`` is still running (it raised), else 0.
        """
        if exit_code is None:
            exit_code = 1 if self._in_fit else 0
        self._session.finish(exit_code)

    def __enter__(self) -> WandbKerasCallback:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.finish(exit_code_for(exc))

    # ---------------------------------------------------------- train hooks

    @override
    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        """Start the run, record the config, find checkpoints, read the optimizer step."""
        self._in_fit = True
        self._pending = None
        self._last_epoch = None
        try:
            self._begin_fit()
        except Exception as exc:
            self._fault("start logging this fit", exc)

    def _begin_fit(self) -> None:
        session = self._session
        if session.ended_by_user:
            # The last run was finished by wandb.finish(): this fit starts a new one.
            settings = session.settings.with_changes(run=None)
            session = self._session = Session(
                bridge_settings=settings, framework="keras", framework_version=session.framework_version
            )
            self._table = PredictionTable(session)
        siblings, fit_locals = self._fit_context()
        if not session.started:
            self._resume(siblings, fit_locals)
        session.start()
        if not session.enabled:
            return
        model = self.model
        self._bind_optimizer(model)
        _, raw = self._read_step()
        self._raw_base = raw
        per_call = getattr(model, "steps_per_execution", 1)
        self._per_call = per_call if isinstance(per_call, int) and per_call > 0 else 1
        params = self.params or {}
        steps = params.get("steps")
        self._steps = steps if isinstance(steps, int) and steps > 0 else None
        self._schedule = _schedule_of(self._optimizer)
        self._frozen_variables = keras.backend.backend() == "jax"
        self._batch_size = _batch_size(fit_locals)
        self._watch_checkpoints(siblings)
        if self.log_predictions and self._samples is None:
            self._samples = self._pick_samples(fit_locals)
        self._log_config(model, params, fit_locals)

    @override
    def on_epoch_begin(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        """Report the previous epoch's checkpoint files; fix the step base of this epoch."""
        self._epoch = epoch
        try:
            self._resolve_pending()
        except Exception as exc:
            self._fault("follow the checkpoint", exc)

    def _train_batch_begin(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:  # noqa: ARG002
        """JAX only, with batch logging: take the epoch's learning rate before the first step.

        The JAX trainer keeps the model's state inside the train step during an
        epoch (the variables hold no value from the first step to the epoch's
        end), after every ``on_epoch_begin`` (``LearningRateScheduler``) ran.
        """
        if batch == 0:
            try:
                self._epoch_rate = self._learning_rate(self._raw_base)
            except Exception as exc:
                self._fault("read the learning rate", exc)

    def _train_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        """The per-batch hook (installed only when ``log_freq`` is not ``"epoch"``).

        The step is computed from the batch index and the optimizer step read at
        the start of the epoch: no device read unless the batch is logged, and
        then only the values Keras already holds plus the learning rate (handed
        to the core as a tensor, read off the training thread).
        """
        try:
            raw = self._raw_base + batch + 1
            accumulation, every = self._accumulation, self._every
            step = raw // accumulation
            # Stateless (Keras may run this hook for several batches at once in a
            # thread pool): log when this call completed a multiple of `every`
            # optimizer steps; the call covered `steps_per_execution` batches.
            if step // every <= ((raw - self._per_call) // accumulation) // every:
                return
            values = dict(logs) if logs else {}
            values.pop("batch", None)
            values.pop("size", None)
            rate = self._learning_rate(raw - 1, in_batch=True)
            if rate is not None:
                values["learning_rate"] = rate
            epoch = self._epoch + (batch + 1) / self._steps if self._steps else float(self._epoch)
            self._session.log(values, step=step, epoch=epoch, samples=self._batch_size)
        except Exception as exc:
            self._fault("log a batch", exc)

    @override
    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        """Log the epoch's training and validation values in the row of the epoch's last step."""
        try:
            self._end_epoch(epoch, dict(logs or {}))
        except Exception as exc:
            self._fault("log an epoch", exc)

    def _end_epoch(self, epoch: int, logs: dict[str, Any]) -> None:
        if not self._session.enabled:
            return
        step, raw = self._read_step()
        self._raw_base = raw
        values: dict[str, Any] = dict(logs)
        rate = self._learning_rate(raw - 1)
        if rate is not None:
            values["learning_rate"] = rate
        self._session.log(values, step=step, epoch=float(epoch + 1), samples=self._batch_size)
        if self._samples is not None:
            self._log_predictions(step, epoch)
        self._last_epoch_logs = logs
        self._last_epoch = epoch + 1
        self._refine_monitor()
        if self._watches:
            self._pending = _Pending(step=step, epoch=epoch + 1, logs=logs)

    @override
    def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
        """Report the last checkpoint files; save the model once when ``log_model`` asks and no checkpoint ran."""
        try:
            self._resolve_pending()
            if self._should_save_at_end():
                self._save_at_end()
            if self._session.settings.log_model == "end":
                # The run stays open (evaluate(), another fit): "end" means the end of this fit.
                self._session.upload_end_checkpoints()
        except Exception as exc:
            self._fault("log the end of fit", exc)
        finally:
            self._in_fit = False

    # ----------------------------------------------------------- test hooks

    @override
    def on_test_end(self, logs: Mapping[str, Any] | None = None) -> None:
        """Log ``evaluate()`` results under ``test/`` (validation inside ``fit`` comes with the epoch row)."""
        if self._in_fit or not logs:
            return
        try:
            session = self._session
            session.start()
            if not session.enabled:
                return
            self._bind_optimizer(self.model)
            step, _ = self._read_step()
            if step == 0 and session.last_step:
                step = session.last_step
            session.log(dict(logs), step=step, stage="test")
        except Exception as exc:
            self._fault("log evaluate() results", exc)

    # -------------------------------------------------------------- steps

    def _bind_optimizer(self, model: Any) -> None:
        self._optimizer = getattr(model, "optimizer", None)
        inner = getattr(self._optimizer, "inner_optimizer", self._optimizer)
        accumulation = getattr(inner, "gradient_accumulation_steps", None)
        self._accumulation = accumulation if isinstance(accumulation, int) and accumulation > 1 else 1

    def _read_step(self) -> tuple[int, int]:
        """``(optimizer steps, optimizer iterations)`` now: one device read, at fit and epoch boundaries only."""
        optimizer = self._optimizer
        if optimizer is None:
            return 0, 0
        step = _to_int(optimizer.iterations)
        if self._accumulation == 1:
            return step, step
        inner = getattr(optimizer, "inner_optimizer", optimizer)
        counter = getattr(inner, "_iterations", None)
        raw = _to_int(counter) if counter is not None else step * self._accumulation
        return step, raw

    def _learning_rate(self, iteration: int, in_batch: bool = False) -> Any:
        """The learning rate used by update number ``iteration + 1``, without a device read.

        A schedule is evaluated on the step number (a backend tensor the core
        reads in its worker); a learning-rate variable is copied on its device
        (on JAX, inside an epoch, the copy taken at the epoch's start).
        """
        optimizer = self._optimizer
        if optimizer is None:
            return None
        if self._schedule is not None:
            value = self._schedule(max(iteration, 0))
        elif in_batch and self._frozen_variables:
            return self._epoch_rate
        else:
            value = optimizer.learning_rate
            if isinstance(value, keras.Variable):
                value = keras.ops.copy(value)
        return _deferred_scalar(value)

    # ------------------------------------------------------------- config

    def _log_config(self, model: Any, params: Mapping[str, Any], fit_locals: Mapping[str, Any]) -> None:
        session = self._session
        if not self._user_config_keys and session.settings.config:
            from wandb_bridge.core.hparams import prepare_config

            self._user_config_keys = frozenset(prepare_config(session.settings.config)[0])
        config: dict[str, Any] = {
            "keras": {"version": str(keras.__version__), "backend": keras.backend.backend()},
            "fit": _fit_config(params, fit_locals, self._batch_size),
            "wandb_bridge": {"log_freq": self.log_freq, "log_predictions": self.log_predictions},
        }
        optimizer = self._optimizer
        if optimizer is not None:
            try:
                config["optimizer"] = {"class": type(optimizer).__name__, **optimizer.get_config()}
            except Exception:
                config["optimizer"] = {"class": type(optimizer).__name__}
        compiled = _compile_config(model)
        if compiled:
            config.update(compiled)
        config["model"] = _model_config(model)
        from wandb_bridge.core.hparams import prepare_config

        flat, _ = prepare_config(config)
        flat = {k: v for k, v in flat.items() if k not in self._user_config_keys}
        session.log_config(flat)

    # -------------------------------------------------------- checkpoints

    def _resume(self, siblings: list[Any] | None, fit_locals: Mapping[str, Any]) -> None:
        """``fit(initial_epoch=E)`` with E > 0: continue the run of the checkpoint training resumed from.

        The checkpoint is one the ``ModelCheckpoint`` callbacks of this ``fit``
        write, marked by the core with its run: the one saved at the optimizer's
        restored step (loading a ``.keras`` file restores it), else the one of
        epoch E, else the newest one before that step. An optimizer at step 0
        (weights-only checkpoint) resumes nothing: the step axis would restart.
        """
        initial = fit_locals.get("initial_epoch")
        if self._session.settings.resume_from_checkpoint or not isinstance(initial, int) or initial <= 0:
            return
        self._bind_optimizer(self.model)
        step, _ = self._read_step()
        if step == 0:
            self._warn(
                "resume:optimizer",
                f"fit(initial_epoch={initial}) starts with an optimizer at step 0 (weights-only checkpoint?): "
                "trainer/global_step restarts at 0, so this fit is not recorded into the checkpoint's run. "
                "Resume from a full .keras checkpoint (keras.models.load_model) to continue that run.",
            )
            return
        callbacks = list(self._checkpoint_callbacks) or [
            c for c in siblings or [] if isinstance(c, keras.callbacks.ModelCheckpoint)
        ]
        found: list[tuple[int, int, str]] = []  # (rank of the match, step, path)
        for callback in callbacks:
            template = getattr(callback, "filepath", None)
            if not isinstance(template, str) or not template:
                continue
            for path in _scan(_template_glob(template)):
                marker = find_run_marker(path)
                if marker is None or marker.step is None or not 0 < marker.step <= step:
                    continue
                rank = 3 if marker.step == step else 2 if marker.epoch == initial else 1
                found.append((rank, marker.step, path))
        if found:
            self._session.resume_from_checkpoint(max(found)[2])

    def _watch_checkpoints(self, siblings: list[Any] | None) -> None:
        found = list(self._checkpoint_callbacks)
        if not found and siblings:
            found = [c for c in siblings if isinstance(c, keras.callbacks.ModelCheckpoint)]
        self._watches = []
        for callback in found:
            template = getattr(callback, "filepath", None)
            if not isinstance(template, str) or not template:
                continue
            watch = _Watch(callback, _template_glob(template))
            watch.seen = _scan(watch.pattern)
            self._watches.append(watch)
        if self._watches and self._session.settings.monitor is None:
            callback = self._monitored()
            monitor = getattr(callback, "monitor", None)
            if isinstance(monitor, str):
                self._session.define_monitor(monitor, _checkpoint_mode(callback), stage="train")

    def _monitored(self) -> Any:
        """The followed checkpoint callback whose ``monitor`` the run adopts (a ``save_best_only`` one first)."""
        best_only = [w.callback for w in self._watches if getattr(w.callback, "save_best_only", False)]
        return best_only[0] if best_only else self._watches[0].callback

    def _refine_monitor(self) -> None:
        # Keras decides "auto" at the first epoch end (from the metric's direction).
        if not self._watches or self._session.settings.monitor is not None:
            return
        callback = self._monitored()
        mode = _checkpoint_mode(callback)
        if mode != self._session.policy.monitor_mode and isinstance(getattr(callback, "monitor", None), str):
            self._session.define_monitor(callback.monitor, mode, stage="train")

    def _resolve_pending(self) -> None:
        """Report the files the followed ``ModelCheckpoint`` callbacks wrote since the last look.

        Runs at the next ``on_epoch_begin`` / ``on_train_end``, so every
        callback's ``on_epoch_end`` has run, whatever the order of the callbacks.
        A file is reported when it is new or its (mtime, size, inode) changed: a
        ``save_best_only`` epoch without improvement writes nothing and reports nothing.
        """
        pending, self._pending = self._pending, None
        if pending is None:
            return
        for watch in self._watches:
            now = _scan(watch.pattern)
            written = [p for p, key in now.items() if watch.seen.get(p) != key]
            watch.seen = now
            written.sort(key=lambda p: (now[p][0], p))
            callback = watch.callback
            for path in written:
                self._session.log_checkpoint(
                    path,
                    step=pending.step,
                    epoch=pending.epoch,
                    metrics=pending.logs,
                    metadata={
                        "format": _format_of(path),
                        "filepath_template": callback.filepath,
                        "save_best_only": bool(getattr(callback, "save_best_only", False)),
                        "save_weights_only": bool(getattr(callback, "save_weights_only", False)),
                        "keras_backend": keras.backend.backend(),
                    },
                )

    def _should_save_at_end(self) -> bool:
        session = self._session
        return (
            session.enabled
            and session.started
            and session.settings.log_model is not False
            and not self._watches
            and self._last_epoch is not None
        )

    def _save_at_end(self) -> None:
        step, _ = self._read_step()
        folder = self._model_dir()
        path = os.path.join(folder, f"model-step-{step}.keras")
        self.model.save(path, overwrite=True)
        self._session.log_checkpoint(
            path,
            step=step,
            epoch=self._last_epoch,
            metrics=self._last_epoch_logs,
            metadata={"format": "keras", "saved_by": "wandb_bridge", "keras_backend": keras.backend.backend()},
        )

    def _model_dir(self) -> str:
        """A folder beside the run's ``files/`` (not uploaded as run files)."""
        run_dir = self._session.run_dir
        if run_dir:
            folder = os.path.join(os.path.dirname(os.path.abspath(run_dir)), "keras")
        else:
            folder = tempfile.mkdtemp(prefix="wandb-bridge-keras-")
        os.makedirs(folder, exist_ok=True)
        return folder

    # -------------------------------------------------------- predictions

    def _pick_samples(self, fit_locals: Mapping[str, Any]) -> tuple[Any, Any] | None:
        data = self._validation_data
        if data is None:
            if fit_locals.get("val_x") is not None:
                data = (fit_locals.get("val_x"), fit_locals.get("val_y"))
            elif isinstance(fit_locals.get("validation_data"), (tuple, list)):
                data = tuple(fit_locals["validation_data"])[:2]
        if data is None or len(data) < 2 or data[1] is None:
            self._warn(
                "predictions",
                "log_predictions needs validation arrays: pass validation_data=(x, y) "
                "to WandbKerasCallback or arrays to fit(validation_data=...); no prediction table is logged.",
            )
            return None
        x, y = data[0], data[1]
        n = self.log_predictions
        try:
            tree = keras.tree
            to_numpy = keras.ops.convert_to_numpy
            return tree.map_structure(lambda a: to_numpy(a[:n]), x), tree.map_structure(lambda a: to_numpy(a[:n]), y)
        except Exception:
            self._warn(
                "predictions",
                "log_predictions: the validation data is not made of arrays "
                "(a dataset or generator); pass validation_data=(x, y) arrays to WandbKerasCallback.",
            )
            return None

    def _log_predictions(self, step: int, epoch: int) -> None:
        samples = self._samples
        assert samples is not None
        x, y = samples
        table = self._table
        if not table.samples_logged:
            import numpy as np

            path = os.path.join(self._model_dir(), "val-samples.npz")
            arrays = {f"x_{i}": a for i, a in enumerate(keras.tree.flatten(x))}
            arrays.update({f"y_{i}": a for i, a in enumerate(keras.tree.flatten(y))})
            np.savez(path, **arrays)
            table.log_samples(path, len(keras.tree.flatten(x)[0]))
        predicted = keras.tree.map_structure(keras.ops.convert_to_numpy, self.model.predict_on_batch(x))
        flat = keras.tree.flatten
        table.log(flat(x), flat(y), flat(predicted), step=step, epoch=float(epoch + 1))

    # ----------------------------------------------------------- plumbing

    def _fit_context(self) -> tuple[list[Any] | None, dict[str, Any]]:
        """The sibling callbacks and a few ``fit`` arguments, found up the call stack (see the module doc)."""
        siblings: list[Any] | None = None
        found: dict[str, Any] = {}
        model = self.model
        frame = inspect.currentframe()
        try:
            depth = 0
            while frame is not None and depth < _STACK_DEPTH:
                owner = frame.f_locals.get("self")
                if siblings is None and isinstance(owner, keras.callbacks.CallbackList):
                    members = getattr(owner, "callbacks", None)
                    if isinstance(members, list) and any(c is self for c in members):
                        siblings = list(members)
                elif frame.f_code.co_name == "fit" and owner is not None and owner is model:
                    local = frame.f_locals
                    found = {k: local[k] for k in _FIT_LOCALS if k in local}
                    break
                frame = frame.f_back
                depth += 1
        finally:
            del frame
        return siblings, found

    def _fault(self, what: str, exc: Exception) -> None:
        hook_failed(self._warner, self._session.settings.on_error, "WandbKerasCallback", what, exc)

    def _warn(self, key: str, message: str) -> None:
        self._warner.warn(key, message, stacklevel=4)


# ------------------------------------------------------------------ helpers


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def _to_int(value: Any) -> int:
    """Read a scalar backend tensor or Keras variable as a Python int (a device read)."""
    if isinstance(value, keras.Variable):
        value = value.value
    return int(keras.ops.convert_to_numpy(value))


def _deferred_scalar(value: Any) -> Any:
    """A learning rate as the core accepts it without a device read on this thread."""
    if value is None or isinstance(value, (int, float)):
        return value
    if keras.backend.backend() in ("torch", "jax", "numpy"):
        return value  # torch tensors, jax and numpy arrays are read in the core's worker
    return float(keras.ops.convert_to_numpy(value))


def _schedule_of(optimizer: Any) -> Callable[[Any], Any] | None:
    """A copy of the optimizer's learning-rate schedule (public ``get_config`` + ``deserialize``), if it has one."""
    if optimizer is None:
        return None
    try:
        rate = optimizer.get_config().get("learning_rate")
    except Exception:
        return None
    if not isinstance(rate, Mapping):
        return None
    try:
        schedule = keras.optimizers.schedules.deserialize(dict(rate))
    except Exception:
        return None
    return schedule if callable(schedule) else None


def _batch_size(fit_locals: Mapping[str, Any]) -> int | None:
    size = fit_locals.get("batch_size")
    if isinstance(size, int) and size > 0:
        return size
    iterator = fit_locals.get("epoch_iterator")
    adapter = getattr(iterator, "data_adapter", None)
    try:
        size = getattr(adapter, "batch_size", None)
    except Exception:
        size = None
    return size if isinstance(size, int) and size > 0 else None


def _fit_config(params: Mapping[str, Any], fit_locals: Mapping[str, Any], batch_size: int | None) -> dict[str, Any]:
    config: dict[str, Any] = {
        "epochs": params.get("epochs", fit_locals.get("epochs")),
        "steps_per_epoch": params.get("steps"),
        "batch_size": batch_size,
    }
    for key in (
        "initial_epoch",
        "validation_split",
        "validation_freq",
        "validation_steps",
        "validation_batch_size",
        "shuffle",
    ):
        value = fit_locals.get(key)
        if value is None or isinstance(value, (bool, int, float, str)):
            config[key] = value
    config["validation"] = fit_locals.get("validation_data") is not None if fit_locals else None
    return {k: v for k, v in config.items() if v is not None}


def _compile_config(model: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    try:
        compiled = model.get_compile_config() or {}
    except Exception:
        compiled = {}
    loss = compiled.get("loss", getattr(model, "loss", None))
    if loss is not None:
        out["loss"] = _describe(loss)
    metrics = compiled.get("metrics")
    if metrics:
        out["metrics"] = (
            [_describe(m) for m in keras.tree.flatten(metrics)]
            if not isinstance(metrics, Mapping)
            else {str(k): _describe(v) for k, v in metrics.items()}
        )
    for key in ("loss_weights", "steps_per_execution", "jit_compile", "run_eagerly"):
        if compiled.get(key) is not None:
            out.setdefault("compile", {})[key] = compiled[key]
    return out


def _describe(item: Any) -> Any:
    """A short JSON-safe description of a serialized Keras loss or metric."""
    if isinstance(item, Mapping):
        config = item.get("config")
        name = config.get("name") if isinstance(config, Mapping) else None
        return name or item.get("class_name") or str(item)
    if isinstance(item, (list, tuple)):
        return [_describe(i) for i in item]
    if isinstance(item, str) or item is None:
        return item
    return getattr(item, "name", None) or getattr(item, "__name__", None) or type(item).__name__


def _model_config(model: Any) -> dict[str, Any]:
    import numpy as np

    def count(weights: Sequence[Any]) -> int:
        return int(sum(int(np.prod(w.shape)) for w in weights))

    config: dict[str, Any] = {"name": getattr(model, "name", None), "class": type(model).__name__}
    try:
        config["params"] = int(model.count_params())
        config["trainable_params"] = count(model.trainable_weights)
        config["non_trainable_params"] = count(model.non_trainable_weights)
        config["layers"] = len(model.layers)
    except Exception:
        pass
    return config


def _checkpoint_mode(callback: Any) -> Literal["min", "max"]:
    mode = getattr(callback, "mode", None)
    if mode in ("min", "max"):
        return mode  # type: ignore[no-any-return]
    op = getattr(callback, "monitor_op", None)
    if op is not None:
        return "max" if op is keras.ops.greater else "min"
    return infer_monitor_mode(str(getattr(callback, "monitor", "")).removeprefix("val_"))


def _template_glob(template: str) -> str:
    """A glob for every file a ``ModelCheckpoint`` file path template can produce."""
    parts: list[str] = []
    i = 0
    while i < len(template):
        start = template.find("{", i)
        if start < 0:
            parts.append(glob.escape(template[i:]))
            break
        if template.startswith("{{", start):
            parts.append(glob.escape(template[i : start + 1]))
            i = start + 2
            continue
        end = template.find("}", start)
        if end < 0:
            parts.append(glob.escape(template[i:]))
            break
        parts.append(glob.escape(template[i:start]))
        parts.append("*")
        i = end + 1
    return "".join(parts).replace("}}", "}")


def _scan(pattern: str) -> dict[str, tuple[int, int, int]]:
    """``path -> (mtime_ns, size, inode)`` of the files matching ``pattern``."""
    found: dict[str, tuple[int, int, int]] = {}
    for path in glob.glob(pattern):
        try:
            stat = os.stat(path)
        except OSError:
            continue
        if os.path.isfile(path):
            found[path] = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
    return found


def _format_of(path: str) -> str:
    if path.endswith(".weights.h5"):
        return "weights.h5"
    if path.endswith(".keras"):
        return "keras"
    return os.path.splitext(path)[1].lstrip(".") or "unknown"


__all__ = ["WandbBridgeWarning", "WandbKerasCallback"]
