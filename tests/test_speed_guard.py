"""Regression guard for the cost per printed line and per logged step, by counting (never by timing).

With wandb's default console capture (``console="auto"`` -> ``"wrap_raw"``) every
write to stdout/stderr in the training process becomes one record sent to
wandb-core from that process. A run our session starts batches that capture
(``adapters/console.py``): these tests run the same script natively and through a
``Session`` in fresh processes, with console capture at its default, read the
offline run back and assert that ours produces no more console records and no
more history records than native, and that the W&B "Logs" text (the output
records joined in order) is exactly what was printed, stdout and stderr
interleaved as written.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from wandb_bridge.testing import find_run_files, read_run
from wandb_bridge.testing.reader import _iter_protos, _scan_log

LINES = 120
_STDOUT = 1  # OutputRawRecord.OutputType.STDOUT (STDERR is 0)

# Both scripts: argv is (variant, count); ``log``/``finish`` go through native wandb or a Session.
_PREAMBLE = r"""
import sys
variant, count = sys.argv[1], int(sys.argv[2])
if variant == "native":
    import wandb
    run = wandb.init(project="guard")
    log = lambda values, step: run.log({**{"train/" + k: v for k, v in values.items()}, "trainer/global_step": step})
    finish = run.finish
else:
    from wandb_bridge import Session
    session = Session(project="guard")
    session.start()
    log = lambda values, step: session.log(values, step=step)
    finish = session.finish
"""

SCRIPT = (
    _PREAMBLE
    + r"""
lines = count
for step in range(1, lines + 1):
    log({"loss": 1.0 / step}, step)
    print(f"step {step} loss {1.0 / step:.4f}")       # two writes: the text, then the newline
    if step % 10 == 0:
        sys.stderr.write(f"\rprogress {step}/{lines}")  # a progress bar on stderr, between the lines
        sys.stderr.flush()
