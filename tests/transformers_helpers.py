"""Tiny transformers models, data and a torchrun worker for tests/test_transformers.py.

Everything is built in code (no download): a one-layer BERT with a 100-token
vocabulary, a word-piece tokenizer over that vocabulary, and an in-memory
dataset whose label is readable from the first token (so training moves the loss).

Run as a script, it is the worker of the 2-process ``torchrun`` test::

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/transformers_helpers.py ddp OUT
    python tests/transformers_helpers.py crash OUT   # an exception ends training
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    BertTokenizer,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

#: A token planted in ``TrainingArguments.hub_token``; it must reach no recorded file.
PLANTED_TOKEN = "hf_PlantedSecretToken0123456789abcdef"

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + [f"w{i}" for i in range(95)]
SEQ_LEN = 8


def make_model(seed: int = 0) -> BertForSequenceClassification:
    """A one-layer BERT classifier (about 5k parameters), initialised from ``seed``."""
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(VOCAB),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=SEQ_LEN + 2,
        num_labels=2,
    )
    return BertForSequenceClassification(config)


def make_tokenizer() -> BertTokenizer:
    """A word-piece tokenizer over :data:`VOCAB` (``w0`` ... ``w94``)."""
    vocab = {word: i for i, word in enumerate(VOCAB)}
    if int(transformers.__version__.split(".")[0]) >= 5:
        return BertTokenizer(vocab=vocab)
    # transformers 4.x reads the vocabulary from a file only.
    path = Path(tempfile.mkdtemp(prefix="bert-vocab-"), "vocab.txt")
    path.write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    return BertTokenizer(vocab_file=str(path))


class ToyDataset(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """``n`` random sequences of word ids; the label is 1 when the first word id is >= 52."""

    def __init__(self, n: int, seed: int = 0) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(5, len(VOCAB), (n, SEQ_LEN), generator=generator)
        self.labels = (self.ids[:, 0] >= 52).long()

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {
            "input_ids": self.ids[index],
            "attention_mask": torch.ones(SEQ_LEN, dtype=torch.long),
            "labels": self.labels[index],
        }


def make_args(output_dir: str | os.PathLike[str], **overrides: Any) -> TrainingArguments:
    """Fast CPU ``TrainingArguments``: 6 steps, a log every 2, no eval/save unless asked."""
    values: dict[str, Any] = {
        "output_dir": str(output_dir),
        "report_to": "none",
        "use_cpu": True,
        "disable_tqdm": True,
        "max_steps": 6,
        "logging_steps": 2,
        "per_device_train_batch_size": 4,
        "per_device_eval_batch_size": 8,
        "learning_rate": 5e-3,
        "seed": 0,
        "save_strategy": "no",
        "eval_strategy": "no",
        "dataloader_num_workers": 0,
        "hub_token": PLANTED_TOKEN,
    }
    values.update(overrides)
    return TrainingArguments(**values)


def make_trainer(
    args: TrainingArguments,
    callbacks: list[Any] | None = None,
    *,
    tokenizer: bool = False,
    model_init: bool = False,
    train_size: int = 32,
    eval_size: int = 8,
) -> Trainer:
    """A Trainer over :class:`ToyDataset` train/eval sets."""
    kwargs: dict[str, Any] = {}
    if model_init:
        kwargs["model_init"] = lambda trial=None: make_model()
    else:
        kwargs["model"] = make_model()
    if tokenizer:
        kwargs["processing_class"] = make_tokenizer()
    return Trainer(
        args=args,
        train_dataset=ToyDataset(train_size, seed=0),
        eval_dataset=ToyDataset(eval_size, seed=1),
        callbacks=callbacks or [],
        **kwargs,
    )


def _worker(output_dir: str) -> None:
    """One torchrun process: train with WandbTrainerCallback and report rank, run id, world size.

    The process ends with ``os._exit`` once every rank is done: with gloo on CPU,
    a rank's interpreter shutdown sometimes hangs in torch's C++ teardown after
    the other rank has exited (seen about one run in three), which has nothing
    to do with what is tested here.
    """
    from wandb_bridge import WandbTrainerCallback

    (Path(output_dir) / f"pid-{os.getpid()}").touch()  # lets the test kill a hung worker
    rank_zero_only = os.environ.get("TEST_RANK_ZERO_ONLY", "1") == "1"
    callback = WandbTrainerCallback(project="ddp", rank_zero_only=rank_zero_only)
    args = make_args(Path(output_dir) / "out", max_steps=4, logging_steps=1, ddp_backend="gloo")
    trainer = make_trainer(args, [callback])
    trainer.train()
    dist = torch.distributed
    world = dist.get_world_size() if dist.is_initialized() else 1
    rank = dist.get_rank() if dist.is_initialized() else 0
    run = callback.run
    callback.finish()
    if run is not None:
        import wandb

        wandb.teardown()  # the run file is complete before os._exit below
    with open(Path(output_dir) / f"rank-{rank}.txt", "w") as handle:
        zero = int(trainer.state.is_world_process_zero)
        handle.write(f"{zero} {run.id if run is not None else '-'} {world}\n")
    if dist.is_initialized():
        dist.barrier()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


class _Crash(TrainerCallback):
    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == 3:
            raise RuntimeError("training failed at step 3")


def _crash(output_dir: str) -> None:
    """Train until an exception at step 3 ends the process; the callback is never finished."""
    from wandb_bridge import WandbTrainerCallback

    args = make_args(Path(output_dir) / "out", logging_steps=1)
    make_trainer(args, [WandbTrainerCallback(project="crash"), _Crash()]).train()


if __name__ == "__main__":
    {"ddp": _worker, "crash": _crash}[sys.argv[1]](sys.argv[2])
