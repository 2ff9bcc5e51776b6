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
                    rep[variant]["window_s"]
                    + rep[variant].get("tail_s", 0.0)
                    + rep[variant].get("finish_s", 0.0)
                    - rep["none"]["window_s"]
                    - rep["none"].get("tail_s", 0.0)
                    - rep["none"].get("finish_s", 0.0)
                )
                / steps
                * 1e6
                for rep in paired
            )
        out["variants"][variant] = figures
    native = out["variants"].get("native", {})
    ours = out["variants"].get("ours", {})
    inproc = out["variants"].get("ours_inproc", {})
    if native and inproc:
        out["ratio_inproc"] = ratio(inproc["overhead_us"]["median"], native["overhead_us"]["median"])
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
        best = {v: out["variants"][v]["step_us"]["min"] for v in ("none", "native", "ours") if v in out["variants"]}
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
    if "e2e" in results:
        results["e2e"]["summary"] = summarize_e2e(results["e2e"])


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


def _training(results: Mapping[str, Any], config: str) -> list[tuple[str, Mapping[str, Any]]]:
    """The training rows of one configuration (results before the configurations count as quiet)."""
    return [(k, fw) for k, fw in results.get("training", {}).items() if fw.get("config", "quiet") == config]


def _ratio_text(r: float | None, both: bool) -> str:
    if r is None:
        return "n/a (native overhead not above noise)" if both else "n/a"
    if r < 0:
        return f"{r:.2f} (ours within noise of no logger)"
    return f"{r:.2f}{_mark(r, STEP_RATIO_GOAL)}"


def training_table(results: Mapping[str, Any], config: str = "quiet") -> str:
    """Per-logged-step overhead of native and ours (and, where measured, ours with the in-process sink)."""
    entries = _training(results, config)
    inproc = any("ours_inproc" in fw.get("summary", {}).get("variants", {}) for _, fw in entries)
    rows = []
    for name, fw in entries:
        title = fw.get("title", name)
        if "skipped" in fw:
            rows.append([title, fw["skipped"]] + [""] * (9 if inproc else 7))
            continue
        summary = fw["summary"]
        v = summary["variants"]
        none = v.get("none", {})
        native = v.get("native")
        ours = v.get("ours")
        native_text = fmt(native["overhead_us"], 0) if native else fw.get("unavailable", {}).get("native", "n/a")
        ours_text = fmt(ours["overhead_us"], 0) if ours else fw.get("unavailable", {}).get("ours", "n/a")
        ratio_text = _ratio_text(summary.get("ratio"), bool(native and ours))
        rr = summary.get("ratio_per_rep")
        if rr and rr.get("n", 0) > 1:
            ratio_text += f" [{rr['min']:.2f}..{rr['max']:.2f}]"
        cpu = summary.get("cpu_ratio")
        expected = summary["expected_rows"]
        kinds = [k for k in ("native", "ours", "ours_inproc") if k in v]
        rows_text = "/".join(",".join(str(n) for n in v[k]["rows"]) or "?" for k in kinds)
        row = [
            f"{title} ({summary.get('reps', '?')} reps)",
            fmt(none.get("step_us", {}), 0),
            native_text,
            ours_text,
            ratio_text,
            _f(summary.get("ratio_best"), 2),
            "n/a" if cpu is None else f"{cpu:.2f}",
            _f(summary.get("ratio_with_finish"), 2),
        ]
        if inproc:
            here = v.get("ours_inproc")
            row += [
                fmt(here["overhead_us"], 0) if here else "n/a",
                _ratio_text(summary.get("ratio_inproc"), bool(native and here)),
            ]
        rows.append([*row, f"{rows_text} of {expected}"])
    headers = [
        "framework",
        "step, no logger (us)",
        "native overhead (us/step)",
        "ours overhead (us/step)",
        "ratio ours/native",
        "ratio, best of reps",
        "CPU ratio",
        "ratio incl. finish",
    ]
    if inproc:
        headers += ["ours, in-process sink (us/step)", "ratio in-process/native"]
    return table([*headers, "rows " + "/".join(["native", "ours"] + (["in-process"] if inproc else []))], rows)


def process_table(results: Mapping[str, Any], config: str = "quiet") -> str:
    """Whole-process CPU time, peak RSS and finish time per variant."""
    rows = []
    for name, fw in _training(results, config):
        if "skipped" in fw:
            continue
        variants = fw["summary"]["variants"]
        native_cpu = variants.get("native", {}).get("process_cpu_s", {}).get("median")
        for variant in ("none", "native", "ours", "ours_inproc"):
            v = variants.get(variant)
            if v is None:
                continue
            cpu = v["process_cpu_s"]
            vs = ratio(cpu.get("median"), native_cpu) if variant.startswith("ours") else None
            rows.append(
                [
                    fw.get("title", name),
                    variant,
                    fmt(cpu, 2) + ("" if vs is None else f" ({vs:.2f} of native{_mark(vs, 1.0)})"),
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
            "whole-process CPU (s): training process + helper + wandb-core",
            "training-thread CPU added per step (us)",
            "children alive at the end, CPU (s)",
            "peak RSS (MB)",
            "window CPU per step (us; none: total, others: added)",
            "end of training until finished (s)",
            "full GC runs in window (cost)",
        ],
        rows,
    )


