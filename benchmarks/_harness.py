"""Shared pieces: the worker side (timing window, resource figures, result file) and
the parent side (one variant in one fresh subprocess, with an isolated wandb folder).

Every measured variant runs in its own process so that init costs, wandb's service
process and allocator state never leak from one variant into the next: a fresh
``python -m benchmarks.<module>`` process, or (for the training rows, through a
:class:`Servers` pool) a process forked from a server that imported torch, the
framework and wandb once (``benchmarks/_forkserver.py`` says why and what it changes).
The worker writes one JSON object to the file named by ``--result``; the parent adds
the process's whole CPU time (its own and every child it waited for, wandb-core
included): ``getrusage(RUSAGE_CHILDREN)`` for a fresh process, ``wait4`` for a fork.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks._forkserver import ForkServer, kill_groups
from benchmarks._turns import LEAD_S, TURN_S, TurnClient, Turns

ROOT = Path(__file__).resolve().parent.parent

# The same for every variant, native and ours alike.
WANDB_ENV = {
    "WANDB_MODE": "offline",
    "WANDB_SILENT": "true",
    "WANDB__DISABLE_STATS": "true",
    "WANDB_CONSOLE": "off",
    "WANDB_DISABLE_GIT": "true",
    "WANDB_DISABLE_CODE": "true",
    "WANDB_PROJECT": "wandb-bridge-bench",
    "KERAS_BACKEND": "torch",
    "TOKENIZERS_PARALLELISM": "false",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "PYTHONWARNINGS": "ignore",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
}

# Variables that would change what wandb or the frameworks do, removed from the child's environment.
_DROP_PREFIXES = ("WANDB_", "KERAS_", "HF_", "TRANSFORMERS_")


# ------------------------------------------------------------------ worker side


def worker_args(argv: Sequence[str] | None, extra: Mapping[str, Any] | None = None) -> argparse.Namespace:
    """Parse the arguments every worker takes: ``--variant --steps --warmup --result``."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--variant", required=True)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--result", required=True)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--count-syncs", action="store_true", help="count CUDA synchronisations in the window")
    parser.add_argument("--bar", type=int, default=0, help="1: the framework's default progress bar on")
    parser.add_argument("--printing", type=int, default=0, help="1: the framework's default printing (or a loop's)")
    parser.add_argument("--turns", default="", help="share the window in turns through this socket (_turns)")
    parser.add_argument("--turn-name", default="", help="this worker's name at the turn coordinator")
    parser.add_argument("--turn-s", type=float, default=TURN_S, help="timed seconds per turn")
    parser.add_argument("--lead-s", type=float, default=LEAD_S, help="untimed seconds at the start of each turn")
    for name, default in (extra or {}).items():
        parser.add_argument(f"--{name}", type=type(default), default=default)
    return parser.parse_args(argv)


def setup_torch() -> Any:
    """Import torch, pin it to one thread and seed it (the same in every variant)."""
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    return torch


class SyncCounter:
    """Counts CUDA synchronisations with ``torch.cuda.set_sync_debug_mode("warn")``, per thread.

    Every synchronising call (``.item()``, ``.tolist()``, a blocking copy to the
    host...) raises a warning while the mode is on; they are counted by the name
    of the thread that made them (``MainThread`` is the training thread).
    """

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.sources: dict[str, int] = {}
        self._saved: Any = None

    def start(self) -> None:
        """Switch the debug mode on and start counting."""
        import torch

        self._saved = warnings.catch_warnings()
        self._saved.__enter__()  # restores the filters and showwarning in stop()
        warnings.simplefilter("always")
        warnings.showwarning = self._record
        torch.cuda.set_sync_debug_mode("warn")

    def stop(self) -> None:
        """Switch the debug mode off and stop counting."""
        import torch

        torch.cuda.set_sync_debug_mode(0)
        if self._saved is not None:
            self._saved.__exit__(None, None, None)
            self._saved = None

    def _record(self, message: Any, category: Any, filename: str, lineno: int, *_: Any, **__: Any) -> None:  # noqa: ARG002
        if "synchroniz" not in str(message).lower():
            return
        thread = threading.current_thread().name
        self.counts[thread] = self.counts.get(thread, 0) + 1
        where = f"{os.path.basename(filename)}:{lineno}"
        self.sources[where] = self.sources.get(where, 0) + 1


