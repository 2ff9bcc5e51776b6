"""Checkpoint policy: when to upload, which aliases, what metadata, never the same content twice."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from wandb_bridge._version import __version__
from wandb_bridge.adapters import markers
from wandb_bridge.adapters.markers import RunMarker
from wandb_bridge.core.settings import LogModel, MonitorMode


@dataclass(frozen=True)
class CheckpointEvent:
    """A checkpoint the framework (or the user) wrote."""

    path: str
    step: int | None = None
    epoch: int | None = None
    score: float | None = None
    is_best: bool | None = None
    aliases: tuple[str, ...] = ()
    metadata: Mapping[str, Any] = field(default_factory=dict)
    sequence: int = 0


@dataclass(frozen=True)
class Upload:
    """A decision to upload one checkpoint with these aliases."""

    event: CheckpointEvent
    aliases: tuple[str, ...]
    best: bool


class CheckpointPolicy:
    """Decides which saved checkpoints become artifact versions, and with which aliases.

    ``log_model``:
        * ``"all"``: every checkpoint is uploaded when it is saved.
        * ``"best"``: a checkpoint is uploaded when it is the best so far by
          ``monitor`` (every one when there is no monitor and the caller gives no
          verdict).
        * ``"end"``: nothing during training; the newest and the best checkpoint
          are uploaded when the run finishes.
        * ``False``: nothing.

    Aliases: ``latest`` on the newest upload, ``best`` on the best one,
    ``step-<S>`` and ``epoch-<E>`` when known, plus any the caller adds.
    """

    def __init__(self, log_model: LogModel, monitor: str | None, monitor_mode: MonitorMode) -> None:
        self.log_model = log_model
        self.monitor = monitor
        self.monitor_mode = monitor_mode
        self.best_score: float | None = None
        self.latest: CheckpointEvent | None = None
        self.best: CheckpointEvent | None = None
        self._count = 0

    @property
    def enabled(self) -> bool:
        """True when any checkpoint may be uploaded."""
        return self.log_model is not False

    @property
    def seen(self) -> int:
        """How many checkpoints were reported."""
        return self._count

    def judge(self, event: CheckpointEvent) -> bool:
        """Decide whether ``event`` is the best checkpoint so far, and remember it."""
        if event.is_best is not None:
            best = event.is_best
            if best and event.score is not None:
                self.best_score = event.score
        elif event.score is None or not math.isfinite(event.score):
            best = self.monitor is None and event.score is None
        elif self.best_score is None:
            best = True
        else:
            better = event.score < self.best_score if self.monitor_mode == "min" else event.score > self.best_score
            best = better
        if best:
            if event.score is not None and math.isfinite(event.score):
                self.best_score = event.score
            self.best = event
        return best

    def on_saved(self, event: CheckpointEvent) -> tuple[list[Upload], list[CheckpointEvent]]:
        """Record a saved checkpoint.

        Returns:
            The uploads to make now, and the events whose files may be released
            (no longer needed for a later upload).
        """
        self._count += 1
        if event.sequence != self._count:  # callers that know it (the session) build it in: no copy
            event = dataclasses.replace(event, sequence=self._count)
        previous_latest, previous_best = self.latest, self.best
        best = self.judge(event)
        self.latest = event
        if self.log_model == "all" or (self.log_model == "best" and best):
            return [Upload(event, self.aliases(event, best=best, latest=True), best)], [event]
        if self.log_model == "end":
            keep = {id(self.latest), id(self.best)}
            released = [e for e in (previous_latest, previous_best) if e is not None and id(e) not in keep]
            return [], _unique(released)
        return [], [event]

    def at_end(self) -> list[Upload]:
        """The uploads to make when the run finishes (``log_model="end"``)."""
        if self.log_model != "end" or self.latest is None:
            return []
        latest = self.latest
        latest_is_best = self.best is latest
        uploads = [Upload(latest, self.aliases(latest, best=latest_is_best, latest=True), latest_is_best)]
        if self.best is not None and not latest_is_best:
            uploads.insert(0, Upload(self.best, self.aliases(self.best, best=True, latest=False), True))
        return uploads

    def aliases(self, event: CheckpointEvent, *, best: bool, latest: bool) -> tuple[str, ...]:
        """The aliases of one uploaded checkpoint."""
        names: list[str] = []
        if latest:
            names.append("latest")
        if best:
            names.append("best")
        if event.step is not None:
            names.append(f"step-{event.step}")
        if event.epoch is not None:
            names.append(f"epoch-{event.epoch}")
        names.extend(a for a in event.aliases if a not in names)
        return tuple(names)

    def metadata(
        self,
        event: CheckpointEvent,
        *,
        run_id: str | None,
        framework: str | None,
        framework_version: str | None,
    ) -> dict[str, Any]:
        """The metadata of one uploaded checkpoint (plain Python values only)."""
        score = event.score
        meta: dict[str, Any] = {
            "framework": framework,
            "framework_version": framework_version,
            "step": event.step,
            "epoch": event.epoch,
            "monitor": self.monitor,
            "monitor_mode": self.monitor_mode,
            "score": None if score is None or not math.isfinite(score) else float(score),
            "original_filename": _basename(event.path),
            "run_id": run_id,
            "wandb_bridge_version": __version__,
        }
        meta.update(event.metadata)
        return meta


def find_run_marker(path: str | os.PathLike[str], step: int | None = None) -> RunMarker | None:
    """The W&B run that wrote the checkpoint at ``path``, from the marker saved beside it.

    Every checkpoint reported with :meth:`~wandb_bridge.Session.log_checkpoint`
    gets an entry in ``_wandb-bridge-runs.json`` in the folder that holds it
    (see :mod:`wandb_bridge.adapters.markers`).

    Args:
        path: the checkpoint file or folder.
        step: its global step when known; then a checkpoint saved without a marker
            is attributed to the run of the newest marked checkpoint in the same
            folder at or before that step.

    Returns:
        The marker (``run_id``, ``project``, ``entity``, ``group``, ``step``,
        ``epoch``, ``last_logged_step``...), or None.
    """
    return markers.find(os.fspath(path), step)


def resume_checkpoint(paths: Iterable[str], *, step: int, epoch: int | None = None) -> str | None:
    """Which checkpoint a training that restarts at optimizer ``step`` continues from, by the run markers.

    For frameworks that tell only where training restarts (Keras ``fit(initial_epoch=E)``
    after loading a model), not which file it loaded. A candidate needs a marker (it was
    reported with :meth:`~wandb_bridge.Session.log_checkpoint`) at a step in ``1..step``;
    the best match is the one saved at ``step``, else one of ``epoch``, else the newest
    before ``step``.

    Args:
        paths: the checkpoint files the framework's checkpointing writes.
        step: the optimizer step training restarts at (0: nothing to continue).
        epoch: the epoch it restarts at, when known.

    Returns:
        The path to hand to :meth:`~wandb_bridge.Session.resume_from_checkpoint`, or None.
    """
    found: list[tuple[int, int, str]] = []  # (how well it matches, its step, path)
    for path in paths:
        marker = find_run_marker(path) if step > 0 else None
        if marker is None or marker.step is None or not 0 < marker.step <= step:
            continue
        match = 3 if marker.step == step else 2 if epoch is not None and marker.epoch == epoch else 1
        found.append((match, marker.step, path))
    return max(found)[2] if found else None


def score_from(metrics: Mapping[str, Any] | None, monitor: str | None) -> float | None:
    """Read the monitored value from a metrics mapping as a Python float, if present."""
    if not metrics or monitor is None or monitor not in metrics:
        return None
    value = metrics[monitor]
    item = getattr(value, "item", None)
    if callable(item):
        value = item()
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _unique(events: list[CheckpointEvent]) -> list[CheckpointEvent]:
    out: list[CheckpointEvent] = []
    for event in events:
        if all(event is not e for e in out):
            out.append(event)
    return out


def _basename(path: str) -> str:
    return path.rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1]


def score_value(value: Any) -> float | None:
    """A checkpoint score as a Python float (a tensor or number is read; None or anything else: None)."""
    if value is None:
        return None
    item = getattr(value, "item", None)
    try:
        return float(item() if callable(item) else value)
    except (TypeError, ValueError):
        return None
