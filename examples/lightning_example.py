"""PyTorch Lightning with ``wandb_bridge.WandbLogger``: swap one import, keep your Trainer.

Shows: ``self.log("train_loss")``/``"val_loss"``/``"test_loss"`` recorded as
``train/loss``, ``val/loss``, ``test/loss`` on ``trainer/global_step`` (optimizer
steps, 1 in the first row), ``save_hyperparameters()`` plus the Trainer's settings
in the config, the ``ModelCheckpoint`` files uploaded as ``model-<run id>`` with
``latest``/``best``/``step-<S>``/``epoch-<E>`` aliases (``log_model="best"``: the
files that improve ``val_loss``), ``trainer.test()`` logged into the same run, and
the run finished with exit code 0.

Run (offline unless WANDB_MODE says otherwise; about 10 s on CPU)::

    pip install "wandb-bridge[lightning]"
    python examples/lightning_example.py [--dir DIR] [--epochs 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from typing import Any

import lightning.pytorch as L
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

from wandb_bridge import WandbLogger  # was: from lightning.pytorch.loggers import WandbLogger


class Regressor(L.LightningModule):
    """A small MLP for ``y = x . w + noise``."""

    def __init__(self, lr: float = 0.05, hidden: int = 16) -> None:
        super().__init__()
        self.save_hyperparameters()  # -> run config: lr, hidden
        self.lr = lr
        self.net = torch.nn.Sequential(torch.nn.Linear(8, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1))

    def _loss(self, batch: Any) -> torch.Tensor:
        x, y = batch
        return torch.nn.functional.mse_loss(self.net(x), y)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:  # noqa: ARG002
        loss = self._loss(batch)
        self.log("train_loss", loss)  # -> train/loss
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:  # noqa: ARG002
        self.log("val_loss", self._loss(batch))  # -> val/loss

    def test_step(self, batch: Any, batch_idx: int) -> None:  # noqa: ARG002
        self.log("test_loss", self._loss(batch))  # -> test/loss

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.SGD(self.parameters(), lr=self.lr)
        return {"optimizer": optimizer, "lr_scheduler": torch.optim.lr_scheduler.StepLR(optimizer, 1, gamma=0.7)}


def loader(n: int, seed: int, shuffle: bool = False) -> DataLoader[tuple[torch.Tensor, ...]]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=generator)
    y = x @ torch.linspace(-1.0, 1.0, 8).unsqueeze(1) + 0.1 * torch.randn(n, 1, generator=generator)
    return DataLoader(TensorDataset(x, y), batch_size=16, shuffle=shuffle)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", help="where wandb writes the run (default: WANDB_DIR, else a new temp folder)")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    root = Path(args.dir or os.environ.get("WANDB_DIR") or tempfile.mkdtemp(prefix="wandb-bridge-example-"))

    logger = WandbLogger(
        project="wandb-bridge-examples",
        name="lightning",
        save_dir=str(root),
        mode=os.environ.get("WANDB_MODE", "offline"),
        log_model="best",  # the checkpoints that improve ModelCheckpoint's monitor; "all", "end" (= True) also work
    )
    trainer = L.Trainer(
        max_epochs=args.epochs,
        logger=logger,
        log_every_n_steps=1,
        accelerator="cpu",
        default_root_dir=str(root),
        callbacks=[ModelCheckpoint(monitor="val_loss", save_last=True), LearningRateMonitor()],
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    torch.manual_seed(0)
    model = Regressor()
    trainer.fit(model, loader(256, 0, shuffle=True), loader(64, 1))
    trainer.test(model, loader(64, 2))  # same run, at the step the model was trained to
    run_id = logger.version
    logger.finish()  # optional: done at process exit otherwise
    print(f"run {run_id}: {trainer.global_step} steps, checkpoints in {root / 'checkpoints'}")


if __name__ == "__main__":
    main()
