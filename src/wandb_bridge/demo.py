"""The demo: train something tiny offline, then show what the run recorded.

No W&B account is needed: runs are written offline into a folder and read back
with :mod:`wandb_bridge.testing`. The settings are passed as arguments; the
process environment is never changed.
"""

from __future__ import annotations

import random
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wandb_bridge.core.session import Session

Trainer = Callable[[Path], str]


def train_plain_loop(directory: Path) -> str:
    """Fit ``y = 3x + 1`` with SGD in plain Python, logging through a :class:`Session`.

    Returns:
        The run id.
    """
    rng = random.Random(0)
    data = [(x, 3 * x + 1 + rng.gauss(0, 0.1)) for x in (rng.uniform(-1, 1) for _ in range(64))]
    train, val = data[:48], data[48:]
    w, b, lr = 0.0, 0.0, 0.1
    checkpoint = directory / "plain-checkpoint.txt"
    with Session(
        project="wandb-bridge-demo",
        name="plain-loop",
        mode="offline",
        dir=str(directory),
        config={"lr": lr, "model": {"kind": "linear"}},
        log_model="best",
        monitor="val_loss",
        framework="plain-python",
        settings={"silent": True},
    ) as session:
        step = 0
        for epoch in range(3):
            for i in range(0, len(train), 8):
                batch = train[i : i + 8]
                gw = sum(2 * (w * x + b - y) * x for x, y in batch) / len(batch)
                gb = sum(2 * (w * x + b - y) for x, y in batch) / len(batch)
                w, b = w - lr * gw, b - lr * gb
                step += 1
                loss = sum((w * x + b - y) ** 2 for x, y in batch) / len(batch)
                session.log({"loss": loss}, step=step, epoch=epoch + (i + 8) / len(train))
            val_loss = sum((w * x + b - y) ** 2 for x, y in val) / len(val)
            session.log({"val_loss": val_loss}, step=step)
            checkpoint.write_text(f"w={w}\nb={b}\n")
            session.log_checkpoint(checkpoint, step=step, epoch=epoch, metrics={"val_loss": val_loss})
        return session.run_id or ""


TRAINERS: dict[str, Trainer] = {"plain loop (Session)": train_plain_loop}


def run_demo(directory: str | None = None) -> int:
    """Train every demo model offline and print one table of what each run recorded.

    Returns:
        0 on success.
    """
    from wandb_bridge.testing import read_runs

    root = Path(directory or tempfile.mkdtemp(prefix="wandb-bridge-demo-"))
    root.mkdir(parents=True, exist_ok=True)
    results: list[tuple[str, Any]] = []
    for label, trainer in TRAINERS.items():
        print(f"training: {label} ...", flush=True)
        run_id = trainer(root)
        run = next(r for r in read_runs(root) if r.run_id == run_id)
        results.append((label, run))
    print()
    header = f"{'framework':<24}{'rows':>6}{'last step':>11}{'train/loss':>12}{'val/loss':>10}  checkpoint aliases"
    print(header)
    print("-" * len(header))
    for label, run in results:
        steps = [row["trainer/global_step"] for row in run.history if "trainer/global_step" in row]
        train_loss = run.values("train/loss")[-1][1]
        val_loss = run.values("val/loss")[-1][1]
        aliases = sorted({a for art in run.artifacts for a in art.aliases if not a.startswith(("step-", "v"))})
        print(f"{label:<24}{len(run.history):>6}{max(steps):>11}{train_loss:>12.4f}{val_loss:>10.4f}  {', '.join(aliases)}")
    print()
    print(f"runs written to: {root / 'wandb'}")
    print(f"upload them later with: wandb sync {root / 'wandb'}/offline-run-*")
    return 0
