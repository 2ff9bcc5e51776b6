"""Lightning Fabric: a plain PyTorch loop run by ``Fabric`` with :class:`~wandb_bridge.WandbLogger`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wandb_bridge.demo.common import BATCH_SIZE, EPOCHS, FEATURES, LEARNING_RATE, make_data, run_args

LABEL = "Fabric"
REQUIRES = ("lightning", "torch")
INSTALL = 'pip install "wandb-bridge[fabric]"'


def train(root: Path) -> str:
    """Fit the demo regression with ``lightning.fabric``; each ``fabric.save`` file becomes an artifact version.

    Returns:
        The run id.
    """
    import torch
    from lightning.fabric import Fabric
    from torch.utils.data import DataLoader, TensorDataset

    from wandb_bridge import WandbLogger

    train_rows, val_rows = make_data()
    torch.manual_seed(0)
    logger = WandbLogger(log_model="all", monitor="val_loss", **run_args(root, "fabric"))
    fabric = Fabric(accelerator="cpu", devices=1, loggers=[logger])
    model = torch.nn.Linear(FEATURES, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE)
    model, optimizer = fabric.setup(model, optimizer)
    x = torch.tensor([r[0] for r in train_rows])
    dataset = TensorDataset(x, torch.tensor([[r[1]] for r in train_rows]))
    loader: Any = fabric.setup_dataloaders(DataLoader(dataset, batch_size=BATCH_SIZE))
    x_val, y_val = torch.tensor([r[0] for r in val_rows]), torch.tensor([[r[1]] for r in val_rows])
    fabric.logger.log_hyperparams({"lr": LEARNING_RATE, "batch_size": BATCH_SIZE})  # -> the run config
    step = 0  # optimizer steps done; Fabric's step= is Lightning's (0-based): trainer/global_step = step= + 1
    for epoch in range(EPOCHS):
        for xb, yb in loader:
            loss = torch.nn.functional.mse_loss(model(xb), yb)
            fabric.backward(loss)
            optimizer.step()
            optimizer.zero_grad()
            step += 1
            fabric.log_dict({"train_loss": loss.item(), "epoch": step / len(loader)}, step=step - 1)  # -> train/loss
        with torch.no_grad():
            val_loss = torch.nn.functional.mse_loss(model(x_val), y_val).item()
        fabric.log_dict({"val_loss": val_loss}, step=step - 1)  # -> val/loss, in the row of the last step
        path = root / "fabric" / f"epoch={epoch}.ckpt"
        fabric.save(path, {"model": model, "optimizer": optimizer, "step": step})
        logger.session.log_checkpoint(path, epoch=epoch + 1, metrics={"val_loss": val_loss})  # at the last step
    logger.finalize("success")
    run_id = str(logger.version)
    logger.finish()
    return run_id
