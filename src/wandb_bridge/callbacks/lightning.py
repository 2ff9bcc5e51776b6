"""PyTorch Lightning: :class:`WandbLogger`, a drop-in for Lightning's own ``WandbLogger``.

The logger only translates Lightning's events (``log_metrics``,
``log_hyperparams``, ``after_save_checkpoint``, ``finalize``) into calls on a
:class:`~wandb_bridge.Session`; key names, the step axis, checkpoint aliases,
de-duplication and the run's ownership are decided by the shared core.

One class serves both distributions of Lightning: its bases are the ``Logger``
base of every installed one (``lightning.pytorch`` and the standalone
``pytorch_lightning``), so ``isinstance(logger, Logger)`` holds for the
Trainer, ``LightningCLI`` and user code of either namespace.

Beyond the public ``Logger`` contract, one thing is read up the call stack
(``inspect.currentframe``): ``fit(ckpt_path=...)``'s resolved checkpoint, when
the run starts, because Lightning sets the public ``trainer.ckpt_path`` only
after it started the logger's run; resuming continues the checkpoint's run.
``WandbLogger(resume_from_checkpoint=...)`` bypasses it.
"""

from __future__ import annotations

import importlib
import inspect
import os
import secrets
import string
import sys
import time
import warnings
import weakref
from argparse import Namespace
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from typing_extensions import override

from wandb_bridge.callbacks._require import require
from wandb_bridge.core.errors import OnceWarner, WandbBridgeWarning, guarded_hook
from wandb_bridge.core.metrics import STEP_KEYS, Stage
from wandb_bridge.core.session import Session, exit_code_for
from wandb_bridge.core.settings import Settings

_LOGGER_MODULES = ("lightning.pytorch.loggers", "pytorch_lightning.loggers")
_DEFAULT_PROJECT = "lightning_logs"  # what Lightning's WandbLogger uses when no project is set
_PAYLOAD_NAME = "model.ckpt"  # the file name inside model artifacts, as with Lightning's WandbLogger
_CALLBACK_FIELDS = ("monitor", "mode", "save_last", "save_top_k", "save_weights_only")
_ID_ALPHABET = string.ascii_lowercase + string.digits


def _logger_bases() -> tuple[type, ...]:
    """The ``Logger`` base class of every installed Lightning distribution."""
    bases: list[type] = []
    for module in _LOGGER_MODULES:
        try:
            bases.append(importlib.import_module(module).Logger)
        except Exception:  # not installed, or an install that does not import
            continue
    if not bases:
        require("lightning.pytorch", "lightning", "wandb_bridge.WandbLogger")
    return tuple(bases)


def _combined_base() -> type:
    bases = _logger_bases()
    if len(bases) == 1:
        return bases[0]
    try:
        return type("_LightningLoggerBase", bases, {"__module__": __name__})
    except TypeError:  # incompatible versions side by side: serve the first one
        return bases[0]


if TYPE_CHECKING:
    from lightning.pytorch.loggers import Logger as _LoggerBase
else:
    _LoggerBase = _combined_base()


class _NoOpExperiment:
    """What ``experiment`` is on a process that does not log: accepts every call."""

    def __getattr__(self, name: str) -> Any:
        def nop(*_args: Any, **_kwargs: Any) -> None:
            return None

        return nop

    def __getitem__(self, idx: Any) -> _NoOpExperiment:
        return self

    def __setitem__(self, key: Any, value: Any) -> None:
        return None


# Loggers whose Trainer call ended successfully and whose run is still open (it
# stays open for a later validate()/test()). The next logger that starts a run
# in this process finishes them first, so notebooks do not pile up open runs.
_IDLE: weakref.WeakSet[WandbLogger] = weakref.WeakSet()


def _finish_idle(current: WandbLogger) -> None:
    for other in list(_IDLE):
        if other is not current:
            _IDLE.discard(other)
            other.finish(0)


_guarded = guarded_hook("WandbLogger")