def summarize_e2e(section: Mapping[str, Any]) -> dict[str, Any]:
    """Per scenario and variant: end to end, loop, finish, rows/s, whole-process CPU.

    Each variant other than native also gets ``paired``: its ratios to native
    taken within each repetition (the two ran seconds apart), then their
    median and range. The machine's speed drifts over tens of seconds, so a
    ratio of two medians taken across repetitions mixes that drift in; the
    verdicts use the paired ratios.
    """
    out: dict[str, Any] = {}
    runs_by_key = section.get("runs", {})
    for key, runs in runs_by_key.items():
        out[key] = {
            "end_to_end_s": spread(r.get("end_to_end_s") for r in runs),
            "init_s": spread(r.get("init_s") for r in runs),
            "loop_s": spread(r.get("loop_s") for r in runs),
            "finish_s": spread(r.get("finish_s") for r in runs),
            "rows_per_s": spread(r.get("rows_per_s") for r in runs),
            "cpu_s": spread(r.get("cpu_total_s") for r in runs),
            "rows": sorted({r.get("history_rows", 0) for r in runs}),
            "runs": len(runs),
        }
        label, _, variant = key.rpartition("/")
        if variant == "native":
            continue
        native = _by_rep(runs_by_key.get(f"{label}/native", []))
        pairs = [(run, native[rep]) for rep, run in _by_rep(runs).items() if rep in native]
        out[key]["paired"] = {
            name: spread(ratio(mine.get(field), theirs.get(field)) for mine, theirs in pairs)
            for name, field in (("end_to_end", "end_to_end_s"), ("rows_per_s", "rows_per_s"), ("cpu", "cpu_total_s"))
        }
    return out


def _by_rep(runs: Sequence[Mapping[str, Any]]) -> dict[int, Mapping[str, Any]]:
    """Runs by repetition (results written before runs recorded ``rep`` count by position)."""
    return {run.get("rep", i): run for i, run in enumerate(runs)}


def _e2e_ratios(v: Mapping[str, Any]) -> tuple[float | None, float | None, float | None]:
    """(end to end, rows/s, CPU) of a variant against native: the medians of its paired ratios."""
    paired = v["paired"]
    return paired["end_to_end"]["median"], paired["rows_per_s"]["median"], paired["cpu"]["median"]


def _range(v: Mapping[str, Any], name: str) -> str:
    """`` [min..max]`` of a paired ratio over the repetitions (empty with one)."""
    s = v.get("paired", {}).get(name, {})
    if s.get("n", 0) <= 1:
        return ""
    return f" [{_f(s['min'], 2)}..{_f(s['max'], 2)}]"


