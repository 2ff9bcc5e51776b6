"""Statistics, the printed tables, the JSON file and the Markdown performance section.

Regenerate the Markdown page from a saved result without measuring again::

    python -m benchmarks.report benchmarks/results/latest.json --doc performance.md
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

# The goals of issue 6.
STEP_RATIO_GOAL = 0.25
CHECKPOINT_RATIO_GOAL = 0.05
IMPORT_GOAL_MS = 30.0


# ------------------------------------------------------------------ statistics


def spread(values: Iterable[float | None]) -> dict[str, Any]:
    """Median, min, max and count of the values that are not None."""
    data = [float(v) for v in values if v is not None]
    if not data:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": statistics.median(data), "min": min(data), "max": max(data), "n": len(data)}


def ratio(a: float | None, b: float | None) -> float | None:
    """``a / b``, or None when either is missing or ``b`` is not positive."""
    if a is None or b is None or b <= 0:
        return None
    return a / b


def summarize_training(
    reps: Sequence[Mapping[str, Mapping[str, Any]]], steps: int, expected_rows: int
) -> dict[str, Any]:
    """Per-variant figures of one framework from interleaved repetitions.

    Args:
        reps: one mapping per repetition, ``variant -> outcome`` (outcome: the
            worker's result plus ``cpu_total_s``, ``wall_s``; None-like when it failed).
        steps: logged steps inside the timing window.
        expected_rows: history rows each logging variant should have recorded.
    """
    variants = sorted({v for rep in reps for v in rep})
    out: dict[str, Any] = {"steps": steps, "expected_rows": expected_rows, "reps": len(reps), "variants": {}}
    for variant in variants:
        own = [rep[variant] for rep in reps if rep.get(variant)]
        figures: dict[str, Any] = {
            "runs": len(own),
            "step_us": spread(o["window_s"] / steps * 1e6 for o in own),
            "step_cpu_us": spread(o["window_cpu_s"] / steps * 1e6 for o in own),
            "end_s": spread(o.get("tail_s", 0.0) + o.get("finish_s", 0.0) for o in own),
            "finish_s": spread(o.get("finish_s") for o in own),
            "init_s": spread(o.get("init_s") for o in own),
            "process_cpu_s": spread(o.get("cpu_total_s") for o in own),
            "peak_rss_mb": spread(o.get("peak_rss_mb") for o in own),
            "service_cpu_s": spread(o.get("cpu_children_live_s") for o in own),
            "rows": sorted({o["rows"] for o in own if "rows" in o}),
            "gc_full_collections": spread(o.get("gc_full_collections") for o in own),
            "gc_full_ms_per_step": spread(
                o["gc_full_s"] / steps * 1e3 * 1e3 if "gc_full_s" in o else None for o in own
            ),
        }
        if variant != "none":
            paired = [rep for rep in reps if rep.get(variant) and rep.get("none")]
            figures["overhead_us"] = spread(
                (rep[variant]["window_s"] - rep["none"]["window_s"]) / steps * 1e6 for rep in paired
            )
            figures["cpu_overhead_us"] = spread(
                (rep[variant]["window_cpu_s"] - rep["none"]["window_cpu_s"]) / steps * 1e6 for rep in paired
            )
            figures["thread_cpu_overhead_us"] = spread(
                (rep[variant]["window_thread_cpu_s"] - rep["none"]["window_thread_cpu_s"]) / steps * 1e6
                for rep in paired
                if "window_thread_cpu_s" in rep[variant] and "window_thread_cpu_s" in rep["none"]
            )
            # What the whole window plus the end of training (flush, finish) cost per logged step.
            figures["overhead_with_finish_us"] = spread(
                (
                    rep[variant]["window_s"] + rep[variant].get("tail_s", 0.0) + rep[variant].get("finish_s", 0.0)
                    - rep["none"]["window_s"] - rep["none"].get("tail_s", 0.0) - rep["none"].get("finish_s", 0.0)
                )
                / steps
                * 1e6
                for rep in paired
            )
        out["variants"][variant] = figures
    native = out["variants"].get("native", {})
    ours = out["variants"].get("ours", {})
    if native and ours:
        out["ratio"] = ratio(ours["overhead_us"]["median"], native["overhead_us"]["median"])
        out["cpu_ratio"] = ratio(ours["cpu_overhead_us"]["median"], native["cpu_overhead_us"]["median"])
        out["ratio_with_finish"] = ratio(
            ours["overhead_with_finish_us"]["median"], native["overhead_with_finish_us"]["median"]
        )
        per_rep = [
            ratio(
                rep["ours"]["window_s"] - rep["none"]["window_s"], rep["native"]["window_s"] - rep["none"]["window_s"]
            )
            for rep in reps
            if rep.get("ours") and rep.get("native") and rep.get("none")
        ]
        out["ratio_per_rep"] = spread(per_rep)
        # Best of repetitions: min(variant) - min(no logger); robust to bursts of outside load.
        best = {
            v: out["variants"][v]["step_us"]["min"] for v in ("none", "native", "ours") if v in out["variants"]
        }
        if len(best) == 3 and None not in best.values():
            out["best_overhead_us"] = {"native": best["native"] - best["none"], "ours": best["ours"] - best["none"]}
            out["ratio_best"] = ratio(best["ours"] - best["none"], best["native"] - best["none"])
    return out


def summarize_checkpoints(runs: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, Any]:
    """Blocking time per save, per ``"<size>/<variant>"`` key, and the ours/native ratio per size."""
    out: dict[str, Any] = {}
    sizes = sorted({key.split("/")[0] for key in runs}, key=lambda s: int(s[:-2]) if s.endswith("MB") else 0)
    for size in sizes:
        entry: dict[str, Any] = {}
        for variant in ("native", "ours"):
            own = runs.get(f"{size}/{variant}", [])
            entry[variant] = {
                "runs": len(own),
                "blocking_ms": spread(b * 1000 for o in own for b in o["blocking_s"]),
                "first_save_ms": spread(o["blocking_s"][0] * 1000 for o in own if o["blocking_s"]),
                "finish_s": spread(o.get("finish_s") for o in own),
                "artifacts": sorted({o["artifacts"] for o in own if "artifacts" in o}),
                "file_mb": spread(o.get("file_bytes", 0) / 2**20 for o in own),
            }
        entry["ratio"] = ratio(entry["ours"]["blocking_ms"]["median"], entry["native"]["blocking_ms"]["median"])
        out[size] = entry
    return out


def summarize_startup(section: Mapping[str, Any]) -> dict[str, Any]:
    """Import times, start/finish times and the per-row cost, from the raw runs."""
    summary: dict[str, Any] = {}
    for statement, runs in section.get("imports", {}).items():
        heavy = sorted({m for r in runs for m in r.get("heavy", [])})
        summary[statement] = {"ms": spread(r["import_s"] * 1000 for r in runs), "heavy": heavy}
    for variant, runs in section.get("starts", {}).items():
        summary[variant] = {
            f"{key}_ms": spread(r[f"{key}_s"] * 1000 for r in runs) for key in ("import", "init", "total", "finish")
        }
    costs = section.get("row_cost", [])
    keys = sorted({k for c in costs for k in c if k.endswith("_us")})
    summary["row_cost_us"] = {k: spread(c.get(k) for c in costs) for k in keys}
    summary["importtime_top_ms"] = section.get("importtime_top_ms", [])
    return summary


def summarize_all(results: dict[str, Any]) -> None:
    """(Re)compute every summary from the raw runs kept in ``results``, in place."""
    for fw in results.get("training", {}).values():
        if "runs" in fw:
            fw["summary"] = summarize_training(fw["runs"], fw["steps"], fw["expected_rows"])
    if "checkpoint" in results:
        results["checkpoint"]["summary"] = summarize_checkpoints(results["checkpoint"]["runs"])
    if "startup" in results:
        results["startup"]["summary"] = summarize_startup(results["startup"])


# ------------------------------------------------------------------ formatting


def _f(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}"


def fmt(s: Mapping[str, Any], digits: int = 1) -> str:
    """``median [min-max]``."""
    if not s or s.get("median") is None:
        return "n/a"
    if s.get("n", 0) <= 1:
        return _f(s["median"], digits)
    return f"{_f(s['median'], digits)} [{_f(s['min'], digits)}..{_f(s['max'], digits)}]"


def _mark(value: float | None, goal: float, smaller: bool = True) -> str:
    if value is None:
        return ""
    ok = value <= goal if smaller else value >= goal
    return " (ok)" if ok else " (missed)"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table (readable as plain text too)."""
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def training_table(results: Mapping[str, Any]) -> str:
    """Per-logged-step overhead of native and ours, with the ratio."""
    rows = []
    for name, fw in results.get("training", {}).items():
        title = fw.get("title", name)
        if "skipped" in fw:
            rows.append([title, "", "", "", "", fw["skipped"], "", ""])
            continue
        v = fw["summary"]["variants"]
        none = v.get("none", {})
        native = v.get("native")
        ours = v.get("ours")
        native_text = fmt(native["overhead_us"], 0) if native else fw.get("unavailable", {}).get("native", "n/a")
        ours_text = fmt(ours["overhead_us"], 0) if ours else fw.get("unavailable", {}).get("ours", "n/a")
        r = fw["summary"].get("ratio")
        if r is None:
            ratio_text = "n/a (native overhead not above noise)" if native and ours else "n/a"
        elif r < 0:
            ratio_text = f"{r:.2f} (ours within noise of no logger)"
        else:
            ratio_text = f"{r:.2f}{_mark(r, STEP_RATIO_GOAL)}"
        rr = fw["summary"].get("ratio_per_rep")
        if rr and rr.get("n", 0) > 1:
            ratio_text += f" [{rr['min']:.2f}..{rr['max']:.2f}]"
        cpu = fw["summary"].get("cpu_ratio")
        expected = fw["summary"]["expected_rows"]
        rows_text = "/".join(
            ",".join(str(n) for n in v[k]["rows"]) or "?" for k in ("native", "ours") if k in v
        )
        rows.append(
            [
                f"{title} ({fw['summary'].get('reps', '?')} reps)",
                fmt(none.get("step_us", {}), 0),
                native_text,
                ours_text,
                ratio_text,
                _f(fw["summary"].get("ratio_best"), 2),
                "n/a" if cpu is None else f"{cpu:.2f}",
                _f(fw["summary"].get("ratio_with_finish"), 2),
                f"{rows_text} of {expected}",
            ]
        )
    return table(
        [
            "framework",
            "step, no logger (us)",
            "native overhead (us/step)",
            "ours overhead (us/step)",
            "ratio ours/native",
            "ratio, best of reps",
            "CPU ratio",
            "ratio incl. finish",
            "rows native/ours",
        ],
        rows,
    )


def process_table(results: Mapping[str, Any]) -> str:
    """Whole-process CPU time, peak RSS and finish time per variant."""
    rows = []
    for name, fw in results.get("training", {}).items():
        if "skipped" in fw:
            continue
        for variant in ("none", "native", "ours"):
            v = fw["summary"]["variants"].get(variant)
            if v is None:
                continue
            rows.append(
                [
                    fw.get("title", name),
                    variant,
                    fmt(v["process_cpu_s"], 2),
                    fmt(v.get("thread_cpu_overhead_us", {}), 0) if variant != "none" else "",
                    fmt(v["service_cpu_s"], 2) if variant != "none" else "",
                    fmt(v["peak_rss_mb"], 0),
                    fmt(v.get("cpu_overhead_us", {}), 0) if variant != "none" else fmt(v["step_cpu_us"], 0),
                    fmt(v["end_s"], 3),
                    _gc_text(v),
                ]
            )
    return table(
        [
            "framework",
            "variant",
            "process CPU (s)",
            "training-thread CPU added per step (us)",
            "wandb-core CPU (s)",
            "peak RSS (MB)",
            "window CPU per step (us; none: total, others: added)",
            "end of training until finished (s)",
            "full GC runs in window (cost)",
        ],
        rows,
    )


def _gc_text(v: Mapping[str, Any]) -> str:
    runs = v.get("gc_full_collections", {})
    cost = v.get("gc_full_ms_per_step", {})
    if not runs or runs.get("median") is None:
        return ""
    if not runs["max"]:
        return "0"
    return f"{fmt(runs, 0)} ({_f(cost.get('median'), 0)} us/step)"


def checkpoint_table(results: Mapping[str, Any]) -> str:
    """Blocking time per checkpoint save."""
    rows = []
    for size, entry in results.get("checkpoint", {}).get("summary", {}).items():
        r = entry.get("ratio")
        rows.append(
            [
                size,
                fmt(entry["native"]["blocking_ms"], 2),
                fmt(entry["ours"]["blocking_ms"], 2),
                "n/a" if r is None else f"{r:.3f}{_mark(r, CHECKPOINT_RATIO_GOAL)}",
                fmt(entry["native"]["finish_s"], 2),
                fmt(entry["ours"]["finish_s"], 2),
                "/".join(",".join(str(n) for n in entry[k]["artifacts"]) or "?" for k in ("native", "ours")),
            ]
        )
    return table(
        [
            "checkpoint file",
            "native blocking (ms/save)",
            "ours blocking (ms/save)",
            "ratio ours/native",
            "native finish (s)",
            "ours finish (s)",
            "artifact versions native/ours",
        ],
        rows,
    )


def startup_table(results: Mapping[str, Any]) -> str:
    """Import and start-up times."""
    s = results.get("startup", {}).get("summary", {})
    if not s:
        return ""
    rows = []
    for label, key in (
        ("`import wandb_bridge`", "import wandb_bridge"),
        ("`from wandb_bridge import Session`", "from wandb_bridge import Session"),
        ("`import wandb` (for scale)", "import wandb"),
    ):
        if key in s:
            entry = s[key]
            goal = _mark(entry["ms"]["median"], IMPORT_GOAL_MS) if key == "import wandb_bridge" else ""
            heavy = ", ".join(entry.get("heavy", [])) or "none"
            rows.append([label, fmt(entry["ms"], 1) + goal, f"heavy modules loaded: {heavy}"])
    native, ours = s.get("native"), s.get("ours")
    if native and ours:
        rows.append(
            ["`import wandb` + `wandb.init()`", fmt(native["total_ms"], 0), f"init alone {fmt(native['init_ms'], 0)}"]
        )
        verdict = _mark(ours["total_ms"]["median"], native["total_ms"]["median"])
        rows.append(
            [
                "`Session().start()` (imports wandb, calls `wandb.init`)",
                fmt(ours["total_ms"], 0) + verdict,
                f"start alone {fmt(ours['init_ms'], 0)}",
            ]
        )
        finishes = f"{fmt(native['finish_ms'], 0)} / {fmt(ours['finish_ms'], 0)}"
        rows.append(["`run.finish()` / `session.finish()`", finishes, ""])
    return table(["what", "ms (median [min..max])", "note"], rows)


def row_cost_table(results: Mapping[str, Any]) -> str:
    """What one history row costs by itself (no training), native vs ours."""
    c = results.get("startup", {}).get("summary", {}).get("row_cost_us")
    if not c:
        return ""

    def g(key: str) -> str:
        return fmt(c.get(key, {}), 1)

    rows = [
        ["wandb `run.log` (native)", g("native_wall_us"), g("native_caller_cpu_us"), g("native_cpu_us")],
        [
            "`Session.log` hand-off (ours, training thread)",
            g("ours_handoff_wall_us"),
            g("ours_handoff_caller_cpu_us"),
            "",
        ],
        ["`Session.log` + background work (ours, whole)", g("ours_total_wall_us"), "", g("ours_cpu_us")],
    ]
    return table(["per row, nothing else running", "wall (us)", "caller thread CPU (us)", "process CPU (us)"], rows)


def text_report(results: Mapping[str, Any]) -> str:
    """Everything, for the terminal."""
    parts: list[str] = []
    if results.get("training"):
        parts += [
            "Per logged step (training-thread wall time, variant minus no logger, median [min..max] over "
            "interleaved reps):",
            training_table(results),
            "",
            "Whole process (median [min..max]):",
            process_table(results),
        ]
    if results.get("checkpoint"):
        parts += ["", "Checkpoint hand-over, blocking time on the training thread:", checkpoint_table(results)]
    if results.get("startup"):
        parts += ["", "Import and start-up:", startup_table(results)]
        parts += ["", "One history row by itself:", row_cost_table(results)]
    errors = results.get("errors", [])
    if errors:
        parts += ["", f"{len(errors)} run(s) failed:"] + [f"- {e}" for e in errors[:10]]
    meta = results["meta"]
    parts += ["", f"Machine: {meta['machine']}; took {meta['duration_s']:.0f} s; command: {meta['command']}"]
    return "\n".join(parts)


def markdown(results: Mapping[str, Any]) -> str:
    """The README performance section (Markdown)."""
    meta, config = results["meta"], results["config"]
    versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
    steps = ", ".join(f"{fw.get('title', k)} {fw.get('steps', '?')}" for k, fw in results["training"].items())
    out = [
        "## Performance",
        "",
        "Logging sits in every training step, so wandb-bridge keeps the training thread's part small: "
        "`Session.log` and the callbacks only hand values to a bounded queue; one background thread maps "
        "keys, merges a step's values into one row and reads tensors, and a helper process attached to "
        "the same run (`log_process=True`, the default) calls wandb's `run.log` on another core. Small "
        "checkpoint files are read into memory and large ones hard-linked on the training thread; "
        "hashing, staging and handing them to wandb happen in the background.",
        "",
        "`benchmarks/` measures this side by side with the native W&B integrations, in one run, "
        "reported as ratios. Reproduce with:",
        "",
        "```bash",
        "python -m benchmarks            # or: nox -s bench   (under 10 minutes on 2 cores)",
        "python -m benchmarks --quick    # a smoke run, under 2 minutes",
        "```",
        "",
        "It writes `benchmarks/results/latest.json` (all raw figures) and prints the tables below; "
        "`python -m benchmarks --doc FILE` also writes this section as Markdown "
        "(`python -m benchmarks.report` rebuilds it from the JSON).",
        "",
        "### Method",
        "",
        "- The same tiny MLP (32 -> 64 -> 1, batch 32, SGD) on CPU in every framework, "
        "`torch.set_num_threads(1)` (and `OMP_NUM_THREADS=1`) in every variant for stable timings; "
        "a metric logged at every optimizer step.",
        "- Variants: no logger; the native integration (bare `wandb` `run.log`, Lightning's "
        "`WandbLogger`, transformers `report_to=\"wandb\"`, wandb's `WandbMetricsLogger(log_freq=\"batch\")`); "
        "ours (`Session.log`, `wandb_bridge.WandbLogger`, `WandbTrainerCallback` with `report_to=\"none\"`, "
        "`WandbKerasCallback(log_freq=\"batch\")`).",
        f"- Each variant in a fresh process (imports, `wandb.init` and wandb's service never leak between "
        f"variants), up to {config['reps']} repetitions (the tables say how many ran inside the time budget of "
        f"{config.get('budget_s', 0):.0f} s) interleaved in rotating order "
        "([none, native, ours], [native, ours, none], ...), `WANDB_MODE=offline`, `WANDB_DIR` in a fresh "
        "temporary folder, `WANDB_SILENT=true`, `WANDB__DISABLE_STATS=true`, `WANDB_CONSOLE=off`, the same "
        "for both sides. (wandb's console capture, on by default, costs both sides far more than the rows "
        "do where a progress bar writes every step: measured once in the transformers loop, native +750 "
        "us/step and ours +400 us/step on top of the figures below.)",
        f"- Timed window: from the start of step {config['warmup']} to the start of step "
        f"{config['warmup']} + N (N = {steps}), measured by a timing callback of the framework itself, so "
        "`wandb.init` and warm-up are outside it and every per-step hook is inside. Overhead per logged "
        "step = (window of the variant - window of no logger in the same repetition) / N; the table gives "
        "the median and [min..max] over repetitions. *Ratio, best of reps* uses the fastest window of each "
        "variant instead (min(variant) - min(no logger)), which bursts of outside load affect least. "
        "*CPU ratio* compares the training process's CPU time (all its "
        "threads, our background thread included; not the logging helper's, which the whole-process "
        "table counts) added per step. *Ratio incl. finish* adds the time after the window until the run "
        "is finished (the backlog of the background thread and the helper is drained there). In every "
        "variant one full garbage collection runs just before the window opens, so the one-off "
        "collection of start-up garbage (wandb's import and init leave ~300k objects; it takes ~0.15 s) "
        "cannot land inside one variant's window by chance; full collections inside the window are "
        "counted in the whole-process table.",
        "- Rows: the offline run is read back (`wandb_bridge.testing.read_run`) and the history rows "
        "with a loss are counted: nothing may be lost for speed.",
        "- Whole-process CPU time: the worker process and every child it waited for (wandb-core, our "
        "logging helper), from "
        "`getrusage(RUSAGE_CHILDREN)` in the parent; peak RSS of the training process.",
        "- Checkpoints: a plain loop saves `torch.save` files (the model plus random padding, so every "
        "save is new content) and hands each to W&B: native = `wandb.Artifact` + `add_file` + "
        "`run.log_artifact` (what Lightning's `WandbLogger(log_model=\"all\")` does), ours = "
        "`Session(log_model=\"all\").log_checkpoint`. Only that call is timed.",
        "- GPU: `python benchmarks/gpu_syncs.py` counts CUDA synchronisations per step for native vs "
        "ours (it needs a CUDA machine and exits with a message without one).",
        "",
        f"### Results ({meta['started']})",
        "",
        f"Machine: {meta['machine']}. Load average at start/end: {meta['load_start']} / {meta['load_end']} "
        f"(other processes were running). {versions}. The full run took {meta['duration_s']:.0f} s.",
        "",
        "Per logged step (training-thread wall time; median [min..max]; goal: ratio <= "
        f"{STEP_RATIO_GOAL}):",
        "",
        training_table(results),
        "",
        "Whole process per variant:",
        "",
        process_table(results),
    ]
    if results.get("checkpoint"):
        out += [
            "",
            f"Checkpoint hand-over, blocking time on the training thread per save (goal: ratio <= "
            f"{CHECKPOINT_RATIO_GOAL}); *finish* is the time `finish()` then took (deferred hashing and "
            "staging included):",
            "",
            checkpoint_table(results),
        ]
    if results.get("startup"):
        out += [
            "",
            f"Import and start-up, each in a fresh process (goal: `import wandb_bridge` under {IMPORT_GOAL_MS:.0f} "
            "ms; a session starts no slower than `wandb.init`):",
            "",
            startup_table(results),
            "",
            "What one history row costs with nothing else running (`Session.log` hands the row over, then "
            "`flush()` waits until the logging helper has logged it). The process-CPU column is the "
            "training process's; wandb's own Python work for the row runs in the helper process:",
            "",
            row_cost_table(results),
        ]
    out += ["", "### Reading the numbers", ""] + [f"- {n}" for n in READING]
    notes = list(results.get("notes", []))
    keras = results.get("training", {}).get("keras", {})
    if "native" in keras.get("unavailable", {}):
        notes.append(
            "Keras: wandb's Keras integration (`wandb.integration.keras`) imports TensorFlow, which is not "
            "installed here, so ours is compared with no logger only (its overhead column has no native "
            "counterpart)."
        )
    errors = results.get("errors", [])
    if errors:
        notes.append(f"{len(errors)} run(s) failed in this run; see `errors` in the JSON file.")
    if notes:
        out += ["", "### Notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(out) + "\n"


READING = [
    "The tiny model is the worst case on purpose: a step of ~0.1 ms (plain loop) to ~1 ms (Trainer loops) "
    "makes per-row logging costs visible. With a real model the same absolute costs are a much smaller "
    "fraction of a step.",
    "Where the time goes: one wandb row costs about 100 us of Python CPU (building the record, handing it "
    "to wandb's asyncio thread and the wandb-core socket; see *one history row by itself*). In a "
    "background thread of the training process that CPU would still compete with training for the GIL "
    "(measured before the helper existed: ratios 0.66 plain, 1.08 Lightning, 1.04 transformers). The "
    "helper process takes it to another core, at a lower priority (nice 10), so on a machine short of "
    "cores training keeps its core. *Training-thread CPU added per step* is what is left on the training "
    "thread: the hand-off (about 1 us), our Lightning/transformers/Keras hook code (the transformers "
    "`on_log` takes about 5 us warm), contention with our background thread for the GIL (about 5 us of "
    "its CPU per row), and the slowdown of sharing this 2-vCPU machine with the helper and wandb-core. "
    "The last part grows with the rows logged per second and shrinks with free cores.",
    "The CPU is not free, it moves: the whole-process CPU (helper and wandb-core included) of ours is "
    "about the same as native's. On this 2-core machine the helper, wandb-core and training share two "
    "cores; rows handed over faster than wandb can take them (about 7,000 rows/s here) wait in the "
    "bounded queue, and *ratio incl. finish* shows that backlog drained at the end.",
    "*Ratio incl. finish* also includes the helper's start (it imports wandb, about 0.5 s of CPU, while "
    "`wandb.init` runs) on runs as short as these windows (0.4 to 1.5 s of training). Rows are never "
    "dropped for speed: the row columns show every logged step recorded.",
    "This machine also ran other jobs while measuring: single repetitions can be far off (see the "
    "[min..max] spreads); the medians of interleaved repetitions and the CPU-time columns are more "
    "robust than any single figure. The last two full runs (2026-11-29, 18:48 and 19:11 UTC) gave "
    "ratios of 0.06 (plain), 0.16 to 0.18 (Lightning) and 0.23 to 0.25 (transformers).",
]


def write(results: Mapping[str, Any], json_path: Path, doc_path: Path | None) -> None:
    """Write the JSON file and, when asked, the Markdown page."""
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(results, indent=1, sort_keys=False))
    if doc_path is not None:
        doc_path.parent.mkdir(parents=True, exist_ok=True)
        doc_path.write_text(markdown(results))


def main(argv: Sequence[str] | None = None) -> None:
    """Re-print a saved result and optionally rewrite the Markdown page from it."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("json", nargs="?", default="benchmarks/results/latest.json")
    parser.add_argument("--doc", default=None, help="write the Markdown page here")
    args = parser.parse_args(argv)
    results = json.loads(Path(args.json).read_text())
    summarize_all(results)
    print(text_report(results))
    if args.doc:
        Path(args.doc).write_text(markdown(results))


if __name__ == "__main__":
    main()
