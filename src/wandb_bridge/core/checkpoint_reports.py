"""Reporting what a framework's checkpoint callback wrote: which process reports, and how each new file is judged.

A framework whose checkpoint callbacks keep their files' paths and scores
(Lightning's ``ModelCheckpoint``) hands them over after each save; this part
picks the new files (:class:`~wandb_bridge.core.follow.CheckpointFollower`),
the callback's role for the ``best`` alias and each file's verdict
(:func:`~wandb_bridge.core.follow.checkpoint_role`, :func:`~wandb_bridge.core.follow.verdict`),
and reports them to the session. No wandb, no framework, no threads.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from wandb_bridge.core.follow import CheckpointFollower, checkpoint_role, verdict

if TYPE_CHECKING:
    from wandb_bridge.core.session import Session


def reports_files(global_rank: int | None) -> bool:
    """Whether this process reports the checkpoint files its framework wrote.

    Frameworks that write checkpoint files on one process (Lightning: global
    rank 0) hand every process the same paths; only the writer reports them, so
    with ``rank_zero_only=False`` (one run per rank) the other ranks' runs
    record no copy of rank 0's files.

    Args:
        global_rank: the framework's global rank of this process (None: not known, one process).
    """
    return global_rank is None or global_rank == 0


@dataclass(frozen=True)
class SavedFiles:
    """What one checkpoint callback holds after a save, as its framework states it.

    Attributes:
        files: ``path -> the callback's score`` of every file it keeps (last, top k, best).
        best_path: the callback's own best file ("" when none).
        name: the callback's name (its class), the key of its metadata.
        fields: its settings recorded in each version's metadata.
    """

    files: Mapping[str, float | None]
    best_path: str = ""
    name: str = "ModelCheckpoint"
    fields: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SaveTime:
    """Where training was when a checkpoint was written (all None without a trainer).

    Attributes:
        step: the global step.
        epoch: the whole epochs completed.
        metrics: the metrics at save time (handed over only when the core judges ``best``).
    """

    step: int | None = None
    epoch: int | None = None
    metrics: Mapping[str, Any] | None = None


class CallbackFiles:
    """Reports the files one source's checkpoint callbacks wrote since last seen.

    State: the :class:`~wandb_bridge.core.follow.CheckpointFollower` of the files seen.

    Args:
        payload_name: the name of a single-file checkpoint inside its artifact (folders keep theirs).
    """

    def __init__(self, payload_name: str | None = None) -> None:
        self.payload_name = payload_name
        self._follower = CheckpointFollower()

    def report(
        self, session: Session, saved: SavedFiles, monitors: Sequence[str | None], index: int, at: SaveTime
    ) -> None:
        """Report the callback's new or rewritten files, oldest first, with their verdict on ``best``.

        Args:
            session: the started session.
            saved: what the callback that saved holds.
            monitors: the recorded key each checkpoint callback of the training monitors, in order.
            index: the position in ``monitors`` of the callback that saved.
            at: where training was.
        """
        role = checkpoint_role(session.monitor, monitors, index)
        for path, score in self._follower.written(saved.files):
            judged = verdict(role, score, path == saved.best_path)
            session.log_checkpoint(
                path,
                at.step,
                at.epoch,
                at.metrics if judged.with_metrics else None,
                score=judged.score,
                is_best=judged.is_best,
                metadata={saved.name: {**saved.fields, "score": score}},
                payload_name=self.payload_name if os.path.isfile(path) else None,
            )


__all__ = ["CallbackFiles", "SaveTime", "SavedFiles", "reports_files"]