def e2e_table(results: Mapping[str, Any]) -> str:
    """End to end and sustained throughput per scenario, native vs ours (both sinks)."""
    section = results.get("e2e", {})
    summary = section.get("summary", {})
    rows = []
    for label, steps, keys in section.get("scenarios", []):
        native = summary.get(f"{label}/native")
        for variant in ("native", "ours", "ours_inproc", "ours_helper"):
            v = summary.get(f"{label}/{variant}")
            if v is None:
                continue
            notes = ""
            if native and variant != "native":
                e, t, c = _e2e_ratios(v)
                # (rows/s is the sustained-throughput goal of the loops; 20 rows only time finish())
                judged = "" if label == "short" else _mark(t, 1.0, smaller=False)
                notes = (
                    f"end to end {_f(e, 2)}{_range(v, 'end_to_end')}{_mark(e, 1.0)}, "
                    f"rows/s {_f(t, 2)}{_range(v, 'rows_per_s')}{judged}, "
                    f"CPU {_f(c, 2)}{_range(v, 'cpu')}{_mark(c, 1.0)}"
                )
            rows.append(
                [
                    f"{label}: {steps:,} steps x {keys:,} keys",
                    variant,
                    fmt(v["end_to_end_s"], 2),
                    fmt(v["init_s"], 2),
                    fmt(v["loop_s"], 2),
                    fmt(v["finish_s"], 2),
                    fmt(v["rows_per_s"], 0),
                    fmt(v["cpu_s"], 2),
                    ",".join(str(n) for n in v["rows"]),
                    notes,
                ]
            )
    return table(
        [
            "scenario",
            "variant",
            "end to end (s)",
            "start (s)",
            "loop (s)",
            "finish (s)",
            "rows/s (finish included)",
            "whole-process CPU (s)",
            "rows recorded",
            "vs native (ratio: median [range] of the repetitions' paired ratios)",
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


def line_cost_table(results: Mapping[str, Any]) -> str:
    """What one printed line costs the training process: capture off, wandb's capture, ours batched."""
    section = results.get("startup", {}).get("line_cost", {})
    if not section:
        return ""
    rows = []
    labels = {
        "off": '`console="off"` (nothing captured)',
        "native": "wandb's default capture (`wrap_raw`: one record per write)",
        "ours": "the same capture, batched (runs a `Session` starts)",
    }
    for variant in ("off", "native", "ours"):
        runs = section.get(variant, [])
        if not runs:
            continue
        records = [r for r in runs if r.get("records") is not None]
        rows.append(
            [
                labels[variant],
                fmt(spread(r["thread_cpu_us"] for r in runs), 1),
                fmt(spread(r["process_cpu_us"] for r in runs), 1),
                fmt(spread(r["wall_us"] for r in runs), 1),
                f"{records[0]['records']} for {records[0]['writes']:,} writes"
                if records
                else ("none" if variant == "off" else "1 per write"),
            ]
        )
    return table(
        [
            "per printed line (`print`, 2 writes)",
            "printing thread CPU (us)",
            "process CPU (us)",
            "wall (us)",
            "records",
        ],
        rows,
    )


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
    for config, label in (("defaults", "DEFAULTS (console capture on, frameworks' printing)"), ("quiet", "QUIET")):
        if _training(results, config):
            parts += [
                "",
                f"{label}: per logged step (training-thread wall time, variant minus no logger, "
                "median [min..max] over interleaved reps):",
                training_table(results, config),
                "",
                f"{label}: whole process (median [min..max]):",
                process_table(results, config),
            ]
    if results.get("e2e"):
        parts += ["", "End to end and sustained throughput (defaults):", e2e_table(results)]
    if results.get("checkpoint"):
        parts += ["", "Checkpoint hand-over, blocking time on the training thread:", checkpoint_table(results)]
    if results.get("startup"):
        parts += ["", "Import and start-up:", startup_table(results)]
        parts += ["", "One history row by itself:", row_cost_table(results)]
        parts += ["", "One printed line, console capture on:", line_cost_table(results)]
    errors = results.get("errors", [])
    if errors:
        parts += ["", f"{len(errors)} run(s) failed:"] + [f"- {e}" for e in errors[:10]]
    meta = results["meta"]
    took = f"took {meta['duration_s']:.0f} s{_over_budget(results)}"
    parts += ["", f"Machine: {meta['machine']}; {took}; command: {meta['command']}"]
    return "\n".join(parts)


def _verdicts(results: Mapping[str, Any]) -> list[str]:
    """One line per goal, computed from the figures (met / missed, with the numbers)."""
    lines: list[str] = []
    for config in ("defaults", "quiet"):
        parts = []
        for _, fw in _training(results, config):
            summary = fw.get("summary")
            if not summary or summary.get("ratio") is None:
                continue
            parts.append(f"{fw['title']} {summary['ratio']:.2f} / {_f(summary.get('cpu_ratio'), 2)}")
        if parts:
            lines.append(
                f"Per-step ratio ours/native, {config} (training-thread wall time / training-process CPU): "
                + "; ".join(parts)
                + f" (goal <= {STEP_RATIO_GOAL})."
            )
    for config in ("defaults", "quiet"):
        parts = []
        for _, fw in _training(results, config):
            variants = fw.get("summary", {}).get("variants", {})
            native = variants.get("native", {}).get("process_cpu_s", {}).get("median")
            for variant in ("ours", "ours_inproc"):
                mine = variants.get(variant, {}).get("process_cpu_s", {}).get("median")
                r = ratio(mine, native)
                if r is not None:
                    parts.append(f"{fw['title']} {'in-process ' if variant == 'ours_inproc' else ''}{r:.2f}")
        if parts:
            lines.append(
                f"Whole-process CPU ours/native (training process + helper + wandb-core), {config}: "
                + "; ".join(parts)
                + " (goal <= 1)."
            )
    e2e_summary = results.get("e2e", {}).get("summary", {})
    for label, steps, keys in results.get("e2e", {}).get("scenarios", []):
        native = e2e_summary.get(f"{label}/native")
        if not native:
            continue
        parts = []
        for variant, name in (
            ("ours", "default (auto)"),
            ("ours_inproc", "in-process"),
            ("ours_helper", "logging process from the start"),
        ):
            v = e2e_summary.get(f"{label}/{variant}")
            if not v:
                continue
            e, t, c = _e2e_ratios(v)
            n = v["paired"]["rows_per_s"].get("n", 0)
            parts.append(f"{name} ({n} pairs): end to end {_f(e, 2)}, rows/s {_f(t, 2)}, CPU {_f(c, 2)}")
        lines.append(
            f"Loop that only logs, {label} ({steps:,} x {keys:,} keys), ours/native: " + "; ".join(parts) + "."
        )
    lines += _same_path_lines(results)
    return lines


def _same_path_lines(results: Mapping[str, Any]) -> list[str]:
    """The measure's own noise: where the default (auto) kept every row in-process, it ran the in-process
    variant's code path, so their paired ratios (within each repetition) show what identical runs differ by."""
    section = results.get("e2e", {})
    runs = section.get("runs", {})
    lines = []
    for label, _, _ in section.get("scenarios", []):
        auto, here = runs.get(f"{label}/ours", []), _by_rep(runs.get(f"{label}/ours_inproc", []))
        if label == "short" or not auto or not here or any(r.get("helper_used", True) for r in auto):
            continue
        pairs = [(run, here[rep]) for rep, run in _by_rep(auto).items() if rep in here]
        rows = spread(ratio(a.get("rows_per_s"), b.get("rows_per_s")) for a, b in pairs)
        ends = spread(ratio(a.get("end_to_end_s"), b.get("end_to_end_s")) for a, b in pairs)
        if rows.get("median") is None:
            continue
        lines.append(
            f"Same code path twice, {label} loop: the default (auto) logged every row in-process in all "
            f"{rows['n']} repetitions, as the in-process variant does; default/in-process rows/s "
            f"{_f(rows['median'], 2)} [{_f(rows['min'], 2)}..{_f(rows['max'], 2)}], end to end "
            f"{_f(ends['median'], 2)} [{_f(ends['min'], 2)}..{_f(ends['max'], 2)}]: what two identical runs "
            "differ by here, the noise floor of the ratios above."
        )
    return lines


def _sink_lines(results: Mapping[str, Any]) -> list[str]:
    """The two row sinks under the defaults: training-process CPU added per step, and whole-process CPU."""
    lines = []
    for _, fw in _training(results, "defaults"):
        v = fw.get("summary", {}).get("variants", {})
        ours, here, native = v.get("ours"), v.get("ours_inproc"), v.get("native")
        if not ours or not here:
            continue
        step = f"{_f(ours['cpu_overhead_us']['median'])} vs {_f(here['cpu_overhead_us']['median'])} us"
        if native:
            step += f" (native {_f(native['cpu_overhead_us']['median'])})"
        whole = f"{_f(ours['process_cpu_s']['median'], 2)} vs {_f(here['process_cpu_s']['median'], 2)} s"
        if native:
            whole += f" (native {_f(native['process_cpu_s']['median'], 2)})"
        saved = (here["cpu_overhead_us"]["median"] or 0) - (ours["cpu_overhead_us"]["median"] or 0)
        extra = (ours["process_cpu_s"]["median"] or 0) - (here["process_cpu_s"]["median"] or 0)
        rows = fw.get("expected_rows", 0)
        lines.append(
            f"{fw['title']}: training-process CPU added per step, default (auto) vs in-process: {step}; "
            f"whole-process CPU: {whole}. Moving to the logging process saved the training process {saved:.0f} us "
            f"per row and changed the whole process's CPU by {extra:+.2f} s over this run's {rows:,} rows."
        )
    return lines


def markdown(results: Mapping[str, Any]) -> str:
    """The performance page (Markdown): defaults first, the quiet configuration second."""
    meta, config = results["meta"], results["config"]
    versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
    steps = ", ".join(
        sorted({f"{fw.get('framework', k)} {fw.get('steps', '?')}" for k, fw in results.get("training", {}).items()})
    )
    out = [
        "# Performance",
        "",
        "wandb-bridge side by side with the native W&B integrations, in one run, reported as ratios, "
        "first with what a user has by default (wandb's console capture on, the frameworks' own printing "
        "and progress bars), then in a quiet configuration (`WANDB_CONSOLE=off`, no bars). Reproduce with:",
        "",
        "```bash",
        "python -m benchmarks --doc docs/performance.md   # under 10 minutes on 2 cores",
        "python -m benchmarks --quick                     # a smoke run",
        "python -m benchmarks.report benchmarks/results/latest.json --doc docs/performance.md  # rebuild this page",
        "```",
        "",
        "## What we set for runs we start: console capture in batches",
        "",
        'wandb\'s default `console="auto"` resolves to `"wrap"`, which wandb 0.31 runs as `"wrap_raw"`: it '
        "patches `sys.stdout.write`/`sys.stderr.write` and, for every single write, builds an `OutputRawRecord` "
        "and hands it to wandb's asyncio thread and the wandb-core socket, on the thread that printed. A "
        "`print()` is two writes (the text, then the newline); a tqdm bar is one write per redraw. Profiled "
        "in the training process (cProfile, transformers Trainer printing its log dict every step): 1,264 "
        "writes for 632 printed lines, each one `publish_output_raw` + a socket hand-off, the same work "
        "native and ours; on top of it ours had its own logging-process traffic and threads competing with "
        "that work on two cores.",
        "",
        "For a run a `Session` starts itself (never a run the user started), wandb-bridge keeps wandb's "
        "capture exactly as configured (same `console` setting, same patched streams, so wandb-core writes "
        "`output.log` and the W&B *Logs* tab as before) but replaces the two per-write callbacks of the run's "
        "stream wrappers with one that only appends the text to a queue "
        "(`src/wandb_bridge/adapters/console.py`). A daemon thread hands the queue to the run every 0.1 s, "
        "adjacent writes to the same stream joined into one record, stdout and stderr in the order they "
        "were written; `finish()` hands over the rest and gives wandb its callbacks back before the run "
        "ends. A user's `WANDB_CONSOLE`/`settings.console` is respected (with `off` nothing is captured, "
        "as natively); any other capture mode, or a wandb without these internals, is left untouched. "
        "`tests/test_speed_guard.py` checks it without timing: 120 printed lines and 12 progress updates "
        "produce 254 output records natively and about 10 with ours, each stream's text is exactly what "
        "was written to it, in order, and `files/output.log` is byte for byte the same as native's.",
        "",
        "A progress bar between printed lines (the transformers Trainer's tqdm bar, with its log dicts "
        "printed above it by `tqdm.write`: clear the bar on stderr, print on stdout, redraw on stderr) "
        "alternates the two streams on every step, so joining adjacent writes alone still left about two "
        "records per step. wandb-core renders the two streams like a terminal with a cursor each: a line "
        "takes its place when its stream starts it, a `\\r` redraw rewrites that line in place, and only "
        "the newest lines stay open to rewrites (measured with wandb 0.31: a redraw of a line with 31 "
        "lines below it lands, with 32 below it is dropped). So a write that only redraws a line its "
        "stream already started (no newline, no escape sequence) is handed over after the other stream's "
        "writes of the same burst, in order within its own stream, when its line is certainly still open "
        "(fewer than 24 lines below it) or certainly closed already (40 or more, where the redraw changes "
        "nothing either way). Everything else keeps its place, and an escape sequence that moves a "
        "cursor (nested tqdm bars) hands over whatever was held before it. `tests/test_console_batch.py` "
        "hands the same writes to wandb-core once per write and once batched (a Trainer-like bar over "
        "20 and 300 steps, and random mixes of text, newlines, redraws and escape sequences) and "
        "compares the `output.log` files byte for byte; the speed guard does the same with a real tqdm "
        "bar in a fresh process (300 steps): 2,406 records natively, about 40 with ours.",
        "",
        "The only visible difference: a line's timestamp in the Logs tab can be up to 0.1 s late (a "
        "redraw's, while its line is open, up to the end of its burst).",
        "",
        "Where a Lightning step's added time goes, inside the logger's `log_metrics` call or in the rest of "
        "the step (Lightning's and torch's own work, slowed from outside the call): "
        "[performance-breakdown.md](performance-breakdown.md) (`python -m benchmarks.logger_call`).",
        "",
        "## Method",
        "",
        "- The same tiny MLP (32 -> 64 -> 1, batch 32, SGD) on CPU in every framework, "
        "`torch.set_num_threads(1)` (and `OMP_NUM_THREADS=1`) in every variant; a metric logged at every "
        "optimizer step.",
        "- Variants: no logger; the native integration (bare `wandb` `run.log`, Lightning's "
        '`WandbLogger`, transformers `report_to="wandb"`, wandb\'s `WandbMetricsLogger(log_freq="batch")`); '
        'ours (`Session.log`, `wandb_bridge.WandbLogger`, `WandbTrainerCallback` with `report_to="none"`, '
        '`WandbKerasCallback(log_freq="batch")`); under the defaults also ours with the in-process row sink '
        "(`WANDB_BRIDGE_LOG_PROCESS=0`: every row logged by our background thread); *ours* is the default, "
        '`log_process="auto"` (rows logged by the background thread until the logging process pays, then by '
        "the logging process; the framework callbacks plan their rows, so they use it from the start); "
        "the end-to-end table also has the logging process from the start (`WANDB_BRIDGE_LOG_PROCESS=1`).",
        "- **Defaults**: `WANDB_CONSOLE` unset (wandb's capture on), and every framework printing what it "
        "prints by default: the plain loop prints a line every 10 steps; Lightning once without and once "
        "with its default progress bar (its `RichProgressBar` where `rich` is installed, as here: Keras "
        "requires it; its `TQDMProgressBar` otherwise; Rich redraws a live bar only on a terminal, so that "
        "row's workers set Rich's `TTY_COMPATIBLE=1` and `TTY_INTERACTIVE=1` and the bar is redrawn every "
        "few steps, each redraw a write wandb captures, as for a user watching it); the transformers Trainer "
        "prints every log dict (`PrinterCallback`), once without and once with its default tqdm bar; Keras its default "
        "progress bar. **Quiet**: `WANDB_CONSOLE=off`, no bars, no framework printing (the transformers "
        "Trainer still prints its log dicts; nothing captures them).",
        f"- {_workers(config)} Up to {config['reps']} repetitions (the tables say how many ran "
        f"inside the time budget of {config.get('budget_s', 0):.0f} s) interleaved in rotating order, "
        "`WANDB_MODE=offline`, `WANDB_DIR` in a fresh temporary folder, `WANDB_SILENT=true`, "
        "`WANDB__DISABLE_STATS=true`, the same for both sides. Every package is imported from compiled "
        "bytecode, as after `pip install` (the harness byte-compiles `src/` and `benchmarks/` first and drops "
        "`PYTHONDONTWRITEBYTECODE` from the workers' environment: this machine sets it, and before, each "
        "worker compiled our ~30 modules from source, 34 ms, while wandb's were compiled at install).",
        f"- Timed window: from the start of step {config['warmup']} to the start of step "
        f"{config['warmup']} + N (N = {steps}), measured by a timing callback of the framework itself"
        f"{_sizing(config)}. "
        f"{_turns_text(config)}"
        "Overhead per logged step = (window of the variant - window of no logger in the same repetition) / "
        "N; median and [min..max] over repetitions. *Ratio, best of reps*: min(variant) - min(no logger). "
        "*CPU ratio*: the training process's CPU (all its threads) added per step. *Ratio incl. finish* adds "
        "the time from the end of training until the run is finished (the backlog drained there).",
        "- Whole-process CPU: the worker process and every child it waited for (wandb-core, our logging "
        "helper): `os.wait4` for a forked training worker (from the fork to its exit: the imports every "
        "variant shares are not in it, ours is), `getrusage(RUSAGE_CHILDREN)` for a fresh process (its "
        "imports included).",
        "- End to end and sustained throughput (`benchmarks/e2e.py`, under the defaults): a loop that only "
        "logs (native `run.log`, ours `Session.log`), from the first line of the script (before any import) to "
        "the run finished, `finish()`'s drain included; *rows/s* = rows / (loop + finish), judged for the wide "
        "and narrow loops (the sustained-throughput goal; for the short run of 20 rows it times `finish()`). "
        "Each repetition runs the variants back to back in fresh processes; a ratio to native is taken within "
        "each repetition and the table gives the median and range of those paired ratios (the machine's speed "
        "drifts over tens of seconds, by as much as the differences measured). The narrow loop then gets more "
        "pairs of native and ours (the default sink), up to eight in all as the time budget allows: from one "
        "process to the next both sides switch between a fast and a slow mode, so a few pairs are a draw.",
        "- Rows: every offline run is read back and its history rows counted: nothing may be lost for speed.",
        "- Checkpoints: a plain loop saves `torch.save` files and hands each to W&B: native = "
        '`wandb.Artifact` + `add_file` + `run.log_artifact`, ours = `Session(log_model="all").log_checkpoint`. '
        "Only that call is timed.",
        "",
        f"## Results ({meta['started']})",
        "",
        f"Machine: {meta['machine']}. Load average at start/end: {meta['load_start']} / {meta['load_end']} "
        f"(other processes were running). {versions}. The full run took {meta['duration_s']:.0f} s"
        f"{_over_budget(results)}.",
        "",
        "### Summary",
        "",
    ]
    out += [f"- {line}" for line in _verdicts(results)]
    for name, title in (
        ("defaults", "Defaults"),
        ("quiet", "Quiet (`WANDB_CONSOLE=off`, no bars)"),
    ):
        if _training(results, name):
            out += [
                "",
                f"### {title}: per logged step (training-thread wall time; median [min..max]; goal: ratio <= "
                f"{STEP_RATIO_GOAL})",
                "",
                training_table(results, name),
            ]
    for name, title in (("defaults", "Whole process, defaults"), ("quiet", "Whole process, quiet")):
        if _training(results, name):
            out += ["", f"### {title}", "", process_table(results, name)]
    if results.get("e2e"):
        out += [
            "",
            "### End to end and sustained throughput (defaults; a loop that only logs)",
            "",
            e2e_table(results),
        ]
    if results.get("checkpoint"):
        out += [
            "",
            f"### Checkpoint hand-over (goal: ratio <= {CHECKPOINT_RATIO_GOAL})",
            "",
            "Blocking time on the training thread per save; *finish* is the time `finish()` then took.",
            "",
            checkpoint_table(results),
        ]
    if results.get("startup"):
        out += [
            "",
            f"### Import and start-up (goal: `import wandb_bridge` under {IMPORT_GOAL_MS:.0f} ms; a session "
            "starts no slower than `wandb.init`)",
            "",
            startup_table(results),
            "",
            "One history row with nothing else running:",
            "",
            row_cost_table(results),
        ]
        if line_cost_table(results):
            out += [
                "",
                "One printed line with wandb's console capture on (3,000 `print` calls in a row, each "
                "a fresh process per variant; the thread's CPU is what training pays):",
                "",
                line_cost_table(results),
            ]
    sinks = _sink_lines(results)
    if sinks:
        out += ["", "## Which row sink", "", *SINK_TEXT, ""] + [f"- {n}" for n in sinks]
    out += ["", "## Reading the numbers", ""] + [f"- {n}" for n in READING]
    notes = list(results.get("notes", []))
    if any("native" in fw.get("unavailable", {}) for fw in results.get("training", {}).values()):
        notes.append(
            "Keras: wandb's Keras integration (`wandb.integration.keras`) imports TensorFlow, which is not "
            "installed here, so ours is compared with no logger only."
        )
    errors = results.get("errors", [])
    if errors:
        notes.append(f"{len(errors)} run(s) failed in this run; see `errors` in the JSON file.")
    if notes:
        out += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(out) + "\n"


SINK_TEXT = [
    "wandb-bridge ships two row sinks: the in-process sink (our background thread calls `run.log`) and "
    "the logging process (a helper process attached to the same run calls `run.log`), and a rule that "
    'picks between them, `log_process="auto"`, the default (`True` and `False` force one). The logging '
    "process takes wandb's per-row Python work (about 100 us per row of 10 keys, 3 ms per row of 1,000) "
    "off the training process's GIL, which is what the per-step goal needs when rows are frequent; it "
    "adds the hand-over of each row and a finish of its own. Where it is safe (Linux, one Python thread, "
    "no wandb service yet, under 1 GiB resident) it is forked from the training process right before "
    "`wandb.init`: wandb is imported already, so it costs about 2 ms and no CPU while it waits, and about"
    " 10 ms of CPU to attach to the run (what attaching imports, wandb's launch-inputs module, is imported "
    "before the fork, which `wandb.init` does anyway, at the price of starting the run about 0.1 s later); "
    'with `log_process="auto"` a waiting helper is forked only for a process that trains (torch, JAX, '
    "TensorFlow or Keras imported, or a plan of rows): a script that does not train would never use it, and "
    "the fork with the pages it copies cost the 20-row script 0.03 to 0.06 s of CPU. Elsewhere it is a fresh "
    "interpreter that imports "
    "wandb again (about 0.45 s of CPU, and 0.25 s more to attach). The end-to-end table shows what it "
    "costs a run that is short, or that does "
    "nothing but log: there the logging process from the start is the slowest variant and the in-process "
    "sink the fastest. So the default logs its first 16 rows in-process (a forked helper waiting, if any), "
    "measuring what a row costs the worker, and then looks at the rows in windows of at least 50 rows and "
    "0.02 s of the training thread's clock, before logging them: it hands rows to the logging process "
    "(once; rows keep their order) when logging a window's rows here would take between 1% and 300% of the"
    " training thread's time between them (a loop that does nothing but log: 1,000% and more), i.e. there "
    "is training work between rows for wandb's work to compete with, and enough rows for it to matter, and "
    "the rows are not a backlog (the training thread did not wait for room in the queue, and handed over a "
    "row in the last 0.25 s). It looks before logging because rows logged here while training runs wait "
    "for the GIL (0.3 to 0.9 ms per row beside a loop of 0.1 ms steps, measured): looking after a batch of"
    " a few hundred rows logged here, as before, cost the plain loop's window up to 0.3 s. A run"
    " shorter than a window (tens of rows) or a loop that does nothing but log never uses it. A framework"
    " callback that plans at least 500 rows (transformers: `max_steps / logging_steps`; Lightning: "
    "`max_steps / log_every_n_steps`; Keras: `epochs x steps / log_freq`) gets the forked helper from its"
    " first batch of rows: no look, nothing logged in-process inside the timed window. `tests/test_log_process.py` "
    "checks the rule by counts (a short run uses no helper; a burst and a loop that fills the queue stay "
    "in-process; rows with training between them move to the helper, in order; a planned run and the "
    "Trainer callback use it from the start; a forked helper has the training script's own command line).",
]


READING = [
    "The tiny model is the worst case on purpose: a step of ~0.1 ms (plain loop) to ~1 ms (Trainer loops) "
    "makes per-row and per-line costs visible. With a real model the same absolute costs are a much smaller "
    "fraction of a step.",
    "The same code reads differently from one machine to the next, more than from one repetition to the next. "
    "On the AMD EPYC VMs of 2026-12-02 (eight runs, 2 to 4 repetitions each) the "
    "defaults' Lightning row ranged from 0.04 to 0.41 of native between runs, and single repetitions from "
    "-0.08 to 0.40; ours stayed at 60 to 350 us per step there while native's own overhead went from 400 to "
    "2,900. On the Intel Xeon VM of 2026-12-03 every repetition of every training row stayed at or "
    "under 0.22, in both of that day's full runs (12:08 and 13:16). On the AMD EPYC VM of 2026-12-06 "
    "(the run above) the training rows read 0.06 to 0.27, single repetitions up to 0.43 (Lightning). "
    "`python -m benchmarks.logger_call` separates the time inside the logger call "
    "from the rest of the step ([performance-breakdown.md](performance-breakdown.md)): the spread comes "
    "from outside our call, from wandb's per-row work beside training.",
    "The transformers Trainer with its tqdm bar was the last default configuration above the goal "
    "(0.30 to 0.38 of native): `tqdm.write` alternates stdout and stderr, so joining adjacent writes left "
    "about two records per step (3,080 records for 7,679 writes), each a protobuf and a hand-over to "
    "wandb's asyncio thread competing with training for the GIL. Handing a bar's redraws over after the "
    "lines printed meanwhile (see *console capture in batches*) makes it a few records per burst, with "
    "the same Logs text.",
    "Console capture was the cost users actually had: natively every printed line costs the training "
    "thread two records (a progress bar one per redraw), which on the tiny model is as much as the row "
    "itself. Batched, a burst of output is one record every 0.1 s, from a thread that sleeps otherwise.",
    "The two row sinks trade wall time on the training thread against CPU in total (the default picks "
    "per run, see *Which row sink*). The logging process "
    "takes wandb's per-row Python work (about 100 us per row of 10 keys, 2 ms per row of 1,000 keys) off "
    "the training process, so training waits least when rows are frequent and cores are free; but it "
    "attaches to the run (about 10 ms of CPU forked, 0.7 s spawned) and on two busy cores it competes "
    "with training and wandb-core for CPU. The in-process sink spends no extra start-up and logs a burst of "
    "rows from one background thread; its rows compete with training for the GIL.",
    "Where ours is at parity rather than ahead, and why (measured): *whole-process CPU in Lightning and the "
    "quiet transformers Trainer* (0.90 to 1.08 in the runs of 2026-12-01 and 2026-12-02 up to 03:00 UTC, "
    "whose figures also held each worker's 10 to 12 s of imports; the Summary above has this run's, without "
    "the imports every variant shares): the helper's `run.log` per row costs what "
    "native's costs on the training thread; on top come attaching to the run (about 10 ms of CPU) and the "
    "fork's copy-on-write pages. Until 2026-12-02 07:15 UTC the training process also imported wandb's "
    "launch package before the public API it imports, before each fork: pydantic then extracted the API "
    "models' docstrings the slow way, 1.6 to 1.9 s of CPU with torch and Lightning loaded instead of 0.9 s "
    "(the runs of 06:19 and 06:51 read Lightning at 1.03 to 1.12 of native's whole-process CPU with it). "
    "A full garbage collection in the training process after the fork wrote to "
    "every object it tracks and so copied ~22,000 pages (0.1 to 0.15 s of kernel time in a transformers "
    "run); the objects older than the helper are now frozen out of the collector while it lives "
    "(`gc.freeze()`, as Python's documentation advises for a fork without exec), which leaves ~8,000 pages "
    "copied by the training process's own writes. *The quiet transformers Trainer per step* (0.0 to 0.7 "
    "across runs): our callback costs the training thread about 23 us per step over its five events "
    "(15 of them in `on_log`, measured per event); wandb's patched `sys.stdout.write` costs both sides ~10 us "
    "per printed line; the rest is the training thread's own work running slower while the helper and "
    "wandb-core log a row per step beside it: they take 0.4 to 0.8 s of CPU on the other core during a "
    "1.3 s window (the helper about 110 to 160 us per row, across its own thread and wandb's asyncio "
    "thread), and a busy loop on the other core alone makes the same training 4 to 12% slower in CPU time "
    "(measured with `taskset`). Running the helper as `SCHED_BATCH` or `SCHED_IDLE` changed nothing "
    "(8 interleaved repetitions). The same variant's training-thread CPU over the same 1,500 steps varies "
    "from 1.0 to 1.5 s between repetitions (a run with no logger at all: 0.98 to 1.47 s), more than the "
    "effect. *Loops that only log* (wide and narrow rows, end to end 0.9 to 1.3 and rows/s 0.6 to 1.1 "
    "across runs): both sides end in one thread calling `run.log`, which waits on wandb's asyncio thread "
    "for every row (95 to 135 us per row of 10 keys on the machine of 2026-12-01, most of it that hand-off; "
    "the table *One history row by itself* has this page's figure); ours adds about 10 us per "
    "row (5 on the training thread, 5 to 6 on the worker, measured with `run.log` timed apart), and per "
    "row of 1,000 keys 47 us on the training thread and about 270 us on the worker against about 7 ms of "
    "`run.log` (4%, measured on 2026-12-02, where the full benchmark took 2.6 times as long), so about 0.9 to 0.97 of "
    "native's rate is what a second Python thread in "
    "front of the same `run.log` can give. On 2026-12-06 the worker's part of a row of 1,000 keys went "
    "from 111 to 75 us (the hand-over notes that every value is a plain number, so the worker maps a known "
    "key set without looking at the values again, and the merger keeps the mapped dict instead of copying "
    "it; a batch's rows go to `run.log` once they hold 2,000 values), and a row of 10 keys costs the "
    "worker about 3 us of its own (merge 2, checks 0.6, measured apart). `run.log` itself, the same "
    "call on both sides, took 100 to 220 us per row of 10 keys from one fresh process to the next on that "
    "VM (the same script, 12 processes), and 8 more paired runs of the narrow loop read ours at 0.92 "
    "[0.46..1.33] of native's rows/s: a difference of a few percent is below what this VM can show. "
    "For rows of 1,000 keys wandb-core is the slower side: with one "
    "core busy elsewhere it took 0.63 to 0.73 s of CPU for 200 rows, against 0.40 to 0.42 s of Python "
    "`run.log` on native's training thread and 0.37 to 0.42 s on our worker (3 repetitions each). "
    "Its sender falls behind on both sides (wandb-core's `debug-internal.log`: \"flowcontrol: backed up, "
    'offloading to disk"), and both run files hold the same records (100 rows: 315 records ours, 310 '
    "native, 201 of them summaries on each side; 2026-12-03). Timed apart, ours handed 100 such rows "
    "over in 0.28 to 0.31 s against native's 0.33 to 0.40 s (loop and a summary round trip), and then "
    "waited 0.09 to 0.14 s in wandb's own `run.finish` for wandb-core to catch up, against 0.01 to "
    "0.08 s: the same end, a different split. "
    "The small checkpoint (0.04 to 0.06 of native): one read of the file on the "
    "training thread (four system calls), everything else of the call in the worker.",
    "This machine ran other jobs while measuring: single repetitions can be far off (see the [min..max] "
    "spreads); medians of interleaved repetitions and the CPU columns are more robust than any single figure.",
]


def _workers(config: Mapping[str, Any]) -> str:
    """How the training workers were started (results before 2026-12-02 03:00 had fresh processes only)."""
    if config.get("workers") == "forked":
        return (
            "Every training variant (no logger included) in its own process, forked from a server that "
            "imported torch, the framework, wandb and the worker once (`benchmarks/_forkserver.py`): its own "
            "environment, working folder and wandb folder, its own wandb-core; wandb-bridge is not preloaded, "
            "so its import is counted on our side. The forked worker ends as a normal exit would (threads "
            "joined, `atexit` handlers run: wandb-core is waited for) but without freeing the preloaded "
            "modules one by one. The loops that only log, the checkpoint and start-up figures use a fresh "
            "`python` process per variant."
        )
    return "Each variant in a fresh process."


def _sizing(config: Mapping[str, Any]) -> str:
    """How N was chosen (results before 2026-12-02 06:00 had a fixed table)."""
    sizing = config.get("steps") or {}
    timed = {k: v for k, v in sizing.items() if v.get("from") == "calibration"}
    if not timed:
        return ""
    each = ", ".join(f"{name} {v['step_us']:,.0f} us" for name, v in timed.items())
    first = next(iter(timed.values()))
    return (
        f"; N is sized per framework so that the no-logger window takes about {first.get('window_s', 2):g} s "
        f"here: a short no-logger worker timed {first.get('calibration_steps', 200)} steps first "
        f"({each} per step), capped at the step counts sized on a fast machine"
    )


def _turns_text(config: Mapping[str, Any]) -> str:
    """How a row's variants shared the window (results before 2026-12-02 06:00 ran one after the other)."""
    turn = config.get("turn_s")
    if not turn:
        return ""
    lead = config.get("lead_s", 0.1)
    return (
        "A row's variants run at the same time, each in its own process, and take the window in turns "
        f"(`benchmarks/_turns.py`): each turn is {lead:g} s of untimed steps (the logger back at its steady "
        f"state: rows in flight to its thread or process) and then {turn:g} s of timed steps, handed on at a "
        "step's start, one process at a time. So no two timed stretches overlap, and every variant meets the "
        "machine within a second of the others: this VM's own speed drifts by 10 to 30% over seconds, as "
        "much as the overhead measured, and one variant after another met a different machine each. Without "
        "the lead-in, short turns read our plain-loop overhead at a third of its value (70 to 115 us/step at "
        "0.1 s turns against 225 at 1 s: rows still in flight were handled while another variant trained); "
        "with it, 0.25 s and 1 s turns agree within their noise. The window's figures are the timed steps' "
        "times scaled to N. Start-up, warm-up and `finish()` overlap between variants; none of it is timed. "
    )


def _over_budget(results: Mapping[str, Any]) -> str:
    """The machine's Python speed, and why a run took longer than its budget (empty for older results)."""
    meta, config = results["meta"], results.get("config", {})
    speed = meta.get("python_speed_s")
    if speed is None:
        return ""
    text = f" (a pure-Python loop of 10 million additions: {speed:.2f} s here)"
    budget = float(config.get("budget_s") or 0)
    if budget > 0 and meta["duration_s"] > budget * 1.05:
        outside = [
            run["none"]["wall_s"] - run["none"]["window_s"]
            for entry in results.get("training", {}).values()
            for run in entry.get("runs", [])
            if "wall_s" in run.get("none", {}) and "window_s" in run["none"]
        ]
        text += f", over its {budget:.0f} s budget: every section runs its minimum repetitions however long they take"
        if outside:
            where = "start-up and exit" if config.get("workers") == "forked" else "imports, start-up, exit"
            text += (
                f", and here a training worker with no logger at all spent {min(outside):.0f} to "
                f"{max(outside):.0f} s of its process outside the timed window ({where})"
            )
        sections = meta.get("section_s", {})
        if sections:
            text += " (seconds per section: " + ", ".join(f"{k} {v:.0f}" for k, v in sections.items()) + ")"
        text += "; the budget was set on a machine where the whole run took 540 s (a fresh process per variant)"
    return text


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
