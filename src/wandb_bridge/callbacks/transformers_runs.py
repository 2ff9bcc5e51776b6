"""Which run a ``transformers.Trainer`` event belongs to, for
:class:`~wandb_bridge.callbacks.transformers.WandbTrainerCallback`.

One run per ``train()`` call (and per hyper-parameter search trial), started at the first event with
something to record, continuing the run of the checkpoint ``train(resume_from_checkpoint=...)`` loaded;
its config recorded once per run, arguments and model. Ownership and the run's lifetime are the
session holder's (:mod:`wandb_bridge.callbacks.base`), the config rules :mod:`wandb_bridge.core.hparams`'.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from wandb_bridge.callbacks import transformers_data as hf_data
from wandb_bridge.callbacks import transformers_support as hf
from wandb_bridge.callbacks.base import SessionHolder, picklable_state
from wandb_bridge.callbacks.transformers_checkpoints import Checkpoints

if TYPE_CHECKING:
    from transformers import TrainerState, TrainingArguments

    from wandb_bridge.core.session import Session
    from wandb_bridge.core.settings import Settings


class Runs:
    """Opens the run of the callback's events.

    Args:
        holder: the callback's session holder.
        settings: the callback's own settings (a run's are derived from them and the arguments).
        checkpoints: the callback's checkpoint part (told of a new run and of the monitor).
    """

    def __init__(self, holder: SessionHolder, settings: Settings, checkpoints: Checkpoints) -> None:
        self._holder, self._settings, self._checkpoints = holder, settings, checkpoints
        self._trials = 0
        self._recorded: tuple[Session, int, int] | None = None  # the config recorded: run, args, model

    def __getstate__(self) -> dict[str, Any]:  # a pickled Trainer carries no live run
        return picklable_state(self, "_recorded")

    def open(
        self, args: TrainingArguments, state: TrainerState | None, model: Any, *, new_training: bool, check_sweep: bool
    ) -> Session | None:
        """The session of the current run, started and its config recorded; None where this process does not log.

        Args:
            args: the Trainer's arguments.
            state: the Trainer's state, when the event has one.
            model: the model, when the event has one.
            new_training: a ``train()`` call begins (a run that saw a ``train()`` end is finished first).
            check_sweep: warn when a sweep's values were not applied to ``args``.
        """
        holder = self._holder
        searching = new_training and bool(getattr(state, "is_hyper_param_search", False))
        self._trials += int(searching)
        trial = self._trials if searching else None
        if new_training or holder.active is None:  # the settings of a run started from here on
            holder.settings = hf.run_settings(self._settings, args, state, trial)
        if trial is not None:
            holder.new_session()  # every trial its own run
        if new_training:
            holder.begin_call(new_run=True)
        fresh = holder.active is None
        resumed = hf.resumed_checkpoint(args, state) if new_training and trial is None and state is not None else None
        session = holder.start(None if resumed is None else hf.resume_from(*resumed))
        if session is None:
            return None
        if new_training and state is not None:
            hf.plan_rows(session, args, state)
        if fresh:
            self._checkpoints.new_run()
            for key, message in hf.run_warnings(args, session.config if check_sweep else None):
                holder.warner.warn(key, message)
        if fresh or (new_training and self._recorded != (session, id(args), id(model))):
            self._record(session, args, state, model)  # also completes a config started before train()
        return session

    def _record(self, session: Session, args: TrainingArguments, state: TrainerState | None, model: Any) -> None:
        """Record the config; adopt ``metric_for_best_model`` as the monitor (unless ``monitor=`` was given)."""
        self._checkpoints.adopt_monitor(session, args, self._settings.monitor)
        session.log_framework_config(hf_data.trainer_config(args, state, model))
        self._recorded = (session, id(args), id(model))


__all__ = ["Runs"]
