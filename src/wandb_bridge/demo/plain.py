"""The plain loop: hand-written SGD in pure Python, logged through :class:`~wandb_bridge.Session`.

No framework at all: this is how any library or training loop gets the same run
layout as the three framework integrations.
"""

from __future__ import annotations

from pathlib import Path

from wandb_bridge.core.session import Session
from wandb_bridge.demo.common import BATCH_SIZE, EPOCHS, FEATURES, LEARNING_RATE, Rows, make_data, run_args

LABEL = "plain loop"
REQUIRES: tuple[str, ...] = ()
INSTALL = ""


def train(root: Path) -> str:
    """Fit the demo regression with SGD; every step, evaluation and checkpoint goes through a Session.

    Returns:
        The run id.
    """
    train_rows, val_rows = make_data()
    w, b = [0.0] * FEATURES, 0.0

    def predict(x: list[float]) -> float:
        return sum(wi * xi for wi, xi in zip(w, x, strict=True)) + b

    def mse(rows: Rows) -> float:
        return sum((predict(x) - y) ** 2 for x, y in rows) / len(rows)

    checkpoint = root / "plain" / "weights.txt"
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    config = {"lr": LEARNING_RATE, "batch_size": BATCH_SIZE, "epochs": EPOCHS}
    with Session(config=config, log_model="all", monitor="val_loss", **run_args(root, "plain-loop")) as session:
        step = 0
        for epoch in range(EPOCHS):
            for start in range(0, len(train_rows), BATCH_SIZE):
                batch = train_rows[start : start + BATCH_SIZE]
                loss = mse(batch)  # the batch loss before the update, as the frameworks report it
                errors = [predict(x) - y for x, y in batch]
                grad_w = [
                    2 * sum(e * x[i] for e, (x, _) in zip(errors, batch, strict=True)) / len(batch)
                    for i in range(FEATURES)
                ]
                w = [wi - LEARNING_RATE * g for wi, g in zip(w, grad_w, strict=True)]
                b -= LEARNING_RATE * 2 * sum(errors) / len(batch)
                step += 1
                session.log({"loss": loss}, step=step, epoch=epoch + (start + len(batch)) / len(train_rows))
            val_loss = mse(val_rows)
            session.log({"val_loss": val_loss}, step=step)  # -> val/loss, in the row of the same step
            checkpoint.write_text(f"w={w}\nb={b}\n")
            # epoch: epochs completed, as the frameworks report it
            session.log_checkpoint(checkpoint, step=step, epoch=epoch + 1, metrics={"val_loss": val_loss})
        return session.run_id or ""
