"""Pytest plugin: the ``wandb_offline`` fixture and the ``live`` marker.

Registered through the ``pytest11`` entry point, so it is active in every
pytest run of an environment where ``wandb-bridge`` is installed. Loading it
does not import ``wandb``.

``wandb_offline`` isolates wandb for one test:

* every ``WANDB_*`` environment variable is removed (a developer's
  ``WANDB_API_KEY``, ``WANDB_PROJECT``, ``WANDB_ENTITY``, ... cannot leak into
  the test), then offline mode is configured with all of wandb's folders under
  ``tmp_path / "wandb-root"`` and git/code saving, system metrics, system
  metadata and error reporting switched off (fast, no network);
* wandb's process-wide singleton, which snapshots the ``WANDB_*`` variables
  when it is created, is torn down before the test (and after it), so the
  settings above really apply;
* after the test, a run the test left active is finished.

Tests marked ``@pytest.mark.live`` are skipped unless ``WANDB_API_KEY`` is set
in the environment pytest was started with.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from wandb_bridge.testing.reader import RunRecord, read_runs

__all__ = ["WandbOfflineRuns", "wandb_offline"]

_LIVE_MARKER = "live"
_API_KEY_VAR = "WANDB_API_KEY"


class WandbOfflineRuns:
    """The wandb sandbox of one test, as returned by the ``wandb_offline`` fixture.

    Attributes:
        root: Folder holding everything wandb writes during the test.
        wandb_dir: The ``WANDB_DIR`` folder; wandb puts run folders in its
            ``wandb/`` subfolder.
        cache_dir: The ``WANDB_CACHE_DIR`` folder.
        data_dir: The ``WANDB_DATA_DIR`` folder (artifact staging copies).
        config_dir: The ``WANDB_CONFIG_DIR`` folder.
        artifact_dir: The ``WANDB_ARTIFACT_DIR`` folder (artifact downloads).
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        """Create the sandbox folders under ``root``.

        Args:
            root: Folder to hold the sandbox; created if missing.
        """
        self.root = Path(root)
        self.wandb_dir = self.root / "dir"
        self.cache_dir = self.root / "cache"
        self.data_dir = self.root / "data"
        self.config_dir = self.root / "config"
        self.artifact_dir = self.root / "artifacts"
        for folder in (
            self.wandb_dir,
            self.cache_dir,
            self.data_dir,
            self.config_dir,
            self.artifact_dir,
        ):
            folder.mkdir(parents=True, exist_ok=True)
        self._env = {
            "WANDB_MODE": "offline",
            "WANDB_SILENT": "true",
            "WANDB_DIR": str(self.wandb_dir),
            "WANDB_CACHE_DIR": str(self.cache_dir),
            "WANDB_DATA_DIR": str(self.data_dir),
            "WANDB_CONFIG_DIR": str(self.config_dir),
            "WANDB_ARTIFACT_DIR": str(self.artifact_dir),
            "WANDB_DISABLE_GIT": "true",
            "WANDB_DISABLE_CODE": "true",
            "WANDB_ERROR_REPORTING": "false",
            # ``WANDB__X`` sets wandb's private ``x_x`` setting.
            "WANDB__DISABLE_STATS": "true",
            "WANDB__DISABLE_META": "true",
            "WANDB__DISABLE_MACHINE_INFO": "true",
        }

    @property
    def env(self) -> dict[str, str]:
        """The ``WANDB_*`` variables the fixture set (a copy).

        Useful for subprocesses: ``env={**os.environ, **wandb_offline.env}``.
        """
        return dict(self._env)

    def flush(self) -> None:
        """Wait until wandb has written out every finished run of this process.

        wandb's service process writes the ``.wandb`` files asynchronously, so
        right after ``run.finish()`` a file can still be incomplete (even
        empty). When no run is active in this process, this calls
        ``wandb.teardown()``, which waits until the service has written and
        closed every file; the next ``wandb.init()`` starts a new service.
        While a run is still active it does nothing. :meth:`runs`,
        :meth:`run`, :meth:`all_files` and :meth:`grep` call it first; call it
        yourself before using :func:`~wandb_bridge.testing.read_run` directly.
        """
        _flush_wandb()

    def runs(self) -> list[RunRecord]:
        """Read every run written under :attr:`wandb_dir`, after :meth:`flush`.

        While a run is still active its file is read as it is (possibly
        ``truncated``).

        Returns:
            The runs, oldest first (by file modification time).
        """
        self.flush()
        return read_runs(self.wandb_dir)

    def run(self) -> RunRecord:
        """Read the single run written during the test.

        Returns:
            The run.

        Raises:
            AssertionError: There is not exactly one run; the message lists
                the run files found.
        """
        found = self.runs()
        if len(found) != 1:
            listing = "".join(f"\n  {r.path}" for r in found) or " none"
            raise AssertionError(f"expected exactly one wandb run under {self.wandb_dir}, found {len(found)}:{listing}")
        return found[0]

    def all_files(self) -> list[Path]:
        """List every regular file wandb wrote under :attr:`root`, after :meth:`flush`.

        Symlinks (wandb's ``latest-run`` and ``debug.log`` links) are skipped
        so that every file appears once.

        Returns:
            The files, sorted by path.
        """
        self.flush()
        files: list[Path] = []
        for dirpath, _dirnames, filenames in os.walk(self.root, followlinks=False):
            for filename in filenames:
                path = Path(dirpath) / filename
                if not path.is_symlink() and path.is_file():
                    files.append(path)
        return sorted(files)

    def grep(self, text: str | bytes) -> list[Path]:
        """Find the files whose bytes contain ``text``, e.g. to check that a secret was not logged.

        Args:
            text: The text to look for (``str`` is UTF-8 encoded).

        Returns:
            The matching files from :meth:`all_files`.
        """
        needle = text.encode("utf-8") if isinstance(text, str) else text
        return [path for path in self.all_files() if needle in path.read_bytes()]

    def __repr__(self) -> str:
        return f"WandbOfflineRuns(root={str(self.root)!r})"


