"""Resuming a run from a checkpoint: which run to continue, whether to rewind it, which steps to skip.

:class:`Resume` reads the run marker beside a checkpoint and decides: continue
that run (its id with ``resume="allow"``), rewound to the checkpoint's row
(``wandb.init(resume_from=...)``) when the run recorded steps after it; or,
where no rewind is possible, skip the steps the previous attempts recorded
(the row path drops them, with one warning that says why).
"""

from __future__ import annotations

import os
from typing import Any

from wandb_bridge.adapters import markers, wandb_sdk
from wandb_bridge.adapters.markers import RunMarker
from wandb_bridge.core.faults import FaultBoundary
from wandb_bridge.core.row_path import RowPath
from wandb_bridge.core.settings import Settings


class Resume:
    """The marker resumed from and why steps are skipped (see the module docstring)."""

    def __init__(self, faults: FaultBoundary, rows: RowPath) -> None:
        self._faults = faults
        self._rows = rows
        self.resumed: RunMarker | None = None
        # Why a resume from an earlier checkpoint skips steps instead of rewinding the run (None: not known yet).
        self._skip_reason: str | None = None

    def resume(
        self, path: str | os.PathLike[str], step: int | None, settings: Settings, run_id: str | None, started: bool
    ) -> tuple[RunMarker | None, Settings]:
        """Resume from the checkpoint at ``path`` (see :meth:`Session.resume_from_checkpoint`).

        Args:
            path: the checkpoint.
            step: its global step, when known.
            settings: the session's settings now.
            run_id: the run's id when the session has started.
            started: whether the session has started.

        Returns:
            The marker found (or None), and the settings to start the run with.
        """
        try:
            marker = markers.find(os.fspath(path), step)
        except OSError:
            marker = None
        if marker is None:
            return None, settings
        if started:
            target = run_id
        elif (
            settings.id is None
            and settings.run is None
            and settings.resume not in (False, "never")
            and settings.rank_zero_only
            and self._faults.guard("find the active run", wandb_sdk.active_run) is None
        ):
            changes: dict[str, Any] = {"id": marker.run_id, "resume": settings.resume or "allow"}
            rewind = self._rewind_point(marker, settings)
            if rewind is not None:
                # Run rewind: the run's history continues from the checkpoint's row.
                moment = f"{marker.run_id}?_step={rewind}"
                changes["init_kwargs"] = {**settings.init_kwargs, "resume_from": moment}
                changes["resume"] = None
            if settings.project is None and marker.project:
                changes["project"] = marker.project
            if settings.entity is None and marker.entity:
                changes["entity"] = marker.entity
            settings = settings.with_changes(**changes)
            target = marker.run_id
        else:
            target = settings.id if settings.run is None else None
        if target != marker.run_id:
            # Another run (explicit id or resume="never", an active run, or one that
            # started before the checkpoint was known): nothing is skipped there.
            if target is not None:
                why = "it started before the checkpoint was known" if started else "chosen explicitly"
                self._faults.warn(
                    f"resume:{marker.run_id}",
                    f"{marker.checkpoint!r} was written by run {marker.run_id}, but this training logs to run "
                    f"{target} ({why}).",
                )
            return marker, settings
        self.resumed = marker
        rewound = "resume_from" in settings.init_kwargs and not started
        self._rows.skip_through = None if rewound else marker.recorded_through
        if started and (marker.recorded_through or 0) > (marker.step or 0):
            self._skip_reason = "the run had started before the checkpoint was known"
        if marker.step is not None:
            self._rows.advance_to(marker.step)
        return marker, settings

    def _rewind_point(self, marker: RunMarker, settings: Settings) -> int | None:
        """wandb's ``_step`` to rewind ``marker``'s run to, or None (no rewind: the skip rule applies).

        A rewind is needed when the run recorded steps after the checkpoint's; it is
        possible when wandb knows ``resume_from`` (0.17.1 and later), the marker holds
        the ``_step`` of the checkpoint's row, and no ``resume=`` was chosen explicitly.
        """
        if marker.step is None or (marker.recorded_through or 0) <= marker.step:
            return None  # nothing recorded after the checkpoint: a plain resume continues it
        reason = None
        if settings.resume is not None:
            reason = f"resume={settings.resume!r} was chosen explicitly (wandb takes resume or resume_from, not both)"
        elif "fork_from" in settings.init_kwargs or "resume_from" in settings.init_kwargs:
            reason = "fork_from/resume_from was chosen explicitly"
        elif marker.wandb_step is None:
            reason = (
                "the run marker holds no wandb _step for the checkpoint's step (written by an older "
                "wandb-bridge, or the process ended before that step's row reached wandb)"
            )
        elif not self._faults.guard("check wandb's run rewind", wandb_sdk.supports_rewind):
            reason = "the installed wandb has no run rewind (wandb.init(resume_from=...) needs wandb 0.17.1 or later)"
        if reason is not None:
            self._skip_reason = reason
            return None
        return marker.wandb_step

    def warn_skipped(self, run_id: str | None) -> None:
        """The one warning that a resumed run's steps are not recorded again."""
        marker = self.resumed
        at = "?" if marker is None or marker.step is None else str(marker.step)
        why = f" The run is not rewound to the checkpoint because {self._skip_reason}." if self._skip_reason else ""
        self._faults.warn(
            "resume:skip",
            f"This training resumes run {run_id} from its checkpoint at step {at}; steps up to "
            f"{self._rows.skip_through} were already recorded by the run's previous attempt, so this attempt's "
            f"values for them are not recorded again (each step is recorded once).{why}",
        )
