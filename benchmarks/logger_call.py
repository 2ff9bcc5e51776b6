"""Where a logger's per-step cost goes in a Lightning run: inside its ``log_metrics`` call, or in the rest of the step.

The headline tables time the whole step. This splits it: each variant's
``logger.log_metrics`` is wrapped, and the time spent inside it (wall and
training-thread CPU) is subtracted from the step's training-thread CPU. What is
left is Lightning's and torch's own work for the step; a logger that makes *it*
slower does so from elsewhere (its threads, its processes, wandb-core competing
for the cores and caches), not from the call.

Variants (defaults: wandb's console capture on, no progress bar): ``none``,
``native`` (``lightning.pytorch.loggers.WandbLogger``), ``ours``
(``wandb_bridge.WandbLogger``, rows by the logging process) and ``ours_inproc``
(``WANDB_BRIDGE_LOG_PROCESS=0``: rows logged by our background thread), and
``null``: a ``Logger`` whose methods do nothing, the floor every logger pays (with
a logger, Lightning's logger connector reads the step's values, turns tensors
into numbers and calls the logger each step; ``logger=False`` skips that). The
CPU that wandb-core and our logging process used during the same steps is read
from ``psutil`` at the window's edges. Each run
is a fresh ``python`` process; repetitions rotate the order.

Run: ``python -m benchmarks.logger_call --reps 3`` (about 2 minutes per repetition on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._harness import BATCH, make_data, setup_torch
from benchmarks.lightning_bench import make_module

VARIANTS = ("none", "null", "native", "ours", "ours_inproc")
FIELDS = ("step_wall_us", "step_cpu_us", "call_wall_us", "call_cpu_us", "rest_cpu_us", "core_cpu_us", "helper_cpu_us")
HEADERS = (
    "step, wall",
    "step, thread CPU",
    "in log_metrics, wall",
    "in log_metrics, CPU",
    "rest of the step, CPU",
    "wandb-core CPU",
    "logging process CPU",
)
WARMUP = 30


def children_cpu() -> dict[str, float]:
    """CPU seconds so far of this process's children: wandb-core, and every other one (our logging process)."""
    import psutil  # (a dependency of wandb)

    cpu = {"core": 0.0, "helper": 0.0}
    for child in psutil.Process().children(recursive=True):
        try:
            times, name = child.cpu_times(), child.name() + " ".join(child.cmdline())
        except psutil.Error:
            continue
        cpu["core" if "wandb-core" in name else "helper"] += times.user + times.system
    return cpu