def _teardown_wandb(wandb: Any) -> None:
    wandb_setup = sys.modules.get("wandb.sdk.wandb_setup")
    # Skip when there is no singleton (the private name is only an optimisation:
    # if it disappears, teardown is simply always called).
    if wandb_setup is None or getattr(wandb_setup, "_singleton", True) is not None:
        try:
            wandb.teardown()
        except (Exception, SystemExit):  # wandb-core killed or frozen on purpose by a fault-injection test
            if wandb_setup is not None and hasattr(wandb_setup, "_singleton"):
                wandb_setup._singleton = None  # type: ignore[attr-defined]


def _flush_wandb() -> None:
    """Make wandb write out finished runs, unless a run is still active."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is None:
        _teardown_wandb(wandb)


def _reset_wandb() -> None:
    """Finish a leaked run and drop wandb's singleton, if wandb was imported.

    The singleton caches the ``WANDB_*`` variables seen when it was created;
    tearing it down makes the next ``wandb.init()`` read the environment again.
    """
    wandb = sys.modules.get("wandb")
    if wandb is None:
        return
    run = getattr(wandb, "run", None)
    if run is not None:
        try:
            wandb.finish()
        except (Exception, SystemExit):  # see _teardown_wandb
            pass
        if getattr(wandb, "run", None) is run:  # its wandb-core is gone: no later session may take it over
            from wandb_bridge.adapters import wandb_sdk

            wandb_sdk.mark_dead(run)
    _teardown_wandb(wandb)


@pytest.fixture
def wandb_offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[WandbOfflineRuns]:
    """Run the test with wandb isolated in offline mode under ``tmp_path``.

    Removes every ``WANDB_*`` variable, sets offline mode and points all of
    wandb's folders under ``tmp_path / "wandb-root"``. After the test, a run
    left active is finished and wandb's singleton is torn down.

    Yields:
        The sandbox, to read back the runs (``.run()``, ``.runs()``) and scan
        the files written (``.all_files()``, ``.grep()``).
    """
    _reset_wandb()
    sandbox = WandbOfflineRuns(tmp_path / "wandb-root")
    for name in [name for name in os.environ if name.startswith("WANDB_")]:
        monkeypatch.delenv(name)
    for name, value in sandbox.env.items():
        monkeypatch.setenv(name, value)
    yield sandbox
    _reset_wandb()


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``live`` marker."""
    config.addinivalue_line(
        "markers",
        f"{_LIVE_MARKER}: needs a real W&B server; skipped unless {_API_KEY_VAR} is set",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Skip ``live`` tests when ``WANDB_API_KEY`` is not set.

    The check uses the environment pytest was started with (collection happens
    before any fixture removes the variable).
    """
    if os.environ.get(_API_KEY_VAR):
        return
    skip = pytest.mark.skip(reason=f"live W&B test: {_API_KEY_VAR} is not set")
    for item in items:
        if item.get_closest_marker(_LIVE_MARKER) is not None:
            item.add_marker(skip)
