"""Lightning: a ``LightningModule`` trained by ``Trainer`` with :class:`~wandb_bridge.WandbLogger`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wandb_bridge.demo.common import BATCH_SIZE, EPOCHS, FEATURES, LEARNING_RATE, make_data, run_args

LABEL = "Lightning"
REQUIRES = ("lightning", "torch")
INSTALL = 'pip install "wandb-bridge[lightning]"'


def train(root: Path) -> str:
    """Fit the demo regression with ``lightning.pytorch``; ``ModelCheckpoint`` files become artifacts.

    Returns:
        The run id.
    """
    import lightning.pytorch as L
    import torch
    from lightning.pytorch.callbacks import ModelCheckpoint
    from torch.utils.data import DataLoader, TensorDataset

    from wandb_bridge import WandbLogger

    class Regression(L.LightningModule):
        def __init__(self, lr: float) -> None:
            super().__init__()
            self.save_hyperparameters()  # -> the run config
            self.lr = lr
            self.layer = torch.nn.Linear(FEATURES, 1)

        def training_step(self, batch: Any, batch_idx: int) -> Any:  # noqa: ARG002
            x, y = batch
            loss = torch.nn.functional.mse_loss(self.layer(x), y)
            self.log("train_loss", loss)  # -> train/loss
            return loss

        def validation_step(self, batch: Any, batch_idx: int) -> None:  # noqa: ARG002
            x, y = batch
            self.log("val_loss", torch.nn.functional.mse_loss(self.layer(x), y))  # -> val/loss

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=self.lr)

    def loader(rows: Any) -> DataLoader[Any]:
        x = torch.tensor([r[0] for r in rows])
        return DataLoader(TensorDataset(x, torch.tensor([[r[1]] for r in rows])), batch_size=BATCH_SIZE)

    train_rows, val_rows = make_data()
    torch.manual_seed(0)
    logger = WandbLogger(log_model="all", **run_args(root, "lightning"))
    trainer = L.Trainer(
        max_epochs=EPOCHS,
        logger=logger,
        log_every_n_steps=1,
        accelerator="cpu",
        default_root_dir=root / "lightning",
        callbacks=[ModelCheckpoint(monitor="val_loss")],
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(Regression(LEARNING_RATE), loader(train_rows), loader(val_rows))
    run_id = str(logger.version)
    logger.finish()
    return run_id
