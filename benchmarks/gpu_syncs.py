"""GPU check: CUDA synchronisations per logged step and step-time overhead, native vs ours.

Run on a CUDA machine (exits 0 with a message where CUDA is absent)::

    python -m benchmarks.gpu_syncs            # or: python benchmarks/gpu_syncs.py
    python -m benchmarks.gpu_syncs --quick    # fewer steps and repetitions

For plain torch, Lightning, transformers and Keras (torch backend) it runs the
same workers as the CPU benchmark with ``--device cuda``, each variant (none,
native, ours) in a fresh process:

* once with ``torch.cuda.set_sync_debug_mode("warn")`` on during the timing
  window, counting every synchronising call by thread: ``MainThread`` is the
  training thread; ours may read values in its background thread, in one
  transfer per flush rather than one ``.item()`` per value per step;
* ``--reps`` times (interleaved) without it, for the step-time overhead.

Synchronisations the framework itself makes (transformers reads the loss with
``.item()`` at every logging step, Lightning converts logged tensors to floats for
any logger) appear in the no-logger row too; the logger's own count is the
difference. Results go to ``benchmarks/results/gpu.json`` and a table on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import report
from benchmarks._harness import ROOT, log, rotation, run_worker

WORKERS = {
    "plain": "benchmarks.plain",
    "lightning": "benchmarks.lightning_bench",
    "transformers": "benchmarks.transformers_bench",
    "keras": "benchmarks.keras_bench",
}


def cuda_available() -> tuple[bool, str]:
    """Whether torch sees a CUDA device, with a reason when not."""
    try:
        import torch
    except ImportError:
        return False, "torch is not installed"
    if not torch.cuda.is_available():
        return False, f"CUDA is not available (torch {torch.__version__}, built for CUDA {torch.version.cuda})"
    if not hasattr(torch.cuda, "set_sync_debug_mode"):
        return False, "this torch has no torch.cuda.set_sync_debug_mode"
    return True, torch.cuda.get_device_name(0)


def _per_step(counts: dict[str, int] | None, steps: int) -> dict[str, float]:
    counts = counts or {}
    main = counts.get("MainThread", 0)
    total = sum(counts.values())
    return {"training_thread": main / steps, "other_threads": (total - main) / steps, "total": total / steps}


def main(argv: Sequence[str] | None = None) -> int:
    """Count syncs and time the steps on the GPU; print and save the results."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu_syncs", description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--reps", type=int, default=None)
    parser.add_argument("--only", default=",".join(WORKERS))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "gpu.json"))
    args = parser.parse_args(argv)
    ok, detail = cuda_available()
    if not ok:
        print(f"gpu_syncs: skipped, {detail}. Run it on a machine with a CUDA GPU.")
        return 0
    reps = args.reps if args.reps is not None else (1 if args.quick else 3)
    steps = 100 if args.quick else 300
    warmup = 20
    results: dict[str, Any] = {"device": detail, "steps": steps, "reps": reps, "frameworks": {}, "errors": []}
    for name in [n.strip() for n in args.only.split(",") if n.strip()]:
        module = __import__(WORKERS[name], fromlist=["unavailable"])
        unavailable = module.unavailable()
        variants = [v for v in ("none", "native", "ours") if v not in unavailable]
        entry: dict[str, Any] = {"unavailable": unavailable, "syncs": {}, "timing": []}
        base = ["--steps", str(steps), "--warmup", str(warmup), "--device", "cuda"]
        for variant in variants:
            outcome = run_worker(WORKERS[name], ["--variant", variant, *base, "--count-syncs"], cuda=True)
            if not outcome.ok:
                results["errors"].append(f"{name}/{variant} (syncs): {outcome.error}")
                continue
            entry["syncs"][variant] = {
                "per_step": _per_step(outcome.result.get("syncs_by_thread"), steps),
                "by_thread": outcome.result.get("syncs_by_thread"),
                "sources": outcome.result.get("sync_sources"),
            }
            log(f"[gpu {name}] {variant}: syncs per step {entry['syncs'][variant]['per_step']}")
        for order in rotation(variants, reps):
            rep: dict[str, Any] = {}
            for variant in order:
                outcome = run_worker(WORKERS[name], ["--variant", variant, *base], cuda=True)
                if outcome.ok:
                    rep[variant] = dict(outcome.result, cpu_total_s=outcome.cpu_total_s)
                else:
                    results["errors"].append(f"{name}/{variant} (timing): {outcome.error}")
            entry["timing"].append(rep)
        if any(entry["timing"]) and all("none" in rep for rep in entry["timing"]):
            entry["summary"] = report.summarize_training(entry["timing"], steps, warmup + steps + 1)
        results["frameworks"][name] = entry

    rows = []
    for name, entry in results["frameworks"].items():
        summary = entry.get("summary", {"variants": {}})
        for variant in ("none", "native", "ours"):
            syncs = entry["syncs"].get(variant)
            figures = summary["variants"].get(variant, {})
            if syncs is None and not figures:
                rows.append([name, variant, entry["unavailable"].get(variant, "failed"), "", "", ""])
                continue
            per = syncs["per_step"] if syncs else {}
            rows.append(
                [
                    name,
                    variant,
                    f"{per.get('training_thread', float('nan')):.2f}",
                    f"{per.get('other_threads', float('nan')):.3f}",
                    report.fmt(figures.get("step_us", {}), 0),
                    report.fmt(figures.get("overhead_us", {}), 0) if variant != "none" else "",
                ]
            )
    print(
        report.table(
            [
                "framework",
                "variant",
                "syncs/step, training thread",
                "syncs/step, other threads",
                "step (us)",
                "overhead (us/step)",
            ],
            rows,
        )
    )
    for error in results["errors"]:
        print("error:", error)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(f"wrote {out}")
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