def work(variant: str, steps: int, out: str) -> None:
    """Train for ``steps`` steps and write the per-step figures of steps ``WARMUP..steps-1`` to ``out``."""
    torch = setup_torch()
    import lightning.pytorch as pl

    state: dict[str, Any] = {"on": False, "wall": 0.0, "cpu": 0.0}

    class Timer(pl.Callback):
        def on_train_batch_start(self, trainer: Any, *_: Any) -> None:
            if trainer.global_step in (WARMUP, steps - 1):
                state["on"] = trainer.global_step == WARMUP
                state["edge" if state["on"] else "end"] = (time.perf_counter(), time.thread_time(), children_cpu())

    logger: Any = False
    if variant == "null":
        from lightning.pytorch.loggers import Logger

        class NullLogger(Logger):
            name, version = "null", "0"

            def log_metrics(self, metrics: Any, step: Any = None) -> None:
                pass

            def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
                pass

        logger = NullLogger()
    elif variant == "native":
        from lightning.pytorch.loggers import WandbLogger

        logger = WandbLogger()
    elif variant.startswith("ours"):
        from wandb_bridge import WandbLogger as OurLogger

        logger = OurLogger()
    if logger is not False:
        if variant != "null":
            _ = logger.experiment
        call = logger.log_metrics

        def timed(*args: Any, **kwargs: Any) -> None:
            if not state["on"]:
                return call(*args, **kwargs)
            t, c = time.perf_counter(), time.thread_time()
            call(*args, **kwargs)
            state["wall"] += time.perf_counter() - t
            state["cpu"] += time.thread_time() - c
            return None

        logger.log_metrics = timed  # the instance attribute Lightning's connector calls
    x, y = make_data(torch)
    repeats = -(-steps * BATCH // len(x))
    data = torch.utils.data.TensorDataset(x.repeat(repeats, 1), y.repeat(repeats, 1))
    trainer = pl.Trainer(
        max_steps=steps,
        max_epochs=1,
        logger=logger,
        log_every_n_steps=1,
        accelerator="cpu",
        devices=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
        callbacks=[Timer()],
    )
    trainer.fit(make_module(pl, torch), train_dataloaders=torch.utils.data.DataLoader(data, batch_size=BATCH))
    if logger is not False and variant != "null":
        logger.finalize("success")
        import wandb

        wandb.finish()
    n = steps - 1 - WARMUP
    (t0, c0, k0), (t1, c1, k1) = state["edge"], state["end"]
    result = {
        "step_wall_us": (t1 - t0) / n * 1e6,
        "step_cpu_us": (c1 - c0) / n * 1e6,
        "call_wall_us": state["wall"] / n * 1e6,
        "call_cpu_us": state["cpu"] / n * 1e6,
    }
    result["rest_cpu_us"] = result["step_cpu_us"] - result["call_cpu_us"]
    for kind in ("core", "helper"):
        result[f"{kind}_cpu_us"] = (k1[kind] - k0[kind]) / n * 1e6
    Path(out).write_text(json.dumps(result))


def measure(reps: int, steps: int) -> dict[str, list[dict[str, float]]]:
    """Run every variant ``reps`` times, each in a fresh process, in rotating order."""
    runs: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
    for rep in range(reps):
        order = list(VARIANTS[rep % len(VARIANTS) :] + VARIANTS[: rep % len(VARIANTS)])
        for variant in order[::-1] if rep % 2 else order:
            with tempfile.TemporaryDirectory() as folder:
                env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
                env.update(WANDB_MODE="offline", WANDB_DIR=folder, WANDB_SILENT="true", OMP_NUM_THREADS="1")
                env.update(WANDB__DISABLE_STATS="true")
                if variant == "ours_inproc":
                    env["WANDB_BRIDGE_LOG_PROCESS"] = "0"
                out = os.path.join(folder, "result.json")
                argv = [sys.executable, "-m", "benchmarks.logger_call", "--work", variant, "--steps", str(steps)]
                subprocess.run([*argv, "--out", out], env=env, check=True, capture_output=True)
                runs[variant].append(json.loads(Path(out).read_text()))
    return runs


def table(runs: dict[str, list[dict[str, float]]]) -> str:
    """A Markdown table: median [min..max] per field and variant, and the 'rest' added over no logger."""
    head = " | ".join(f"{h} (us)" for h in HEADERS)
    lines = [f"| variant | {head} | rest added over none (us) |", "| --- " * (len(FIELDS) + 2) + "|"]
    med = {v: {f: statistics.median(r[f] for r in rs) for f in FIELDS} for v, rs in runs.items()}
    none = med["none"]["rest_cpu_us"]
    for variant, rs in runs.items():
        cells = []
        for field in FIELDS:
            values = [r[field] for r in rs]
            cells.append(f"{statistics.median(values):,.0f} [{min(values):,.0f}..{max(values):,.0f}]")
        lines.append(f"| {variant} | " + " | ".join(cells) + f" | {med[variant]['rest_cpu_us'] - none:,.0f} |")
    ours, native = med["ours"], med["native"]
    step = (ours["step_wall_us"] - med["none"]["step_wall_us"]) / (native["step_wall_us"] - med["none"]["step_wall_us"])
    lines.append(
        f"\nours/native, medians: inside log_metrics {ours['call_wall_us'] / native['call_wall_us']:.2f} (wall), "
        f"{ours['call_cpu_us'] / native['call_cpu_us']:.2f} (CPU); whole step's added wall time {step:.2f}"
    )
    return "\n".join(lines)


def main() -> None:
    """Driver (``--reps``) or one worker (``--work VARIANT``)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--steps", type=int, default=1430)
    parser.add_argument("--work", choices=VARIANTS, default=None)
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    if args.work:
        work(args.work, args.steps, args.out)
        return
    print(table(measure(args.reps, args.steps)))


if __name__ == "__main__":
    main()
