"""What the demo's trainings share: the data, the schedule, the run arguments and the plain PyTorch loop.

Every framework fits the same linear regression (``y = x . w + 0.5 + noise``,
4 features) with plain SGD, batch 8, for 3 epochs: 6 optimizer steps per
epoch, 18 in all. So the table at the end can put the runs side by side.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

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


class TorchLoop(NamedTuple):
    """What the plain PyTorch loops (accelerate, Fabric) start from (see :func:`torch_loop`)."""

    model: Any
    optimizer: Any
    train_set: Any
    x_val: Any
    y_val: Any

    def loader(self) -> Any:
        """A ``DataLoader`` over the training set, in batches of :data:`BATCH_SIZE`, in order."""
        from torch.utils.data import DataLoader

        return DataLoader(self.train_set, batch_size=BATCH_SIZE)


def torch_loop() -> TorchLoop:
    """The seeded ``Linear`` model, its SGD optimizer, the training ``TensorDataset`` and the validation tensors."""
    import torch
    from torch.utils.data import TensorDataset

    train_rows, val_rows = make_data()
    torch.manual_seed(0)
    model = torch.nn.Linear(FEATURES, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE)
    x, y = torch.tensor([r[0] for r in train_rows]), torch.tensor([[r[1]] for r in train_rows])
    x_val, y_val = torch.tensor([r[0] for r in val_rows]), torch.tensor([[r[1]] for r in val_rows])
    return TorchLoop(model, optimizer, TensorDataset(x, y), x_val, y_val)


def sgd_epoch(model: Any, optimizer: Any, loader: Any, backward: Callable[[Any], None]) -> Iterator[float]:
    """One epoch of the plain loop: each batch's loss, yielded once its optimizer step ran.

    Args:
        model, optimizer, loader: as the framework prepared them.
        backward: the framework's ``backward`` (``accelerator.backward``, ``fabric.backward``).
    """
    import torch

    for xb, yb in loader:
        loss = torch.nn.functional.mse_loss(model(xb), yb)
        backward(loss)
        optimizer.step()
        optimizer.zero_grad()
        yield loss.item()


def val_loss(model: Any, x_val: Any, y_val: Any) -> float:
    """The validation loss of ``model`` (no gradients)."""
    import torch

    with torch.no_grad():
        return float(torch.nn.functional.mse_loss(model(x_val), y_val).item())
