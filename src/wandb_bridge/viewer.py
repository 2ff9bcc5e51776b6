"""``wandb-bridge show``: look at offline runs without a W&B server.

For air-gapped clusters, CI logs and a quick check before ``wandb sync``: each
run's header (id, name, project, group, state), config, summary, artifacts and
one compact line per metric (count, first, last, min, max and a sparkline
against ``trainer/global_step``). ``--json`` prints the same information as one
JSON document; ``--plot`` draws chosen keys of all given runs with matplotlib
(the ``plot`` extra).

Runs are read with :func:`wandb_bridge.testing.read_run`, which imports
``wandb`` (for its protobuf classes) only when a file is parsed. Importing this
module imports neither wandb nor matplotlib.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Any, TextIO, cast

from wandb_bridge.core.metrics import STEP_KEY
from wandb_bridge.testing.reader import RunFileError, RunRecord, find_run_files, read_run

__all__ = [
    "MetricStats",
    "configure_parser",
    "metric_stats",
    "plot_keys",
    "render_run",
    "run_command",
    "run_state",
    "run_to_json",
    "show",
    "sparkline",
    "write_plot",
]

WIDTH = 100
"""Every line of the text view fits this many columns."""

SPARK_WIDTH = 30
"""Maximum sparkline length; longer series are averaged down to this many characters."""

FALLBACK_STEP_KEY = "_step"
DEFAULT_PLOT_KEYS = ("train/loss", "val/loss")
_PLOT_FALLBACK_KEYS = 4
_MAX_ARTIFACT_LINES = 12
_KEY_WIDTH_CAP = 36
_NUM_WIDTH = 9
_COUNT_WIDTH = 5
_STAGE_ORDER = {"train": 0, "val": 1, "test": 2}
_PLOT_HINT = 'pip install "wandb-bridge[plot]"'


@dataclass(frozen=True)
class _Glyphs:
    bars: str
    gap: str
    ellipsis: str
    rule: str
    arrow: str
    dot: str


_UNICODE = _Glyphs(bars="▁▂▃▄▅▆▇█", gap="·", ellipsis="…", rule="─", arrow="→", dot="·")
_ASCII = _Glyphs(bars="_.-~=+*#", gap=" ", ellipsis="~", rule="-", arrow="->", dot="|")


# ---------------------------------------------------------------------------
# Statistics


@dataclass(frozen=True)
class MetricStats:
    """Statistics of one history key of a run.

    Attributes:
        key: The history key (``"train/loss"``).
        step_key: The key the values are ordered by: ``trainer/global_step``,
            or ``_step`` when some rows with this key lack it.
        count: Number of numeric values (NaN and infinities included).
        nonfinite: How many of them are NaN or infinite.
        first: The value at the lowest step (may be NaN).
        last: The value at the highest step (may be NaN).
        min: Smallest finite value, ``None`` if there is none.
        max: Largest finite value, ``None`` if there is none.
        mean: Mean of the finite values, ``None`` if there is none.
        first_step: The lowest step with a value.
        last_step: The highest step with a value.
        sparkline: The values as a sparkline (see :func:`sparkline`).
    """

    key: str
    step_key: str
    count: int
    nonfinite: int
    first: float
    last: float
    min: float | None
    max: float | None
    mean: float | None
    first_step: float | None
    last_step: float | None
    sparkline: str


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_step_key(key: str) -> bool:
    return key.startswith(("trainer/", "_"))


def _key_order(key: str) -> tuple[int, str]:
    return (_STAGE_ORDER.get(key.split("/", 1)[0], len(_STAGE_ORDER)), key)


@dataclass
class _Series:
    """The numeric values of one key, with the steps of their rows (``None`` where a row lacks one)."""

    global_steps: list[float | None] = field(default_factory=list)
    steps: list[float | None] = field(default_factory=list)
    values: list[float] = field(default_factory=list)


@dataclass
class _Digest:
    """One pass over a run's history: numeric series per metric key, media and other keys."""

    series: dict[str, _Series]
    media: dict[str, str]
    others: list[str]


