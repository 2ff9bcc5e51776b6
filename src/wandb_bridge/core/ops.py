"""The operations the training thread queues for a session's worker: small frozen dataclasses.

The worker (:mod:`wandb_bridge.core.session_worker`) dispatches on the type:
:class:`LogRow` values are merged into rows, a :class:`Call` is a call on
wandb (the rows before it are handed over first; a failure is a W&B fault),
and every other operation is the session's own bookkeeping, which runs even
when wandb is gone.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from wandb_bridge.adapters import files
from wandb_bridge.core.metrics import Stage


class Task:
    """Base of every queued operation but :class:`LogRow` (frozen dataclasses)."""

    __slots__ = ()


class LogRow(NamedTuple):
    """Values for the row of ``step``; ``stage`` None: a direct call, keys recorded as written.

    A named tuple, not a frozen dataclass: one is built per ``log`` call, on the
    training thread, and a tuple is built four times faster (immutable and typed all the same).
    """

    step: int
    epoch: float | None
    stage: Stage | None
    values: dict[str, Any]
    stamp: float
    samples: int | None
    plain: bool = False  # every value is exactly a float or an int (checked at the hand-over)


@dataclass(frozen=True, slots=True)
class Call(Task):
    """A call on wandb (``what`` names it in a warning when it fails)."""

    what: str
    fn: Callable[..., Any]
    args: tuple[Any, ...] = ()


@dataclass(frozen=True, slots=True)
class Summary(Task):
    """Summary values, keys already mapped."""

    values: dict[str, Any]


@dataclass(frozen=True, slots=True)
class CloseRow(Task):
    """Close the open row and hand every row over (a flush, the end)."""


@dataclass(frozen=True, slots=True)
class RowsHere(Task):
    """From now on every row is logged from this process (``wandb.watch``)."""


@dataclass(frozen=True, slots=True)
class HealthRow(Task):
    """A health vector (one device tensor, one number per key) for the row of ``step``."""

    step: int
    keys: tuple[str, ...]
    values: Any
    histograms: dict[str, Any]


# Every operation the worker handles.
Op = LogRow | Task


@dataclass(frozen=True, slots=True)
class Saved:
    """What :meth:`Session.log_checkpoint` was told about a checkpoint."""

    path: str
    step: int | None
    epoch: int | None
    metrics: dict[str, Any] | None
    score: float | None
    is_best: bool | None
    aliases: tuple[str, ...]
    metadata: Any


@dataclass(frozen=True, slots=True)
class Checkpoint(Task):
    """A reported checkpoint and its snapshot (None: nothing to upload, only the marker)."""

    saved: Saved
    snap: files.Snapshot | None


@dataclass(slots=True)
class SmallCheckpoint(Task):
    """A reported single small file, already read: the worker builds its :class:`Saved` and snapshot.

    The training thread only reads the file (the content the call reported) and
    copies the metrics; names, filters, staging paths and the record of the call
    are the worker's work. (Not frozen: a frozen dataclass's ``__init__`` costs
    microseconds more on the training thread; nothing changes it after the queue.)
    """

    path: str
    step: int | None
    epoch: int | None
    metrics: dict[str, Any] | None
    options: tuple[float | None, bool | None, Sequence[str], Mapping[str, Any] | None]
    selection: tuple[Sequence[str] | None, Sequence[str], str | None]
    content: bytes


@dataclass(frozen=True, slots=True)
class ShardedCheckpoint(Task):
    """A sharded checkpoint folder: logged once it is complete (``spec``: include, exclude, payload name)."""

    saved: Saved
    snap: files.Snapshot | None
    spec: tuple[Sequence[str] | None, Sequence[str], str | None]


@dataclass(frozen=True, slots=True)
class Marker(Task):
    """Write the run marker beside a checkpoint that is not uploaded."""

    path: str
    step: int | None
    epoch: int | None


@dataclass(frozen=True, slots=True)
class UploadEnd(Task):
    """Upload the end-of-run checkpoints.

    ``only_if_new``: unless nothing was reported since they were last uploaded;
    ``final``: the run ends (snapshots are released after their upload).
    """

    only_if_new: bool = False
    final: bool = False


@dataclass(frozen=True, slots=True)
class UploadFiles(Task):
    """Log a file or folder as an artifact (:meth:`Session.log_artifact`)."""

    snap: files.Snapshot
    name: str
    kind: str
    aliases: tuple[str, ...]
    metadata: dict[str, Any]
