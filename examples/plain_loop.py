"""Add W&B to any library: a plain PyTorch training loop logged through ``wandb_bridge.Session``.

No framework: the loop makes the same five calls a library's hooks would make
(``log`` per step, ``log`` after validation, ``log_checkpoint`` after a save,
``log`` of the test figures, leaving the ``with`` block to finish), and the run
looks exactly like a Lightning, transformers or Keras run: ``train/loss`` and
``val/loss`` on the ``trainer/global_step`` axis, one row per step, checkpoints
as ``model-<run id>`` artifacts with ``latest``/``best``/``step-<S>``/``epoch-<E>``
aliases, the best ``val/loss`` in the summary, exit code 0 (non-zero if the
block ends by an exception).

Run (offline unless WANDB_MODE says otherwise; a few seconds on CPU)::

    python examples/plain_loop.py [--dir DIR] [--epochs 3]
    wandb-bridge show DIR/wandb          # look at the run without an account
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import torch
from torch.utils.data import DataLoader, TensorDataset

from wandb_bridge import Session


def make_data(n: int, seed: int) -> TensorDataset:
    """``y = x . w + noise`` with 8 features."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=generator)
    w = torch.linspace(-1.0, 1.0, 8).unsqueeze(1)
    return TensorDataset(x, x @ w + 0.1 * torch.randn(n, 1, generator=generator))


def evaluate(model: torch.nn.Module, data: TensorDataset) -> float:
    """The mean squared error over a data set."""
    model.eval()
    with torch.no_grad():
        x, y = data.tensors
        loss = torch.nn.functional.mse_loss(model(x), y).item()
    model.train()
    return loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", help="where wandb writes the run (default: WANDB_DIR, else a new temp folder)")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    root = Path(args.dir or os.environ.get("WANDB_DIR") or tempfile.mkdtemp(prefix="wandb-bridge-example-"))

    config = {"lr": 0.05, "batch_size": 16, "epochs": args.epochs, "model": {"hidden": 16}}
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=config["lr"])
    train = DataLoader(make_data(256, seed=0), batch_size=16, shuffle=True)
    val = make_data(64, seed=1)
    checkpoints = root / "checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)

    with Session(
        project="wandb-bridge-examples",
        name="plain-loop",
        config=config,
        mode=os.environ.get("WANDB_MODE", "offline"),
        dir=str(root),
        log_model="all",  # upload every checkpoint reported below ("best": only improvements)
        monitor="val_loss",  # -> val/loss: decides the "best" alias and the summary's best value
    ) as session:
        step = 0
        for epoch in range(args.epochs):
            for batch, (x, y) in enumerate(train):
                loss = torch.nn.functional.mse_loss(model(x), y)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                step += 1  # trainer/global_step = optimizer steps completed
                # A tensor is fine: it is read off the training thread, many at once.
                session.log(
                    {"loss": loss.detach(), "lr": optimizer.param_groups[0]["lr"]},
                    step=step,
                    epoch=epoch + (batch + 1) / len(train),
                    samples=len(x),
                )
            val_loss = evaluate(model, val)
            session.log({"val_loss": val_loss}, step=step)  # same step: lands in the same row
            path = checkpoints / f"epoch={epoch}-step={step}.pt"
            torch.save({"model": model.state_dict(), "step": step, "run_id": session.run_id}, path)
            session.log_checkpoint(path, step=step, epoch=epoch + 1, metrics={"val_loss": val_loss})  # epochs done
        test_loss = evaluate(model, make_data(64, seed=2))
        session.log({"loss": test_loss}, step=step, stage="test")  # unprefixed name + stage -> test/loss
        print(f"run {session.run_id}: {step} steps, val/loss {val_loss:.4f}, test/loss {test_loss:.4f}")
        if session.sync_command and os.environ.get("WANDB_MODE", "offline") == "offline":
            print(f"upload it later with: {session.sync_command}")


if __name__ == "__main__":
    main()
