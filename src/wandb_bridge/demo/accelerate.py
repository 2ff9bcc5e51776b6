"""accelerate: a plain PyTorch loop run by ``Accelerator`` with :class:`~wandb_bridge.WandbTracker`."""

from __future__ import annotations

from pathlib import Path

from wandb_bridge.demo.common import BATCH_SIZE, EPOCHS, LEARNING_RATE, run_args, sgd_epoch, torch_loop, val_loss

LABEL = "accelerate"
REQUIRES = ("accelerate", "torch")
INSTALL = 'pip install "wandb-bridge[accelerate]"'


def train(root: Path) -> str:
    """Fit the demo regression with accelerate (each ``save_state`` folder an artifact version).

    Returns:
        The run id.
    """
    from accelerate import Accelerator

    from wandb_bridge import WandbTracker

    start = torch_loop()  # seeded before the framework objects exist
    tracker = WandbTracker(log_model="all", monitor="val_loss", **run_args(root, "accelerate"))
    accelerator = Accelerator(log_with=[tracker])
    model, optimizer, loader = accelerator.prepare(start.model, start.optimizer, start.loader())
    accelerator.init_trackers("wandb-bridge-demo", config={"lr": LEARNING_RATE, "batch_size": BATCH_SIZE})
    x_val, y_val = start.x_val.to(accelerator.device), start.y_val.to(accelerator.device)
    completed = 0
    for epoch in range(EPOCHS):
        for loss in sgd_epoch(model, optimizer, loader, accelerator.backward):
            completed += 1
            epochs = completed / len(loader)  # -> trainer/epoch
            accelerator.log({"train_loss": loss, "epoch": epochs}, step=completed)  # step=: trainer/global_step
        loss = val_loss(model, x_val, y_val)
        accelerator.log({"val_loss": loss}, step=completed)  # -> val/loss, same row
        folder = accelerator.save_state(str(root / "accelerate" / f"checkpoint_{epoch}"))
        tracker.log_checkpoint(folder, step=completed, epoch=epoch + 1, metrics={"val_loss": loss})
    run_id = tracker.session.run_id or ""
    accelerator.end_training()
    return run_id