class WandbLogger(_LoggerBase):
    r"""Log a Lightning training to Weights & Biases through wandb-bridge's run contract.

    A drop-in replacement for ``lightning.pytorch.loggers.WandbLogger``: every
    constructor argument and public method of it works with the same meaning,
    plus the shared arguments of wandb-bridge (``entity``, ``group``, ``tags``,
    ``monitor``, ``rank_zero_only``, ``on_error``, ...).

    Example:
        >>> from wandb_bridge import WandbLogger  # doctest: +SKIP
        >>> trainer = Trainer(logger=WandbLogger(project="demo", log_model="best"))  # doctest: +SKIP

    What is recorded:
        * ``trainer/global_step`` = optimizer steps completed (``trainer.global_step``;
          the first training row is 1), validation values in the row of the step
          they were computed at, ``trainer/epoch``; ``train/``, ``val/``,
          ``test/`` keys from Lightning's names (``val_loss`` -> ``val/loss``).
        * Config: ``save_hyperparameters()`` of the module and datamodule, and
          Trainer facts under ``trainer/``.
        * Checkpoints of every ``ModelCheckpoint`` per ``log_model``; the ``best``
          alias follows the callback's ``best_model_path``; the file inside each
          artifact version is ``model.ckpt`` as with Lightning's logger.

    Run lifetime: the run starts when the Trainer sets up (or at the first use
    of ``experiment``) and stays open after ``fit`` so that a later
    ``validate``/``test`` lands in it. It is finished (exit code 0) by
    :meth:`finish`, when the next ``WandbLogger`` in this process starts a run,
    or when the process exits; a failed or interrupted Trainer call finishes it
    at once with a non-zero exit code.

    Args:
        name: display name of the run.
        save_dir: where wandb writes its files (``WANDB_DIR`` when not given;
            Lightning's logger defaults to ``"."``, which hides ``WANDB_DIR``).
        version: run id, to resume a run (same as ``id``).
        offline: record offline (``mode="offline"``); works with ``log_model``.
        dir: same as ``save_dir``.
        id: same as ``version``.
        anonymous: log anonymously (``anonymous="allow"``).
        project: W&B project (``WANDB_PROJECT``; ``"lightning_logs"`` when neither is set).
        log_model: ``False``, ``True`` (= ``"end"``), ``"end"``, ``"best"`` or
            ``"all"`` (``WANDB_LOG_MODEL`` when not given).
        experiment: an existing wandb run to log into (left open).
        prefix: put ``"<prefix>-"`` before every recorded metric key.
        checkpoint_name: name of the model artifact (default ``model-<run id>``).
        add_file_policy: accepted for compatibility; checkpoint files are always
            staged privately before upload, so a later overwrite never changes
            what is uploaded (what ``"mutable"`` asks for).
        entity: W&B entity.
        group: run group.
        tags: run tags.
        job_type: run job type.
        notes: run notes.
        config: extra config values.
        mode: ``"online"``, ``"offline"`` or ``"disabled"`` (wins over ``offline``).
        resume: wandb's resume mode.
        run: same as ``experiment``.
        monitor: the metric whose best value goes to the summary and picks the
            ``best`` checkpoint (default: the first ``ModelCheckpoint``'s monitor).
        monitor_mode: ``"min"`` or ``"max"`` (default: the callback's mode).
        system_stats: record CPU/GPU statistics.
        rank_zero_only: True (default): one run, from global rank 0; False: one
            run per rank, in one group.
        on_error: ``"warn"`` (default; training never stops because of W&B) or ``"raise"``.
        **kwargs: passed on to ``wandb.init``.

    Raises:
        ValueError: an argument has a value that is not allowed.
    """

    LOGGER_JOIN_CHAR = "-"

    def __init__(
        self,
        name: str | None = None,
        save_dir: str | os.PathLike[str] | None = None,
        version: str | None = None,
        offline: bool = False,
        dir: str | os.PathLike[str] | None = None,
        id: str | None = None,
        anonymous: bool | None = None,
        project: str | None = None,
        log_model: bool | Literal["end", "best", "all"] | None = None,
        experiment: Any = None,
        prefix: str = "",
        checkpoint_name: str | None = None,
        add_file_policy: Literal["mutable", "immutable"] = "mutable",
        *,
        entity: str | None = None,
        group: str | None = None,
        tags: list[str] | tuple[str, ...] | None = None,
        job_type: str | None = None,
        notes: str | None = None,
        config: Mapping[str, Any] | None = None,
        mode: Literal["online", "offline", "disabled"] | None = None,
        resume: str | bool | None = None,
        run: Any = None,
        monitor: str | None = None,
        monitor_mode: Literal["min", "max"] | None = None,
        system_stats: bool | None = None,
        rank_zero_only: bool | None = None,
        on_error: Literal["warn", "raise"] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        if add_file_policy not in ("mutable", "immutable"):
            raise ValueError(f"add_file_policy={add_file_policy!r} is not valid; use 'mutable' or 'immutable'")
        directory = save_dir if save_dir is not None else dir
        init_kwargs = dict(kwargs)
        if anonymous:
            init_kwargs["anonymous"] = "allow"
        settings = Settings.resolve(
            project=project,
            entity=entity,
            name=name,
            group=group,
            tags=tags,
            job_type=job_type,
            notes=notes,
            config=config,
            mode=mode if mode is not None else ("offline" if offline else None),
            dir=None if directory is None else os.fspath(directory),
            id=version if version is not None else id,
            resume=resume,
            run=run if run is not None else experiment,
            log_model=log_model,
            checkpoint_name=checkpoint_name,
            monitor=monitor,
            monitor_mode=monitor_mode,
            system_stats=system_stats,
            rank_zero_only=rank_zero_only,
            on_error=on_error,
            **init_kwargs,
        )
        if settings.project is None:
            settings = settings.with_changes(project=_DEFAULT_PROJECT)
        self._settings = settings
        self._warner = OnceWarner()
        self._save_dir = None if directory is None else os.fspath(directory)
        self._prefix = prefix
        self.add_file_policy = add_file_policy
        self._session: Session | None = None
        self._ready = False
        self._trainer_ref: weakref.ReferenceType[Any] | None = None
        self._configured: weakref.ReferenceType[Any] | None = None
        self._since_ns = time.time_ns()
        self._seen: dict[str, tuple[int, int, int]] = {}
        self._final_saved = False
        self._warned_eval_steps = False
        self._train_epoch: Any = None  # the epoch of the last training values Lightning logged

    # ------------------------------------------------------------ properties

    @property
    def settings(self) -> Settings:
        """The resolved settings of this logger."""
        return self._settings

    @property
    def session(self) -> Session:
        """The :class:`~wandb_bridge.Session` behind this logger (reading it starts nothing)."""
        session = self._session
        return self._get_session() if session is None else session

    @property
    def experiment(self) -> Any:
        """The wandb run (started on first use); a no-op object on processes that do not log.

        Example:
            >>> self.logger.experiment.log({"custom": 1})  # doctest: +SKIP
        """
        session = self._active()
        run = None if session is None else session.run
        return _NoOpExperiment() if run is None else run

    @property
    @override
    def name(self) -> str | None:
        """The project name (as with Lightning's logger; the run's name is ``experiment.name``)."""
        return self._settings.project

    @property
    @override
    def version(self) -> str | None:
        """The run id once the run started, else the id given to the constructor."""
        session = self._session
        if session is not None and session.run_id is not None:
            return session.run_id
        return self._settings.id

    @property
    @override
    def save_dir(self) -> str | None:
        """Where the run's files go: ``save_dir``/``dir``, else ``WANDB_DIR``, else ``"."`` (as Lightning's logger).

        Lightning puts checkpoints under ``<save_dir>/<name>/<version>/checkpoints``
        and ``LightningCLI`` writes its ``config.yaml`` here.
        """
        if self._save_dir is not None:
            return self._save_dir
        return self._settings.dir or "."

    # ------------------------------------------------------------- session

    def _get_session(self) -> Session:
        session = self._session
        if session is None or session.finished:
            settings = self._settings
            if session is not None and session.owns_run and session.run_id is not None and not session.ended_by_user:
                # Used again after its run was finished: continue that run.
                settings = settings.with_changes(id=session.run_id, resume="allow")
            session = Session(bridge_settings=settings, framework="lightning", framework_version=_version(None))
            session.step_clock = self._global_step
            self._session = session
            self._ready = False
        return session

    def _active(self) -> Session | None:
        """The started session, or None when this process does not log."""
        session = self._get_session()
        if not self._ready:
            self._ready = True
            if not session.started:
                _finish_idle(self)
                resumed = _resumed_fit_checkpoint(self)
                if resumed is not None:
                    session.resume_from_checkpoint(resumed)
                session.start()
        _IDLE.discard(self)
        return session if session.enabled and session.started else None

    def _trainer(self) -> Any:
        ref = self._trainer_ref
        return None if ref is None else ref()

    def _global_step(self) -> int | None:
        """The step of values the user logs directly (``experiment.log``, ``wandb.log``).

        In training the step being computed (as for ``self.log`` values), in
        validation the optimizer steps completed.
        """
        trainer = self._trainer()
        if trainer is None:
            return None
        return int(trainer.global_step) + (1 if trainer.training else 0)

    def finish(self, exit_code: int = 0) -> None:
        """Flush, upload pending checkpoints and finish the run if this logger started it.

        Idempotent. A later use of the logger continues the same run (resumed by id).

        Args:
            exit_code: 0 for success, non-zero for a failed run.
        """
        _IDLE.discard(self)
        session = self._session
        if session is not None:
            session.finish(exit_code)

    # ------------------------------------------------------------ logging

    @override
    @_guarded
    def log_hyperparams(self, params: dict[str, Any] | Namespace, *args: Any, **kwargs: Any) -> None:
        """Add hyper-parameters to the run config (flattened, JSON-safe, secrets redacted)."""
        session = self._active()
        if session is None:
            return
        session.log_config(_as_dict(params))

    @override
    def log_graph(self, model: Any, input_array: Any = None) -> None:
        """Called by the Trainer at the start of every fit/validate/test with the LightningModule.

        wandb-bridge reads the Trainer from it (``model.trainer``): the step
        axis, the Trainer facts of the config and the checkpoint monitor come
        from there. No graph is logged (use :meth:`watch`).
        """
        try:
            trainer = model.trainer
        except Exception:  # not attached to a Trainer
            return
        if trainer is None:
            return
        self._trainer_ref = weakref.ref(trainer)
        if self._settings.log_health:  # every rank: sharded parameters are reduced across ranks
            from wandb_bridge.callbacks import lightning_health

            lightning_health.attach(self, trainer)
        session = self._active()
        if session is None:
            return
        session.framework_version = _version(trainer)
        resumed = getattr(trainer, "ckpt_path", None) if _fn(trainer) == "fit" else None
        if resumed and session.resumed_from is None and os.path.exists(os.fspath(resumed)):
            # fit(ckpt_path=...): the run continues the checkpoint's run (steps it recorded are not recorded again)
            session.resume_from_checkpoint(resumed)
        configured = self._configured() if self._configured is not None else None
        if configured is trainer:
            return
        self._configured = weakref.ref(trainer)
        session.log_config({"trainer": _trainer_facts(trainer)})
        self._define_monitor(session, trainer)
        watch = self._settings.watch
        if watch is not None:
            session.watch(model, log=watch)

    def _define_monitor(self, session: Session, trainer: Any) -> None:
        if session.monitor is not None:
            return
        for callback in _checkpoint_callbacks(trainer):
            monitor = getattr(callback, "monitor", None)
            if monitor:
                mode = getattr(callback, "mode", None)
                session.define_monitor(self._recorded_key(session, str(monitor), "val"), mode, stage="val")
                return

    def _recorded_key(self, session: Session, key: str, stage: Stage) -> str:
        mapped = session.map_key(key, stage)
        if self._prefix and mapped not in STEP_KEYS:
            return f"{self._prefix}{self.LOGGER_JOIN_CHAR}{mapped}"
        return mapped

    @override
    @_guarded
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Record metrics; Lightning's step is mapped onto ``trainer/global_step``.

        Args:
            metrics: ``name -> value`` as Lightning hands them over.
            step: Lightning's step (batches that stepped, 0-based, during fit;
                the evaluation batch count for per-batch validation/test values).
        """
        session = self._active()
        if session is None or not metrics:
            return
        trainer = self._trainer()
        stage = _stage(trainer)
        values: dict[str, Any] = dict(metrics)
        row_step = self._row_step(trainer, step, values, stage)
        if "epoch" in values:
            epochs = _epochs_done(trainer)
            if epochs is not None:
                values["epoch"] = epochs
            if stage == "train":
                self._train_epoch = values["epoch"]
        if self._prefix:
            values = {self._recorded_key(session, str(k), stage): v for k, v in values.items()}
        session.log(values, row_step, stage=stage)

    def _row_step(self, trainer: Any, step: int | None, metrics: Mapping[str, Any], stage: Stage) -> int | None:
        if trainer is None:
            # No Trainer seen (logger used on its own): Lightning's step is 0-based.
            return None if step is None else int(step) + 1
        global_step = int(trainer.global_step)
        if step is None or _fn(trainer) != "fit":
            return global_step
        if stage == "val" and "epoch" not in metrics:
            # Per-batch validation values (self.log(on_step=True) in validation_step):
            # Lightning passes the evaluation batch count, which is no training step.
            if not self._warned_eval_steps:
                self._warned_eval_steps = True
                warnings.warn(
                    "Per-batch validation values (self.log(..., on_step=True) in validation_step) are "
                    "recorded at the training step they were computed at, one value per key and step "
                    "(the last batch's); log them with on_epoch=True to record the epoch mean.",
                    WandbBridgeWarning,
                    stacklevel=3,
                )
            return global_step
        # Lightning's step counts batches that stepped before this one (0-based):
        # step + 1 is the optimizer step this value belongs to; trainer.global_step
        # is larger when one batch steps several optimizers (manual optimization).
        return max(global_step, int(step) + 1)

    def log_table(
        self,
        key: str,
        columns: list[str] | None = None,
        data: list[list[Any]] | None = None,
        dataframe: Any = None,
        step: int | None = None,
    ) -> None:
        """Log a ``wandb.Table`` (from ``columns`` and ``data``, or a ``dataframe``)."""
        session = self._active()
        if session is None:
            return
        table = session.wandb_type("Table", columns=columns, data=data, dataframe=dataframe)
        self._log_direct(session, {key: table}, step)

    def _log_direct(self, session: Session, values: Mapping[str, Any], step: int | None) -> None:
        """A value the user names (``log_table``, ``log_image``...): key as written, at ``step`` (Lightning's 0-based
        step, so ``step + 1`` on the run's axis) or at the current step. Lightning's ``prefix`` applies, as there."""
        if self._prefix:
            values = {f"{self._prefix}{self.LOGGER_JOIN_CHAR}{k}": v for k, v in values.items()}
        session.log(values, None if step is None else int(step) + 1, keep_keys=True)

    def log_text(
        self,
        key: str,
        columns: list[str] | None = None,
        data: list[list[str]] | None = None,
        dataframe: Any = None,
        step: int | None = None,
    ) -> None:
        """Log text as a ``wandb.Table``."""
        self.log_table(key, columns, data, dataframe, step)

    def log_image(self, key: str, images: list[Any], step: int | None = None, **kwargs: Any) -> None:
        """Log images (tensors, arrays, PIL images or paths); ``kwargs`` are per-image lists (``caption``...)."""
        self._log_media("Image", key, images, step, kwargs)

    def log_audio(self, key: str, audios: list[Any], step: int | None = None, **kwargs: Any) -> None:
        """Log audio (arrays or paths); ``kwargs`` are per-item lists (``sample_rate``, ``caption``...)."""
        self._log_media("Audio", key, audios, step, kwargs)

    def log_video(self, key: str, videos: list[Any], step: int | None = None, **kwargs: Any) -> None:
        """Log videos (arrays or paths); ``kwargs`` are per-item lists (``fps``, ``format``...)."""
        self._log_media("Video", key, videos, step, kwargs)

    def _log_media(self, kind: str, key: str, items: list[Any], step: int | None, kwargs: dict[str, Any]) -> None:
        if not isinstance(items, list):
            raise TypeError(f'Expected a list as "{kind.lower()}s", found {type(items)}')
        count = len(items)
        for name, value in kwargs.items():
            if len(value) != count:
                raise ValueError(f"Expected {count} items but only found {len(value)} for {name}")
        session = self._active()
        if session is None:
            return
        media = [
            session.wandb_type(kind, item, **{name: kwargs[name][i] for name in kwargs}) for i, item in enumerate(items)
        ]
        self._log_direct(session, {key: media}, step)

    def watch(self, model: Any, log: str | None = "gradients", log_freq: int = 100, log_graph: bool = True) -> None:
        """Log gradients and/or parameters of ``model`` (``wandb.watch``; ``log_graph`` is not used)."""
        del log_graph  # accepted for compatibility with Lightning's logger
        session = self._active()
        if session is not None:
            session.watch(model, log=log, log_freq=log_freq)

    def use_artifact(self, artifact: str, artifact_type: str | None = None) -> Any:
        """Record an artifact as an input of the run and return it (None on a process that does not log)."""
        session = self._active()
        return None if session is None else session.use_artifact(artifact, artifact_type)

    @staticmethod
    def download_artifact(
        artifact: str,
        save_dir: str | os.PathLike[str] | None = None,
        artifact_type: str | None = None,
        use_artifact: bool | None = True,
    ) -> str:
        """Download an artifact and return its folder (through the active run when ``use_artifact``)."""
        return Session.download_artifact(artifact, save_dir, artifact_type, bool(use_artifact))

    # -------------------------------------------------------- checkpoints

    @override
    @_guarded
    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        """Report the files ``checkpoint_callback`` wrote since it was last seen.

        The checkpoint policy (``log_model``) decides what is uploaded; content
        already uploaded (e.g. an unchanged ``last.ckpt``) is not uploaded again.
        """
        trainer = self._trainer()
        if trainer is not None and not trainer.is_global_zero:
            return  # Lightning writes checkpoint files on global rank 0
        session = self._active()
        if session is None:
            return  # with log_model=False the core still marks the files with the run (for resuming)
        role = self._role(session, trainer, checkpoint_callback)
        step = None if trainer is None else int(trainer.global_step)
        done = _epochs_done(trainer)
        epoch = None if done is None else int(done)
        metrics = dict(trainer.callback_metrics) if role == "judge" and trainer is not None else None
        best_path = getattr(checkpoint_callback, "best_model_path", "") or ""
        fields = {
            field: getattr(checkpoint_callback, field)
            for field in _CALLBACK_FIELDS
            if hasattr(checkpoint_callback, field)
        }
        for path, score in self._new_files(checkpoint_callback):
            session.log_checkpoint(
                path,
                step=step,
                epoch=epoch,
                metrics=metrics,
                score=score if role == "primary" else None,
                is_best={"primary": path == best_path, "other": False}.get(role),
                metadata={checkpoint_callback.__class__.__name__: {**fields, "score": score}},
                payload_name=_PAYLOAD_NAME if os.path.isfile(path) else None,
            )

    def _role(self, session: Session, trainer: Any, callback: Any) -> Literal["primary", "other", "judge"]:
        """How a callback's checkpoints are judged for the ``best`` alias.

        ``"primary"``: the first checkpoint callback that monitors the run's
        monitored metric (or, with no monitor at all, any callback without one):
        its ``best_model_path`` is the best checkpoint. ``"other"``: another
        callback while a primary exists (never ``best``). ``"judge"``: no
        callback monitors the run's metric; the core compares its values.
        """
        monitor = session.monitor
        # Lightning hands over a weakref.proxy of the callback: compare with ==.
        callbacks = _checkpoint_callbacks(trainer) if trainer is not None else []
        if callback not in callbacks:
            callbacks.append(callback)
        if monitor is None:
            return "primary" if getattr(callback, "monitor", None) is None else "judge"
        for candidate in callbacks:
            raw = getattr(candidate, "monitor", None)
            if raw and self._recorded_key(session, str(raw), "val") == monitor:
                return "primary" if candidate == callback else "other"
        return "judge"

    def _new_files(self, callback: Any) -> list[tuple[str, float | None]]:
        """The callback's checkpoint files written (or rewritten) since last reported, oldest first."""
        candidates: dict[str, Any] = {}
        last = getattr(callback, "last_model_path", "") or ""
        if last:
            candidates[last] = getattr(callback, "current_score", None)
        for path, score in (getattr(callback, "best_k_models", None) or {}).items():
            candidates[str(path)] = score
        best = getattr(callback, "best_model_path", "") or ""
        if best:
            candidates[best] = getattr(callback, "best_model_score", None)
        found: list[tuple[int, str, float | None]] = []
        for path, score in candidates.items():
            try:
                stat = os.stat(path)
            except OSError:
                continue
            signature = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
            if self._seen.get(path) == signature:
                continue
            self._seen[path] = signature
            if stat.st_mtime_ns < self._since_ns - 1_000_000_000:
                continue  # written before this logger saw the Trainer (a resumed callback's old files)
            found.append((stat.st_mtime_ns, path, _number(score)))
        found.sort()
        return [(path, score) for _, path, score in found]

    # ------------------------------------------------------------ lifecycle

    @override
    def finalize(self, status: str) -> None:
        """Called by the Trainer at the end of every fit/validate/test/predict.

        ``"success"``: the final weights are saved when ``log_model`` is set and no
        checkpoint callback wrote any (after ``fit``), end-of-training
        checkpoints are uploaded, everything is flushed; the run stays open for
        a later ``validate``/``test``. Any other status finishes the run with a
        non-zero exit code (130 for Ctrl-C, 143 for SIGTERM, else 1).
        """
        trainer = self._trainer()
        if status == "success":
            fitted = trainer is not None and _fn(trainer) == "fit"
            if fitted:
                self._save_final_weights(trainer)
            session = self._session
            if session is None or not session.started or session.finished:
                return
            if fitted:
                session.upload_end_checkpoints()
            session.flush()
            if session.owns_run:
                _IDLE.add(self)
            return
        session = self._session
        if session is None:
            return
        exc = sys.exc_info()[1]
        code = exit_code_for(exc)
        sigterm = bool(getattr(trainer, "received_sigterm", False)) or type(exc).__name__ == "SIGTERMException"
        if sigterm:
            session.mark_preempting()
            code = 143
        self.finish(code if code != 0 else 1)

    def _save_final_weights(self, trainer: Any) -> None:
        """With ``log_model`` set and no checkpoint written by a callback, save the final weights once."""
        if self._final_saved or self._settings.log_model is False:
            return
        for callback in _checkpoint_callbacks(trainer):
            if getattr(callback, "best_model_path", "") or getattr(callback, "last_model_path", ""):
                return
        self._final_saved = True
        root = self._save_dir or str(trainer.default_root_dir)
        version = self.version or "version_0"
        path = os.path.join(root, str(self.name), str(version), "checkpoints", "final.ckpt")
        path = trainer.strategy.broadcast(path)  # every rank saves to rank 0's path
        try:
            trainer.save_checkpoint(path)  # collective: runs on every rank
        except Exception as exc:
            if self._settings.on_error == "raise":
                raise
            warnings.warn(f"The final weights could not be saved ({exc!r}).", WandbBridgeWarning, stacklevel=3)
            return
        if not trainer.is_global_zero:
            return
        session = self._session
        if session is not None and session.started and not session.finished:
            session.log_checkpoint(
                path,
                step=int(trainer.global_step),
                epoch=int(self._train_epoch if self._train_epoch is not None else trainer.current_epoch),
                metrics=dict(trainer.callback_metrics),
                payload_name=_PAYLOAD_NAME,
            )

    # ------------------------------------------------------------- pickling

    def __getstate__(self) -> dict[str, Any]:
        # ddp_spawn pickles the logger into every worker. The workers' rank 0
        # must log into one run, also across fit/test spawns: fix its id here.
        settings = self._settings
        if settings.rank_zero_only and settings.id is None:
            session = self._session
            run_id = session.run_id if session is not None else None
            if run_id is None:
                run_id = "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))
            elif session is not None:
                session.flush()
            self._settings = settings = settings.with_changes(id=run_id)
        state = dict(self.__dict__)
        state["_settings"] = settings.with_changes(run=None)
        state["_session"] = None
        state["_ready"] = False
        state["_trainer_ref"] = None
        state["_configured"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


# ----------------------------------------------------------------- helpers


def _as_dict(params: Any) -> dict[str, Any]:
    """Lightning's hparams (dict, AttributeDict, Namespace, jsonargparse Namespace) as a dict."""
    as_dict = getattr(params, "as_dict", None)
    if callable(as_dict):
        return dict(as_dict())
    if isinstance(params, Namespace):
        return dict(vars(params))
    if isinstance(params, Mapping):
        return dict(params)
    return dict(vars(params)) if hasattr(params, "__dict__") else {"hparams": params}


def _fn(trainer: Any) -> str | None:
    """The Trainer call in progress: ``"fit"``, ``"validate"``, ``"test"``, ``"predict"`` or None."""
    fn = getattr(getattr(trainer, "state", None), "fn", None)
    return None if fn is None else str(getattr(fn, "value", fn))


def _stage(trainer: Any) -> Stage:
    """Where unprefixed names go, from the Trainer's running stage."""
    stage = getattr(getattr(trainer, "state", None), "stage", None)
    value = None if stage is None else str(getattr(stage, "value", stage))
    if value in ("validate", "sanity_check"):
        return "val"
    if value in ("test", "predict"):
        return "test"
    return "train"


def _checkpoint_callbacks(trainer: Any) -> list[Any]:
    try:
        return list(trainer.checkpoint_callbacks)
    except Exception:
        return []


def _number(value: Any) -> float | None:
    """A score (tensor or number) as a Python float."""
    if value is None:
        return None
    item = getattr(value, "item", None)
    try:
        return float(item() if callable(item) else value)
    except (TypeError, ValueError):
        return None


def _version(trainer: Any) -> str | None:
    """The version of the Lightning distribution the Trainer comes from."""
    package = "lightning" if trainer is None else type(trainer).__module__.split(".")[0]
    module = sys.modules.get(package) or sys.modules.get("lightning") or sys.modules.get("pytorch_lightning")
    return None if module is None else str(getattr(module, "__version__", "")) or None


def _trainer_facts(trainer: Any) -> dict[str, Any]:
    """The Trainer settings worth having in the config (JSON-safe values)."""
    facts: dict[str, Any] = {}
    for key in (
        "max_epochs",
        "max_steps",
        "min_epochs",
        "precision",
        "accumulate_grad_batches",
        "gradient_clip_val",
        "gradient_clip_algorithm",
        "num_devices",
        "num_nodes",
        "world_size",
        "log_every_n_steps",
        "val_check_interval",
        "check_val_every_n_epoch",
        "limit_train_batches",
        "limit_val_batches",
    ):
        try:
            value = getattr(trainer, key)
        except Exception:
            continue
        facts["devices" if key == "num_devices" else key] = value
    strategy = getattr(trainer, "strategy", None)
    if strategy is not None:
        facts["strategy"] = getattr(strategy, "strategy_name", None) or type(strategy).__name__
    accelerator = getattr(trainer, "accelerator", None)
    if accelerator is not None:
        facts["accelerator"] = type(accelerator).__name__
    facts["lightning_package"] = type(trainer).__module__.split(".")[0]
    return facts


__all__ = ["WandbLogger"]


def _epochs_done(trainer: Any) -> float | None:
    """Epochs completed when a value was produced, as a float (1.0 at the end of the first epoch).

    The same meaning as ``trainer/epoch`` of the other frameworks (transformers'
    ``state.epoch``, Keras's completed epochs); Lightning's own ``epoch`` is the
    0-based index of the running epoch.
    """
    if trainer is None or _fn(trainer) != "fit":
        return None
    try:
        batches = float(trainer.num_training_batches)
        batch_idx = int(trainer.fit_loop.epoch_loop.batch_idx)
        epoch = int(trainer.current_epoch)
    except (AttributeError, TypeError, ValueError):
        return None
    if not (0 < batches < float("inf")):
        return float(epoch)
    return epoch + min(batch_idx + 1, batches) / batches


_STACK_DEPTH = 12


def _resumed_fit_checkpoint(logger: Any) -> str | None:
    """The checkpoint a running ``Trainer.fit(ckpt_path=...)`` resumes from, when the run is about to start.

    Lightning starts the logger's run (its setup reads ``experiment``) before it
    records the checkpoint in the public ``trainer.ckpt_path`` (when it loads
    it), and the run id must be known before the run starts. So this looks a
    few frames up the call stack for the Trainer that holds ``logger`` and
    reads the ``ckpt_path`` its running call resolved (``"last"`` etc. already
    turned into a path). Nothing found (another Lightning version, a call
    outside ``fit``): None, and :meth:`WandbLogger.log_graph` compares
    ``trainer.ckpt_path`` with the run later (``resume_from_checkpoint=`` is the
    explicit way).
    """
    frame = inspect.currentframe()
    try:
        depth = 0
        while frame is not None and depth < _STACK_DEPTH:
            local = frame.f_locals
            owner = local.get("self")
            if owner is not None and owner is not logger and type(owner).__name__ == "Trainer":
                loggers = getattr(owner, "loggers", None) or []
                if any(item is logger for item in loggers) and "ckpt_path" in local:
                    if _fn(owner) != "fit":
                        return None
                    path = local.get("ckpt_path") or getattr(owner, "ckpt_path", None)
                    if isinstance(path, (str, os.PathLike)) and os.path.exists(os.fspath(path)):
                        return os.fspath(path)
                    return None
            frame = frame.f_back
            depth += 1
    finally:
        del frame
    return None
