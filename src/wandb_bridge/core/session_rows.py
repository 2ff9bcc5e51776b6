"""Where a session's merged rows go: the logging process, wandb in this process, or the unsent-rows file.

Runs on the worker thread (``session_worker.py`` hands it the rows). With
``log_process`` the rows go to a helper process that logs them into the same
run (:mod:`wandb_bridge.adapters.row_process`); rows holding wandb objects, and
every row when the helper is off or gone, are logged here; what wandb cannot
take is kept in ``wandb-bridge-unsent.jsonl``.
"""

from __future__ import annotations

import json
import os
from typing import Any

from wandb_bridge.adapters import console, row_process
from wandb_bridge.core.metrics import SKIP_REASONS, convert_rows
from wandb_bridge.core.session_base import SessionBase


class RowsMixin(SessionBase):
    """Routes rows on the worker thread (see the module docstring)."""

    # wandb's console capture of a run this session started, batched (adapters/console.py).
    _console: console.ConsoleBatch | None = None

    def _take_over_console(self) -> None:
        """Batch wandb's console capture (one record per burst of output) for a run this session started."""
        handle = self._handle
        if handle is not None and handle.owned and self._console is None:
            try:
                self._console = console.take_over(handle.run)
            except Exception:  # wandb's own capture stays as it was
                self._console = None

    def _release_console(self) -> None:
        """Hand the last captured output to the run and give wandb its callbacks back (before finishing it)."""
        batch, self._console = self._console, None
        if batch is not None:
            batch.release()

    def _emit(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        report = convert_rows(rows)
        for key, reason in report.skipped.items():
            self._warn(f"skip:{key}", f"Metric {key!r} was not recorded: {SKIP_REASONS[reason]}.")
        for key in report.non_finite:
            self._warn(f"nan:{key}", f"Metric {key!r} is NaN or infinite; it is recorded as such.")
        out = self._rows_out if self._rows_out_state == "on" else self._start_rows_out()
        if out is None:
            self._log_here(rows)
            return
        batch: list[dict[str, Any]] = []
        for row in rows:
            if row_process.plain(row):
                batch.append(row)
                continue
            # Media and other wandb objects are logged from this process, in order.
            self._send_rows_out(batch)
            batch = []
            self._sync_rows_out()
            self._log_here([row])
            self._settle_here()
        self._send_rows_out(batch)

    def _settle_here(self) -> None:
        """Wait until wandb-core has handled the rows this process sent (before the helper sends later ones).

        The helper has its own connection to wandb-core; without this round trip a row
        it sends next could be handled before a row still queued on this process's
        connection (behind console output, say).
        """
        handle = self._handle
        if handle is None or self._broken is not None or self._rows_out_state != "on":
            return
        try:
            handle.wait_recorded()
        except Exception:  # a connection problem shows at the next row
            pass

    def _log_here(self, rows: list[dict[str, Any]]) -> None:
        handle = self._handle
        assert handle is not None
        unsent: list[dict[str, Any]] = []
        for row in rows:
            if self._broken is None:
                try:
                    handle.log(row)
                    self.rows_logged += 1
                    self._recent.append(row)
                    continue
                except Exception as exc:
                    if self.settings.on_error == "raise" and self._error is None:
                        self._error = exc
                    if isinstance(exc, OSError):  # the connection to wandb-core is gone
                        self._broken = f"{type(exc).__name__}: {exc}"
                    else:
                        self._warn(
                            f"rejected:{type(exc).__name__}", f"wandb rejected a row ({type(exc).__name__}: {exc})."
                        )
            unsent.append(row)
        if unsent:
            self._keep_unsent(unsent)

    # ------------------------------------------------ the logging process

    def _helper_log(self) -> str | None:
        """The logging process's stderr file: ``logs/wandb-bridge-helper.log`` in the run's folder."""
        run_dir = self.run_dir
        return None if not run_dir else os.path.join(os.path.dirname(run_dir), "logs", "wandb-bridge-helper.log")

    @property
    def _wants_rows_out(self) -> bool:
        # (the pipe protocol needs POSIX select on pipes)
        return self.settings.log_process and os.name == "posix"

    def _spawn_rows_out(self) -> None:
        """Start the logging process before ``wandb.init``: the two start-ups overlap."""
        if self._wants_rows_out:
            try:
                self._rows_out = row_process.RowProcess.spawn(self._on_rows_out_message)
            except OSError:
                self._rows_out = None

    def _start_rows_out(self) -> row_process.RowProcess | None:
        """Give the logging process the run (once); None when rows are logged from this process."""
        if self._rows_out_state != "new":
            return None
        self._rows_out_state = "off"
        out, handle = self._rows_out, self._handle
        usable = self._wants_rows_out and self._broken is None
        shared = handle.share() if usable and handle is not None else None
        if shared is None:
            if out is not None:
                out.kill()
                self._rows_out = None
            return None
        try:
            if out is None:
                out = row_process.RowProcess.spawn(self._on_rows_out_message)
            out.attach(shared, self._unsent_file(), self.settings.queue_size, self._helper_log())
        except (OSError, row_process.RowProcessGone) as exc:
            self._warn("rows-out", f"The logging process did not start ({exc}); rows are logged from this process.")
            if out is not None:
                out.kill()
            self._rows_out = None
            return None
        self._rows_out = out
        self._rows_out_state = "on"
        return out

    def _send_rows_out(self, rows: list[dict[str, Any]]) -> None:
        out = self._rows_out
        if not rows:
            return
        if out is None or self._rows_out_state != "on":
            self._log_here(rows)
            return
        try:
            out.send(rows)
        except row_process.RowProcessGone as gone:
            self._rows_out_gone(gone)

    def _sync_rows_out(self) -> None:
        out = self._rows_out
        if out is None or self._rows_out_state != "on":
            return
        try:
            if not out.sync(self.settings.finish_timeout):
                # wandb took no row for finish_timeout seconds: stop waiting for it. The rows it
                # did not confirm, and every later one, go to the unsent-rows file.
                self._rows_out_state = "off"
                self._stuck = True
                self._broken = f"wandb took no row for {self.settings.finish_timeout:.0f} s"
                hint = self._handle.sync_command() if self._handle else ""
                self._warn(
                    "rows-out-stuck",
                    f"{self._broken} (is wandb-core stuck?); training goes on, rows are kept in "
                    f"{self._unsent_file()}, and what was recorded can be uploaded with: {hint}",
                )
                self._unsent_path = self._unsent_file()  # (warned above)
                self._keep_unsent(out.kill())
        except row_process.RowProcessGone as gone:
            self._rows_out_gone(gone)

    def _close_rows_out(self, timeout: float) -> None:
        """End the logging process after its last row (before the run is finished)."""
        out = self._rows_out
        if out is None:
            return
        self._rows_out = None
        # Not waited for when it never got a row, was never attached, or is stuck.
        wanted = self._rows_out_state == "on" and out.used
        self._rows_out_state = "off"
        if not wanted:
            left = out.kill()
            if left:  # stuck: what it did not confirm is kept, not lost
                if self._broken is None:
                    self._broken, self._stuck = "the logging process was stopped", True
                if self._unsent_path is None:
                    self._unsent_path = self._unsent_file()  # finish() names it in its warning
                self._keep_unsent(left)
        try:
            done = out.close(timeout if wanted else 1.0)
        except row_process.RowProcessGone as gone:
            if wanted:
                self._rows_out_gone(gone)
            return
        if wanted and done is None and out.gone is None:
            hint = self._handle.sync_command() if self._handle else ""
            self._warn(
                "rows-out-timeout",
                f"The logging process did not finish within {timeout:.0f} s and was stopped; "
                f"what was recorded can be uploaded with: {hint}",
            )

    def _rows_here(self) -> None:
        """From now on log every row from this process (the logging process ends after its last row).

        ``wandb.watch`` adds its histograms to the history row that this process's
        run commits next; with rows committed by the logging process they would
        wait until the end of the run.
        """
        if self._rows_out_state == "new":
            self._rows_out_state = "off"  # never started: nothing to hand over
            out, self._rows_out = self._rows_out, None
            if out is not None:
                out.kill()
            return
        self._close_rows_out(self.settings.finish_timeout)

    def _rows_out_gone(self, gone: row_process.RowProcessGone) -> None:
        self._rows_out_state = "off"
        self._warn("rows-out-gone", f"{gone}; rows are logged from this process from now on.")
        self._log_here(gone.rows)

    def _on_rows_out_message(self, message: dict[str, Any]) -> None:
        """What the logging process reports (called on the worker thread)."""
        if "ack" in message or "done" in message:
            self.rows_logged = int(message.get("logged", message.get("done", 0)))
            return
        path = message.get("path")
        if path:
            self._unsent_path = str(path)
        if "broken" in message:
            self._broken = str(message["broken"])
            if self.settings.on_error == "raise" and self._error is None:
                self._error = RuntimeError(f"wandb did not take a row: {self._broken}")
        elif "rejected" in message:
            reason = str(message["rejected"])
            self._warn(f"rejected:{reason.split(':')[0]}", f"wandb rejected a row ({reason}).")
            if self.settings.on_error == "raise" and self._error is None:
                self._error = RuntimeError(f"wandb rejected a row: {reason}")
        elif "fatal" in message:
            self._warn("rows-out-fatal", f"The logging process could not attach to the run ({message['fatal']}).")
            return
        self._warn(
            "broken",
            f"wandb did not take a row ({self._broken or 'rejected'}); training goes on, and such rows "
            f"are kept in {self._unsent_path}.",
        )

    def _keep_unsent(self, rows: list[dict[str, Any]]) -> None:
        """Append rows wandb could not take to a JSON-lines file in the run folder (one write)."""
        if not rows:
            return
        if self._unsent_path is None:
            self._unsent_path = self._unsent_file()
            self._warn(
                "broken",
                f"wandb did not take a row ({self._broken or 'rejected'}); training goes on, and such rows "
                f"are kept in {self._unsent_path}.",
            )
            if self._broken is not None:
                rows = [*self._recent, *rows]
                self._recent.clear()
        try:
            with open(self._unsent_path, "a", encoding="utf-8") as handle:
                handle.writelines(json.dumps(r, default=str) + "\n" for r in rows)
        except OSError:
            pass
