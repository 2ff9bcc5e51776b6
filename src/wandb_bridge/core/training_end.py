"""The end of a training call, the same for every framework: the final-model rule, then the end-of-training uploads.

A framework callback says how its framework saves a model (``save``) and what it knows
(did training run to its end here, did its checkpointing write anything); the policy is here:

1. :func:`~wandb_bridge.core.follow.final_model_due`: the library saves a model itself only
   when ``log_model`` asks for one and no checkpoint exists;
2. the saved model is reported as a checkpoint (``Session.log_checkpoint``), so aliases,
   the upload and the run marker follow the run contract like any other checkpoint;
3. ``Session.upload_end_checkpoints()``: what ``log_model="end"`` uploads, now (the run stays
   open for a later ``evaluate()``), also when saving failed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from wandb_bridge.core.follow import final_model_due

if TYPE_CHECKING:
    from wandb_bridge.core.session import Session
    from wandb_bridge.core.settings import LogModel


@dataclass(frozen=True)
class SavedCheckpoint:
    """A checkpoint (or final model) a framework saved, as ``Session.log_checkpoint`` takes it.

    Attributes:
        path: the file or folder written.
        step: the global step it holds.
        epoch: the whole epochs completed, when known.
        metrics: the values of that step (the monitored one gives the score).
        metadata: framework facts recorded with it.
        include: glob patterns of the files of a folder to upload (None: all).
        exclude: glob patterns of files never uploaded.
        payload_name: a single file's name inside the artifact.
    """

    path: str
    step: int | None = None
    epoch: int | None = None
    metrics: Mapping[str, Any] | None = None
    metadata: Mapping[str, Any] | None = None
    include: Sequence[str] | None = None
    exclude: Sequence[str] = ()
    payload_name: str | None = None

    def report(self, session: Session, *, is_best: bool | None = None) -> None:
        """Hand it to ``session.log_checkpoint`` (``is_best``: the framework's own verdict)."""
        session.log_checkpoint(
            self.path,
            self.step,
            self.epoch,
            self.metrics,
            is_best=is_best,
            metadata=self.metadata,
            include=self.include,
            exclude=self.exclude,
            payload_name=self.payload_name,
        )


def end_training(
    session: Session | None,
    log_model: LogModel,
    *,
    trained: bool,
    checkpoint_exists: bool,
    save: Callable[[], SavedCheckpoint | None],
) -> bool:
    """Save and report the final model when the final-model rule says so, then upload what ``log_model="end"`` keeps.

    Args:
        session: the session that reports (None on a process that saves but does not log,
            e.g. a non-zero rank taking part in a collective save).
        log_model: the run's ``log_model``.
        trained: training ran to its end on this process.
        checkpoint_exists: the framework's checkpointing wrote a checkpoint, or the final
            model was saved already.
        save: saves the model the framework's way; returns what it wrote (None: nothing
            to report from this process).

    Returns:
        True when ``save`` was called.
    """
    if not final_model_due(log_model, trained=trained, checkpoint_exists=checkpoint_exists):
        if session is not None:
            session.upload_end_checkpoints()
        return False
    try:
        saved = save()
        if saved is not None and session is not None:
            saved.report(session)
    finally:
        if session is not None:
            session.upload_end_checkpoints()
    return True


__all__ = ["SavedCheckpoint", "end_training"]
