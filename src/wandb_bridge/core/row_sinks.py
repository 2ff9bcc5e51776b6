"""Where a session's merged rows go: one :class:`RowSink` interface, one policy, one unsent-rows writer.

Two sinks take rows: :class:`HereSink` logs them from this process, and the
logging process (:class:`~wandb_bridge.adapters.row_process.RowProcess`) logs
them from a helper process into the same run. :class:`RowRouter` is the one
policy that picks the sink of each row: plain rows go to the logging process
while it runs (``log_process``), rows holding wandb objects and every row when
it is off, gone, stuck or ``wandb.watch`` is on are logged here. With
``log_process="auto"`` (the default) rows are logged here first and the logging
process is started only once it pays (:class:`SinkChoice`). What wandb
cannot take is written by :class:`UnsentRows`, the only writer of
``wandb-bridge-unsent.jsonl``: the logging process reports the rows it could
not log back with its acknowledgements.
"""

from __future__ import annotations

import json
import os
import sys
from collections import deque
from collections.abc import Callable
from time import perf_counter, thread_time
from typing import Any, Protocol

from wandb_bridge.adapters import row_process, wandb_sdk
from wandb_bridge.core.faults import FaultBoundary
from wandb_bridge.core.settings import Settings

# Rows wandb could not take are kept in this JSON-lines file in the run folder.
UNSENT_FILE = "wandb-bridge-unsent.jsonl"
#: ``log_process="auto"``: a training that plans this many rows gets the logging process without a look.
PLAN_ROWS = 500
#: A process that imported one of these trains (``log_process="auto"`` forks a waiting helper for it).
TRAINING_MODULES = ("torch", "jax", "tensorflow", "keras")

Row = dict[str, Any]


class RowSink(Protocol):
    """Something that logs rows into the run."""

    def send(self, rows: list[Row]) -> None:
        """Hand rows over (in order)."""

    def sync(self, timeout: float) -> bool:
        """Wait until every row sent so far was logged; False when nothing moved for ``timeout`` seconds."""

    def close(self, timeout: float) -> list[Row]:
        """End the sink; the rows it was handed and could not confirm."""


class UnsentRows:
    """The one writer of the unsent-rows file (``wandb-bridge-unsent.jsonl`` in the run's files folder)."""

    def __init__(self, faults: FaultBoundary, path: str) -> None:
        self._faults = faults
        self.path = path
        self.named = False  # the fault warning named the file (rows were kept, or are about to be)

    def name(self) -> None:
        """Tell (once, as the session's fault warning) that rows wandb does not take are kept in the file."""
        if not self.named:
            self.named = True
            self._faults.warn(
                "broken",
                f"wandb did not take a row ({self._faults.broken or 'rejected'}); training goes on, and such rows "
                f"are kept in {self.path}.",
            )

    def keep(self, rows: list[Row]) -> None:
        """Append rows to the file (one write)."""
        if not rows:
            return
        self.name()
        try:
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.writelines(json.dumps(r, default=str) + "\n" for r in rows)
        except OSError:
            pass


class HereSink:
    """Logs rows from this process; once wandb-core is gone, rows go to the unsent-rows file unasked."""

    def __init__(self, handle: wandb_sdk.RunHandle, faults: FaultBoundary, unsent: UnsentRows, keep: int) -> None:
        self._handle = handle
        self._faults = faults
        self._unsent = unsent
        self.logged = 0
        # The last rows handed to wandb: wandb-core buffers its writes, so when it dies
        # these may be missing from the run file; they are saved with the unsent rows.
        self._recent: deque[Row] = deque(maxlen=keep)

    def send(self, rows: list[Row]) -> None:
        """Log each row; what wandb did not take is kept."""
        if self._faults.broken is None:
            logged, rows = row_process.log_each(self._handle.log, rows, self._recent, self._failed)
            self.logged += logged
        if rows:
            self._keep(rows)

    def _failed(self, exc: Exception) -> bool:
        faults = self._faults
        faults.keep_error(exc)
        if isinstance(exc, OSError):  # the connection to wandb-core is gone
            faults.break_off(f"{type(exc).__name__}: {exc}")
            return True
        name = type(exc).__name__
        faults.warn(f"rejected:{name}", f"wandb rejected a row ({name}: {exc}).")
        return False

    def _keep(self, rows: list[Row]) -> None:
        if self._faults.broken is not None and not self._unsent.named:
            rows = [*self._recent, *rows]
            self._recent.clear()
        self._unsent.keep(rows)

    def settle(self) -> None:
        """Wait until wandb-core has handled the rows this process sent (before the helper sends later ones).

        The helper has its own connection to wandb-core; without this round trip a row
        it sends next could be handled before a row still queued on this process's
        connection (behind console output, say).
        """
        if self._faults.broken is None:
            try:
                self._handle.wait_recorded()
            except Exception:  # a connection problem shows at the next row
                pass

    def sync(self, timeout: float) -> bool:
        """Rows are logged as they are sent: nothing to wait for."""
        del timeout
        return True

    def close(self, timeout: float) -> list[Row]:
        """Nothing is held back."""
        del timeout
        return []


