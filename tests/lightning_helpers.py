"""Tiny real LightningModules and DataModules for the WandbLogger tests, and a DDP worker script.

Run as a script for the distributed cases (Lightning's ``ddp`` launcher starts
the other rank by running this script again)::

    python tests/lightning_helpers.py ROOT

It trains twice under ``strategy="ddp"`` on 2 CPU processes: once with the
default ``rank_zero_only=True``, then with ``rank_zero_only=False``. ``ROOT``
receives the checkpoints; wandb writes where ``WANDB_DIR`` points. It prints
``ONE|PER_RANK|FINAL RANK <r> RUN <run id or None>`` lines for the test.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any

import lightning.pytorch as L
import torch
from torch.utils.data import DataLoader, TensorDataset

N_SAMPLES = 32
BATCH_SIZE = 4  # 8 batches per epoch


def dataset(seed: int = 0, n: int = N_SAMPLES) -> TensorDataset:
    """A fixed regression data set (y = x @ w + noise)."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=generator)
    w = torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
    y = x @ w + 0.1 * torch.randn(n, 1, generator=generator)
    return TensorDataset(x, y)


def loaders(batch_size: int = BATCH_SIZE) -> tuple[DataLoader[Any], DataLoader[Any]]:
    """Train and validation loaders (no shuffling: runs are reproducible)."""
    return (
        DataLoader(dataset(0), batch_size=batch_size),
        DataLoader(dataset(1, 16), batch_size=8),
    )


