"""Training health: per-step cost of ``log_health`` vs ``wandb.watch(log="gradients")`` at the same frequency.

Run it (each variant in a fresh process, interleaved repetitions)::

    python -m benchmarks.health                 # CPU
    python -m benchmarks.health --quick         # fewer steps and repetitions
    python -m benchmarks.health --device cuda   # on a GPU: also counts CUDA syncs per step

Variants, all on the same hand-written loop (an MLP of 6 x 256 hidden units,
about 0.33 M parameters, ``Session.log`` of the loss at every step):

* ``session``: no health, no watch (the baseline);
* ``health-<N>``: ``Session(log_health=True, health_every=N)`` and its monitor
  around ``optimizer.step()``;
* ``watch-<N>``: ``session.watch(model, log="gradients", log_freq=N)`` (wandb's
  hooks on every parameter, a histogram per tensor every N backward passes).

``N`` is 1 (the worst case: every step measured) and 50 (the default
``health_every``). The overhead is the extra time per step against
``session``; the table gives both and their ratio (watch / health). With
``--device cuda`` the synchronisations of the training thread are counted
with ``torch.cuda.set_sync_debug_mode("warn")`` in a separate pass: the
figure for ``health-<N>`` minus that of ``session`` is what health adds (0
expected). Results go to ``benchmarks/results/health.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._harness import ROOT, Window, finish_timed, log, rotation, run_worker, setup_torch, write_result

MODULE = "benchmarks.health"
WIDTH, DEPTH, BATCH, FEATURES = 256, 6, 64, 32
FREQUENCIES = (1, 50)


def variants() -> list[str]:
    """Every variant name, baseline first."""
    return ["session", *(f"{kind}-{n}" for n in FREQUENCIES for kind in ("health", "watch"))]


def _model(torch: Any) -> Any:
    layers: list[Any] = [torch.nn.Linear(FEATURES, WIDTH), torch.nn.ReLU()]
    for _ in range(DEPTH - 1):
        layers += [torch.nn.Linear(WIDTH, WIDTH), torch.nn.ReLU()]
    layers.append(torch.nn.Linear(WIDTH, 1))
    return torch.nn.Sequential(*layers)


def worker(argv: Sequence[str]) -> None:
    """One variant in this process: train, time the window, write the figures."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--variant", required=True)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--warmup", type=int, default=60)
    parser.add_argument("--result", required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--count-syncs", action="store_true")
    args = parser.parse_args(argv)
    torch = setup_torch()
    device = torch.device(args.device)
    model = _model(torch).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    data = [(torch.randn(BATCH, FEATURES, generator=gen).to(device),) for _ in range(16)]
    batches = [(x, x.sum(dim=1, keepdim=True)) for (x,) in data]

    from wandb_bridge import Session

    kind, _, freq = args.variant.partition("-")
    every = int(freq) if freq else 0
    settings: dict[str, Any] = {"log_health": True, "health_every": every} if kind == "health" else {}
    session = Session(project="bench-health", **settings)
    session.start()
    monitor = session.health_monitor()
    if kind == "watch":
        session.watch(model, log="gradients", log_freq=every)
    window = Window(args.warmup, args.steps, args.device, args.count_syncs)
    mse = torch.nn.functional.mse_loss
    for index in range(window.total_steps):
        window.at_step_start(index)
        step = index + 1
        x, y = batches[index % len(batches)]
        optimizer.zero_grad(set_to_none=True)
        loss = mse(model(x), y)
        loss.backward()
        if monitor is not None:
            monitor.before_step(step, model)
        optimizer.step()
        if monitor is not None:
            monitor.after_step()
        session.log({"loss": loss.detach()}, step=step)
    finish_s = finish_timed(None, session)
    write_result(args.result, {"variant": args.variant, **window.figures(), "finish_s": finish_s})


def _ms_per_step(result: dict[str, Any], figure: str = "window_s") -> float:
    return 1000.0 * float(result[figure]) / int(result["steps"])


def main(argv: Sequence[str] | None = None) -> int:
    """Run every variant ``--reps`` times (interleaved), print the table, save the JSON."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "--worker":
        worker(argv[1:])
        return 0
    parser = argparse.ArgumentParser(prog="python -m benchmarks.health", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--reps", type=int, default=None)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "health.json"))
    args = parser.parse_args(argv)
    cuda = args.device == "cuda"
    if cuda:
        import torch

        if not torch.cuda.is_available():
            print("benchmarks.health: CUDA is not available; run with --device cpu, or on a GPU machine.")
            return 0
    reps = args.reps if args.reps is not None else (2 if args.quick else 5)
    steps, warmup = (200, 30) if args.quick else (600, 60)
    common = ["--worker", "--steps", str(steps), "--warmup", str(warmup), "--device", args.device]
    times: dict[str, list[float]] = {v: [] for v in variants()}
    cpu: dict[str, list[float]] = {v: [] for v in variants()}  # CPU of the training thread alone
    errors: dict[str, str] = {}
    for order in rotation(variants(), reps):
        for variant in order:
            outcome = run_worker(MODULE, [*common, "--variant", variant], timeout=600, cuda=cuda)
            if not outcome.ok:
                errors[variant] = outcome.error
                log(f"health {variant}: FAILED {outcome.error}")
                continue
            times[variant].append(_ms_per_step(outcome.result))
            cpu[variant].append(_ms_per_step(outcome.result, "window_thread_cpu_s"))
            log(f"health {variant}: {times[variant][-1]:.3f} ms/step, training-thread CPU {cpu[variant][-1]:.3f}")
    syncs: dict[str, Any] = {}
    if cuda:
        for variant in variants():
            outcome = run_worker(MODULE, [*common, "--variant", variant, "--count-syncs"], timeout=600, cuda=True)
            if outcome.ok:
                counts = outcome.result.get("syncs_by_thread", {})
                syncs[variant] = {
                    "training_thread_per_step": counts.get("MainThread", 0) / steps,
                    "other_threads_per_step": (sum(counts.values()) - counts.get("MainThread", 0)) / steps,
                    "sources": outcome.result.get("sync_sources", {}),
                }
    rows = [*_table(times, "wall"), *_table(cpu, "training thread CPU")]
    print(f"\nlog_health vs watch(log='gradients'), {args.device}, median of {reps} runs of {steps} steps (ms/step)")
    print(
        "| figure | every | Session.log only | log_health | watch | health overhead | watch overhead | watch/health |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        ratio = "-" if r["watch_over_health"] is None else f"{r['watch_over_health']:.1f}x"
        print(
            f"| {r['figure']} | {r['every']} | {r['session_ms']:.3f} | {r['health_ms']:.3f} | {r['watch_ms']:.3f} | "
            f"{r['health_overhead_ms']:+.3f} ({r['health_overhead_pct']:+.1f}%) | "
            f"{r['watch_overhead_ms']:+.3f} ({r['watch_overhead_pct']:+.1f}%) | {ratio} |"
        )
    if syncs:
        print("\nCUDA synchronisations per step on the training thread:")
        for variant, figures in syncs.items():
            main_thread, other = figures["training_thread_per_step"], figures["other_threads_per_step"]
            print(f"  {variant}: {main_thread:.3f} (other threads {other:.3f})")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "device": args.device,
                "reps": reps,
                "steps": steps,
                "model": f"mlp {FEATURES}-{WIDTH}x{DEPTH}-1, batch {BATCH}, Adam",
                "ms_per_step": times,
                "thread_cpu_ms_per_step": cpu,
                "table": rows,
                "syncs": syncs,
                "errors": errors,
            },
            indent=2,
        )
    )
    return 1 if errors else 0


def _table(samples: dict[str, list[float]], figure: str) -> list[dict[str, Any]]:
    """Per frequency: the medians, the overheads against ``session`` and their ratio."""
    median = {v: statistics.median(t) for v, t in samples.items() if t}
    base = median.get("session")
    rows = []
    for n in FREQUENCIES:
        health, watch = median.get(f"health-{n}"), median.get(f"watch-{n}")
        if base is None or health is None or watch is None:
            continue
        extra_h, extra_w = health - base, watch - base
        rows.append(
            {
                "figure": figure,
                "every": n,
                "session_ms": base,
                "health_ms": health,
                "watch_ms": watch,
                "health_overhead_ms": extra_h,
                "watch_overhead_ms": extra_w,
                "health_overhead_pct": 100.0 * extra_h / base,
                "watch_overhead_pct": 100.0 * extra_w / base,
                # only meaningful when both cost something measurable
                "watch_over_health": extra_w / extra_h if extra_h > 0 and extra_w > 0 else None,
            }
        )
    return rows


if __name__ == "__main__":
    sys.exit(main())
