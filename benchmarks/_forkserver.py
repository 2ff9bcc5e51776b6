"""A warmed interpreter per framework that forks one worker per measured variant.

Why: on a slow 2-core VM ``import lightning`` alone took 9 to 13 s, and a training row's
worker spent 10 to 12 s of its process outside the timed window, almost all of it in
imports that every variant (no logger, native, ours) pays alike. Sixty such workers
made the full benchmark take 23 minutes. Here the imports that all variants share
(torch, the framework, wandb and the worker module) are done once per framework, in a
server process; each variant then runs in a process forked from it, with its own
environment, working folder, output files and wandb folder (and its own wandb-core), so
nothing one variant does reaches the next, as with a fresh process.

What it changes in the figures: the timed window is the same steady state as before.
The whole-process CPU is the forked worker's and every process it waited for (wandb-core,
our logging process), from the fork to its exit (``os.wait4``): the shared imports are
no longer in it, for no variant, so the ratios compare what the loggers add; wandb-bridge
itself is not preloaded, so its import is counted on our side.

Protocol (server side, ``python -m benchmarks._forkserver --preload a,b``): after the
imports the server prints one JSON line ``{"ready": ...}``; then for each JSON job line
on stdin (``module, args, env, cwd, stdout, stderr, timeout``), or ``{"batch": [job...]}``,
it forks one worker per job, all at once, and prints one JSON reply line per worker as it
ends (``index, rc, timed_out, wall_s, cpu_s``). A batch is how the variants of one training
row share their window in turns (``_turns``).
"""

from __future__ import annotations

import argparse
import atexit
import importlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import IO, Any

# ------------------------------------------------------------------ server side


def _redirect(fd: int, path: str, flags: int) -> None:
    target = os.open(path, flags, 0o644)
    os.dup2(target, fd)
    os.close(target)