def build(pl: ModuleType) -> dict[str, type]:
    """The test modules for one Lightning namespace (``lightning.pytorch`` or ``pytorch_lightning``)."""

    class TinyModule(pl.LightningModule):  # type: ignore[name-defined,misc]
        """Linear regression; logs Lightning-style names (train_loss, val_loss, val_acc, test_acc)."""

        def __init__(
            self,
            lr: float = 0.05,
            hidden: int = 4,
            api_token: str = "tok-secret-123",
            fail_at_step: int = -1,
            per_batch_val: bool = False,
        ) -> None:
            super().__init__()
            self.save_hyperparameters()
            self.layer = torch.nn.Linear(4, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.layer(x)  # type: ignore[no-any-return]

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            if self.global_step == self.hparams.fail_at_step:
                raise RuntimeError("boom: training failed on purpose")
            x, y = batch
            loss = torch.nn.functional.mse_loss(self(x), y)
            self.log("train_loss", loss)
            return loss

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            x, y = batch
            loss = torch.nn.functional.mse_loss(self(x), y)
            self.log("val_loss", loss)
            self.log("val_acc", 1.0 / (1.0 + loss))
            if self.hparams.per_batch_val:
                self.log("val_batch_loss", loss, on_step=True, on_epoch=False)

        def test_step(self, batch: Any, batch_idx: int) -> None:
            x, y = batch
            loss = torch.nn.functional.mse_loss(self(x), y)
            self.log("test_loss", loss)
            self.log("test_acc", 1.0 / (1.0 + loss))

        def configure_optimizers(self) -> Any:
            optimizer = torch.optim.SGD(self.parameters(), lr=self.hparams.lr)
            scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
            return {"optimizer": optimizer, "lr_scheduler": scheduler}

    class TwoOptimizerModule(pl.LightningModule):  # type: ignore[name-defined,misc]
        """Manual optimization with two optimizers: trainer.global_step grows by 2 per batch."""

        def __init__(self) -> None:
            super().__init__()
            self.automatic_optimization = False
            self.a = torch.nn.Linear(4, 1)
            self.b = torch.nn.Linear(4, 1)

        def training_step(self, batch: Any, batch_idx: int) -> None:
            x, y = batch
            opt_a, opt_b = self.optimizers()
            loss_a = torch.nn.functional.mse_loss(self.a(x), y)
            opt_a.zero_grad()
            self.manual_backward(loss_a)
            opt_a.step()
            loss_b = torch.nn.functional.mse_loss(self.b(x), y)
            opt_b.zero_grad()
            self.manual_backward(loss_b)
            opt_b.step()
            self.log_dict({"loss_a": loss_a, "loss_b": loss_b})

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            x, y = batch
            self.log("val_loss", torch.nn.functional.mse_loss(self.a(x), y))

        def configure_optimizers(self) -> Any:
            return [torch.optim.SGD(self.a.parameters(), lr=0.05), torch.optim.SGD(self.b.parameters(), lr=0.05)]

    class TinyDataModule(pl.LightningDataModule):  # type: ignore[name-defined,misc]
        """The data as a DataModule with its own hyper-parameters."""

        def __init__(self, batch_size: int = BATCH_SIZE, data_seed: int = 0) -> None:
            super().__init__()
            self.save_hyperparameters()

        def train_dataloader(self) -> DataLoader[Any]:
            return DataLoader(dataset(self.hparams.data_seed), batch_size=self.hparams.batch_size)

        def val_dataloader(self) -> DataLoader[Any]:
            return DataLoader(dataset(1, 16), batch_size=8)

        def test_dataloader(self) -> DataLoader[Any]:
            return DataLoader(dataset(2, 16), batch_size=8)

    classes: dict[str, type] = {
        "TinyModule": TinyModule,
        "TwoOptimizerModule": TwoOptimizerModule,
        "TinyDataModule": TinyDataModule,
    }
    for name, cls in classes.items():  # picklable by name (ddp_spawn) when built for this module
        cls.__qualname__ = name
        cls.__module__ = __name__
    return classes


_LIGHTNING = build(L)
TinyModule = _LIGHTNING["TinyModule"]
TwoOptimizerModule = _LIGHTNING["TwoOptimizerModule"]
TinyDataModule = _LIGHTNING["TinyDataModule"]


def trainer_kwargs(root: str, **overrides: Any) -> dict[str, Any]:
    """Quiet, fast Trainer arguments for CPU tests."""
    kwargs: dict[str, Any] = {
        "default_root_dir": root,
        "max_epochs": 2,
        "accelerator": "cpu",
        "devices": 1,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "log_every_n_steps": 1,
        "num_sanity_val_steps": 0,
    }
    kwargs.update(overrides)
    return kwargs


def ddp_fit(
    strategy: str, root: str, rank_zero_only: bool = True, checkpointing: bool = True, **logger_kwargs: Any
) -> tuple[int, str | None]:
    """One short fit on 2 CPU processes (gloo), with a ``ModelCheckpoint`` unless not ``checkpointing``;
    returns (global rank, run id logged into)."""
    import os

    from lightning.pytorch.callbacks import ModelCheckpoint

    from wandb_bridge import WandbLogger

    logger = WandbLogger(project="ddp-test", rank_zero_only=rank_zero_only, system_stats=False, **logger_kwargs)
    checkpoint = ModelCheckpoint(dirpath=os.path.join(root, "ckpt"), monitor="val_loss")
    trainer = L.Trainer(
        **trainer_kwargs(root, devices=2, strategy=strategy, max_epochs=1, limit_train_batches=4, limit_val_batches=1),
        logger=logger,
        callbacks=[checkpoint] if checkpointing else [],
        enable_checkpointing=checkpointing,
    )
    train, val = loaders()
    trainer.fit(TinyModule(), train, val)
    session = logger.session
    run_id = session.run_id if session.started else None
    logger.finish()
    return trainer.global_rank, run_id


def _ddp_main(root: str) -> None:
    """Under strategy="ddp": one run from rank 0, then one run per rank (same processes)."""
    import os

    rank, run_id = ddp_fit("ddp", os.path.join(root, "one"), log_model="all")
    print(f"ONE RANK {rank} RUN {run_id}", flush=True)
    rank, run_id = ddp_fit("ddp", os.path.join(root, "per-rank"), rank_zero_only=False, group="per-rank-group")
    print(f"PER_RANK RANK {rank} RUN {run_id}", flush=True)


def _ddp_final_main(root: str) -> None:
    """Under strategy="ddp", one run per rank, no ``ModelCheckpoint``: every rank saves the final weights."""
    rank, run_id = ddp_fit("ddp", root, rank_zero_only=False, checkpointing=False, group="final", log_model="end")
    print(f"FINAL RANK {rank} RUN {run_id}", flush=True)


if __name__ == "__main__":
    import os

    import wandb

    (_ddp_final_main if sys.argv[2:] == ["final"] else _ddp_main)(sys.argv[1])
    wandb.teardown()  # the service has written every run file when this returns
    sys.stdout.flush()
    os._exit(0)  # skip the interpreter's slow teardown of torch/gloo: ~5 s per process on a busy CPU
