"""Test support for code that logs to Weights & Biases.

* :func:`read_run` / :func:`read_runs` / :func:`find_run_files` read the
  transaction logs (``run-<id>.wandb``) of offline runs into
  :class:`RunRecord` objects, so tests can assert on what was really recorded
  (history, config, summary, metric definitions, artifacts, exit code);
  :func:`count_history` counts a long run's history rows without decoding them.
* The pytest plugin (registered through the ``pytest11`` entry point) provides
  the ``wandb_offline`` fixture, a :class:`WandbOfflineRuns`, which isolates
  wandb in offline mode under ``tmp_path`` for one test.

Importing this package does not import ``wandb`` or ``pytest``;
:class:`WandbOfflineRuns` is loaded from the plugin module on first access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from wandb_bridge.testing.reader import (
    ArtifactRecord,
    RunFileError,
    RunRecord,
    count_history,
    find_run_files,
    read_run,
    read_runs,
)

if TYPE_CHECKING:
    from wandb_bridge.testing.plugin import WandbOfflineRuns

__all__ = [
    "ArtifactRecord",
    "RunFileError",
    "RunRecord",
    "WandbOfflineRuns",
    "count_history",
    "find_run_files",
    "read_run",
    "read_runs",
]


def __getattr__(name: str) -> Any:
    if name == "WandbOfflineRuns":
        from wandb_bridge.testing.plugin import WandbOfflineRuns

        return WandbOfflineRuns
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
