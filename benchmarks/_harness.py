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

from benchmarks._forkserver import ForkServer

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
    """

    def __init__(self, warmup: int, steps: int, device: str = "cpu", count_syncs: bool = False) -> None:
        self.first = warmup
        self.last = warmup + steps
        self.steps = steps
        self.t0: float | None = None
        self.t1: float | None = None
        self.cpu0: float | None = None
        self.cpu1: float | None = None
        self.own0: float | None = None
        self.own1: float | None = None
        self.cuda = device == "cuda"
        self.syncs = SyncCounter() if count_syncs and self.cuda else None
        self.gc = GcWatch()

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Window:
        """The window the worker's command line asks for."""
        return cls(args.warmup, args.steps, args.device, args.count_syncs)

    def at_step_start(self, index: int) -> None:
        """Record the clock at the start of step ``index`` (0-based)."""
        if index == self.first:
            self._device_wait()
            # Start-up garbage (wandb's import and init: ~300k objects) gets one full collection
            # at some point; run it here in every variant, so it never lands inside one
            # variant's window by chance. Full collections inside the window are still counted.
            gc.collect()
            self.t0 = time.perf_counter()
            self.cpu0 = time.process_time()
            self.own0 = time.thread_time()
            self.gc.start()
            if self.syncs is not None:
                self.syncs.start()
        elif index == self.last:
            if self.syncs is not None:
                self.syncs.stop()
            self.gc.stop()
            self._device_wait()
            self.t1 = time.perf_counter()
            self.cpu1 = time.process_time()
            self.own1 = time.thread_time()

    def _device_wait(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize()

    def figures(self) -> dict[str, Any]:
        """The window's figures for the result file."""
        out: dict[str, Any] = {
            "steps": self.steps,
            "window_s": self.seconds(),
            "window_cpu_s": self.cpu_seconds(),
            # CPU of the training thread alone: what the logger makes it do, without waiting for the GIL
            "window_thread_cpu_s": (self.own1 or 0.0) - (self.own0 or 0.0),
            "device": "cuda" if self.cuda else "cpu",
            "gc_full_collections": self.gc.count[2],
            "gc_full_s": self.gc.seconds[2],
            "gc_young_s": self.gc.seconds[0] + self.gc.seconds[1],
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
        """Wall time of the window."""
        if self.t0 is None or self.t1 is None:
            raise RuntimeError(f"the timing window did not close (steps {self.first}..{self.last})")
        return self.t1 - self.t0

    def cpu_seconds(self) -> float:
        """CPU time of the whole process (all threads) during the window."""
        if self.cpu0 is None or self.cpu1 is None:
            raise RuntimeError("the timing window did not close")
        return self.cpu1 - self.cpu0


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


def _fresh(cmd: Sequence[str], work: str, env: Mapping[str, str], timeout: float) -> _Exit:
    """Run ``cmd`` in a fresh process (CPU from ``getrusage(RUSAGE_CHILDREN)``)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd, cwd=work, env=dict(env), capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return _Exit(-9, time.perf_counter() - start, 0.0, "", "", timed_out=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return _Exit(proc.returncode, wall, cpu, proc.stdout or "", proc.stderr or "")


def _forked(
    server: ForkServer, module: str, args: Sequence[str], work: str, env: Mapping[str, str], timeout: float
) -> _Exit:
    """Run ``module.main(args)`` in a process forked from ``server`` (CPU from ``wait4``)."""
    out, err = os.path.join(work, "stdout.txt"), os.path.join(work, "stderr.txt")
    job = {"module": module, "args": list(args), "env": dict(env), "cwd": work, "stdout": out, "stderr": err}
    reply = server.run({**job, "timeout": timeout})
    if "error" in reply:
        return _Exit(-1, 0.0, 0.0, "", str(reply["error"]))

    def read(path: str) -> str:
        try:
            return Path(path).read_text(errors="replace")
        except OSError:
            return ""

    return _Exit(
        int(reply["rc"]), float(reply["wall_s"]), float(reply["cpu_s"]), read(out), read(err), bool(reply["timed_out"])
    )


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
    worker_env = child_env(wandb_dir, cuda, env)
    try:
        if servers is not None and not python_flags:
            argv = [*args, "--result", result_path]
            ended = _forked(servers.get(module), module, argv, work, worker_env, timeout)
        else:
            cmd = [sys.executable, *python_flags, "-m", module, *args, "--result", result_path]
            ended = _fresh(cmd, work, worker_env, timeout)
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


def rotation(variants: Sequence[str], reps: int) -> list[list[str]]:
    """Interleaved order: rep ``i`` starts at variant ``i mod n`` (so no variant always runs first)."""
    n = len(variants)
    return [[variants[(i + j) % n] for j in range(n)] for i in range(reps)]


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
