"""PyTorch Lightning: :class:`WandbLogger`, a drop-in for Lightning's own, translating its events into Session calls.

Keys, steps, checkpoint following, aliases, ranks and the monitor are the core's; the run's lifetime, error
boundary and pickling :mod:`.base`'s; checkpoint files :mod:`.lightning_checkpoints`'; reading Lightning
:mod:`.lightning_support`'s.
"""

from __future__ import annotations

import os
import sys
import weakref
from argparse import Namespace
from collections.abc import Mapping
from typing import Any, Literal

from typing_extensions import override

from wandb_bridge.callbacks import lightning_support as support
from wandb_bridge.callbacks.base import SessionHolder, guarded, picklable_state, resolve_settings
from wandb_bridge.callbacks.lightning_base import LoggerBase, NoOpExperiment
from wandb_bridge.callbacks.lightning_checkpoints import Checkpoints
from wandb_bridge.core import hparams
from wandb_bridge.core.metrics import Stage, prefixed_key
from wandb_bridge.core.session import Session
from wandb_bridge.core.settings import Settings
from wandb_bridge.core.steps import logger_step, step_in_progress

_EVAL_STEPS = (
    "Per-batch validation values (self.log(..., on_step=True) in validation_step) are recorded at the training "
    "step they were computed at, one value per key and step (the last batch's); log them with on_epoch=True "
    "to record the epoch mean."
)


