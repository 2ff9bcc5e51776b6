"""Lightning Fabric: a plain PyTorch loop run by ``Fabric`` with :class:`~wandb_bridge.WandbLogger`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wandb_bridge.demo.common import BATCH_SIZE, EPOCHS, LEARNING_RATE, run_args, sgd_epoch, torch_loop, val_loss

LABEL = "Fabric"
REQUIRES = ("lightning", "torch")
INSTALL = 'pip install "wandb-bridge[fabric]"'


def train(root: Path) -> str:
    """Fit the demo regression with ``lightning.fabric`` (each ``fabric.save`` file an artifact version).

    Returns:
        The run id.
    """
    from lightning.fabric import Fabric

    from wandb_bridge import WandbLogger

    start = torch_loop()  # seeded before the framework objects exist
    logger = WandbLogger(log_model="all", monitor="val_loss", **run_args(root, "fabric"))
    fabric = Fabric(accelerator="cpu", devices=1, loggers=[logger])
    model, optimizer = fabric.setup(start.model, start.optimizer)
    loader: Any = fabric.setup_dataloaders(start.loader())
    fabric.logger.log_hyperparams({"lr": LEARNING_RATE, "batch_size": BATCH_SIZE})  # -> the run config
    step = 0  # optimizer steps done; Fabric's step= is Lightning's (0-based): trainer/global_step = step= + 1
    for epoch in range(EPOCHS):
        for loss in sgd_epoch(model, optimizer, loader, fabric.backward):
            step += 1
            fabric.log_dict({"train_loss": loss, "epoch": step / len(loader)}, step=step - 1)  # -> train/loss
        loss = val_loss(model, start.x_val, start.y_val)
        fabric.log_dict({"val_loss": loss}, step=step - 1)  # -> val/loss, in the row of the last step
        path = root / "fabric" / f"epoch={epoch}.ckpt"
        fabric.save(path, {"model": model, "optimizer": optimizer, "step": step})
        logger.session.log_checkpoint(path, epoch=epoch + 1, metrics={"val_loss": loss})  # at the last step
    logger.finalize("success")
    run_id = str(logger.version)
    logger.finish()
    return run_id
