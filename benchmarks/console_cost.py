"""What one printed line costs the training process with wandb's console capture on.

* off: a wandb run with ``console="off"`` (the line goes to the terminal only).
* native: a run with wandb's default capture (``"wrap"`` -> ``"wrap_raw"``: one record per write).
* ours: the same run with the capture batched the way a ``Session`` does for runs it starts
  (:mod:`wandb_bridge.adapters.console`).

Worker: ``python -m benchmarks.console_cost --variant off|native|ours --steps N --result FILE``
(``--steps``: lines printed; the worker's stdout is a pipe the parent reads, as in the other workers).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from benchmarks._harness import worker_args, write_result

MODULE = "benchmarks.console_cost"


def main(argv: Sequence[str] | None = None) -> None:
    """Print ``steps`` lines twice (warm-up, then measured) and record the cost per line."""
    args = worker_args(argv)
    import wandb

    run = wandb.init(settings=wandb.Settings(console="off" if args.variant == "off" else "wrap"))
    batch = None
    if args.variant == "ours":
        from wandb_bridge.adapters import console

        batch = console.take_over(run)
    elif args.variant not in ("off", "native"):
        raise SystemExit(f"unknown variant {args.variant!r}")
    n = args.steps
    for i in range(n):  # warm-up
        print(f"step {i} loss 0.1234")
    t0, c0, th0 = time.perf_counter(), time.process_time(), time.thread_time()
    for i in range(n):
        print(f"step {i} loss 0.1234")
    t1, c1, th1 = time.perf_counter(), time.process_time(), time.thread_time()
    records = writes = None
    if batch is not None:
        batch.release()
        records, writes = batch.records, batch.writes
    run.finish()
    write_result(
        args.result,
        {
            "variant": args.variant,
            "lines": n,
            "wall_us": (t1 - t0) / n * 1e6,
            "process_cpu_us": (c1 - c0) / n * 1e6,
            "thread_cpu_us": (th1 - th0) / n * 1e6,
            "records": records,
            "writes": writes,
        },
    )


if __name__ == "__main__":
    main()