_NUMBER_TYPES = (int, float)


def _as_step(value: Any) -> float | None:
    return value if type(value) in _NUMBER_TYPES or _is_number(value) else None


def _digest(run: RunRecord) -> _Digest:
    step_keys: dict[str, bool] = {}
    series: dict[str, _Series] = {}
    media: dict[str, str] = {}
    others: dict[str, None] = {}
    for row in run.history:
        global_step = _as_step(row.get(STEP_KEY))
        step = _as_step(row.get(FALLBACK_STEP_KEY))
        for key, value in row.items():
            is_step = step_keys.get(key)
            if is_step is None:
                is_step = step_keys[key] = _is_step_key(key)
            if is_step:
                continue
            if type(value) in _NUMBER_TYPES or _is_number(value):
                points = series.get(key)
                if points is None:
                    points = series[key] = _Series()
                points.global_steps.append(global_step)
                points.steps.append(step)
                points.values.append(value)
            elif key.endswith("._type"):
                media.setdefault(key[: -len("._type")], str(value))
            else:
                others.setdefault(key, None)
    if media:
        inside = tuple(f"{prefix}." for prefix in media)
        series = {key: points for key, points in series.items() if not key.startswith(inside)}
        others = {key: None for key in others if not key.startswith(inside)}
    return _Digest(
        series=series,
        media=dict(sorted(media.items(), key=lambda item: _key_order(item[0]))),
        others=sorted((key for key in others if key not in series), key=_key_order),
    )


def _pairs(points: _Series) -> tuple[str, list[tuple[float, float]]]:
    """``(step, value)`` pairs sorted by step (stable), against ``trainer/global_step`` or ``_step``."""
    for steps, step_key in ((points.global_steps, STEP_KEY), (points.steps, FALLBACK_STEP_KEY)):
        if None not in steps:
            known = cast("list[float]", steps)
            return step_key, sorted(zip(known, points.values, strict=True), key=itemgetter(0))
    return "row", [(float(index), value) for index, value in enumerate(points.values)]


def _series(run: RunRecord, key: str, digest: _Digest | None = None) -> tuple[str, list[tuple[float, float]]]:
    """Numeric ``(step, value)`` pairs of ``key``, sorted by step, and the step key used."""
    points = (digest or _digest(run)).series.get(key)
    return _pairs(points) if points else (STEP_KEY, [])


