"""The script a W&B sweep runs: swept values come from the run config and go to the framework.

``sweep.yaml`` next to this file sweeps ``learning_rate`` and
``per_device_train_batch_size`` of a ``transformers.Trainer``. How a value gets
from the sweep to the Trainer:

1. the agent starts this script with ``WANDB_SWEEP_ID`` and
   ``WANDB_SWEEP_PARAM_PATH`` (a YAML file ``{name: {value: v}}``) in the environment;
2. ``wandb.init`` (started by ``apply_sweep`` through the callback) reads that
   file into ``run.config``;
3. ``apply_sweep(args, callback)`` returns the ``TrainingArguments`` with every
   field named like a swept parameter replaced (``dataclasses.replace``, so derived
   fields are recomputed); the Trainer is built from those;
4. the run records ``val/loss``, the metric the sweep optimises.

With Lightning or Keras, read the values yourself after the run started, e.g.
``lr = logger.experiment.config.get("learning_rate", 0.01)`` or
``session.config`` of a ``wandb_bridge.Session``, and pass them to your module
or optimizer.

Run it with a sweep (needs a W&B account; from this folder)::

    wandb sweep sweep.yaml && wandb agent <entity>/<project>/<sweep id>

Run one sweep run offline, the way the agent starts it (no account, no server)::

    printf 'learning_rate: {value: 0.05}\nper_device_train_batch_size: {value: 8}\n' > params.yaml
    WANDB_MODE=offline WANDB_SWEEP_ID=local WANDB_SWEEP_PARAM_PATH=params.yaml python train.py [--dir DIR]

Without those variables it is a plain offline run with the defaults below (a few seconds on CPU).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import torch
from transformers import PrinterCallback, Trainer, TrainingArguments

from wandb_bridge import WandbTrainerCallback
from wandb_bridge.callbacks.transformers import apply_sweep


class Regressor(torch.nn.Module):
    """A linear model; any ``nn.Module`` whose forward returns a ``loss`` trains with ``Trainer``."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(8, 1)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        prediction = self.layer(x)
        return {"loss": torch.nn.functional.mse_loss(prediction, labels), "prediction": prediction}


def dataset(n: int, seed: int) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=generator)
    y = x @ torch.linspace(-1.0, 1.0, 8).unsqueeze(1) + 0.1 * torch.randn(n, 1, generator=generator)
    return [{"x": xi, "labels": yi} for xi, yi in zip(x, y, strict=True)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", help="where wandb and the Trainer write (default: WANDB_DIR, else a new temp folder)")
    args, _ = parser.parse_known_args()  # an agent with ${args} in its command adds --name=value: ignored
    root = Path(args.dir or os.environ.get("WANDB_DIR") or tempfile.mkdtemp(prefix="wandb-bridge-sweep-"))

    defaults = TrainingArguments(  # the values a sweep may replace
        output_dir=str(root / "trainer"),
        report_to="none",
        learning_rate=0.01,
        per_device_train_batch_size=16,
        num_train_epochs=2,
        optim="sgd",
        lr_scheduler_type="constant",
        logging_steps=1,
        eval_strategy="epoch",
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
    )
    # Under an agent the run must go to the server: offline only when nothing says otherwise.
    mode = os.environ.get("WANDB_MODE") or (None if os.environ.get("WANDB_SWEEP_ID") else "offline")
    callback = WandbTrainerCallback(project="wandb-bridge-sweep", dir=str(root), mode=mode)
    training_args = apply_sweep(defaults, callback)  # starts the run; swept values replace the defaults
    trainer = Trainer(
        model=Regressor(),
        args=training_args,
        train_dataset=dataset(128, seed=0),
        eval_dataset=dataset(32, seed=1),
        callbacks=[callback],
    )
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    print(
        f"run {callback.run.id}: learning_rate={training_args.learning_rate}, "
        f"batch size {training_args.per_device_train_batch_size}, {trainer.state.global_step} steps"
    )
    callback.finish()


if __name__ == "__main__":
    main()
