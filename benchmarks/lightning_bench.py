"""Lightning: no logger, ``lightning.pytorch.loggers.WandbLogger``, ``wandb_bridge.WandbLogger``.

``self.log("loss", loss)`` in ``training_step`` and ``log_every_n_steps=1`` in every
variant, so Lightning's own logging work is part of the baseline (``logger=False``)
and only the logger differs. Both loggers create their run before training starts
(``logger.experiment``), outside the timing window.

Worker: ``python -m benchmarks.lightning_bench --variant none|native|ours --steps N --result FILE``.
"""

from __future__ import annotations

import importlib.util
import os
import time
from collections.abc import Sequence
from typing import Any

from benchmarks._harness import (
    BATCH,
    LR,
    Window,
    finish_and_report,
    make_data,
    make_mlp,
    setup_torch,
    worker_args,
)

NAME = "lightning"
TITLE = "Lightning Trainer"
NATIVE = "lightning WandbLogger"
OURS = "wandb_bridge.WandbLogger"
MODULE = "benchmarks.lightning_bench"
# What the fork server imports once for every variant of this worker (``_forkserver``).
PRELOAD = ("torch", "lightning.pytorch", "wandb")
OURS_MODULE = "wandb_bridge.callbacks.lightning"
# Lightning's default bar is Rich's where ``rich`` is installed (as here: Keras requires it), and Rich
# redraws a live display only on a terminal: a worker's output goes to a file, where it would draw the
# bar once, at the end. Rich's documented switches make it draw as it does for a user in a terminal
# (a redraw every few steps here, each a write that wandb captures). tqdm draws either way.
TERMINAL = {"TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "1"}


def unavailable() -> dict[str, str]:
    """Variants that cannot run here, with the reason."""
    if importlib.util.find_spec("lightning") is None:
        return dict.fromkeys(("none", "native", "ours"), "lightning is not installed")
    if importlib.util.find_spec(OURS_MODULE) is None:
        return {"ours": f"{OURS_MODULE} does not exist yet"}
    return {}


def make_module(pl: Any, torch: Any) -> Any:
    """The tiny MLP as a ``LightningModule`` that logs ``loss`` at every step (``self.log``)."""

    class Module(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = make_mlp(torch)

        def training_step(self, batch: Any, batch_idx: int) -> Any:  # noqa: ARG002
            x, y = batch
            loss = torch.nn.functional.mse_loss(self.net(x), y)
            self.log("loss", loss)
            return loss

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=LR)

    return Module()


def main(argv: Sequence[str] | None = None) -> None:
    """Train the tiny MLP with a Lightning ``Trainer`` for ``warmup + steps + 1`` steps."""
    args = worker_args(argv)
    if args.bar:
        os.environ.update(TERMINAL)
    torch = setup_torch()
    import lightning.pytorch as pl

    window = Window.from_args(args)
    total = window.total_steps

    class Timer(pl.Callback):
        def on_train_batch_start(self, trainer: Any, *_: Any) -> None:
            window.at_step_start(trainer.global_step)

    x, y = make_data(torch)
    repeats = -(-total * BATCH // len(x))
    dataset = torch.utils.data.TensorDataset(x.repeat(repeats, 1), y.repeat(repeats, 1))
    loader = torch.utils.data.DataLoader(dataset, batch_size=BATCH, shuffle=False)

    logger: Any = False
    t_init = time.perf_counter()
    if args.variant == "native":
        from lightning.pytorch.loggers import WandbLogger

        logger = WandbLogger()
        _ = logger.experiment
    elif args.variant == "ours":
        from wandb_bridge import WandbLogger as OurLogger

        logger = OurLogger()
        _ = logger.experiment
    elif args.variant != "none":
        raise SystemExit(f"unknown variant {args.variant!r}")
    init_s = time.perf_counter() - t_init

    trainer = pl.Trainer(
        max_steps=total,
        max_epochs=1,
        logger=logger,
        log_every_n_steps=1,
        accelerator="gpu" if args.device == "cuda" else "cpu",
        devices=1,
        enable_checkpointing=False,
        enable_progress_bar=bool(args.bar),  # Lightning's default bar (see TERMINAL)
        enable_model_summary=bool(args.printing),
        num_sanity_val_steps=0,
        limit_val_batches=0,
        callbacks=[Timer()],
    )
    trainer.fit(make_module(pl, torch), train_dataloaders=loader)
    t_end = time.perf_counter()
    finish_and_report(args.result, args.variant, logger if logger is not False else None, window, t_end, init_s=init_s)


if __name__ == "__main__":
    main()