print("done", flush=True)
finish()
"""
)


def _expected_text(lines: int) -> tuple[str, str]:
    """What the script writes to stdout and to stderr."""
    out = "".join(f"step {s} loss {1.0 / s:.4f}\n" for s in range(1, lines + 1)) + "done\n"
    err = "".join(f"\rprogress {s}/{lines}" for s in range(10, lines + 1, 10))
    return out, err


def _run(
    variant: str, root: Path, extra_env: dict[str, str] | None = None, script: str = SCRIPT, count: int = LINES
) -> dict[str, Any]:
    """Run the script in a fresh process (console capture at wandb's default) and read its run back."""
    wandb_dir = root / variant
    wandb_dir.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(
        WANDB_MODE="offline",
        WANDB_SILENT="true",
        WANDB_DIR=str(wandb_dir),
        WANDB_CACHE_DIR=str(wandb_dir / ".cache"),
        WANDB_DATA_DIR=str(wandb_dir / ".data"),
        WANDB_CONFIG_DIR=str(wandb_dir / ".config"),
        WANDB_DISABLE_GIT="true",
        WANDB_DISABLE_CODE="true",
        WANDB_ERROR_REPORTING="false",
        WANDB__DISABLE_STATS="true",
        WANDB__DISABLE_META="true",
    )
    env.update(extra_env or {})
    proc = subprocess.run(
        [sys.executable, "-c", script, variant, str(count)],
        cwd=wandb_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    files = find_run_files(wandb_dir)
    assert len(files) == 1, files
    path = files[0]
    outputs: list[tuple[int, str]] = []
    history = 0
    for _, record in _iter_protos(path, _scan_log(path, path.read_bytes())):
        kind = record.WhichOneof("record_type")
        if kind == "output_raw":
            outputs.append((record.output_raw.output_type, record.output_raw.line))
        elif kind == "history":
            history += 1
    run = read_run(path)
    return {"proc": proc, "outputs": outputs, "history_records": history, "run": run, "folder": path.parent}


def _streams(outputs: list[tuple[int, str]]) -> tuple[str, str, str]:
    """(stdout text, stderr text, everything in record order) from the output records."""
    out = "".join(line for kind, line in outputs if kind == _STDOUT)
    err = "".join(line for kind, line in outputs if kind != _STDOUT)
    return out, err, "".join(line for _, line in outputs)


@pytest.fixture(scope="module")
def both(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    root = tmp_path_factory.mktemp("speed-guard")
    return {variant: _run(variant, root) for variant in ("native", "ours")}


def test_printed_lines_cost_fewer_console_records_than_native(both: dict[str, dict[str, Any]]) -> None:
    native, ours = both["native"]["outputs"], both["ours"]["outputs"]
    # Native: one record per write (each print is two writes), plus the progress updates.
    assert len(native) >= 2 * LINES
    assert len(ours) <= len(native)
    # Batched: far fewer records per printed line (a burst of writes is one record).
    assert len(ours) * 4 <= len(native), (len(ours), len(native))


def test_logs_keep_every_printed_line_in_order(both: dict[str, dict[str, Any]]) -> None:
    want_out, want_err = _expected_text(LINES)
    for variant in ("native", "ours"):
        got_out, got_err, _ = _streams(both[variant]["outputs"])
        assert got_out == want_out, variant
        assert got_err == want_err, variant
    # The progress line takes its place where it was started: after "step 10", before "step 11". Its
    # later redraws only rewrite that line, so ours may hand them over after the lines printed meanwhile.
    _, _, ours_all = _streams(both["ours"]["outputs"])
    start = ours_all.index(f"\rprogress 10/{LINES}")
    assert ours_all.index("step 10 loss") < start < ours_all.index("step 11 loss")


def test_output_log_file_is_the_same_as_native(both: dict[str, dict[str, Any]]) -> None:
    """wandb-core writes ``files/output.log`` (what the Logs tab shows) from the records: the same text."""
    native = (both["native"]["folder"] / "files" / "output.log").read_text()
    ours = (both["ours"]["folder"] / "files" / "output.log").read_text()
    assert "step 1 loss 1.0000" in ours and "done" in ours
    assert ours == native


def test_history_records_per_logged_step_no_more_than_native(both: dict[str, dict[str, Any]]) -> None:
    native, ours = both["native"], both["ours"]
    assert ours["history_records"] <= native["history_records"]
    assert len(ours["run"].history) == len(native["run"].history) == LINES
    assert [row["train/loss"] for row in ours["run"].history] == [row["train/loss"] for row in native["run"].history]
    assert ours["run"].exit_code == native["run"].exit_code == 0


TQDM_SCRIPT = (
    _PREAMBLE
    + r"""
from tqdm import tqdm
steps = count
# The transformers Trainer's way: a bar on stderr, its log dicts printed above it with tqdm.write (clear
# the bar, print, redraw). No rate or time in the bar: the two processes must write the same text.
bar = tqdm(total=steps, mininterval=0, bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt}")
for step in range(1, steps + 1):
    log({"loss": 1.0 / step}, step)
    bar.update(1)
    bar.write(str({"loss": round(1.0 / step, 4), "step": step}))
bar.close()
print("done", flush=True)
finish()
"""
)
TQDM_STEPS = 300


@pytest.fixture(scope="module")
def with_bar(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    root = tmp_path_factory.mktemp("speed-guard-bar")
    return {variant: _run(variant, root, script=TQDM_SCRIPT, count=TQDM_STEPS) for variant in ("native", "ours")}


def test_progress_bar_between_printed_lines_costs_few_records(with_bar: dict[str, dict[str, Any]]) -> None:
    """tqdm.write alternates stderr and stdout (clear the bar, print, redraw): still a few records per burst."""
    native, ours = with_bar["native"]["outputs"], with_bar["ours"]["outputs"]
    assert len(native) >= 4 * TQDM_STEPS  # natively one record per write: clear, text, newline, redraw
    assert len(ours) * 20 <= len(native), (len(ours), len(native))


def test_progress_bar_logs_are_the_same_as_native(with_bar: dict[str, dict[str, Any]]) -> None:
    """Each stream's text is every write in order, and ``output.log`` (the Logs tab) is native's, byte for byte."""
    native_out, native_err, _ = _streams(with_bar["native"]["outputs"])
    ours_out, ours_err, _ = _streams(with_bar["ours"]["outputs"])
    assert ours_out == native_out
    assert ours_out.count("\n") == TQDM_STEPS + 1 and f"'step': {TQDM_STEPS}}}" in ours_out
    assert ours_err.count(f"{TQDM_STEPS}/{TQDM_STEPS}") == native_err.count(f"{TQDM_STEPS}/{TQDM_STEPS}") >= 1
    native_log = (with_bar["native"]["folder"] / "files" / "output.log").read_text()
    ours_log = (with_bar["ours"]["folder"] / "files" / "output.log").read_text()
    assert ours_log.count("\n") > TQDM_STEPS and "{'loss': 1.0, 'step': 1}" in ours_log
    assert ours_log == native_log


def test_console_setting_of_the_user_is_left_alone(tmp_path: Path) -> None:
    """``WANDB_CONSOLE=off`` set by the user: nothing captured, in ours as in native."""
    ours = _run("ours", tmp_path, {"WANDB_CONSOLE": "off"})
    assert ours["outputs"] == []
    assert len(ours["run"].history) == LINES


def test_other_console_modes_are_left_to_wandb(wandb_offline: Any) -> None:
    """Only wandb's raw wrapper is batched: with capture off there is nothing to take over."""
    import wandb

    from wandb_bridge.adapters import console

    run = wandb.init(project="guard", settings=wandb.Settings(console="off"))
    try:
        assert console.take_over(run) is None
    finally:
        run.finish()
    assert console.take_over(object()) is None  # not a wandb run at all
