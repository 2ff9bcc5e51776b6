"""Run markers beside checkpoints: which run wrote a checkpoint, at which wandb ``_step``, and how far it got.

:class:`RunMarkers` writes ``_wandb-bridge-runs.json`` beside each reported
checkpoint (:mod:`wandb_bridge.adapters.markers`), keeps the map from
``trainer/global_step`` to wandb's ``_step`` of the rows handed over (a resume
rewinds the run to the checkpoint's row), and notes the last step recorded in
every marker at SIGTERM and at the end.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from wandb_bridge._version import __version__
from wandb_bridge.adapters import markers, wandb_sdk
from wandb_bridge.core.faults import FaultBoundary
from wandb_bridge.core.metrics import STEP_KEY


class RunMarkers:
    """The markers this session wrote and the step map (worker thread; :meth:`record_progress` at the end).

    Args:
        faults: the session's fault boundary.
        last_step: the highest step logged so far.
        framework: the framework's name, noted in each marker.
    """

    def __init__(self, faults: FaultBoundary, last_step: Callable[[], int | None], framework: str | None) -> None:
        self._faults = faults
        self._last_step = last_step
        self._framework = framework
        self._handle: wandb_sdk.RunHandle | None = None
        self._identity: dict[str, str | None] | None = None
        self._indexes: set[str] = set()
        # wandb's _step of the next row, the recent rows' steps, and checkpoint steps whose
        # row is still to come (-> the marker indexes that wait for it).
        self._wandb_next = 0
        self._recent_steps: dict[int, int] = {}
        self._pending_steps: dict[int, set[str]] = {}
        self._last_row: tuple[int, int] | None = None

    def attach(self, handle: wandb_sdk.RunHandle) -> None:
        """The run rows are counted for (from its starting step)."""
        self._handle = handle
        self._wandb_next = self._faults.guard("read the run's starting step", lambda: handle.starting_step) or 0

    def count(self, rows: list[dict[str, Any]]) -> None:
        """Note which wandb ``_step`` each row gets (one per committed row, from the run's starting step)."""
        handle = self._handle
        if not rows or handle is None:
            return
        resolved: dict[str, dict[int, int]] = {}
        for row in rows:
            step = row.get(STEP_KEY)
            number = self._wandb_next
            self._wandb_next += 1
            if not isinstance(step, int) or isinstance(step, bool):
                continue
            for waiting in [p for p in self._pending_steps if p < step]:
                # A later step's row: the last row at or before the checkpoint's step is final now.
                indexes = self._pending_steps.pop(waiting)
                if self._last_row is not None and self._last_row[0] <= waiting:
                    for index in indexes:
                        resolved.setdefault(index, {})[waiting] = self._last_row[1]
            for index in self._pending_steps.get(step, ()):
                resolved.setdefault(index, {})[step] = number
            self._recent_steps[step] = number
            self._last_row = (step, number)
        if len(self._recent_steps) > 512:
            for old in sorted(self._recent_steps)[:-256]:
                del self._recent_steps[old]
        for index, steps in resolved.items():
            try:
                markers.record_wandb_steps(index, handle.id, steps)
            except OSError:
                pass

    def _map_wandb_step(self, handle: wandb_sdk.RunHandle, index: str, step: int | None) -> None:
        """Record in ``index`` the ``_step`` of the last row at or before checkpoint step ``step``.

        Recorded now from the rows handed to wandb so far, and again once a row of a
        later step shows that row is final (the checkpoint's own row may still be open).
        """
        if step is None:
            return
        before = [s for s in self._recent_steps if s <= step]
        if before:
            markers.record_wandb_steps(index, handle.id, {step: self._recent_steps[max(before)]})
        if not any(s > step for s in self._recent_steps):
            self._pending_steps.setdefault(step, set()).add(index)

    def write(self, path: str, step: int | None, epoch: int | None) -> None:
        """Note beside the checkpoint which run wrote it (a tiny JSON write, in the worker)."""
        handle = self._handle
        if handle is None or not os.path.exists(path):
            return
        if self._identity is None:
            self._identity = self._faults.guard("read the run's project", handle.identity) or {}
        info = {
            "run_id": handle.id,
            **self._identity,
            "step": step,
            "epoch": None if epoch is None else int(epoch),
            "framework": self._framework,
            "wandb_bridge_version": __version__,
        }
        try:
            index = markers.write(path, info, self._last_step())
            self._indexes.add(index)
            self._map_wandb_step(handle, index, step)
        except OSError as exc:
            self._faults.warn(
                "marker",
                f"The run marker beside {path!r} could not be written ({exc}); resuming from it "
                "needs the run id (id=...).",
            )

    def record_progress(self) -> None:
        """Note the last step this run recorded in the markers of its checkpoints (at SIGTERM and finish)."""
        handle, last = self._handle, self._last_step()
        if handle is None or last is None:
            return
        for index in sorted(self._indexes):
            try:
                markers.record_progress(index, handle.id, last)
            except OSError:
                pass