class GcWatch:
    """Counts the garbage collector's runs and their time, per generation (``gc.callbacks``).

    A full (generation 2) collection walks every tracked object in the process;
    with torch and wandb loaded that is hundreds of thousands of objects, so one
    collection can stall the training thread for a large fraction of a second.
    """

    def __init__(self) -> None:
        self.count = [0, 0, 0]
        self.seconds = [0.0, 0.0, 0.0]
        self._started = 0.0

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            generation = int(info.get("generation", 0))
            self.count[generation] += 1
            self.seconds[generation] += time.perf_counter() - self._started

    def start(self) -> None:
        """Start counting."""
        gc.callbacks.append(self._callback)

    def stop(self) -> None:
        """Stop counting."""
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)


class Window:
    """Times the steady-state part of training: from the start of step ``warmup``
    to the start of step ``warmup + steps`` (so every per-step hook is inside).

    Frameworks call :meth:`at_step_start` with the 0-based index of the step about
    to run; a hand-written loop can do the same. On CUDA the window edges wait for
    the device (outside the sync count), and ``count_syncs`` counts the
    synchronisations made inside the window.

    With ``turns`` the window is shared with the row's other variants (``_turns``): each
    turn this worker gets starts with ``lead_s`` seconds of untimed steps, which bring
    its logger back to its steady state (rows in flight to another thread or process),
    then times ``turn_s`` seconds of steps and hands the turn on at a step's start. The
    figures are the timed steps' times scaled to ``steps`` (``timed_steps`` says how many
    were timed), so they read like an uninterrupted window's.
    """

    def __init__(
        self,
        warmup: int,
        steps: int,
        device: str = "cpu",
        count_syncs: bool = False,
        turns: TurnClient | None = None,
        turn_s: float = TURN_S,
        lead_s: float = LEAD_S,
    ) -> None:
        self.first = warmup
        self.last = warmup + steps
        self.steps = steps
        self.t1: float | None = None
        self.cuda = device == "cuda"
        self.syncs = SyncCounter() if count_syncs and self.cuda else None
        self.gc = GcWatch()
        self.turns = turns
        self.turn_s = turn_s
        self.lead_s = lead_s
        # Sums over the timed stretches, and the marks (wall, CPU, thread CPU, step) of the open one.
        self._wall = self._cpu = self._own = 0.0
        self.timed_steps = 0
        self._marks: tuple[float, float, float, int] | None = None
        self._lead_until = 0.0
        self._granted = 0.0
        self.spans: list[tuple[float, float]] = []  # (given, handed on) of each turn, perf_counter
        self._closed = False
        self.offturn_cpu = 0.0  # CPU of this process's other threads while it waited for a turn (not charged)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Window:
        """The window the worker's command line asks for."""
        turns = TurnClient(args.turns, args.turn_name or args.variant) if args.turns else None
        return cls(args.warmup, args.steps, args.device, args.count_syncs, turns, args.turn_s, args.lead_s)

    def _open(self, index: int) -> None:
        self._marks = (time.perf_counter(), time.process_time(), time.thread_time(), index)

    def _close(self, index: int) -> None:
        if self._marks is None:  # still in a turn's lead-in
            return
        wall, cpu, own, first = self._marks
        self._wall += time.perf_counter() - wall
        self._cpu += time.process_time() - cpu
        self._own += time.thread_time() - own
        self.timed_steps += index - first
        self._marks = None

    def _wait_turn(self, turns: TurnClient, first: bool) -> None:
        cpu, own = time.process_time(), time.thread_time()
        if first:
            turns.arrive()
        else:
            self.spans.append((self._granted, time.perf_counter()))
            turns.hand_on()
        self.offturn_cpu += max(0.0, (time.process_time() - cpu) - (time.thread_time() - own))
        self._granted = time.perf_counter()
        self._lead_until = self._granted + self.lead_s

    def at_step_start(self, index: int) -> None:
        """Record the clock at the start of step ``index`` (0-based)."""
        if index == self.first:
            self._device_wait()
            # Start-up garbage (wandb's import and init: ~300k objects) gets one full collection
            # at some point; run it here in every variant, so it never lands inside one
            # variant's window by chance. Full collections inside the window are still counted.
            gc.collect()
            self.gc.start()
            if self.syncs is not None:
                self.syncs.start()
            if self.turns is None:
                self._open(index)
            else:
                self._wait_turn(self.turns, first=True)
        elif self.first < index < self.last and self.turns is not None:
            now = time.perf_counter()
            if self._marks is None:
                if now >= self._lead_until:
                    self._device_wait()
                    self._open(index)
            elif now - self._marks[0] >= self.turn_s:
                self._device_wait()
                self._close(index)
                self._wait_turn(self.turns, first=False)
        elif index == self.last:
            if self.syncs is not None:
                self.syncs.stop()
            self.gc.stop()
            self._device_wait()
            self._close(index)
            self._closed = True
            if self.turns is not None:
                self.spans.append((self._granted, time.perf_counter()))
                self.turns.end()
            self.t1 = time.perf_counter()

    def _device_wait(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize()

    def _scaled(self, seconds: float) -> float:
        if not self._closed or self.timed_steps <= 0:
            raise RuntimeError(f"the timing window did not close with timed steps (steps {self.first}..{self.last})")
        return seconds * self.steps / self.timed_steps

    def figures(self) -> dict[str, Any]:
        """The window's figures for the result file."""
        out: dict[str, Any] = {
            "steps": self.steps,
            "window_s": self.seconds(),
            "window_cpu_s": self.cpu_seconds(),
            # CPU of the training thread alone: what the logger makes it do, without waiting for the GIL
            "window_thread_cpu_s": self._scaled(self._own),
            "device": "cuda" if self.cuda else "cpu",
            "gc_full_collections": self.gc.count[2],
            "gc_full_s": self.gc.seconds[2],
            "gc_young_s": self.gc.seconds[0] + self.gc.seconds[1],
            "timed_steps": self.timed_steps,
            "timed_s": self._wall,
            "turns": self.turns.turns if self.turns is not None else 1,
            "turn_spans": self.spans,
            "offturn_cpu_s": self.offturn_cpu,
        }
        if self.syncs is not None:
            out["syncs_by_thread"] = dict(self.syncs.counts)
            out["sync_sources"] = dict(sorted(self.syncs.sources.items(), key=lambda kv: -kv[1])[:10])
        return out

    @property
    def total_steps(self) -> int:
        """Steps a worker must run so that the window closes (one extra step after it)."""
        return self.last + 1

    def seconds(self) -> float:
        """Wall time of the window (its timed steps', scaled to ``steps``)."""
        return self._scaled(self._wall)

    def cpu_seconds(self) -> float:
        """CPU time of the whole process (all threads) during the window (timed steps, scaled to ``steps``)."""
        return self._scaled(self._cpu)


def process_figures() -> dict[str, float]:
    """Peak RSS of this process and the CPU time of it and its live children (wandb-core)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    figures = {
        "peak_rss_mb": usage.ru_maxrss / 1024.0,  # kilobytes on Linux
        "cpu_self_s": usage.ru_utime + usage.ru_stime,
    }
    try:
        import psutil

        children = psutil.Process().children(recursive=True)
        cpu = 0.0
        rss = 0.0
        for child in children:
            try:
                times = child.cpu_times()
                cpu += times.user + times.system
                rss += child.memory_info().rss
            except psutil.Error:
                continue
        figures["cpu_children_live_s"] = cpu
        figures["children_rss_mb"] = rss / 2**20
    except ImportError:
        pass
    return figures


def write_result(path: str, result: Mapping[str, Any]) -> None:
    """Write the worker's result (the parent reads it after the process ends)."""
    Path(path).write_text(json.dumps(dict(result)))


def finish_timed(run: Any, session: Any) -> float:
    """Finish the native ``run`` or our ``session`` (whichever the variant has); return the seconds it took."""
    started = time.perf_counter()
    if run is not None:
        run.finish()
    elif session is not None:
        session.finish()
    return time.perf_counter() - started


def finish_and_report(result_path: str, variant: str, ours: Any, window: Any, t_end: float, **extra: float) -> None:
    """Finish the run of ``variant`` (native: ``wandb.run``; ours: ``ours.finish()``), then write the figures.

    ``tail_s`` is the time from the start of the last timed step to the end of training,
    ``finish_s`` the time finishing the run took (the background backlog is drained there).
    """
    native = None
    if variant == "native":
        import wandb

        native = wandb.run
    finish_timed(native, ours)
    finish_s = time.perf_counter() - t_end  # counted from the end of training, not from here
    assert window.t1 is not None
    write_result(
        result_path,
        {
            "variant": variant,
            **window.figures(),
            "tail_s": t_end - window.t1,
            **extra,
            "finish_s": finish_s,
            **process_figures(),
        },
    )


# ------------------------------------------------------------------ parent side


@dataclass
class RunOutcome:
    """What one worker process reported, plus what the parent measured around it."""

    ok: bool
    result: dict[str, Any] = field(default_factory=dict)
    wall_s: float = 0.0
    cpu_total_s: float = 0.0
    error: str = ""


# The configurations measured: what a user has by default (wandb's console capture on, which
# wandb 0.31 resolves to "wrap" -> "wrap_raw": one record per write), and the quiet one.
CONFIGS: dict[str, dict[str, str | None]] = {
    "defaults": {"WANDB_CONSOLE": None},
    "quiet": {"WANDB_CONSOLE": "off"},
}
# Our variants and the row sink each uses (the environment variable picks it; same code otherwise).
# ours: the default (log_process="auto": in-process until the logging process pays);
# ours_inproc: always in-process; ours_helper: the logging process from the start.
OUR_SINKS: dict[str, dict[str, str | None]] = {
    "ours": {},
    "ours_inproc": {"WANDB_BRIDGE_LOG_PROCESS": "0"},
    "ours_helper": {"WANDB_BRIDGE_LOG_PROCESS": "1"},
}


def child_env(wandb_dir: str, cuda: bool = False, overrides: Mapping[str, str | None] | None = None) -> dict[str, str]:
    """The worker's environment: this one minus WANDB_*/framework variables, plus :data:`WANDB_ENV`.

    Without ``cuda`` no GPU is visible (the CPU benchmark stays on the CPU everywhere).
    ``overrides`` sets (or, with None, removes) variables last (a configuration, a row sink).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(_DROP_PREFIXES)}
    # Imports from compiled bytecode, as an installed package has it (pip compiles at install; this
    # machine's environment sets PYTHONDONTWRITEBYTECODE=1, which would compile our source on every start).
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(WANDB_ENV)
    for key, value in (overrides or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    if not cuda:
        env["CUDA_VISIBLE_DEVICES"] = ""
    env["WANDB_DIR"] = wandb_dir
    env["WANDB_CACHE_DIR"] = os.path.join(wandb_dir, ".cache")
    env["WANDB_DATA_DIR"] = os.path.join(wandb_dir, ".data")
    env["WANDB_ARTIFACT_DIR"] = os.path.join(wandb_dir, ".artifacts")
    env["WANDB_CONFIG_DIR"] = os.path.join(wandb_dir, ".config")
    env["HF_HOME"] = os.path.join(wandb_dir, ".hf")
    env["KERAS_HOME"] = os.path.join(wandb_dir, ".keras")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


class Servers:
    """Fork servers by worker module, started on first use and ended by :meth:`close`.

    A worker module names what its server imports in ``PRELOAD`` (the imports every
    variant of it shares: torch, the framework, wandb); the module itself is imported too.
    """

    def __init__(self, cuda: bool = False) -> None:
        self.cuda = cuda
        self.work = tempfile.mkdtemp(prefix="wb-bench-servers-")
        self._servers: dict[str, ForkServer] = {}

    def get(self, module: str) -> ForkServer:
        """The server for ``module``."""
        if module not in self._servers:
            preload = [*getattr(importlib.import_module(module), "PRELOAD", ()), module]
            folder = os.path.join(self.work, module)
            os.makedirs(os.path.join(folder, "wandb"), exist_ok=True)
            self._servers[module] = ForkServer(preload, child_env(os.path.join(folder, "wandb"), self.cuda), folder)
        return self._servers[module]

    def close(self) -> None:
        """End every server and delete their folder."""
        for server in self._servers.values():
            server.close()
        self._servers.clear()
        shutil.rmtree(self.work, ignore_errors=True)

    def __enter__(self) -> Servers:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


@dataclass(frozen=True)
class _Exit:
    """How one worker process ended, seen from outside it."""

    code: int
    wall_s: float
    cpu_s: float  # its own and every child it waited for
    stdout: str
    stderr: str
    timed_out: bool = False


def _read(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


@dataclass(frozen=True)
class _Job:
    """One worker process to start: where it runs and what it gets."""

    module: str
    args: list[str]
    work: str
    env: dict[str, str]
    python_flags: tuple[str, ...] = ()

    @property
    def stdout(self) -> str:
        return os.path.join(self.work, "stdout.txt")

    @property
    def stderr(self) -> str:
        return os.path.join(self.work, "stderr.txt")


def _fresh(jobs: Sequence[_Job], timeout: float, on_exit: Any) -> None:
    """Start every job as a fresh ``python -m`` process at once; ``on_exit(index, _Exit)`` as each ends.

    CPU comes from ``wait4`` (the process and every child it waited for); at ``timeout`` the
    process groups still running are killed.
    """
    start = time.perf_counter()
    running: dict[int, int] = {}
    for index, job in enumerate(jobs):
        with open(job.stdout, "w") as out, open(job.stderr, "w") as err:
            proc = subprocess.Popen(
                [sys.executable, *job.python_flags, "-m", job.module, *job.args],
                cwd=job.work,
                env=job.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,  # its own process group, wandb-core included: a timeout kills them all
            )
        running[proc.pid] = index
    timed_out = False
    while running:
        for pid, index in list(running.items()):
            done, status, usage = os.wait4(pid, os.WNOHANG)
            if done == 0:
                continue
            del running[pid]
            job = jobs[index]
            on_exit(
                index,
                _Exit(
                    os.waitstatus_to_exitcode(status),
                    time.perf_counter() - start,
                    usage.ru_utime + usage.ru_stime,
                    _read(job.stdout),
                    _read(job.stderr),
                    timed_out,
                ),
            )
        if running and not timed_out and time.perf_counter() - start > timeout:
            timed_out = True
            kill_groups(running)
        if running:
            time.sleep(0.02)


def _forked(server: ForkServer, jobs: Sequence[_Job], timeout: float, on_exit: Any) -> None:
    """Fork every job from ``server`` at once; ``on_exit(index, _Exit)`` as each ends (CPU from ``wait4``)."""
    specs = [
        {
            "module": job.module,
            "args": job.args,
            "env": job.env,
            "cwd": job.work,
            "stdout": job.stdout,
            "stderr": job.stderr,
            "timeout": timeout,
        }
        for job in jobs
    ]

    def reply(answer: Mapping[str, Any]) -> None:
        index = int(answer["index"])
        if "error" in answer:
            on_exit(index, _Exit(-1, 0.0, 0.0, "", str(answer["error"])))
            return
        job = jobs[index]
        on_exit(
            index,
            _Exit(
                int(answer["rc"]),
                float(answer["wall_s"]),
                float(answer["cpu_s"]),
                _read(job.stdout),
                _read(job.stderr),
                bool(answer["timed_out"]),
            ),
        )

    server.run_batch(specs, reply)


def _outcome(ended: _Exit | None, result_path: str, wandb_dir: str, inspect: Any, timeout: float) -> RunOutcome:
    """What one worker reported (its result file, read back run), or why it failed."""
    if ended is None:
        return RunOutcome(False, error="the worker was never reported as ended")
    wall, cpu = ended.wall_s, ended.cpu_s
    if ended.timed_out:
        return RunOutcome(False, wall_s=wall, error=f"timed out after {timeout:.0f} s")
    if ended.code != 0 or not os.path.exists(result_path):
        tail = (ended.stderr or ended.stdout).strip().splitlines()[-15:]
        return RunOutcome(False, wall_s=wall, cpu_total_s=cpu, error=f"exit {ended.code}: " + "\n".join(tail))
    result = json.loads(Path(result_path).read_text())
    result["stderr_tail"] = ended.stderr.strip().splitlines()[-3:]
    if inspect is not None:
        try:
            result.update(inspect(wandb_dir, result))
        except Exception as exc:  # a reader problem must not lose the timing
            result["inspect_error"] = f"{type(exc).__name__}: {exc}"
    return RunOutcome(True, result, wall_s=wall, cpu_total_s=cpu)


@dataclass(frozen=True)
class GroupJob:
    """One variant of a training row for :func:`run_group`.

    Attributes:
        name: the variant (its name at the turn coordinator).
        args: the worker's arguments (``--result`` and the turn arguments are added).
        env: variables to set (None: remove) in its environment.
        inspect: optional ``callable(wandb_dir, result) -> dict`` (see :func:`run_worker`).
    """

    name: str
    args: Sequence[str]
    env: Mapping[str, str | None] | None = None
    inspect: Any = None


def run_group(
    module: str,
    jobs: Sequence[GroupJob],
    *,
    timeout: float = 300.0,
    servers: Servers | None = None,
    turn_s: float = TURN_S,
    lead_s: float = LEAD_S,
) -> list[RunOutcome]:
    """Run the variants of one row at the same time, each in its own process, sharing the window in turns.

    Each worker gets its own folder and wandb folder, as with :func:`run_worker`; their
    windows are handed round in turns of ``lead_s`` untimed and ``turn_s`` timed seconds
    (``_turns``, ``Window``), so all variants meet the machine at the same speed.
    Outcomes come back in ``jobs``' order.
    """
    group = tempfile.mkdtemp(prefix="wb-bench-row-")
    try:
        turns = Turns(group, [job.name for job in jobs])
        plan: list[tuple[_Job, str, str]] = []
        for index, job in enumerate(jobs):
            work = os.path.join(group, str(index))
            wandb_dir = os.path.join(work, "wandb")
            os.makedirs(wandb_dir)
            result_path = os.path.join(work, "result.json")
            argv = [*job.args, "--result", result_path, "--turns", turns.path, "--turn-name", job.name]
            argv += ["--turn-s", str(turn_s), "--lead-s", str(lead_s)]
            plan.append((_Job(module, argv, work, child_env(wandb_dir, False, job.env)), result_path, wandb_dir))
        coordinator = threading.Thread(target=turns.serve, args=(timeout,), name="turns", daemon=True)
        coordinator.start()
        ended: dict[int, _Exit] = {}

        def on_exit(index: int, exit_: _Exit) -> None:
            ended[index] = exit_
            turns.gone(jobs[index].name)

        launch = [p[0] for p in plan]
        if servers is not None:
            _forked(servers.get(module), launch, timeout, on_exit)
        else:
            _fresh(launch, timeout, on_exit)
        coordinator.join(timeout=10)
        outcomes = [
            _outcome(ended.get(i), result_path, wandb_dir, job.inspect, timeout)
            for i, (job, (_, result_path, wandb_dir)) in enumerate(zip(jobs, plan, strict=True))
        ]
        if turns.error:
            for outcome in outcomes:
                outcome.result.setdefault("turns_error", turns.error)
        return outcomes
    finally:
        shutil.rmtree(group, ignore_errors=True)


def run_worker(
    module: str,
    args: Sequence[str],
    *,
    timeout: float = 300.0,
    inspect: Any = None,
    python_flags: Sequence[str] = (),
    cuda: bool = False,
    env: Mapping[str, str | None] | None = None,
    servers: Servers | None = None,
) -> RunOutcome:
    """Run worker ``module`` with ``args --result FILE`` in its own process and a fresh wandb folder.

    Args:
        module: the worker module (``benchmarks.plain``...).
        args: its arguments (``--result`` is added).
        timeout: seconds before the worker is killed.
        inspect: optional ``callable(wandb_dir, result) -> dict`` run before the
            folder is deleted (e.g. to count the rows the run recorded).
        python_flags: interpreter flags (``-X importtime``); a fresh process only.
        cuda: leave the GPUs visible (otherwise ``CUDA_VISIBLE_DEVICES=""``).
        env: variables to set (None: remove) in the worker's environment.
        servers: fork the worker from this pool's server for ``module`` instead of
            starting ``python -m <module>`` (not with ``python_flags``).
    """
    work = tempfile.mkdtemp(prefix="wb-bench-")
    result_path = os.path.join(work, "result.json")
    wandb_dir = os.path.join(work, "wandb")
    os.makedirs(wandb_dir)
    job = _Job(module, [*args, "--result", result_path], work, child_env(wandb_dir, cuda, env), tuple(python_flags))
    ended: list[_Exit] = []
    try:
        if servers is not None and not python_flags:
            _forked(servers.get(module), [job], timeout, lambda _i, e: ended.append(e))
        else:
            _fresh([job], timeout, lambda _i, e: ended.append(e))
        return _outcome(ended[0] if ended else None, result_path, wandb_dir, inspect, timeout)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def count_rows(wandb_dir: str, _result: Mapping[str, Any]) -> dict[str, Any]:
    """Read the offline run(s) back and count the history rows that carry a training loss."""
    from wandb_bridge.testing import find_run_files, read_run

    runs = find_run_files(wandb_dir)
    if not runs:
        return {"rows": 0}
    record = read_run(runs[0])
    loss_rows = [row for row in record.history if any(k.endswith("loss") for k in row)]
    return {"rows": len(loss_rows), "history_rows": len(record.history)}


def count_history_rows(wandb_dir: str, _result: Mapping[str, Any]) -> dict[str, Any]:
    """Count the history rows of the offline run without decoding them (for long runs)."""
    from wandb_bridge.testing import count_history

    return {"history_rows": count_history(wandb_dir)}


def cpu_counters() -> list[int] | None:
    """The machine's CPU time counters (``/proc/stat``'s ``cpu`` line, in clock ticks); None off Linux."""
    try:
        with open("/proc/stat", encoding="ascii") as handle:
            fields = handle.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    return [int(v) for v in fields[1:9]]  # user nice system idle iowait irq softirq steal


def machine_share(before: list[int] | None, after: list[int] | None) -> dict[str, float] | None:
    """What the machine's cores did between two :func:`cpu_counters` readings, in % of their time.

    ``steal``: time the hypervisor gave this VM's cores to someone else (a slower
    machine for every variant, and for the logging work beside the training); ``idle``:
    time no process of this VM wanted a core.
    """
    if before is None or after is None:
        return None
    delta = [b - a for a, b in zip(before, after, strict=True)]
    total = sum(delta)
    if total <= 0:
        return None
    return {"idle_pct": 100.0 * delta[3] / total, "steal_pct": 100.0 * delta[7] / total}


def rotation(variants: Sequence[str], reps: int) -> list[list[str]]:
    """Interleaved order: rep ``i`` starts at variant ``i mod n``, and no variant always follows the same one.

    A plain rotation (ABCD, BCDA, ...) always runs B right after A, so whatever A
    leaves behind (dirty pages being written back, a cooling cache) always lands
    on B. This is a Williams square: the first order is 0, 1, n-1, 2, n-2, ...
    and each later one adds ``i`` (mod n), so over n repetitions every variant
    runs first once and, for an even number of variants (the loops that only log
    have four), right after each other variant once; for an odd number it is the
    plain rotation.
    """
    n = len(variants)
    first = [0] if n else []
    low, high = 1, n - 1
    while len(first) < n:  # 0, 1, n-1, 2, n-2, ...
        if len(first) % 2:
            first.append(low)
            low += 1
        else:
            first.append(high)
            high -= 1
    return [[variants[(k + i) % n] for k in first] for i in range(reps)]


def log(message: str) -> None:
    """Progress line on stderr (the table goes to stdout)."""
    print(message, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ the model

IN_FEATURES, HIDDEN, BATCH = 32, 64, 32
N_BATCHES = 64  # distinct batches, reused cyclically
LR = 0.01


def make_data(torch: Any) -> tuple[Any, Any]:
    """``N_BATCHES * BATCH`` samples of a fixed random regression task (seeded)."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(N_BATCHES * BATCH, IN_FEATURES, generator=generator)
    y = x[:, :4].sum(dim=1, keepdim=True) + 0.1 * torch.randn(N_BATCHES * BATCH, 1, generator=generator)
    return x, y


def make_mlp(torch: Any) -> Any:
    """The tiny MLP every framework trains: 32 -> 64 -> 1."""
    return torch.nn.Sequential(torch.nn.Linear(IN_FEATURES, HIDDEN), torch.nn.ReLU(), torch.nn.Linear(HIDDEN, 1))