def sparkline(values: Sequence[float], width: int = SPARK_WIDTH, *, ascii_only: bool = False) -> str:
    """Draw ``values`` as a one-line chart of block characters.

    A series longer than ``width`` is split into ``width`` consecutive chunks,
    each drawn as the mean of its values. A chunk holding a NaN or an infinite
    value is drawn as a gap (``·``), so a NaN stays visible however long the
    run. A constant series is drawn at mid height.

    Args:
        values: The values, in step order.
        width: The most characters to draw.
        ascii_only: Use ``_.-~=+*#`` (and a space for gaps) instead of ``▁``..``█``.

    Returns:
        At most ``width`` characters; empty for no values.
    """
    glyphs = _ASCII if ascii_only else _UNICODE
    count = len(values)
    if count == 0 or width <= 0:
        return ""
    slots = min(width, count)
    chunks: list[float | None] = []
    for index in range(slots):
        chunk = values[index * count // slots : (index + 1) * count // slots]
        total = sum(chunk)
        if math.isfinite(total):
            chunks.append(total / len(chunk))
        elif any(not math.isfinite(v) for v in chunk):
            chunks.append(None)
        else:  # finite values whose sum overflows
            chunks.append(sum(v / len(chunk) for v in chunk))
    finite = [v for v in chunks if v is not None]
    if not finite:
        return glyphs.gap * slots
    low, high = min(finite), max(finite)
    top = len(glyphs.bars) - 1
    out = []
    for value in chunks:
        if value is None:
            out.append(glyphs.gap)
        elif high == low:
            out.append(glyphs.bars[top // 2])
        else:
            out.append(glyphs.bars[round((value - low) / (high - low) * top)])
    return "".join(out)


def metric_stats(run: RunRecord, *, spark_width: int = SPARK_WIDTH, ascii_only: bool = False) -> list[MetricStats]:
    """Compute :class:`MetricStats` for every numeric history key of ``run``.

    Step keys (``trainer/*``, ``_step``, ``_runtime``, ``_timestamp``) are not
    metrics and are left out; so are keys that never hold a number (text) and
    the fields of logged media (tables, histograms). Keys are ordered
    ``train/``, ``val/``, ``test/``, then the rest, alphabetically within each
    group.

    Args:
        run: The run.
        spark_width: Sparkline length.
        ascii_only: ASCII sparklines.

    Returns:
        One entry per metric.
    """
    return _stats(_digest(run), spark_width, ascii_only)


def _stats(digest: _Digest, spark_width: int, ascii_only: bool) -> list[MetricStats]:
    stats = []
    for key in sorted(digest.series, key=_key_order):
        step_key, pairs = _pairs(digest.series[key])
        values = [value for _, value in pairs]
        finite = [value for value in values if math.isfinite(value)]
        stats.append(
            MetricStats(
                key=key,
                step_key=step_key,
                count=len(values),
                nonfinite=len(values) - len(finite),
                first=values[0],
                last=values[-1],
                min=min(finite) if finite else None,
                max=max(finite) if finite else None,
                mean=sum(finite) / len(finite) if finite else None,
                first_step=pairs[0][0] if step_key != "row" else None,
                last_step=pairs[-1][0] if step_key != "row" else None,
                sparkline=sparkline(values, spark_width, ascii_only=ascii_only),
            )
        )
    return stats


# ---------------------------------------------------------------------------
# Run-level facts


def run_state(run: RunRecord) -> str:
    """Describe how the run ended, in a few words.

    Args:
        run: The run.

    Returns:
        ``"finished, exit code 0"``, ``"failed, exit code 1"``, ``"not finished
        (still running, or killed)"``, followed by ``"; preempting"`` and
        ``"; truncated file (last record incomplete)"`` where they apply.
    """
    if run.finished:
        state = f"finished, exit code {run.exit_code}" if run.exit_code == 0 else f"failed, exit code {run.exit_code}"
    else:
        state = "not finished (still running, or killed)"
    if run.preempting:
        state += "; preempting (marked for requeue)"
    if run.truncated:
        state += "; truncated file (last record incomplete)"
    return state


def _state_word(run: RunRecord) -> str:
    if run.finished:
        return "finished" if run.exit_code == 0 else "failed"
    return "preempting" if run.preempting else "not_finished"


def _flatten(value: Mapping[str, Any], sep: str, prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, item in value.items():
        name = f"{prefix}{sep}{key}" if prefix else str(key)
        if isinstance(item, Mapping) and item and "_type" not in item:
            flat.update(_flatten(item, sep, name))
        else:
            flat[name] = item
    return flat


def _step_range(run: RunRecord) -> tuple[str, float, float] | None:
    for step_key in (STEP_KEY, FALLBACK_STEP_KEY):
        steps = [row[step_key] for row in run.history if _is_number(row.get(step_key))]
        if steps:
            return step_key, min(steps), max(steps)
    return None


def _runtime(run: RunRecord) -> float | None:
    times = [row["_runtime"] for row in run.history if _is_number(row.get("_runtime"))]
    return max(times) if times else None


def _artifact_size(files: Mapping[str, Mapping[str, Any]]) -> int:
    return sum(int(entry.get("size") or 0) for entry in files.values())


def _natural(text: str) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def _sorted_aliases(aliases: Iterable[str]) -> list[str]:
    first = {"best": 0, "latest": 1}
    return sorted(dict.fromkeys(aliases), key=lambda alias: (first.get(alias, 2), _natural(alias)))


# ---------------------------------------------------------------------------
# Text view


def _num(value: Any, width: int = _NUM_WIDTH) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool) or not _is_number(value):
        return str(value)
    if isinstance(value, int):
        text = str(value)
        return text if len(text) <= width else f"{value:.3g}"
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value.is_integer() and abs(value) < 10 ** (width - 1):
        return str(int(value))
    for digits in (6, 5, 4, 3, 2, 1):
        text = f"{value:.{digits}g}"
        if len(text) <= width:
            return text
    return text


def _value_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if _is_number(value):
        return _num(value, 16)
    if isinstance(value, Mapping) and "_type" in value:
        return f"<{value['_type']}>"
    return json.dumps(value, default=str, allow_nan=True)


def _shorten(text: str, width: int, glyphs: _Glyphs) -> str:
    text = " ".join(text.split()) if "\n" in text else text
    if len(text) <= width:
        return text
    return text[: max(width - len(glyphs.ellipsis), 0)] + glyphs.ellipsis


def _shorten_middle(text: str, width: int, glyphs: _Glyphs) -> str:
    if len(text) <= width:
        return text
    keep = width - len(glyphs.ellipsis)
    head = (keep + 1) // 2
    return text[:head] + glyphs.ellipsis + text[len(text) - (keep - head) :]


def _pairs_block(pairs: Sequence[tuple[str, str]], glyphs: _Glyphs) -> list[str]:
    key_width = min(max((len(key) for key, _ in pairs), default=0), _KEY_WIDTH_CAP)
    value_width = WIDTH - 4 - key_width - 2
    return [
        f"    {_shorten_middle(key, key_width, glyphs):<{key_width}}  {_shorten(value, value_width, glyphs)}"
        for key, value in pairs
    ]


def render_run(run: RunRecord, *, ascii_only: bool = False) -> str:
    """Render one run as text lines that fit :data:`WIDTH` columns.

    Args:
        run: The run.
        ascii_only: Use only ASCII characters (for terminals and logs that
            cannot show the block characters).

    Returns:
        The text, ending with a newline.
    """
    g = _ASCII if ascii_only else _UNICODE
    lines: list[str] = []
    title = f"{g.rule * 2} run {run.run_id}" + (f" {g.dot} {run.name}" if run.name else "") + " "
    lines.append(_shorten(title, WIDTH, g) + g.rule * max(WIDTH - len(title), 0))

    header: list[tuple[str, str]] = []
    where = " / ".join(part for part in (run.entity, run.project) if part)
    header.append(("project", where or "-"))
    if run.group or run.job_type:
        header.append(("group", f"{run.group or '-'} {g.dot} job type {run.job_type or '-'}"))
    if run.tags:
        header.append(("tags", ", ".join(run.tags)))
    if run.notes:
        header.append(("notes", run.notes))
    header.append(("state", run_state(run)))
    history = f"{len(run.history)} rows"
    span = _step_range(run)
    if span is not None:
        history += f" {g.dot} {span[0]} {_num(span[1])} {g.arrow} {_num(span[2])}"
    runtime = _runtime(run)
    if runtime is not None:
        history += f" {g.dot} {runtime:.1f} s"
    header.append(("history", history))
    header.append(("file", _shorten_middle(str(run.path), WIDTH - 15, g)))
    if run.wandb_version:
        header.append(("wandb", run.wandb_version + (" (resumed run)" if run.resumed else "")))
    lines.extend(f"  {key:<9}{_shorten(value, WIDTH - 11, g)}" for key, value in header)

    config = _flatten(run.config, "/")
    lines.append(f"  config ({len(config)})" if config else "  config: none")
    lines.extend(_pairs_block([(key, _value_text(config[key])) for key in sorted(config)], g))

    summary = {k: v for k, v in _flatten(run.summary, ".").items() if not k.startswith("_")}
    lines.append(f"  summary ({len(summary)})" if summary else "  summary: none")
    lines.extend(_pairs_block([(key, _value_text(summary[key])) for key in sorted(summary, key=_key_order)], g))

    lines.extend(_artifact_lines(run, g))
    lines.extend(_metric_lines(run, g, ascii_only))
    return "\n".join(line[:WIDTH].rstrip() for line in lines) + "\n"


def _artifact_lines(run: RunRecord, g: _Glyphs) -> list[str]:
    arts = run.artifacts
    if not arts and not run.used_artifacts:
        return ["  artifacts: none"]
    lines = [f"  artifacts ({len(arts)})"]
    rows = []
    for art in arts:
        count = len(art.files)
        rows.append(
            (
                art.name,
                art.type,
                f"{count} file" + ("" if count == 1 else "s"),
                _size(_artifact_size(art.files)),
                ", ".join(_sorted_aliases(art.aliases)) or "-",
            )
        )
    widths = [min(max((len(row[i]) for row in rows), default=0), cap) for i, cap in enumerate((36, 12, 10, 10))]
    shown: list[tuple[str, ...] | None] = list(rows)
    if len(rows) > _MAX_ARTIFACT_LINES:
        head = 4
        tail = _MAX_ARTIFACT_LINES - head - 1
        shown = [*rows[:head], None, *rows[-tail:]]
    used = 4 + sum(widths) + 2 * len(widths)
    for row in shown:
        if row is None:
            lines.append(f"    {g.ellipsis} {len(rows) - _MAX_ARTIFACT_LINES + 1} more (see --json)")
            continue
        name, kind, files, size, aliases = row
        lines.append(
            f"    {_shorten_middle(name, widths[0], g):<{widths[0]}}  {_shorten(kind, widths[1], g):<{widths[1]}}  "
            f"{files:>{widths[2]}}  {size:>{widths[3]}}  {_shorten(aliases, WIDTH - used, g)}"
        )
    for art in run.used_artifacts:
        lines.append(f"    used: {art.name} ({art.type})")
    return lines


def _size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover - loop always returns


def _metric_lines(run: RunRecord, g: _Glyphs, ascii_only: bool) -> list[str]:
    digest = _digest(run)
    keys = digest.series
    if not keys:
        lines = ["  metrics: none"]
    else:
        key_width = min(max(len("metric"), *(len(key) for key in keys)), _KEY_WIDTH_CAP)
        fixed = 4 + key_width + 1 + _COUNT_WIDTH + 4 * (1 + _NUM_WIDTH) + 2
        spark_width = max(10, min(SPARK_WIDTH, WIDTH - fixed))
        stats = _stats(digest, spark_width, ascii_only)
        axes = sorted({s.step_key for s in stats}, key=lambda k: (k != STEP_KEY, k))
        lines = [f"  metrics ({len(stats)}) against {', '.join(axes)}"]
        heads = ("first", "last", "min", "max")
        lines.append(
            f"    {'metric':<{key_width}} {'count':>{_COUNT_WIDTH}}"
            + "".join(f" {head:>{_NUM_WIDTH}}" for head in heads)
            + "  trend"
        )
        for s in stats:
            numbers = "".join(f" {_num(v):>{_NUM_WIDTH}}" for v in (s.first, s.last, s.min, s.max))
            key = _shorten_middle(s.key, key_width, g)
            lines.append(f"    {key:<{key_width}} {s.count:>{_COUNT_WIDTH}}{numbers}  {s.sparkline}")
        if any(s.nonfinite for s in stats):
            bad = ", ".join(f"{s.key} ({s.nonfinite})" for s in stats if s.nonfinite)
            lines.append(_shorten(f"    non-finite values (drawn as '{g.gap}'): {bad}", WIDTH, g))
    others = [f"{key} ({kind})" for key, kind in digest.media.items()] + digest.others
    if others:
        lines.append(_shorten(f"    media and other non-numeric keys: {', '.join(others)}", WIDTH, g))
    return lines


# ---------------------------------------------------------------------------
# JSON view


def _json_safe(value: Any) -> Any:
    """Replace NaN and infinities with ``None`` (strict JSON has no such numbers)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def run_to_json(run: RunRecord, *, ascii_only: bool = False) -> dict[str, Any]:
    """The information of the text view as a JSON-ready dict.

    NaN and infinite values become ``null`` (``metrics[key]["nonfinite"]``
    counts them); config is flattened with ``/`` like the text view; summary
    stays nested as recorded.

    Args:
        run: The run.
        ascii_only: ASCII sparklines.

    Returns:
        A dict of plain JSON types.
    """
    span = _step_range(run)
    digest = _digest(run)
    data: dict[str, Any] = {
        "run_id": run.run_id,
        "name": run.name,
        "project": run.project,
        "entity": run.entity,
        "group": run.group,
        "job_type": run.job_type,
        "tags": list(run.tags),
        "notes": run.notes,
        "path": str(run.path),
        "folder": str(run.folder),
        "state": _state_word(run),
        "state_text": run_state(run),
        "finished": run.finished,
        "exit_code": run.exit_code,
        "preempting": run.preempting,
        "truncated": run.truncated,
        "resumed": run.resumed,
        "wandb_version": run.wandb_version,
        "history_rows": len(run.history),
        "step_key": span[0] if span else None,
        "first_step": span[1] if span else None,
        "last_step": span[2] if span else None,
        "runtime_s": _runtime(run),
        "config": _flatten(run.config, "/"),
        "summary": run.summary,
        "artifacts": [
            {
                "name": art.name,
                "type": art.type,
                "aliases": _sorted_aliases(art.aliases),
                "file_count": len(art.files),
                "size_bytes": _artifact_size(art.files),
                "files": sorted(art.files),
                "digest": art.digest,
                "metadata": art.metadata,
            }
            for art in run.artifacts
        ],
        "used_artifacts": [{"name": art.name, "type": art.type} for art in run.used_artifacts],
        "metrics": {
            s.key: {
                "count": s.count,
                "nonfinite": s.nonfinite,
                "first": s.first,
                "last": s.last,
                "min": s.min,
                "max": s.max,
                "mean": s.mean,
                "step_key": s.step_key,
                "first_step": s.first_step,
                "last_step": s.last_step,
                "sparkline": s.sparkline,
            }
            for s in _stats(digest, SPARK_WIDTH, ascii_only)
        },
        "media": digest.media,
        "non_numeric_keys": digest.others,
    }
    safe: dict[str, Any] = _json_safe(data)
    return safe


# ---------------------------------------------------------------------------
# Plot


def _load_matplotlib() -> tuple[Any, Any]:
    """Import matplotlib's ``Figure`` and Agg canvas (no pyplot, no window, no global backend switch)."""
    figure = importlib.import_module("matplotlib.figure")
    agg = importlib.import_module("matplotlib.backends.backend_agg")
    return figure.Figure, agg.FigureCanvasAgg


def plot_keys(runs: Sequence[RunRecord], keys: Sequence[str] | None) -> tuple[list[str], list[str]]:
    """Choose the keys to plot.

    Args:
        runs: The runs.
        keys: Keys asked for, or ``None`` for the default (``train/loss`` and
            ``val/loss`` where present, otherwise the first four metrics).

    Returns:
        ``(keys found in at least one run, keys asked for but found in none)``.
    """
    present: dict[str, None] = {}
    for run in runs:
        for key in sorted(_digest(run).series, key=_key_order):
            present.setdefault(key, None)
    if keys is None:
        chosen = [key for key in DEFAULT_PLOT_KEYS if key in present]
        return (chosen or sorted(present, key=_key_order)[:_PLOT_FALLBACK_KEYS]), []
    found = [key for key in keys if key in present]
    return found, [key for key in keys if key not in present]


def write_plot(runs: Sequence[RunRecord], keys: Sequence[str], path: str | Path) -> Path:
    """Draw ``keys`` of all ``runs`` against ``trainer/global_step`` into an image file.

    One panel per key, one line per run (the same colour for a run in every
    panel). A run whose rows lack ``trainer/global_step`` is drawn against
    ``_step``. NaN values leave gaps. Uses matplotlib's Agg canvas: no window
    is opened and pyplot's global state is not touched.

    Args:
        runs: The runs.
        keys: History keys, one panel each.
        path: The output file; the format follows its suffix (``.png``,
            ``.svg``, ``.pdf``, ...).

    Returns:
        The file written.

    Raises:
        ImportError: matplotlib is not installed (the message names the extra).
    """
    try:
        figure_cls, canvas_cls = _load_matplotlib()
    except ImportError as exc:
        raise ImportError(f"--plot needs matplotlib, which is not installed: {_PLOT_HINT}") from exc
    out = Path(path)
    fig = figure_cls(figsize=(9.0, 1.0 + 2.6 * len(keys)), dpi=100, layout="constrained")
    canvas_cls(fig)
    axes = fig.subplots(len(keys), 1, sharex=True, squeeze=False)[:, 0]
    x_labels: set[str] = set()
    styles = ("-", "--", ":", "-.")
    digests = [_digest(run) for run in runs]
    for panel, key in zip(axes, keys, strict=True):
        for index, run in enumerate(runs):
            step_key, pairs = _series(run, key, digests[index])
            if not pairs:
                continue
            x_labels.add(step_key)
            label = f"{run.name} ({run.run_id})" if run.name else run.run_id
            panel.plot(
                [x for x, _ in pairs],
                [y for _, y in pairs],
                color=f"C{index % 10}",
                linestyle=styles[(index // 10) % len(styles)],
                marker="o" if len(pairs) <= 25 else None,
                markersize=3,
                linewidth=1.4,
                label=label,
            )
        panel.set_title(key, loc="left", fontsize=10)
        panel.grid(True, alpha=0.3)
        panel.legend(fontsize=8 if len(runs) <= 6 else 6, loc="best")
    axes[-1].set_xlabel(" / ".join(sorted(x_labels, key=lambda k: (k != STEP_KEY, k))) or STEP_KEY)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return out


# ---------------------------------------------------------------------------
# Command line


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``wandb-bridge show`` to ``parser``.

    Args:
        parser: The subcommand's parser.
    """
    parser.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="an offline run folder, a run-*.wandb file, or a folder above runs (every run under it)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document (a list of runs) and nothing else")
    parser.add_argument("--ascii", action="store_true", help="ASCII only (no block characters)")
    parser.add_argument(
        "--plot", metavar="OUT", default=None, help="also write a chart of --keys to OUT (.png, .svg, .pdf)"
    )
    parser.add_argument(
        "--keys",
        default=None,
        help="comma-separated keys for --plot (default: train/loss,val/loss where present)",
    )


def run_command(args: argparse.Namespace) -> int:
    """Run ``wandb-bridge show`` with parsed arguments (see :func:`configure_parser`).

    Args:
        args: The parsed arguments.

    Returns:
        The exit code.
    """
    keys = [key.strip() for key in args.keys.split(",") if key.strip()] if args.keys else None
    return show(args.paths, as_json=args.json, plot=args.plot, keys=keys, ascii_only=args.ascii)


def _supports_unicode(stream: TextIO) -> bool:
    encoding = getattr(stream, "encoding", None) or "utf-8"
    try:
        (_UNICODE.bars + _UNICODE.gap + _UNICODE.ellipsis + _UNICODE.rule + _UNICODE.arrow).encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def _collect(paths: Sequence[str | Path], err: TextIO) -> tuple[list[RunRecord], bool]:
    """Read every run under ``paths``; report problems on ``err`` and go on."""
    runs: list[RunRecord] = []
    failed = False
    seen: set[Path] = set()
    for raw in paths:
        path = Path(raw)
        try:
            files = find_run_files(path)
        except FileNotFoundError:
            print(f"wandb-bridge show: {path}: no such file or folder", file=err)
            failed = True
            continue
        if not files:
            print(f"wandb-bridge show: {path}: no W&B offline run here (no run-*.wandb file under it)", file=err)
            failed = True
            continue
        for file in files:
            resolved = file.resolve()
            if resolved in seen:
                continue
            seen.add(resolved)
            try:
                runs.append(read_run(file))
            except RunFileError as exc:
                print(
                    f"wandb-bridge show: {exc.path}: corrupt run file, {exc.reason} (at byte offset {exc.offset})",
                    file=err,
                )
                failed = True
            except OSError as exc:
                print(f"wandb-bridge show: {file}: cannot read: {exc.strerror or exc}", file=err)
                failed = True
    return runs, failed


def show(
    paths: Sequence[str | Path],
    *,
    as_json: bool = False,
    plot: str | Path | None = None,
    keys: Sequence[str] | None = None,
    ascii_only: bool = False,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Show the offline runs under ``paths`` (the ``wandb-bridge show`` command).

    A file that cannot be read is reported on ``err`` in one line naming it,
    and the other runs are still shown.

    Args:
        paths: Run folders, ``run-*.wandb`` files, or folders above runs.
        as_json: Print one JSON list of runs instead of text.
        plot: Also write a chart of ``keys`` to this file (needs matplotlib).
        keys: Keys for the chart; ``None`` for ``train/loss`` and ``val/loss``.
        ascii_only: Text view with ASCII only (chosen automatically when
            ``out`` cannot encode the block characters).
        out: Where the view goes (default ``sys.stdout``).
        err: Where problems go (default ``sys.stderr``).

    Returns:
        0 when every path held readable runs; 1 when a path held no run, a
        file was corrupt or a plotted key was found nowhere; 2 when ``--plot``
        needs matplotlib and it is not installed.
    """
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    if plot is not None:
        try:
            _load_matplotlib()
        except ImportError:
            print(f"wandb-bridge show: --plot needs matplotlib, which is not installed: {_PLOT_HINT}", file=err)
            return 2
    runs, failed = _collect(paths, err)
    if as_json:
        documents = [run_to_json(run, ascii_only=ascii_only) for run in runs]
        text = json.dumps(documents, indent=2, allow_nan=False, default=str, ensure_ascii=not _supports_unicode(out))
        out.write(text + "\n")
    else:
        plain = ascii_only or not _supports_unicode(out)
        out.write("\n".join(render_run(run, ascii_only=plain) for run in runs))
    if plot is not None and runs:
        chosen, missing = plot_keys(runs, keys)
        if missing:
            print(f"wandb-bridge show: --keys {', '.join(missing)}: not in any of the runs shown", file=err)
        if chosen:
            try:
                written = write_plot(runs, chosen, plot)
            except (OSError, ValueError) as exc:  # unwritable path, unknown image format
                print(f"wandb-bridge show: cannot write the plot to {plot}: {exc}", file=err)
                failed = True
            else:
                note = out if not as_json else err
                print(f"\nplot: {written} ({', '.join(chosen)}; {len(runs)} run(s))", file=note)
        else:
            print(f"wandb-bridge show: nothing to plot; no plot written to {plot}", file=err)
            failed = True
    out.flush()
    return 1 if failed else 0
