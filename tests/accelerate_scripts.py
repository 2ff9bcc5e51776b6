"""Training loops for test_accelerate / test_fabric: a tiny regression on CPU, one or two gloo processes.

Imported by the tests (one process) and run as a script for two processes:
``python accelerate_scripts.py <accelerate|fabric> <folder> <mode>``. The script
starts two workers with ``torch.multiprocessing.spawn``; they meet through a
``file://`` rendezvous in ``<folder>`` (no port to pick, no race), and each
sets its own ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` (the launcher's variables
accelerate and Fabric read) before the process group exists. Each worker writes
``rank-<r>.json`` with what it saw.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import torch

FEATURES, BATCH, ROWS, EPOCHS = 4, 8, 32, 2  # 4 optimizer steps per epoch, 8 in all


def data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(x, y, x_val, y_val)`` of a fixed linear regression."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(ROWS + 8, FEATURES, generator=gen) * 2 - 1
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [1.5]]) + 0.5 + 0.1 * torch.randn(ROWS + 8, 1, generator=gen)
    return x[:ROWS], y[:ROWS], x[ROWS:], y[ROWS:]


def train_accelerate(
    log_with: Any,
    root: Path,
    *,
    save: bool = True,
    config: dict[str, Any] | None = None,
    init_kwargs: dict[str, Any] | None = None,
    fail_at: int | None = None,
    start_epoch: int = 0,
    epochs: int = EPOCHS,
) -> dict[str, Any]:
    """accelerate's documented loop: ``init_trackers``, ``log(step=completed_steps)``, ``save_state``, ``end_training``.

    ``start_epoch > 0`` resumes: ``load_state`` of the folder saved after the epoch before.
    """
    from accelerate import Accelerator
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(0)
    accelerator = Accelerator(cpu=True, log_with=log_with)
    model = torch.nn.Linear(FEATURES, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y, x_val, y_val = data()
    loader = DataLoader(TensorDataset(x, y), batch_size=BATCH)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    accelerator.init_trackers(
        "accel-proj", config=config or {"lr": 0.1, "batch_size": BATCH}, init_kwargs=init_kwargs or {}
    )
    tracker = accelerator.get_tracker("wandb")
    if start_epoch:
        accelerator.load_state(str(root / "checkpoints" / f"checkpoint_{start_epoch - 1}"))
    completed, saved = start_epoch * ROWS // BATCH, []
    for epoch in range(start_epoch, epochs):
        for xb, yb in loader:
            loss = torch.nn.functional.mse_loss(model(xb), yb)
            accelerator.backward(loss)
            optimizer.step()
            optimizer.zero_grad()
            completed += 1
            if fail_at is not None and completed == fail_at:
                raise RuntimeError("training failed on purpose")
            accelerator.log({"train_loss": loss.item()}, step=completed)
        with torch.no_grad():
            val_loss = torch.nn.functional.mse_loss(model(x_val), y_val).item()
        accelerator.log({"val_loss": val_loss, "epoch": epoch + 1}, step=completed)
        if save:
            path = accelerator.save_state(str(root / "checkpoints" / f"checkpoint_{epoch}"))
            accelerator.wait_for_everyone()  # every rank's files are in the folder now
            saved.append(str(path))
            if hasattr(tracker, "log_checkpoint"):
                tracker.log_checkpoint(path, step=completed, epoch=epoch + 1, metrics={"val_loss": val_loss})
    info = {
        "rank": accelerator.process_index,
        "world": accelerator.num_processes,
        "saved": saved,
        "tracker": type(tracker).__name__,
        "run": getattr(accelerator.get_tracker("wandb", unwrap=True), "id", None)
        if accelerator.is_main_process
        else None,
    }
    accelerator.wait_for_everyone()  # no rank leaves the process group while another one still uses it
    accelerator.end_training()
    return info


def train_fabric(logger: Any, root: Path, *, devices: int = 1, save: bool = True) -> dict[str, Any]:
    """Fabric's documented loop: ``fabric.log_dict``/``fabric.log``, ``log_hyperparams``, ``fabric.save``."""
    from lightning.fabric import Fabric
    from torch.utils.data import DataLoader, TensorDataset

    from wandb_bridge import WandbLogger

    fabric = Fabric(accelerator="cpu", devices=devices, strategy="ddp" if devices > 1 else "auto", loggers=[logger])
    fabric.launch()
    fabric.seed_everything(0)
    model = torch.nn.Linear(FEATURES, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model, optimizer = fabric.setup(model, optimizer)
    x, y, x_val, y_val = data()
    loader = fabric.setup_dataloaders(DataLoader(TensorDataset(x, y), batch_size=BATCH))
    fabric.logger.log_hyperparams({"lr": 0.1, "batch_size": BATCH})
    step, saved = 0, []
    for epoch in range(EPOCHS):
        for xb, yb in loader:
            loss = torch.nn.functional.mse_loss(model(xb), yb)
            fabric.backward(loss)
            optimizer.step()
            optimizer.zero_grad()
            fabric.log("train_loss", loss.item(), step=step)  # Lightning's 0-based step
            step += 1
        with torch.no_grad():
            val_loss = torch.nn.functional.mse_loss(model(x_val), y_val).item()
        fabric.log_dict({"val_loss": val_loss, "epoch": epoch + 1}, step=step - 1)
        if save:
            path = root / "checkpoints" / f"epoch={epoch}.ckpt"
            fabric.save(path, {"model": model, "optimizer": optimizer, "step": step})
            fabric.barrier()
            saved.append(str(path))
            logger.session.log_checkpoint(path, epoch=epoch + 1, metrics={"val_loss": val_loss})
    logger.finalize("success")
    if isinstance(logger, WandbLogger):
        logger.finish()
    else:  # Lightning's own WandbLogger has no finish: its run is the process's to finish
        logger.experiment.finish()
    return {
        "rank": fabric.global_rank,
        "world": fabric.world_size,
        "saved": saved,
        "run": logger.version if fabric.is_global_zero else None,
    }


def _worker(rank: int, kind: str, root: str, mode: str) -> None:
    os.environ.update(
        {
            "RANK": str(rank),
            "WORLD_SIZE": "2",
            "LOCAL_RANK": str(rank),
            "LOCAL_WORLD_SIZE": "2",
            "NODE_RANK": "0",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": "1",
        }
    )  # port unused: file://
    torch.distributed.init_process_group("gloo", init_method=f"file://{root}/rendezvous", rank=rank, world_size=2)
    folder = Path(root)
    if kind == "accelerate":
        from wandb_bridge import WandbTracker

        tracker = WandbTracker(project="accel-ddp", name="job", log_model="all", monitor="val_loss")
        info = train_accelerate([tracker], folder)
        tracker.start()  # accelerate calls trackers on its main process only; called directly, the core decides
        info["enabled"] = tracker.tracker is not None
    else:
        from wandb_bridge import WandbLogger

        logger = WandbLogger(project="fabric-ddp", name="job", log_model="all", monitor="val_loss")
        info = train_fabric(logger, folder, devices=2)
        info["enabled"] = logger.session.run is not None
    (folder / f"rank-{rank}.json").write_text(json.dumps(info))
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    if rank != 0:
        # Rank 1 holds no run: end it without the interpreter's teardown, where torch's gloo threads
        # sometimes abort the process ("terminate called without an active exception") after the work is done.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


if __name__ == "__main__":
    import torch.multiprocessing as mp

    kind_arg, root_arg, mode_arg = sys.argv[1], sys.argv[2], sys.argv[3]
    if mode_arg == "fail":  # one process whose training raises: the run must end with a non-zero exit code
        from wandb_bridge import WandbTracker

        train_accelerate([WandbTracker(project="accel-fail", log_model="all")], Path(root_arg), fail_at=6)
    mp.spawn(_worker, args=(kind_arg, root_arg, mode_arg), nprocs=2, join=True)
