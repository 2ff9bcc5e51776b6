"""``console.Batcher``: fewer console records, and wandb-core renders them to native's Logs text, byte for byte.

The reference is wandb's own capture: one record per write, published through
the same run callback that wandb's stream wrapper calls. Each case hands the
same writes to wandb-core once per write and once as the batcher's records (cut
into bursts of random sizes, as the batching thread would) and compares the
``files/output.log`` wandb-core wrote for each run (what the W&B Logs tab shows).
"""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

import pytest

from wandb_bridge.adapters.console import FROZEN_LINES, LIVE_LINES, Batcher
from wandb_bridge.testing import WandbOfflineRuns

Writes = list[tuple[str, str]]


def _output_log(wandb_offline: WandbOfflineRuns, records: Writes) -> str:
    """What wandb-core writes to ``output.log`` for ``records`` handed to a run one by one."""
    import wandb

    run: Any = wandb.init(project="console", settings=wandb.Settings(console="wrap"))
    folder = Path(run.dir)
    for stream, text in records:
        run._console_raw_callback(stream, text)  # what wandb's stream wrapper calls per write
    run.finish()
    wandb_offline.flush()
    path = folder / "output.log"
    return path.read_text() if path.exists() else ""


def _batched(writes: Writes, rng: random.Random, largest: int) -> Writes:
    batcher = Batcher()
    records: Writes = []
    start = 0
    while start < len(writes):
        size = rng.randint(1, largest)
        records += batcher.records(writes[start : start + size])
        start += size
    return records


def _bar_and_lines(steps: int) -> Writes:
    """The transformers Trainer's output: a tqdm bar on stderr, each log dict printed above it by tqdm.write."""
    writes: Writes = [("stderr", f"\r  0%|          | 0/{steps}")]
    for step in range(1, steps + 1):
        writes.append(("stderr", "\r" + " " * 40 + "\r"))  # tqdm.write clears the bar
        writes += [("stdout", f"{{'loss': {1 / step:.4f}, 'step': {step}}}"), ("stdout", "\n")]
        writes.append(("stderr", f"\r {100 * step // steps:3d}%|#   | {step}/{steps}"))  # and redraws it
    return [*writes, ("stderr", "\n"), ("stdout", "done\n")]


def _random_writes(rng: random.Random, count: int) -> Writes:
    pieces = ["abc", "xy", "\r", "\n", "\r     \r", "\x1b[A", "\b", "p1\rp2", "line\n", "line\n", "m\nn\no\n"]
    pieces += ["\rbar 5%", "\rbar 7%", "q\nr", " ", "\n\n", "long" * 30 + "\n", "\x1b[2K\r"]
    return [(rng.choice(("stdout", "stderr")), rng.choice(pieces)) for _ in range(count)]


def test_a_bar_between_printed_lines_becomes_few_records() -> None:
    writes = _bar_and_lines(400)
    batcher = Batcher()
    first = batcher.records(writes[: 4 * FROZEN_LINES])  # until the bar's line is certainly closed to rewrites
    rest = batcher.records(writes[4 * FROZEN_LINES :])
    assert len(first) < 4 * FROZEN_LINES
    assert len(rest) <= 3, [(stream, text[:30]) for stream, text in rest]
    # Nothing is lost and each stream keeps its order.
    for stream in ("stdout", "stderr"):
        wanted = "".join(text for name, text in writes if name == stream)
        assert "".join(text for name, text in first + rest if name == stream) == wanted


def test_a_redraw_keeps_its_place_when_its_line_could_change_meanwhile() -> None:
    """A line with LIVE_LINES lines below it may be closed to rewrites soon: its redraw is handed over in place."""
    writes: Writes = [("stderr", "bar 0\r")]
    writes += [("stdout", f"line {k}\n") for k in range(LIVE_LINES - 1)]
    writes += [("stderr", "\rbar 1"), ("stdout", "after\n")]
    records = Batcher().records(writes)
    assert records[-2:] == [("stderr", "\rbar 1"), ("stdout", "after\n")]


def test_an_escape_sequence_hands_over_everything_held_first() -> None:
    writes: Writes = [("stderr", "bar\r"), ("stdout", "a\n"), ("stderr", "\rbar 2"), ("stdout", "b\n")]
    writes += [("stdout", "\x1b[A\rB"), ("stderr", "\rbar 3")]
    records = Batcher().records(writes)
    assert records == [
        ("stderr", "bar\r"),
        ("stdout", "a\nb\n"),
        ("stderr", "\rbar 2"),
        ("stdout", "\x1b[A\rB"),
        ("stderr", "\rbar 3"),
    ]


@pytest.mark.parametrize("steps", [20, 300])
def test_bar_and_printed_lines_render_like_native(wandb_offline: WandbOfflineRuns, steps: int) -> None:
    writes = _bar_and_lines(steps)
    records = _batched(writes, random.Random(steps), largest=200)
    assert len(records) * 10 <= len(writes)
    native = _output_log(wandb_offline, writes)
    assert native.count("\n") > steps and "'step': 1}" in native
    assert _output_log(wandb_offline, records) == native


def _rich_bars(steps: int) -> Writes:
    """What a Rich live display writes on a terminal: Lightning's default bar where ``rich`` is installed.

    Two bars (training, and validation under it, as ``RichProgressBar`` draws them) redrawn at
    every step with colours, line erasing and cursor-up moves, a line printed above them now and
    then; and now and then a line on stderr (a warning, a logging record) between redraws.
    """
    from rich.console import Console
    from rich.progress import Progress

    writes: Writes = []

    class Terminal(io.StringIO):
        def write(self, text: str) -> int:
            writes.append(("stdout", text))
            return len(text)

        def isatty(self) -> bool:
            return True

    console = Console(file=Terminal(), force_terminal=True, width=80, color_system="standard")
    with Progress(console=console, auto_refresh=False) as progress:
        train = progress.add_task("Epoch 0", total=steps)
        val = progress.add_task("Validation", total=steps)
        for step in range(1, steps + 1):
            progress.update(train, advance=1)
            if step % 3 == 0:
                progress.update(val, advance=3)
            if step % 7 == 0:
                progress.console.print(f"step {step}: loss {1 / step:.4f}", highlight=False)
            if step % 5 == 0:
                writes.append(("stderr", f"a warning at step {step}\n"))  # (logging, warnings)
            progress.refresh()
    return [w for w in writes if w[1]]


@pytest.mark.parametrize("steps", [30, 200])
def test_rich_live_bars_render_like_native(wandb_offline: WandbOfflineRuns, steps: int) -> None:
    writes = _rich_bars(steps)
    assert any("\x1b[1A" in text for _, text in writes)  # (the display moves the cursor up over its bars)
    records = _batched(writes, random.Random(steps), largest=80)
    assert len(records) * 2 <= len(writes)  # (every stderr line starts a record, and the redraws after it)
    native = _output_log(wandb_offline, writes)
    assert f"step {7 * (steps // 7)}: loss" in native
    assert _output_log(wandb_offline, records) == native


@pytest.mark.parametrize("seed", range(4))
def test_random_writes_render_like_native(wandb_offline: WandbOfflineRuns, seed: int) -> None:
    rng = random.Random(seed)
    writes = _random_writes(rng, 400)
    records = _batched(writes, rng, largest=60)
    assert len(records) < len(writes)
    native = _output_log(wandb_offline, writes)
    assert native
    assert _output_log(wandb_offline, records) == native
