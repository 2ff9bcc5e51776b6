"""The checkpoint part of ``WandbKerasCallback``: the ``ModelCheckpoint`` callbacks of a ``fit`` and their files.

Which files are new, which monitor the callbacks use and which checkpoint a resumed
``fit`` came from are the core's rules (:mod:`wandb_bridge.core.follow`,
:mod:`wandb_bridge.core.checkpoints`); this part only reads Keras's callbacks and
tells the session. The Lightning logger's counterpart is
:mod:`wandb_bridge.callbacks.lightning_checkpoints`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from wandb_bridge.callbacks import keras_support as support
from wandb_bridge.core import follow
from wandb_bridge.core.checkpoints import resume_checkpoint
from wandb_bridge.core.errors import OnceWarner
from wandb_bridge.core.session import Session
from wandb_bridge.core.training_end import SavedCheckpoint, end_training

_NO_OPTIMIZER_STEP = (
    "fit(initial_epoch={initial}) starts with an optimizer at step 0 (weights-only checkpoint?): "
    "trainer/global_step restarts at 0, so this fit is not recorded into the checkpoint's run. "
    "Resume from a full .keras checkpoint (keras.models.load_model) to continue that run."
)


class Checkpoints:
    """Follows the ``ModelCheckpoint`` callbacks of each ``fit`` and reports the files they write.

    Args:
        given: the callback (or list) to follow, ``checkpoint_callback=``; None: every
            ``ModelCheckpoint`` of the same ``fit``.
    """

    def __init__(self, given: Any) -> None:
        self._given = [] if given is None else list(given) if isinstance(given, (list, tuple)) else [given]
        self._followed: list[tuple[Any, str, follow.CheckpointFollower]] = []
        self._pending: tuple[int, int, dict[str, Any]] | None = None  # the epoch whose files are looked for next
        self._adopted: follow.CallbackMonitor | None = None
        self._last: tuple[int, dict[str, Any]] | None = None  # this fit's last epoch and its logs

    @property
    def followed(self) -> bool:
        """True when this ``fit`` has checkpoint callbacks to follow."""
        return bool(self._followed)

    def clear(self) -> None:
        """A ``fit`` begins: nothing of an earlier one (that failed before its end) is pending."""
        self._pending, self._last = None, None

    def resume(
        self,
        session: Session,
        step_of: Callable[[], int],
        siblings: Sequence[Any] | None,
        arguments: Mapping[str, Any],
        warner: OnceWarner,
    ) -> None:
        """``fit(initial_epoch=E)``, E > 0: continue the run of the checkpoint (of this fit's callbacks)
        training resumed from; the core picks it by the run markers. ``step_of`` reads the optimizer's step."""
        initial = arguments.get("initial_epoch")
        if session.settings.resume_from_checkpoint or not isinstance(initial, int) or initial <= 0:
            return
        step = step_of()
        if step == 0:
            warner.warn("resume:optimizer", _NO_OPTIMIZER_STEP.format(initial=initial), stacklevel=5)
        templates = support.checkpoint_callbacks(self._given, siblings)
        paths = [p for _, template in templates for p in follow.matching_files(follow.template_glob(template))]
        path = resume_checkpoint(paths, step=step, epoch=initial)
        if path is not None:
            session.resume_from_checkpoint(path)

    def begin(self, session: Session, siblings: Sequence[Any] | None) -> None:
        """Follow this fit's checkpoint callbacks (the files already there are not this fit's)."""
        self._followed, self._adopted = [], None
        for callback, template in support.checkpoint_callbacks(self._given, siblings):
            follower = follow.CheckpointFollower()
            follower.ignore_existing(follow.template_glob(template))
            self._followed.append((callback, template, follower))
        if self._followed:
            self._adopt_monitor(session)

    def epoch_ended(self, session: Session, step: int, epoch: int, logs: dict[str, Any]) -> None:
        """Remember the epoch: its files are looked for once every callback's ``on_epoch_end`` ran."""
        if self._followed:
            self._adopt_monitor(session)  # Keras decides mode="auto" at the first epoch end
            self._pending = (step, epoch, logs)
        self._last = (epoch, logs)

    def end_fit(
        self, session: Session | None, session_of: Callable[[], Session], model: Any, step_of: Callable[[], int]
    ) -> None:
        """The ``fit`` ended: report the last epoch's files; the final model as the core's rule says."""
        self.report_written(session_of)
        if session is None:
            return
        last = self._last

        def save() -> SavedCheckpoint:  # the final model, as model-step-<step>.keras beside the run's files
            step = step_of()
            path = os.path.join(support.model_folder(session.run_dir), f"model-step-{step}.keras")
            model.save(path, overwrite=True)
            meta = support.checkpoint_metadata(None, path)
            epoch, logs = last if last is not None else (None, {})
            return SavedCheckpoint(path, step, epoch, logs, metadata=meta)

        log_model = session.settings.log_model
        end_training(session, log_model, trained=last is not None, checkpoint_exists=self.followed, save=save)

    def report_written(self, session_of: Callable[[], Session]) -> None:
        """Report the files the followed callbacks wrote in the pending epoch (at the next
        ``on_epoch_begin`` / ``on_train_end``, whatever the order of the callbacks).

        ``session_of`` gives the callback's session; it is called only when an epoch is pending.
        """
        pending, self._pending = self._pending, None
        if pending is None:
            return
        step, epoch, logs = pending
        session = session_of()
        for callback, template, follower in self._followed:
            for path in follower.written_matching(follow.template_glob(template)):
                meta = support.checkpoint_metadata(callback, path)
                session.log_checkpoint(path, step=step, epoch=epoch, metrics=logs, metadata=meta)

    def _adopt_monitor(self, session: Session) -> None:
        monitors = [support.monitor_of(callback) for callback, _, _ in self._followed]
        adopted = session.adopt_monitor(monitors, current=session.settings.monitor, stage="train", unless=self._adopted)
        self._adopted = adopted or self._adopted
