"""What the demo's four trainings share: the data, the schedule and the run arguments.

Every framework fits the same linear regression (``y = x . w + 0.5 + noise``,
4 features) with plain SGD, batch 8, for 3 epochs: 6 optimizer steps per
epoch, 18 in all. So the table at the end can put the runs side by side.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

PROJECT = "wandb-bridge-demo"
FEATURES = 4
EPOCHS = 3
BATCH_SIZE = 8
LEARNING_RATE = 0.1
WEIGHTS = (1.0, -2.0, 0.5, 1.5)

Rows = list[tuple[list[float], float]]


def make_data(n_train: int = 48, n_val: int = 16, seed: int = 0) -> tuple[Rows, Rows]:
    """The regression data as plain Python lists: ``([features...], target)`` pairs.

    Returns:
        ``(train, val)``.
    """
    rng = random.Random(seed)
    rows: Rows = []
    for _ in range(n_train + n_val):
        x = [rng.uniform(-1.0, 1.0) for _ in range(FEATURES)]
        rows.append((x, sum(w * v for w, v in zip(WEIGHTS, x, strict=True)) + 0.5 + rng.gauss(0.0, 0.1)))
    return rows[:n_train], rows[n_train:]


def run_args(root: Path, name: str) -> dict[str, Any]:
    """The arguments every demo run gets: offline, under ``root``, wandb's console output off."""
    return {
        "project": PROJECT,
        "name": name,
        "mode": "offline",
        "dir": str(root),
        "settings": {"silent": True},
    }
