"""The demo (``python -m wandb_bridge demo``): one regression, six ways to train it, one run contract.

With no W&B account, it trains the same tiny model with a plain loop through
:class:`~wandb_bridge.Session`, Lightning, transformers, Keras, accelerate and Lightning
Fabric, offline into one
folder, then reads the runs back (:mod:`wandb_bridge.testing`) and prints them side
by side: the same keys, the same step axis, the same checkpoint aliases. Frameworks
that are not installed are skipped with the command that installs them.

One module per framework (``plain``, ``lightning``, ``transformers``, ``keras``,
``accelerate``, ``fabric``),
each a ``train(root) -> run id`` function: read them as examples. The settings are
passed as arguments; the process environment is never changed (Keras runs in a
child process that gets ``KERAS_BACKEND`` in its own environment).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

from wandb_bridge.testing.reader import RunFileError, RunRecord, read_runs

FRAMEWORKS = ("plain", "lightning", "transformers", "keras", "accelerate", "fabric")
_WIDTH = 32


def run_demo(directory: str | None = None) -> int:
    """Train every installed framework offline and print one table of what each run recorded.

    Args:
        directory: where the runs go (default: a new temporary folder).

    Returns:
        0 on success, 1 when a framework failed.
    """
    root = Path(directory or tempfile.mkdtemp(prefix="wandb-bridge-demo-")).resolve()
    root.mkdir(parents=True, exist_ok=True)
    print(
        "wandb-bridge demo: one tiny regression trained with a plain loop through Session, Lightning, transformers,\n"
        "Keras, accelerate and Fabric, offline (no W&B account needed), then read back side by side.\n"
    )
    runs: dict[str, str] = {}
    failed = False
    for name in FRAMEWORKS:
        module = importlib.import_module(f"wandb_bridge.demo.{name}")
        missing = [m for m in module.REQUIRES if importlib.util.find_spec(m) is None]
        if missing:
            print(f"  {module.LABEL:.<{_WIDTH}} skipped, {missing[0]} is not installed: {module.INSTALL}")
            continue
        with _progress(module.LABEL) as done:
            try:
                runs[module.LABEL] = _in_child(root) if name == "keras" else module.train(root)
                done("done")
            except ImportError as exc:  # installed, but broken (or a dependency of it is missing)
                done(f"skipped, {exc}: {module.INSTALL}")
            except Exception as exc:
                failed = True
                done(f"failed: {type(exc).__name__}: {exc}".splitlines()[0])
    records = _read_back(root, runs)
    if not records:
        print("\nno run was recorded")
        return 1
    print()
    print(_table(records))
    print(f"\nruns written to {root / 'wandb'}:")
    for label, run in records.items():
        print(f"  {label:<14}{run.folder}")
    print("\nlook at them here:           wandb-bridge show " + str(root / "wandb"))
    print(f"upload them to W&B later:    wandb sync {root / 'wandb'}/offline-run-*")
    return 1 if failed else 0


def _in_child(root: Path) -> str:
    """Run the Keras part in a child process, with ``KERAS_BACKEND`` set for that child only."""
    from wandb_bridge.demo.keras import BACKEND

    env = {**os.environ, "KERAS_BACKEND": BACKEND}
    done = subprocess.run(
        [sys.executable, "-m", "wandb_bridge.demo.keras", str(root)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        raise RuntimeError(f"the Keras child process failed ({BACKEND} backend): {last}")
    return done.stdout.strip().splitlines()[-1]


@contextlib.contextmanager
def _progress(label: str) -> Iterator[Callable[[str], None]]:
    """One line per framework: its label, a ticking clock on a terminal, then the outcome and the time."""
    out = sys.stdout  # the frameworks' own prints are dropped below; ours go here
    start = time.perf_counter()
    prefix = f"  {label:.<{_WIDTH}}"
    stop = threading.Event()
    tty = out.isatty()

    def tick() -> None:
        while not stop.wait(0.2):
            print(f"\r{prefix} {time.perf_counter() - start:5.1f} s", end="", file=out, flush=True)

    def done(outcome: str) -> None:
        stop.set()
        if ticker is not None:
            ticker.join()
        lead = "\r" + prefix if tty else ""  # on a terminal, rewrite the ticking line
        print(f"{lead} {time.perf_counter() - start:5.1f} s  {outcome}", file=out, flush=True)

    print(prefix, end="", file=out, flush=True)
    ticker = threading.Thread(target=tick, daemon=True, name="wandb-bridge-demo-clock") if tty else None
    if ticker is not None:
        ticker.start()
    with _quiet():
        try:
            yield done
        finally:
            stop.set()


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the frameworks (prints, info logging, warnings) while a demo model trains; restored afterwards."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.redirect_stderr(io.StringIO()),
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)


def _read_back(root: Path, runs: dict[str, str], timeout: float = 15.0) -> dict[str, RunRecord]:
    """Read the runs back from their offline files (wandb writes them asynchronously: wait until finished)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = {r.run_id: r for r in read_runs(root / "wandb")} if (root / "wandb").is_dir() else {}
        except RunFileError:
            found = {}
        records = {label: found[run_id] for label, run_id in runs.items() if run_id in found}
        if (len(records) == len(runs) and all(r.finished for r in records.values())) or time.monotonic() > deadline:
            return records
        time.sleep(0.2)