def _child(job: Mapping[str, Any]) -> int:
    """In the forked process: become the worker of ``job`` and run its ``main(args)``; the exit code."""
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    os.setpgid(0, 0)  # wandb-core and our logging process join the group: a timeout kills them all
    _redirect(0, os.devnull, os.O_RDONLY)
    _redirect(1, job["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    _redirect(2, job["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.chdir(job["cwd"])
    os.environ.clear()
    os.environ.update(job["env"])
    sys.argv = [job["module"], *job["args"]]
    try:
        importlib.import_module(job["module"]).main(list(job["args"]))
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(exc.code, file=sys.stderr)  # as the interpreter does with SystemExit("message")
        return 1
    except BaseException:  # the worker's failure is reported, not raised in the server
        traceback.print_exc()
        return 1
    return 0


def _exit(code: int) -> None:
    """End the forked worker as a normal exit would, less the teardown of its modules.

    Non-daemon threads are joined and the ``atexit`` handlers run (wandb's and ours: a run
    still open is finished, wandb-core is waited for), then the process ends with
    ``os._exit``, as multiprocessing's forked children do. What is skipped is freeing
    every object of the preloaded imports one by one: about 3 s of CPU on a slow 2-core VM,
    the same for every variant, and none of it the logger's.
    """
    try:
        main_thread = threading.main_thread()
        for thread in threading.enumerate():
            if thread is not main_thread and not thread.daemon:
                thread.join()
        atexit._run_exitfuncs()  # the interpreter's own exit step (no public spelling)
    except BaseException:
        traceback.print_exc()
        code = code or 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _fork(job: Mapping[str, Any]) -> int:
    """Fork the worker of ``job``; its pid (the child never returns)."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = _child(job)
        finally:
            _exit(code)
    return pid


def kill_groups(leaders: Iterable[int]) -> None:
    """Kill the process group of each leader (a worker and its wandb-core, our helper...)."""
    for pid in leaders:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _run_batch(jobs: Sequence[Mapping[str, Any]], replies: IO[str]) -> None:
    """Fork one worker per job, all at once; print one reply per worker as it ends (with its ``index``).

    One alarm covers the batch (the longest job's ``timeout``): when it fires, every worker
    still running has its process group killed and is reported ``timed_out``.
    """
    started = time.perf_counter()
    running = {_fork(job): index for index, job in enumerate(jobs)}
    timed_out = False

    def _timeout(_signum: int, _frame: FrameType | None) -> None:
        nonlocal timed_out
        timed_out = True
        kill_groups(running)

    signal.signal(signal.SIGALRM, _timeout)
    signal.alarm(max(1, int(max(float(job.get("timeout", 300)) for job in jobs))))
    try:
        while running:
            pid, status, usage = os.wait4(-1, 0)
            index = running.pop(pid, None)
            if index is None:
                continue
            kill_groups([pid])  # leftovers of the group (a wandb-core that outlived its worker) must not run on
            reply = {
                "index": index,
                "rc": os.waitstatus_to_exitcode(status),
                "timed_out": timed_out,
                "wall_s": time.perf_counter() - started,
                # The child's own CPU plus every descendant it waited for (wandb-core, the logging process).
                "cpu_s": usage.ru_utime + usage.ru_stime,
            }
            print(json.dumps(reply), file=replies, flush=True)
    finally:
        signal.alarm(0)


def serve(preload: Sequence[str]) -> None:
    """Import ``preload``, then run jobs from stdin until it closes (replies on the original stdout)."""
    replies = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # whatever an import prints goes to the server's stderr, not into the replies
    for name in preload:
        importlib.import_module(name)
    threads = threading.active_count()
    print(json.dumps({"ready": True, "preloaded": list(preload), "threads": threads}), file=replies, flush=True)
    for line in sys.stdin:
        if line.strip():
            request = json.loads(line)
            _run_batch(request.get("batch") or [request], replies)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m benchmarks._forkserver --preload torch,wandb``."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--preload", default="")
    args = parser.parse_args(argv)
    serve([name for name in args.preload.split(",") if name])


# ------------------------------------------------------------------ parent side


class ForkServer:
    """The parent's handle on one server process (started on first use, restarted if it died).

    Args:
        preload: modules to import once (the framework's, wandb, the worker module).
        env: the server's environment (the same as a fresh worker's, see ``child_env``).
        cwd: the server's working folder.
    """

    def __init__(self, preload: Sequence[str], env: Mapping[str, str], cwd: str) -> None:
        self.preload = list(preload)
        self.env = dict(env)
        self.cwd = cwd
        self._proc: subprocess.Popen[str] | None = None
        self._stderr: IO[str] | None = None
        self.started_s = 0.0

    def _start(self) -> subprocess.Popen[str]:
        began = time.perf_counter()
        if self._stderr is None:
            self._stderr = open(Path(self.cwd) / "server-stderr.txt", "a")  # noqa: SIM115  (closed in close())
        proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks._forkserver", "--preload", ",".join(self.preload)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env=self.env,
            cwd=self.cwd,
        )
        ready = self._reply(proc)
        if not ready.get("ready"):
            proc.kill()
            proc.wait()
            self._stderr.flush()
            tail = (Path(self.cwd) / "server-stderr.txt").read_text(errors="replace").strip().splitlines()[-12:]
            raise RuntimeError(f"the fork server did not start: {ready}\n" + "\n".join(tail))
        if ready.get("threads", 1) != 1:
            proc.kill()
            raise RuntimeError(f"the fork server has {ready['threads']} threads after its imports; forking is unsafe")
        self.started_s += time.perf_counter() - began
        return proc

    @staticmethod
    def _reply(proc: subprocess.Popen[str]) -> dict[str, Any]:
        stdout: IO[str] | None = proc.stdout
        line = stdout.readline() if stdout is not None else ""
        if not line:
            return {"error": f"the fork server exited (code {proc.poll()})"}
        result: dict[str, Any] = json.loads(line)
        return result

    def run_batch(self, jobs: Sequence[Mapping[str, Any]], on_reply: Callable[[dict[str, Any]], None]) -> None:
        """Run ``jobs`` at the same time; ``on_reply`` gets each one's reply (with its ``index``) as it ends.

        If the server dies, every job not yet replied for gets an ``error`` reply.
        """
        pending = set(range(len(jobs)))
        if self._proc is None or self._proc.poll() is not None:
            self._proc = self._start()
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write(json.dumps({"batch": [dict(job) for job in jobs]}) + "\n")
            self._proc.stdin.flush()
        except BrokenPipeError:
            self._proc = None
        while pending and self._proc is not None:
            reply = self._reply(self._proc)
            if "error" in reply:
                self._proc = None
                break
            pending.discard(int(reply["index"]))
            on_reply(reply)
        for index in sorted(pending):
            on_reply({"index": index, "error": "the fork server exited"})

    def close(self) -> None:
        """End the server (it has no job running between calls)."""
        if self._proc is not None:
            if self._proc.stdin is not None:
                self._proc.stdin.close()
            try:
                self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
            self._proc = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None


if __name__ == "__main__":
    main()
