"""The background worker of a session: drain the queued operations in order, dispatching on their type.

A :class:`~wandb_bridge.core.ops.LogRow` is merged into the row of its step
(:class:`~wandb_bridge.core.row_path.RowPath`); before any other operation the
rows merged so far are converted and handed to the row sinks
(:class:`~wandb_bridge.core.row_sinks.RowRouter`). A
:class:`~wandb_bridge.core.ops.Call` is a call on wandb: it waits until the
rows before it were logged, and its failure is a W&B fault. Every other
operation is the session's own bookkeeping, run even when wandb is gone.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from wandb_bridge.adapters import wandb_sdk
from wandb_bridge.core.checkpoint_uploads import CheckpointUploads
from wandb_bridge.core.faults import FaultBoundary
from wandb_bridge.core.metrics import SKIP_REASONS, convert_rows
from wandb_bridge.core.ops import (
    Call,
    Checkpoint,
    CloseRow,
    HealthRow,
    LogRow,
    Marker,
    Op,
    RowsHere,
    ShardedCheckpoint,
    SmallCheckpoint,
    Summary,
    Task,
    UploadEnd,
    UploadFiles,
)
from wandb_bridge.core.row_path import RowPath
from wandb_bridge.core.row_sinks import RowRouter
from wandb_bridge.core.run_markers import RunMarkers
from wandb_bridge.core.settings import Settings

# A batch's merged rows go to the sinks once they hold this many values: wandb-core starts on
# the first wide rows while the worker merges the next ones (narrow rows still go in hundreds).
_HAND_OVER_VALUES = 2000


class Worker:
    """Runs on the worker thread only: everything the training thread handed over."""

    def __init__(
        self,
        settings: Settings,
        handle: wandb_sdk.RunHandle,
        parts: tuple[FaultBoundary, RowPath, RowRouter, RunMarkers, CheckpointUploads],
    ) -> None:
        self._settings = settings
        self._handle = handle
        faults, rows, router, markers, uploads = parts
        self._faults, self._rows, self._router, self._markers = faults, rows, router, markers
        self._handlers: dict[type[Task], Callable[[Any], None]] = {
            CloseRow: self._close_row,
            RowsHere: self._rows_here,
            HealthRow: lambda op: self._emit(rows.health(op)),
            Summary: self._summary,
            Checkpoint: uploads.saved,
            ShardedCheckpoint: uploads.sharded,
            SmallCheckpoint: uploads.small,
            Marker: lambda op: markers.write(op.path, op.step, op.epoch),
            UploadEnd: uploads.upload_end,
            UploadFiles: uploads.upload_files,
        }

    def drain(self, ops: list[Op]) -> None:
        """Handle a batch of operations, in order."""
        rows: list[dict[str, Any]] = []
        values = 0  # in the rows merged and not yet handed over
        merge = self._rows.merge
        for op in ops:
            if isinstance(op, LogRow):
                closed = merge(op)
                if closed:
                    rows.extend(closed)
                    values += sum(map(len, closed))
                    if values >= _HAND_OVER_VALUES:
                        self._emit(rows)
                        rows, values = [], 0
                continue
            self._emit(rows)
            rows, values = [], 0
            if isinstance(op, Call):
                self._router.sync()  # wandb calls from here come after the rows before them
                self._faults.guard_worker(op.what, op.fn, *op.args)
                continue
            handler = self._handlers[type(op)]
            try:
                handler(op)  # our own bookkeeping: runs even when wandb is gone
            except Exception as exc:  # a bug of ours must not cost the rows queued after it
                name = type(op).__name__
                self._faults.warn(f"worker:{name}", f"wandb-bridge failed in {name} ({exc!r}).")
        self._emit(rows)

    def _emit(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        self._markers.count(rows)
        report = convert_rows(rows)
        for key, reason in report.skipped.items():
            self._faults.warn(f"skip:{key}", f"Metric {key!r} was not recorded: {SKIP_REASONS[reason]}.")
        for key in report.non_finite:
            self._faults.warn(f"nan:{key}", f"Metric {key!r} is NaN or infinite; it is recorded as such.")
        self._router.send(rows)

    def _close_row(self, op: CloseRow) -> None:
        del op
        self._emit(self._rows.close_row())
        self._router.sync()

    def _rows_here(self, op: RowsHere) -> None:
        del op
        self._router.rows_here()

    def _summary(self, op: Summary) -> None:
        convert_rows([op.values])
        self._faults.guard_worker("update the summary", self._handle.update_summary, op.values)
