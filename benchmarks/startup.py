"""Import and start-up time, each in a fresh process.

* imports: ``import wandb_bridge`` (must stay light: no wandb, no framework),
  ``from wandb_bridge import Session`` and, for scale, ``import wandb``; each in a
  bare ``python -c`` (see :func:`import_command`), timed with ``perf_counter`` and
  once with ``-X importtime`` for the biggest contributors.
* ``native``: ``import wandb`` + ``wandb.init()``, then ``run.finish()``.
* ``ours``: ``from wandb_bridge import Session`` + ``Session().start()`` (which
  imports wandb and calls ``wandb.init``), then ``session.finish()``.

* ``logcost``: what one history row costs with nothing else running, in one
  process: ``run.log`` called N times in a loop (wall, process CPU, and the
  caller thread's own CPU), then ``Session.log`` N times (the hand-off alone)
  followed by ``flush()`` (the background work), for a second run. This bounds
  what any in-process pipeline can reach: the training thread shares the GIL
  with whoever calls wandb.

Worker: ``python -m benchmarks.startup --variant native|ours|logcost --result FILE``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from benchmarks._harness import process_figures, worker_args, write_result

MODULE = "benchmarks.startup"


def import_command(statement: str) -> list[str]:
    """``python -c`` code that times ``statement`` and prints JSON (seconds, heavy modules pulled in)."""
    code = (
        "import time; t = time.perf_counter()\n"
        f"{statement}\n"
        "d = time.perf_counter() - t\n"
        "import json, sys; print(json.dumps({'import_s': d, "
        "'heavy': sorted(m for m in ('wandb', 'torch', 'lightning', 'transformers', 'keras', 'numpy') "
        "if m in sys.modules)}))"
    )
    return ["-c", code]


def parse_importtime(stderr: str, top: int = 8) -> list[tuple[str, float]]:
    """The ``top`` modules by self time (ms) from ``python -X importtime`` output."""
    rows: list[tuple[str, float]] = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        parts = line[len("import time:") :].split("|")
        if len(parts) == 3:
            rows.append((parts[2].strip(), int(parts[0]) / 1000.0))
    return sorted(rows, key=lambda r: -r[1])[:top]


def log_cost(n: int) -> dict[str, float]:
    """Per-row cost of bare ``run.log`` and of ``Session.log`` + ``flush``, in microseconds."""
    import wandb

    from wandb_bridge import Session

    out: dict[str, float] = {}
    run = wandb.init()
    for i in range(100):
        run.log({"train/loss": 0.5, "train/lr": 0.01, "trainer/global_step": i})
    wall, cpu, own = time.perf_counter(), time.process_time(), time.thread_time()
    for i in range(n):
        run.log({"train/loss": 0.5, "train/lr": 0.01, "trainer/global_step": 100 + i})
    out["native_wall_us"] = (time.perf_counter() - wall) / n * 1e6
    out["native_cpu_us"] = (time.process_time() - cpu) / n * 1e6
    out["native_caller_cpu_us"] = (time.thread_time() - own) / n * 1e6
    run.finish()

    session = Session(system_stats=False)
    session.start()
    for i in range(100):
        session.log({"loss": 0.5, "lr": 0.01}, step=i + 1)
    session.flush()
    wall, cpu, own = time.perf_counter(), time.process_time(), time.thread_time()
    for i in range(n):
        session.log({"loss": 0.5, "lr": 0.01}, step=101 + i)
    handed = time.perf_counter()
    handed_own = time.thread_time()
    session.flush()
    out["ours_handoff_wall_us"] = (handed - wall) / n * 1e6
    out["ours_handoff_caller_cpu_us"] = (handed_own - own) / n * 1e6
    out["ours_total_wall_us"] = (time.perf_counter() - wall) / n * 1e6
    out["ours_cpu_us"] = (time.process_time() - cpu) / n * 1e6
    session.finish()
    return out


def main(argv: Sequence[str] | None = None) -> None:
    """Measure one variant (see the module docstring)."""
    args = worker_args(argv)
    result: dict[str, object] = {"variant": args.variant}
    if args.variant == "native":
        start = time.perf_counter()
        import wandb

        imported = time.perf_counter()
        run = wandb.init()
        started = time.perf_counter()
        run.finish()
        result.update(
            import_s=imported - start,
            init_s=started - imported,
            total_s=started - start,
            finish_s=time.perf_counter() - started,
        )
    elif args.variant == "ours":
        start = time.perf_counter()
        from wandb_bridge import Session

        session = Session()
        imported = time.perf_counter()
        session.start()
        started = time.perf_counter()
        session.finish()
        result.update(
            import_s=imported - start,
            init_s=started - imported,
            total_s=started - start,
            finish_s=time.perf_counter() - started,
        )
    elif args.variant == "logcost":
        result.update(log_cost(args.steps))
    else:
        raise SystemExit(f"unknown variant {args.variant!r}")
    result.update(process_figures())
    write_result(args.result, result)


if __name__ == "__main__":
    main()
