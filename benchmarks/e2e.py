"""End to end and sustained throughput: a loop that only logs, native ``run.log`` vs ``Session.log``.

* native: ``wandb.init()``, ``run.log({...})`` per step, ``run.finish()``.
* ours: ``Session().start()``, ``session.log({...}, step=s)`` per step, ``session.finish()``
  (the row sink is chosen by the parent through ``WANDB_BRIDGE_LOG_PROCESS``).

Nothing else runs in the loop, so rows come as fast as the logger takes them: *rows/s* is
the sustained throughput (the finish drain included: rows handed over but not yet
recorded are not counted as done), and *end to end* runs from the first line of this
script (before any import) to the run finished.

Worker: ``python -m benchmarks.e2e --variant native|ours --steps N --keys K --result FILE``.
"""

from __future__ import annotations

import os
import time

T_START = time.perf_counter()

from collections.abc import Sequence  # noqa: E402

from benchmarks._harness import process_figures, worker_args, write_result  # noqa: E402

MODULE = "benchmarks.e2e"
# (name, steps, keys per row): a short run, wide rows, and a tight loop of narrow rows.
SCENARIOS = (("short", 20, 10), ("wide", 100, 1000), ("narrow", 8000, 10))
QUICK_SCENARIOS = (("short", 20, 10), ("wide", 50, 1000), ("narrow", 2000, 10))


def logging_helpers() -> int:
    """How many children of this process are not wandb's own programs: our logging process, once rows went to it.

    A loop that only logs imports no framework, so ``log_process="auto"`` forks no waiting
    helper for it: a child other than wandb's own programs (``wandb-core``, and the
    ``wandb-symon`` system monitor wandb 0.31 starts) is one the rows moved to.
    """
    try:
        import psutil
    except ImportError:
        return 0
    count = 0
    for child in psutil.Process().children(recursive=True):
        try:
            program = os.path.basename((child.cmdline() or [""])[0])
            count += not program.startswith("wandb-")
        except psutil.Error:
            continue
    return count


def main(argv: Sequence[str] | None = None) -> None:
    """Log ``steps`` rows of ``keys`` float values as fast as possible, then finish."""
    args = worker_args(argv, {"keys": 10})
    names = [f"metric_{i}" for i in range(args.keys)]
    t_import = time.perf_counter()
    run = session = None
    if args.variant == "native":
        import wandb

        run = wandb.init()
    elif args.variant == "ours":
        from wandb_bridge import Session

        session = Session()
        session.start()
    else:
        raise SystemExit(f"unknown variant {args.variant!r}")
    t_loop = time.perf_counter()
    for s in range(1, args.steps + 1):
        value = 1.0 / s
        if run is not None:
            row = {f"train/{n}": value for n in names}
            row["trainer/global_step"] = s
            run.log(row)
        else:
            assert session is not None
            session.log({n: value for n in names}, step=s)
    t_finish = time.perf_counter()
    helpers = logging_helpers()  # (before finish: a helper ends with the run)
    if run is not None:
        run.finish()
    elif session is not None:
        session.finish()
    t_end = time.perf_counter()
    write_result(
        args.result,
        {
            "variant": args.variant,
            "steps": args.steps,
            "keys": args.keys,
            "init_s": t_loop - t_import,
            "loop_s": t_finish - t_loop,
            "finish_s": t_end - t_finish,
            "end_to_end_s": t_end - T_START,
            "rows_per_s": args.steps / (t_end - t_loop),
            "helper_used": helpers > 0,
            **process_figures(),
        },
    )


if __name__ == "__main__":
    main()