class WandbLogger(LoggerBase):
    r"""Log a Lightning training (``lightning.pytorch``, ``pytorch_lightning``, Fabric) to W&B (docs/lightning.md).

    Its constructor arguments and public methods mean what they mean for Lightning's ``WandbLogger``. The run
    starts when the Trainer sets up (or at the first ``experiment``) and stays open after ``fit`` for a later
    ``validate``/``test``; :meth:`finish`, the next logger's run or the process's exit finish it (exit code 0),
    a failed Trainer call at once (1, 130 for Ctrl-C, 143 for SIGTERM).

    Example:
        >>> trainer = Trainer(logger=WandbLogger(project="demo", log_model="best"))  # doctest: +SKIP

    Args:
        name, save_dir, version, offline, dir, id, anonymous, project, log_model, experiment, prefix,
            checkpoint_name, add_file_policy: as for Lightning's logger (``project`` defaults to
            ``"lightning_logs"``, ``save_dir`` to ``WANDB_DIR``; files are always staged before upload).
        **kwargs: the shared arguments (docs/settings.md; ``monitor`` defaults to the first
            ``ModelCheckpoint``'s), else ``wandb.init``'s.

    Raises:
        ValueError: an argument has a value that is not allowed.
    """

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
        **kwargs: Any,
    ) -> None:
        super().__init__()
        if add_file_policy not in ("mutable", "immutable"):
            raise ValueError(f"add_file_policy={add_file_policy!r} is not valid; use 'mutable' or 'immutable'")
        directory = save_dir if save_dir is not None else dir
        self._save_dir = None if directory is None else os.fspath(directory)
        run, mode = kwargs.pop("run", None), kwargs.pop("mode", None)
        given = {**kwargs, "project": project, "name": name, "dir": self._save_dir, "log_model": log_model}
        given.update(id=version if version is not None else id, checkpoint_name=checkpoint_name)
        given.update(anonymous="allow" if anonymous else None, run=experiment if run is None else run)
        given.update(mode=("offline" if offline else None) if mode is None else mode)
        settings = resolve_settings(given, default_project="lightning_logs")
        self._holder = SessionHolder(settings, owner="WandbLogger", framework="lightning", pin_run_id=True)
        self._holder.framework_version = support.lightning_version(None)
        self._holder.step_clock = self._global_step
        self._prefix = prefix
        self.add_file_policy = add_file_policy
        self._trainer_ref: weakref.ReferenceType[Any] | None = None
        self._configured: weakref.ReferenceType[Any] | None = None
        self._checkpoints = Checkpoints(self._holder)

    @property
    def settings(self) -> Settings:
        """The resolved settings of this logger."""
        return self._holder.settings

    @property
    def session(self) -> Session:
        """The :class:`~wandb_bridge.Session` behind this logger (reading it starts nothing)."""
        return self._holder.current or self._holder.session

    @property
    def experiment(self) -> Any:
        """The wandb run (started on first use); a no-op object on processes that do not log."""
        session = self._start()
        run = None if session is None else session.run
        return NoOpExperiment() if run is None else run

    @property
    @override
    def name(self) -> str | None:
        """The project name (as with Lightning's logger; the run's name is ``experiment.name``)."""
        return self.settings.project

    @property
    @override
    def version(self) -> str | None:
        """The run id once the run started, else the id given to the constructor."""
        session = self._holder.current
        return session.run_id if session is not None and session.run_id is not None else self.settings.id

    @property
    @override
    def save_dir(self) -> str | None:
        """``save_dir``/``dir``, else ``WANDB_DIR``, else ``"."`` (where checkpoints and ``config.yaml`` go)."""
        return self._save_dir if self._save_dir is not None else (self.settings.dir or ".")

    def finish(self, exit_code: int = 0) -> None:
        """Flush, upload what is pending and finish the run if this logger started it (a later use continues it)."""
        self._holder.finish(exit_code)

    def _start(self) -> Session | None:
        """The started session (resuming ``fit(ckpt_path=...)``'s run), or None where this process does not log."""
        return self._holder.start(self._resume_fit)

    def _resume_fit(self, session: Session) -> None:
        resumed = support.resumed_fit_checkpoint(self)
        if resumed is not None:
            session.resume_from_checkpoint(resumed)

    def _trainer(self) -> Any:
        return None if self._trainer_ref is None else self._trainer_ref()

    def _global_step(self) -> int | None:
        """The step of values logged directly (``experiment.log``): in training, the one being computed."""
        trainer = self._trainer()
        return None if trainer is None else step_in_progress(int(trainer.global_step), bool(trainer.training))

    def _key(self, session: Session, key: str, stage: Stage) -> str:
        return prefixed_key(session.map_key(key, stage), self._prefix, self.LOGGER_JOIN_CHAR)

    @override
    @guarded
    def log_hyperparams(self, params: dict[str, Any] | Namespace, *args: Any, **kwargs: Any) -> None:
        """Add hyper-parameters to the run config (flattened, JSON-safe, secrets redacted; ``config=`` wins)."""
        session = self._start()
        if session is not None:
            extracted = hparams.config_of(params, fallback_key="hparams")
            session.log_framework_config(extracted)

    @override
    def log_graph(self, model: Any, input_array: Any = None) -> None:
        """At the start of every Trainer call: read the Trainer (steps, config facts, monitor); logs no graph."""
        trainer = support.trainer_of(model)
        if trainer is None:
            return
        self._trainer_ref = weakref.ref(trainer)
        if self.settings.log_health:  # every rank: sharded parameters are reduced across ranks
            from wandb_bridge.callbacks import lightning_health

            lightning_health.attach(self, trainer)
        session = self._start()
        if session is None:
            return
        self._holder.framework_version = support.lightning_version(trainer)
        first = self._configured is None or self._configured() is not trainer
        self._configured = weakref.ref(trainer)
        support.call_begins(session, trainer, first=first)
        if first:
            self._checkpoints.adopt_monitor(session, trainer, lambda m: self._key(session, m, "val"))
        if first and self.settings.watch is not None:
            session.watch(model, log=self.settings.watch)

    @override
    @guarded
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Record metrics; Lightning's 0-based ``step`` is mapped onto ``trainer/global_step``."""
        session = self._start()
        if session is None or not metrics:
            return
        trainer = self._trainer()
        stage = support.stage(trainer)
        values: Mapping[str, Any] = metrics  # (Session.log copies what it keeps)
        global_step = None if trainer is None else int(trainer.global_step)
        in_fit = support.trainer_fn(trainer) == "fit"
        # Lightning adds "epoch" to epoch-end values; per-batch validation values come with a batch count.
        at = logger_step(
            step, global_step=global_step, in_fit=in_fit, eval_batch=stage == "val" and "epoch" not in values
        )
        if at.eval_batch:
            self._holder.warner.warn("eval-batch-steps", _EVAL_STEPS, stacklevel=3)
        if "epoch" in values:
            epochs = support.epochs_done(trainer)
            if epochs is not None:
                values = {**values, "epoch": epochs}
            if stage == "train":
                self._checkpoints.train_epoch = values["epoch"]
        if self._prefix:
            values = {self._key(session, str(k), stage): v for k, v in values.items()}
        session.log(values, at.step, stage=stage)

    @override
    @guarded
    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        """Report the files ``checkpoint_callback`` wrote since last seen; ``log_model`` decides what is uploaded."""
        self._checkpoints.saved(self._trainer(), checkpoint_callback, self._start, lambda s, m: self._key(s, m, "val"))

    @override
    def finalize(self, status: str) -> None:
        """A Trainer call ended: ``"success"`` keeps the run open (after ``fit``: final weights, end checkpoints)."""
        trainer = self._trainer()
        if status != "success":
            exc = sys.exc_info()[1] or RuntimeError(f"the Trainer call ended with status {status!r}")
            sigterm = bool(getattr(trainer, "received_sigterm", False)) or type(exc).__name__ == "SIGTERMException"
            self._holder.end_call(exc, preempted=sigterm)
            return
        if trainer is not None and support.trainer_fn(trainer) == "fit":
            folder = os.path.join(self._save_dir or str(trainer.default_root_dir), str(self.name))
            self._checkpoints.end_fit(trainer, os.path.join(folder, str(self.version or "version_0")))
        self._holder.end_call()

    def __getstate__(self) -> dict[str, Any]:
        # ddp_spawn pickles the logger into every worker; the holder fixes the run id there (pin_run_id).
        return picklable_state(self, "_trainer_ref", "_configured")


__all__ = ["WandbLogger"]
