"""Hugging Face ``transformers.Trainer``: no logger, ``report_to="wandb"``, ours.

* none: ``report_to="none"``.
* native: ``report_to="wandb"`` (transformers' ``WandbCallback``).
* ours: ``report_to="none"`` + ``callbacks=[WandbTrainerCallback()]``.

``logging_steps=1`` in every variant, so the Trainer's own per-step logging work
(reading the loss, ``on_log``) is part of the baseline and only the W&B
integration differs.

Worker: ``python -m benchmarks.transformers_bench --variant none|native|ours --steps N --result FILE``.
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

NAME = "transformers"
TITLE = "transformers Trainer"
NATIVE = 'report_to="wandb"'
OURS = "WandbTrainerCallback"
MODULE = "benchmarks.transformers_bench"
# What the fork server imports once for every variant of this worker (``_forkserver``).
PRELOAD = ("torch", "transformers.trainer", "wandb")
OURS_MODULE = "wandb_bridge.callbacks.transformers"


def unavailable() -> dict[str, str]:
    """Variants that cannot run here, with the reason."""
    missing: dict[str, str] = {}
    if importlib.util.find_spec("transformers") is None:
        return dict.fromkeys(("none", "native", "ours"), "transformers is not installed")
    if importlib.util.find_spec(OURS_MODULE) is None:
        missing["ours"] = f"{OURS_MODULE} does not exist yet"
    return missing


def main(argv: Sequence[str] | None = None) -> None:
    """Train the tiny MLP with ``Trainer`` for ``warmup + steps + 1`` optimizer steps."""
    args = worker_args(argv)
    torch = setup_torch()
    import transformers
    from transformers import Trainer, TrainerCallback, TrainingArguments

    if not args.printing:
        transformers.logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    window = Window.from_args(args)
    total = window.total_steps

    class Model(torch.nn.Module):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.net = make_mlp(torch)

        def forward(self, x: Any, labels: Any = None) -> dict[str, Any]:
            out = self.net(x)
            return {"loss": torch.nn.functional.mse_loss(out, labels), "logits": out}

    class Data(torch.utils.data.Dataset):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            self.x, self.y = make_data(torch)

        def __len__(self) -> int:
            return total * BATCH

        def __getitem__(self, index: int) -> dict[str, Any]:
            i = index % len(self.x)
            return {"x": self.x[i], "labels": self.y[i]}

    class Timer(TrainerCallback):
        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:  # noqa: ARG002
            window.at_step_start(state.global_step)

    callbacks: list[Any] = [Timer()]
    ours = None
    if args.variant == "ours":
        from wandb_bridge import WandbTrainerCallback

        ours = WandbTrainerCallback()
        callbacks.append(ours)
    elif args.variant not in ("none", "native"):
        raise SystemExit(f"unknown variant {args.variant!r}")

    training_args = TrainingArguments(
        output_dir=os.path.abspath("hf-out"),
        per_device_train_batch_size=BATCH,
        max_steps=total,
        learning_rate=LR,
        optim="sgd",
        lr_scheduler_type="constant",
        logging_steps=1,
        save_strategy="no",
        eval_strategy="no",
        report_to=["wandb"] if args.variant == "native" else "none",
        disable_tqdm=not args.bar,  # either way the Trainer prints every log dict (tqdm.write or print)
        use_cpu=args.device == "cpu",
        dataloader_num_workers=0,
        seed=0,
        log_level="passive" if args.printing else "error",
    )
    trainer = Trainer(model=Model(), args=training_args, train_dataset=Data(), callbacks=callbacks)
    trainer.train()
    t_end = time.perf_counter()
    finish_and_report(args.result, args.variant, ours, window, t_end)


if __name__ == "__main__":
    main()
