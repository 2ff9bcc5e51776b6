"""accelerate: a plain PyTorch loop run by ``Accelerator`` with :class:`~wandb_bridge.WandbTracker`."""

from __future__ import annotations

from pathlib import Path

from wandb_bridge.demo.common import BATCH_SIZE, EPOCHS, FEATURES, LEARNING_RATE, make_data, run_args

LABEL = "accelerate"
REQUIRES = ("accelerate", "torch")
INSTALL = 'pip install "wandb-bridge[accelerate]"'


def train(root: Path) -> str:
    """Fit the demo regression with accelerate; each ``save_state`` folder becomes an artifact version.

    Returns:
        The run id.
    """
    import torch
    from accelerate import Accelerator
    from torch.utils.data import DataLoader, TensorDataset

    from wandb_bridge import WandbTracker

    train_rows, val_rows = make_data()
    torch.manual_seed(0)
    tracker = WandbTracker(log_model="all", monitor="val_loss", **run_args(root, "accelerate"))
    accelerator = Accelerator(log_with=[tracker])
    model = torch.nn.Linear(FEATURES, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE)
    x = torch.tensor([r[0] for r in train_rows])
    loader = DataLoader(TensorDataset(x, torch.tensor([[r[1]] for r in train_rows])), batch_size=BATCH_SIZE)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    accelerator.init_trackers("wandb-bridge-demo", config={"lr": LEARNING_RATE, "batch_size": BATCH_SIZE})
    x_val = torch.tensor([r[0] for r in val_rows], device=accelerator.device)
    y_val = torch.tensor([[r[1]] for r in val_rows], device=accelerator.device)
    completed = 0
    for epoch in range(EPOCHS):
        for xb, yb in loader:
            loss = torch.nn.functional.mse_loss(model(xb), yb)
            accelerator.backward(loss)
            optimizer.step()
            optimizer.zero_grad()
            completed += 1
            epochs = completed / len(loader)  # -> trainer/epoch
            accelerator.log({"train_loss": loss.item(), "epoch": epochs}, step=completed)  # step=: trainer/global_step
        with torch.no_grad():
            val_loss = torch.nn.functional.mse_loss(model(x_val), y_val).item()
        accelerator.log({"val_loss": val_loss}, step=completed)  # -> val/loss, same row
        folder = accelerator.save_state(str(root / "accelerate" / f"checkpoint_{epoch}"))
        tracker.log_checkpoint(folder, step=completed, epoch=epoch + 1, metrics={"val_loss": val_loss})
    run_id = tracker.session.run_id or ""
    accelerator.end_training()
    return run_id