class SinkChoice:
    """``log_process="auto"``: when plain rows move from this process to the logging process (worker thread).

    The logging process takes wandb's per-row work (about 100 us of Python per
    row of 10 keys, 3 ms per row of 1,000) off the training process's GIL, and
    costs a start-up (attaching to the run, about 10 ms of CPU when forked; a
    second ``import wandb`` and the attach, about 0.7 s, when spawned) and the hand-over of
    each row. It pays when the training thread has work to do between rows (what
    the rows' wandb work would compete with) and rows come often enough to matter.

    The first :data:`PROBE_ROWS` rows are logged here, and what they cost this
    process's worker (CPU per row) is measured. A look then covers at least
    :data:`LOOK_ROWS` rows and :data:`LOOK_S` seconds of the training thread's
    clock (the rows' hand-over stamps, from the first row's on) and is taken
    *before* its last rows are logged: *share* = the CPU per row measured here x
    the look's rows / the time the training thread took to hand them over (the
    CPU that logging them here takes from the training process, per second of
    training):

    * share above :data:`MAX_SHARE`, or the training thread had to wait for
      room in the queue during the look or the one before (a full queue makes
      the hand-over keep pace with the worker, so the share alone cannot tell;
      and a loaded machine can let one look pass without a wait): rows come
      several times faster than wandb takes them (a loop that does nothing but
      log): both sinks are then bound by one Python thread calling
      ``run.log``, and the helper would only add its start-up and a second
      process competing for the cores;
    * the training thread handed over no row for :data:`LATE_S` (the look's
      rows are a backlog drained after a loop that only logged);
    * share below :data:`MIN_SHARE`: logging here costs training almost nothing
      (rows now and then);
    * in between: the logging process is started, once, and takes the rows not
      logged yet (rows keep their order).

    Looking before the rows are logged matters: rows logged here while training
    runs wait for the GIL (measured on 2 cores: 0.3-0.9 ms per row of a loop of
    ~0.1 ms steps), so a batch of a few hundred rows logged here before the look
    would cost training more than the whole rest of the run.

    A run shorter than one look (a few dozen rows, a burst of rows handed over
    in less than :data:`LOOK_S`) never starts it. A loop that only logs for longer
    fills the queue: the training thread then waits for room, and the look
    says no (measured on 2 cores: such a loop of narrow rows is 15% slower end
    to end with the helper).

    Args:
        stamp: the hand-over stamp (``perf_counter``) of the last row merged.
        first: the hand-over stamp of the first row merged.
        busy: how many times the training thread waited for room in the queue so
            far, and the hand-over stamp of the newest row queued (None: none is).
    """

    PROBE_ROWS = 16
    LOOK_ROWS = 50
    LOOK_S = 0.02
    MAX_SHARE = 3.0
    MIN_SHARE = 0.01
    LATE_S = 0.25

    def __init__(
        self, stamp: Callable[[], float], first: Callable[[], float], busy: Callable[[], tuple[int, float | None]]
    ) -> None:
        self._stamp = stamp
        self._first = first
        self._busy_queue = busy
        self._waited = 0
        self._waited_before = False  # the previous look saw the training thread wait for room
        self._since: float | None = None  # the look's clock: from the first row's stamp, then the last look's
        self._rows = 0  # rows of the look so far
        self._logged = 0  # rows logged here, and the worker's CPU for them
        self._cpu = 0.0
        self.looks = 0  # looks taken (tests, benchmarks)
        self.share: float | None = None  # the last look's share

    @property
    def probing(self) -> int:
        """How many more rows are logged here before the first look (their CPU per row is measured)."""
        return max(0, self.PROBE_ROWS - self._logged)

    def wants(self, rows: int) -> bool:
        """Before ``rows`` more rows are logged: True when the logging process should take them (and the later ones).

        The rows count towards the look either way (False: the caller logs them here).
        """
        now = self._stamp()
        if self._since is None:
            self._since = self._first()
        looked = self._rows + rows
        span = now - self._since
        if self._logged < self.PROBE_ROWS or looked < self.LOOK_ROWS or span < self.LOOK_S:  # (no cost yet: no look)
            self._rows = looked
            return False
        self.looks += 1
        self.share = share = self._cpu / self._logged * looked / span
        self._since, self._rows = now, 0
        waited, (self._waited, newest) = self._waited, self._busy_queue()
        idle = perf_counter() - (now if newest is None else newest) > self.LATE_S
        waits = self._waited != waited
        saturated = waits or self._waited_before or idle
        self._waited_before = waits
        return self.MIN_SHARE <= share <= self.MAX_SHARE and not saturated

    def logged(self, rows: int, cpu: float) -> None:
        """``rows`` rows (counted by :meth:`wants`) were logged here with ``cpu`` seconds of the worker's CPU."""
        self._logged += rows
        self._cpu += cpu

    def probed(self, rows: int, cpu: float) -> None:
        """The probe's ``rows`` rows (:attr:`probing`) were logged here: they count towards the first look."""
        if self._since is None:
            self._since = self._first()
        self._rows += rows
        self.logged(rows, cpu)


