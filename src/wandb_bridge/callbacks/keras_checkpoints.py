"""The checkpoint part of ``WandbKerasCallback``: the ``ModelCheckpoint`` callbacks of a ``fit`` and their files.

Which files are new, which monitor the callbacks use and which checkpoint a resumed
``fit`` came from are the core's rules (:mod:`wandb_bridge.core.follow`,
:mod:`wandb_bridge.core.checkpoints`); this part only reads Keras's callbacks and
tells the session. The Lightning logger's counterpart is
:mod:`wandb_bridge.callbacks.lightning_checkpoints`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from wandb_bridge.callbacks import keras_support as support
from wandb_bridge.core import follow
from wandb_bridge.core.checkpoints import resume_checkpoint
from wandb_bridge.core.session import Session


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

    @property
    def followed(self) -> bool:
        """True when this ``fit`` has checkpoint callbacks to follow."""
        return bool(self._followed)

    def clear(self) -> None:
        """A ``fit`` begins: nothing of an earlier one (that failed before its end) is pending."""
        self._pending = None

    def resume_path(self, siblings: Sequence[Any] | None, step: int, epoch: int) -> str | None:
        """The checkpoint ``fit(initial_epoch=epoch)`` resumed from, among the files of this fit's callbacks."""
        templates = support.checkpoint_callbacks(self._given, siblings)
        paths = [p for _, template in templates for p in follow.matching_files(follow.template_glob(template))]
        return resume_checkpoint(paths, step=step, epoch=epoch)

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
        adopted = follow.adopted_monitor(session.settings.monitor, monitors)
        if adopted is not None and adopted != self._adopted:
            self._adopted = adopted
            session.define_monitor(adopted.monitor, adopted.mode, stage="train")
