"""transformers: ``Trainer`` with :class:`~wandb_bridge.WandbTrainerCallback` (``report_to="none"``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wandb_bridge.demo.common import BATCH_SIZE, EPOCHS, FEATURES, LEARNING_RATE, make_data, run_args

LABEL = "transformers"
REQUIRES = ("transformers", "accelerate", "torch")
INSTALL = 'pip install "wandb-bridge[transformers]"'


def train(root: Path) -> str:
    """Fit the demo regression with ``transformers.Trainer``; its ``checkpoint-N`` folders become artifacts.

    Returns:
        The run id.
    """
    import torch
    from transformers import PrinterCallback, Trainer, TrainingArguments

    from wandb_bridge import WandbTrainerCallback

    class Regression(torch.nn.Module):
        """Any ``nn.Module`` whose forward returns a ``loss`` trains with ``Trainer``."""

        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(FEATURES, 1)

        def forward(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
            prediction = self.layer(x)
            return {"loss": torch.nn.functional.mse_loss(prediction, labels), "prediction": prediction}

    def dataset(rows: Any) -> list[dict[str, torch.Tensor]]:
        return [{"x": torch.tensor(x), "labels": torch.tensor([y])} for x, y in rows]

    train_rows, val_rows = make_data()
    args = TrainingArguments(
        output_dir=str(root / "transformers"),
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        num_train_epochs=EPOCHS,
        per_device_train_batch_size=BATCH_SIZE,
        learning_rate=LEARNING_RATE,
        optim="sgd",
        lr_scheduler_type="constant",
        logging_steps=1,
        eval_strategy="epoch",
        save_strategy="epoch",
        metric_for_best_model="loss",
        seed=0,
        dataloader_num_workers=0,
    )
    torch.manual_seed(0)
    callback = WandbTrainerCallback(log_model="all", checkpoint_files="weights", **run_args(root, "transformers"))
    trainer = Trainer(
        model=Regression(),
        args=args,
        train_dataset=dataset(train_rows),
        eval_dataset=dataset(val_rows),
        callbacks=[callback],
    )
    trainer.remove_callback(PrinterCallback)  # disable_tqdm=True would print every log dict
    trainer.train()
    run_id = str(callback.run.id)
    callback.finish()
    return run_id