def _table(records: dict[str, RunRecord]) -> str:
    """The runs side by side: one column per framework, one line per recorded key."""
    lines: list[tuple[str, list[str]]] = [
        ("run id", [r.run_id for r in records.values()]),
        ("history rows", [str(len(r.history)) for r in records.values()]),
        ("trainer/global_step", [_range(r, "trainer/global_step") for r in records.values()]),
        ("trainer/epoch", [_range(r, "trainer/epoch") for r in records.values()]),
        ("train/loss first → last", [_first_last(r, "train/loss") for r in records.values()]),
        ("val/loss first → last", [_first_last(r, "val/loss") for r in records.values()]),
        ("val/loss in the summary", [_summary(r, "val/loss") for r in records.values()]),
        ("checkpoint versions", [str(len(_checkpoints(r))) for r in records.values()]),
        ("alias latest", [_holder(r, "latest") for r in records.values()]),
        ("alias best", [_holder(r, "best") for r in records.values()]),
        ("exit code", [str(r.exit_code) for r in records.values()]),
    ]
    width = max(16, *(len(v) + 2 for _, values in lines for v in values), *(len(label) + 2 for label in records))
    head = f"{'':<26}" + "".join(f"{label:<{width}}" for label in records)
    rule = "─" * len(head.rstrip())
    body = [f"{key:<26}" + "".join(f"{v:<{width}}" for v in values) for key, values in lines]
    return "\n".join([head.rstrip(), rule, *(b.rstrip() for b in body)])


def _range(run: RunRecord, key: str) -> str:
    values = [row[key] for row in run.history if isinstance(row.get(key), (int, float))]
    return f"{_number(min(values))} .. {_number(max(values))}" if values else "-"


def _first_last(run: RunRecord, key: str) -> str:
    values = [v for _, v in run.values(key) if isinstance(v, (int, float))]
    return f"{_number(values[0])} → {_number(values[-1])}" if values else "-"


def _number(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "-"
    return str(value) if isinstance(value, int) or float(value).is_integer() else f"{value:.3f}"


def _summary(run: RunRecord, key: str) -> str:
    """A summary value; a monitored metric holds ``{"min": best}`` (or ``max``) there."""
    value = run.summary.get(key)
    if isinstance(value, dict):
        return ", ".join(f"{k} {_number(v)}" for k, v in value.items())
    return _number(value)


def _checkpoints(run: RunRecord) -> list[object]:
    return [a for a in run.artifacts if a.type == "model"]


def _holder(run: RunRecord, alias: str) -> str:
    """The version that holds ``alias`` now (the last one logged with it), by its ``step-``/``epoch-`` aliases."""
    holders = [a for a in run.artifacts if a.type == "model" and alias in a.aliases]
    if not holders:
        return "-"
    named = sorted((a for a in holders[-1].aliases if a.startswith(("step-", "epoch-"))), reverse=True)
    return " ".join(named) or "yes"


__all__ = ["FRAMEWORKS", "run_demo"]
