"""Hugging Face transformers with ``wandb_bridge.WandbTrainerCallback`` (and ``report_to="none"``).

Shows: the Trainer's ``loss``/``learning_rate``/``grad_norm`` recorded as
``train/*`` and ``eval_*`` as ``val/*`` on ``trainer/global_step``,
``trainer.evaluate(metric_key_prefix="test")`` as ``test/*`` in the same run,
``TrainingArguments`` and the model config in the run config (``hub_token``
redacted), a table of validation predictions (``log_predictions``), and the
``checkpoint-N`` folders uploaded as ``model-<run id>`` artifacts
(``checkpoint_files="weights"``: weights, configs and tokenizer, no optimizer
state; ``training_args.bin`` is never uploaded) with the ``best`` alias on the
checkpoint the Trainer calls best (``metric_for_best_model``).

The model is a one-layer BERT built in code, with its own 100-word vocabulary
(nothing is downloaded); a sentence's label tells which half of the vocabulary its words come from.

Run (offline unless WANDB_MODE says otherwise; about 15 s on CPU)::

    pip install "wandb-bridge[transformers]"
    python examples/transformers_example.py [--dir DIR] [--epochs 3]
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    BertTokenizer,
    DataCollatorWithPadding,
    PrinterCallback,
    Trainer,
    TrainingArguments,
)

from wandb_bridge import WandbTrainerCallback

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(95)]


def sentences(tokenizer: BertTokenizer, n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` tokenized six-word sentences: label 0 uses words w0..w47, label 1 words w48..w94."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.randrange(2)
        words = [rng.randrange(48 * label, 48 + 47 * label) for _ in range(6)]
        rows.append({**tokenizer(" ".join(f"w{i}" for i in words)), "labels": label})
    return rows


def accuracy(prediction: Any) -> dict[str, float]:
    return {"accuracy": float((np.argmax(prediction.predictions, axis=-1) == prediction.label_ids).mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", help="where wandb and the Trainer write (default: WANDB_DIR, else a new temp folder)")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    root = Path(args.dir or os.environ.get("WANDB_DIR") or tempfile.mkdtemp(prefix="wandb-bridge-example-"))

    tokenizer = BertTokenizer(vocab={word: i for i, word in enumerate(VOCAB)})
    torch.manual_seed(0)
    model = BertForSequenceClassification(
        BertConfig(
            vocab_size=len(VOCAB),
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=16,
            num_labels=2,
        )
    )
    training_args = TrainingArguments(
        output_dir=str(root / "trainer"),
        report_to="none",  # the callback below does the W&B part
        num_train_epochs=args.epochs,
        per_device_train_batch_size=16,
        learning_rate=3e-3,
        logging_steps=2,
        eval_strategy="epoch",
        save_strategy="epoch",
        save_total_limit=2,
        load_best_model_at_end=True,
        metric_for_best_model="accuracy",  # -> monitor val/accuracy (max): the "best" alias, the summary
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
        run_name="transformers",  # -> the W&B run name
    )
    callback = WandbTrainerCallback(
        project="wandb-bridge-examples",
        dir=str(root),
        mode=os.environ.get("WANDB_MODE", "offline"),
        log_model="best",  # upload the checkpoints that are the Trainer's best so far
        checkpoint_files="weights",
        log_predictions=8,  # a table of 8 validation samples at every evaluation
    )
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=sentences(tokenizer, 192, seed=0),
        eval_dataset=sentences(tokenizer, 64, seed=1),
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        compute_metrics=accuracy,
        callbacks=[callback],
    )
    trainer.remove_callback(PrinterCallback)  # disable_tqdm=True would print every log dict
    trainer.train()
    test = trainer.evaluate(sentences(tokenizer, 64, seed=2), metric_key_prefix="test")  # -> test/accuracy
    run_id = callback.run.id
    callback.finish()  # optional: done at process exit otherwise
    print(f"run {run_id}: {trainer.state.global_step} steps, test accuracy {test['test_accuracy']:.2f}")


if __name__ == "__main__":
    main()
