"""Checkpoint following: which files are new, which callback decides ``best``, and the final-model rule.

The one implementation every framework uses (Lightning knows its callbacks'
paths and scores; Keras knows a ``ModelCheckpoint`` file path template): the
callbacks hand over paths, templates and what their checkpoint callbacks
monitor; the functions here decide. Pure: no wandb, no framework, no threads.

A file is *written* when its ``(mtime_ns, size, inode)`` differs from when it was
last seen (a rewritten ``last.ckpt`` counts again); a file last modified more
than 1 s before following began is never reported (a resumed callback's old
files). Files are reported oldest first.
"""

from __future__ import annotations

import glob
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Literal, TypeVar

from wandb_bridge.core.settings import LogModel, infer_monitor_mode

Signature = tuple[int, int, int]
"""``(mtime_ns, size, inode)`` of a file or folder."""

Role = Literal["primary", "other", "judge"]
"""How a checkpoint callback's files are judged for the ``best`` alias (see :func:`checkpoint_role`)."""

_V = TypeVar("_V")
_GRACE_NS = 1_000_000_000  # files modified up to 1 s before following began still count (coarse clocks)


def signature(path: str) -> Signature | None:
    """``(mtime_ns, size, inode)`` of ``path``, or None when it does not exist."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_mtime_ns, stat.st_size, stat.st_ino)


def template_glob(template: str) -> str:
    """A glob matching every file a ``str.format`` path template can produce.

    ``"ckpt/model-{epoch:02d}-{val_loss:.2f}.keras"`` becomes
    ``"ckpt/model-*-*.keras"``; ``{{``/``}}`` are literal braces; the literal
    parts are glob-escaped.
    """
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


def matching_files(pattern: str) -> dict[str, Signature]:
    """``path -> (mtime_ns, size, inode)`` of the regular files matching the glob ``pattern``."""
    found: dict[str, Signature] = {}
    for path in glob.glob(pattern):
        key = signature(path)
        if key is not None and os.path.isfile(path):
            found[path] = key
    return found


class CheckpointFollower:
    """The checkpoint files one source (a logger, a ``ModelCheckpoint``) wrote since they were last seen.

    Example:
        >>> follower = CheckpointFollower()  # doctest: +SKIP
        >>> follower.written({"ckpt/last.ckpt": 0.5, "ckpt/best.ckpt": 0.4})  # doctest: +SKIP
        [('ckpt/best.ckpt', 0.4), ('ckpt/last.ckpt', 0.5)]
        >>> follower.written_matching(template_glob("ckpt/model-{epoch:02d}.keras"))  # doctest: +SKIP
        ['ckpt/model-01.keras']

    Args:
        since_ns: when following began (``time.time_ns()``; default: now).
            Files last modified over 1 s before it are never reported.
    """

    def __init__(self, since_ns: int | None = None) -> None:
        self.since_ns = time.time_ns() if since_ns is None else since_ns
        self._seen: dict[str, Signature] = {}

    def ignore_existing(self, pattern: str) -> None:
        """Take the files matching ``pattern`` now as seen: only a later write of them is reported."""
        self._seen.update(matching_files(pattern))

    def written(self, candidates: Mapping[str, _V]) -> list[tuple[str, _V]]:
        """The candidate paths (files or folders) written since last seen, oldest first, with their values.

        Args:
            candidates: ``path -> value`` (e.g. the callback's score of the file);
                paths that do not exist are left out.

        Returns:
            ``(path, value)`` of each new or rewritten path, by modification time.
        """
        found: list[tuple[int, str, _V]] = []
        for path, value in candidates.items():
            key = signature(path)
            if key is None or self._seen.get(path) == key:
                continue
            self._seen[path] = key
            if key[0] >= self.since_ns - _GRACE_NS:
                found.append((key[0], path, value))
        found.sort(key=lambda item: (item[0], item[1]))
        return [(path, value) for _, path, value in found]

    def written_matching(self, pattern: str) -> list[str]:
        """The regular files matching the glob ``pattern`` written since last seen, oldest first."""
        return [path for path, _ in self.written(dict.fromkeys(matching_files(pattern)))]


def checkpoint_role(monitor: str | None, monitors: Sequence[str | None], index: int) -> Role:
    """Which checkpoint callback's own verdict decides the ``best`` alias.

    Args:
        monitor: the run's monitored key (recorded name), or None.
        monitors: the recorded key each checkpoint callback of the training
            monitors (None: it monitors nothing), in the framework's order.
        index: the position in ``monitors`` of the callback whose files are judged.

    Returns:
        ``"primary"``: the first callback monitoring the run's key (with no run
        monitor: a callback monitoring nothing); its own best file is ``best``.
        ``"other"``: another callback while a primary exists (never ``best``).
        ``"judge"``: no callback monitors the run's key; the core compares values.
    """
    if monitor is None:
        return "primary" if monitors[index] is None else "judge"
    for position, key in enumerate(monitors):
        if key and key == monitor:
            return "primary" if position == index else "other"
    return "judge"


@dataclass(frozen=True)
class Verdict:
    """How one followed file is reported to :meth:`~wandb_bridge.Session.log_checkpoint`.

    Attributes:
        score: the monitored value to record (only a primary callback's).
        is_best: the verdict on ``best`` (None: the checkpoint policy judges).
        with_metrics: hand over the metrics at save time (the policy judges by them).
    """

    score: float | None
    is_best: bool | None
    with_metrics: bool


def verdict(role: Role, score: float | None, framework_best: bool) -> Verdict:
    """The report of one file of a callback in ``role`` (see :func:`checkpoint_role`).

    Args:
        role: the callback's role.
        score: the callback's score of the file.
        framework_best: the file is the callback's own best one.
    """
    if role == "primary":
        return Verdict(score, framework_best, False)
    if role == "other":
        return Verdict(None, False, False)
    return Verdict(None, None, True)


@dataclass(frozen=True)
class CallbackMonitor:
    """What one checkpoint callback monitors, as its framework states it.

    Attributes:
        monitor: the metric name as the framework writes it (None: nothing).
        mode: ``"min"``/``"max"``, when the callback says (None: guessed from the name on adoption).
        preferred: its metric wins over the other callbacks' (Keras ``save_best_only``).
    """

    monitor: str | None
    mode: str | None = None
    preferred: bool = False


def adopted_monitor(current: str | None, callbacks: Sequence[CallbackMonitor]) -> CallbackMonitor | None:
    """The checkpoint callback whose metric the run monitors, when the run has none yet.

    Args:
        current: the monitor the run already has (the user's ``monitor=``), or None.
        callbacks: the training's checkpoint callbacks, in the framework's order.

    Returns:
        The first preferred callback with a monitor, else the first with a
        monitor (a mode it does not state guessed from the metric's name:
        :func:`~wandb_bridge.core.settings.infer_monitor_mode`); None when
        ``current`` is set or no callback monitors anything.
    """
    if current is not None:
        return None
    watching = [c for c in callbacks if c.monitor]
    preferred = [c for c in watching if c.preferred]
    if not watching:
        return None
    chosen = (preferred or watching)[0]
    return chosen if chosen.mode is not None else replace(chosen, mode=infer_monitor_mode(chosen.monitor))


def final_model_due(log_model: LogModel, *, trained: bool, checkpoint_exists: bool) -> bool:
    """The final-model rule: the library saves a model itself only when ``log_model`` asks and none exists.

    Args:
        log_model: the run's ``log_model``.
        trained: training ran to its end on this process (and it is the one that saves).
        checkpoint_exists: the framework's checkpointing wrote (or is set up to
            write) a checkpoint, or the final model was saved already.

    Returns:
        True when the caller should save the final model now and report it.
    """
    return log_model is not False and trained and not checkpoint_exists


__all__ = [
    "CallbackMonitor",
    "CheckpointFollower",
    "Role",
    "Signature",
    "Verdict",
    "adopted_monitor",
    "checkpoint_role",
    "final_model_due",
    "matching_files",
    "signature",
    "template_glob",
    "verdict",
]