class RowRouter:
    """The one policy of where rows go (see the module docstring); worker thread, and the end of the run.

    Args:
        settings: the session's settings (``log_process``, ``finish_timeout``, ``queue_size``).
        faults: the session's fault boundary.
        stamp: the hand-over stamp of the last row merged (``log_process="auto"`` watches it).
        first: the hand-over stamp of the first row merged (ditto).
        busy: the queue's waits for room and its newest row's stamp (ditto, see :class:`SinkChoice`).
    """

    def __init__(
        self,
        settings: Settings,
        faults: FaultBoundary,
        stamp: Callable[[], float],
        first: Callable[[], float],
        busy: Callable[[], tuple[int, float | None]],
    ) -> None:
        # (the pipe protocol needs POSIX select on pipes)
        self._wanted = settings.log_process is not False and os.name == "posix"
        # "auto": rows are logged here until the choice says the logging process pays.
        self.choice = SinkChoice(stamp, first, busy) if self._wanted and settings.log_process == "auto" else None
        self._shared: bytes | None = None
        self._log_path: str | None = None
        self._timeout = settings.finish_timeout
        self._keep = settings.queue_size
        self._faults = faults
        self._unsent = UnsentRows(faults, os.path.join(settings.dir or ".", UNSENT_FILE))
        self._here: HereSink | None = None
        # The logging process: started before wandb.init (or when it pays), in use once attached to the run.
        self._spawned: row_process.RowProcess | None = None
        self._process: row_process.RowProcess | None = None
        self._process_logged = 0
        self._planned = 0

    @property
    def kept_in(self) -> str | None:
        """The unsent-rows file, once rows were kept there."""
        return self._unsent.path if self._unsent.named else None

    @property
    def logged(self) -> int:
        """Rows logged so far (by this process and by the logging process)."""
        return self._process_logged + (0 if self._here is None else self._here.logged)

    def plan(self, rows: int) -> None:
        """The training will log about ``rows`` rows (see :meth:`Session.plan_rows`; read by the worker)."""
        self._planned = max(0, int(rows))

    def spawn(self) -> None:
        """Right before ``wandb.init``: start the logging process, so that the two start-ups overlap.

        With ``log_process=True`` it is used from the start. With ``"auto"`` it is
        started here only in a process that trains (:meth:`_trains`) and only where
        it can be forked (:meth:`RowProcess.fork`: about 2 ms, no CPU while unused),
        and waits unused until a plan or :class:`SinkChoice` says it pays; anywhere
        else it is spawned then, if ever.
        """
        if not self._wanted:
            return
        process = row_process.RowProcess
        try:
            if self.choice is None:
                self._spawned = process.spawn(self._on_message)
            elif self._trains():
                self._spawned = process.fork(self._on_message)
        except OSError:
            self._spawned = None

    def _trains(self) -> bool:
        """Whether this process will probably hand rows to a helper: a plan says so, or it trains.

        A process that imported a training framework (every framework callback runs
        on one) gets a waiting helper: attaching it then costs about 10 ms of CPU,
        where a helper spawned later costs about 0.7 s. A script that does not train
        (rows without training work between them, a few dozen rows) would never use
        it, and the fork and its copied pages cost it about 5% of its CPU (measured:
        a 20-row script, 0.03-0.06 s).
        """
        return self._planned >= PLAN_ROWS or any(name in sys.modules for name in TRAINING_MODULES)

    def start(self, handle: wandb_sdk.RunHandle) -> None:
        """The run is attached: rows are logged here, or by the logging process once it has the run."""
        if handle.dir:
            self._unsent.path = os.path.join(handle.dir, UNSENT_FILE)
        self._here = HereSink(handle, self._faults, self._unsent, self._keep)
        shared = handle.share() if self._wanted and self._faults.broken is None else None
        if shared is None:
            self.choice = None
            out, self._spawned = self._spawned, None
            if out is not None:
                out.kill()
                out.close(1.0)  # (reaps it)
            return
        self._shared = shared
        self._log_path = (
            None if not handle.dir else os.path.join(os.path.dirname(handle.dir), "logs", "wandb-bridge-helper.log")
        )
        if self.choice is None:
            self._launch()

    def _launch(self) -> None:
        """Attach the logging process (started before ``wandb.init``, else spawned now) to the run."""
        assert self._shared is not None
        out, self._spawned = self._spawned, None
        try:
            if out is None:
                out = row_process.RowProcess.spawn(self._on_message)
            out.attach(self._shared, self._keep, self._log_path)
        except (OSError, row_process.RowProcessGone) as exc:
            self._faults.warn(
                "rows-out", f"The logging process did not start ({exc}); rows are logged from this process."
            )
            if out is not None:
                out.kill()
            return
        self._process = out

    def send(self, rows: list[Row]) -> None:
        """Log rows: plain ones through the logging process while it runs, the others here, in order."""
        here = self._here
        assert here is not None
        choice = self.choice
        if self._process is None and choice is not None:
            if self._planned < PLAN_ROWS:  # no plan: look at the logging rate
                probe = choice.probing
                if probe:  # (the first rows: logged here, their cost measured)
                    head, rows = rows[:probe], rows[probe:]
                    self._measured(head, choice.probed)
                if not rows:
                    return
                if not (choice.wants(len(rows)) and self._faults.broken is None):
                    self._measured(rows, choice.logged)
                    return
            if self._faults.broken is None:
                self._switch()  # the look says it pays, or a training plans this many rows: no look
        if self._process is None:
            here.send(rows)
            return
        batch: list[Row] = []
        for row in rows:
            if row_process.plain(row):
                batch.append(row)
                continue
            # Media and other wandb objects are logged from this process, in order.
            self._to_sink(batch)
            batch = []
            self.sync()
            here.send([row])
            if self._process is not None:
                here.settle()
        self._to_sink(batch)

    def _measured(self, rows: list[Row], tell: Callable[[int, float], None]) -> None:
        """Log rows here, then ``tell(rows, cpu)`` what they cost the worker (:class:`SinkChoice`)."""
        assert self._here is not None
        began = thread_time()
        self._here.send(rows)
        tell(len(rows), thread_time() - began)

    def _switch(self) -> None:
        """From now on plain rows go to the logging process (once; the rows logged here come first)."""
        assert self._here is not None
        self.choice = None
        self._here.settle()  # the helper's rows come after these
        self._launch()

    def _to_sink(self, rows: list[Row]) -> None:
        """Plain rows: to the logging process while it runs, else here."""
        out = self._process
        sink: RowSink | None = out or self._here
        if not rows or sink is None:
            return
        try:
            sink.send(rows)
        except row_process.RowProcessGone as gone:
            assert out is not None  # (only the logging process raises it)
            self._went(out, gone)

    def sync(self) -> None:
        """Wait until the logging process logged every row sent (wandb calls come after the rows before them)."""
        out = self._process
        if out is None:
            return
        try:
            stuck = not out.sync(self._timeout)
        except row_process.RowProcessGone as gone:
            self._went(out, gone)
            return
        if out is not self._process:
            self._let_go(out, [])
        elif stuck:
            # wandb took no row for finish_timeout seconds: stop waiting for it. The rows it
            # did not confirm, and every later one, go to the unsent-rows file.
            self._process = None
            self._faults.break_off(f"wandb took no row for {self._timeout:.0f} s", stuck=True)
            self._unsent.named = True  # (the warning names the file)
            self._faults.warn(
                "rows-out-stuck",
                f"{self._faults.broken} (is wandb-core stuck?); training goes on, rows are kept in "
                f"{self._unsent.path}, and what was recorded can be uploaded with: {self._sync_command()}",
            )
            self._unsent.keep(out.kill())
            out.close(1.0)  # (reaps it)

    def _went(self, out: row_process.RowProcess, gone: row_process.RowProcessGone) -> None:
        """The logging process ``out`` ended while this worker used it."""
        if out is self._process:
            self._gone(gone)
        else:
            self._let_go(out, gone.rows)

    def _let_go(self, out: row_process.RowProcess, rows: list[Row]) -> None:
        """Finish stopped ``out`` while this worker waited on it (a stuck worker) and kept what it held.

        Rows it still handed back are kept with those; its pipes close now that nothing waits on them.
        """
        self._unsent.keep(rows)
        out.release()

    def _sync_command(self) -> str:
        return self._faults.sync_command or ""

    def rows_here(self) -> None:
        """From now on log every row from this process (the logging process ends after its last row).

        ``wandb.watch`` adds its histograms to the history row that this process's
        run commits next; with rows committed by the logging process they would
        wait until the end of the run.
        """
        self.choice = None
        self.close(self._timeout)

    def close(self, timeout: float, stuck: bool = False) -> None:
        """End the logging process after its last row (before the run is finished).

        Args:
            timeout: how long it may take to log what it holds.
            stuck: the worker did not finish: stop it at once, keep what it did not confirm.
        """
        out, self._process = self._process or self._spawned, None
        self._spawned = None
        self.choice = None
        if out is None:
            return
        if stuck or not out.used:  # not waited for when it never got a row, or is stuck
            left = out.kill()
            if left:  # what it did not confirm is kept, not lost
                if self._faults.broken is None:
                    self._faults.break_off("the logging process was stopped", stuck=True)
                self._unsent.keep(left)
            # (a stuck worker may still wait on its output: the child's exit ends that wait)
            out.reap(1.0)
            return
        left = out.close(timeout)
        if out.gone is not None:
            if left:  # it ended before confirming these: they are logged here
                self._gone(row_process.RowProcessGone(out.gone, left))
        elif out.done is None:
            self._faults.warn(
                "rows-out-timeout",
                f"The logging process did not finish within {timeout:.0f} s and was stopped; "
                f"what was recorded can be uploaded with: {self._sync_command()}",
            )
            self._unsent.keep(left)

    def _gone(self, gone: row_process.RowProcessGone) -> None:
        self._process = None
        self.choice = None
        self._faults.warn("rows-out-gone", f"{gone}; rows are logged from this process from now on.")
        if self._here is not None:
            self._here.send(gone.rows)

    def _on_message(self, message: dict[str, Any]) -> None:
        """What the logging process reports (on the worker thread, or at the end of the run)."""
        faults = self._faults
        if "ack" in message or "done" in message:
            self._process_logged = int(message.get("logged", message.get("done", 0)))
            self._unsent.keep(message.get("unsent") or [])
            return
        if "broken" in message:
            faults.break_off(str(message["broken"]))
            faults.keep_error(RuntimeError(f"wandb did not take a row: {faults.broken}"))
        elif "rejected" in message:
            reason = str(message["rejected"])
            faults.warn(f"rejected:{reason.split(':')[0]}", f"wandb rejected a row ({reason}).")
            faults.keep_error(RuntimeError(f"wandb rejected a row: {reason}"))
        elif "fatal" in message:
            faults.warn("rows-out-fatal", f"The logging process could not attach to the run ({message['fatal']}).")
            return
        self._unsent.name()
