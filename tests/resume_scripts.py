"""Child processes for test_resume: train, get pre-empted by SIGTERM, restart from the checkpoint.

Usage: python resume_scripts.py FRAMEWORK first|resume DIR

``first`` trains with a checkpoint every few steps and, at :data:`BLOCK_AT`
(a step after a checkpoint, so the run recorded steps the checkpoint does not
hold), prints ``ready`` and waits for the parent's SIGTERM. ``resume`` restarts
from the newest checkpoint the way each framework resumes (Lightning
``fit(ckpt_path="last")``, transformers ``train(resume_from_checkpoint=True)``,
Keras ``load_model`` + ``fit(initial_epoch=...)``) and trains to :data:`STEPS`.
Neither passes a run id: the resumed run is found from the checkpoint.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

STEPS = 16  # optimizer steps of the whole training (2 epochs of 8, or 4 of 4 with Keras)
CHECKPOINT_EVERY = 5
BLOCK_AT = 7  # the first attempt waits for SIGTERM here (its last checkpoint is at step 5)
WAIT_S = 30.0


def _wait_for_sigterm(stop: Callable[[], bool] = lambda: False) -> None:
    print("ready", flush=True)
    deadline = time.monotonic() + WAIT_S
    while not stop() and time.monotonic() < deadline:
        time.sleep(0.02)


def lightning(mode: str, root: Path) -> None:
    import lightning.pytorch as L
    from lightning.pytorch.callbacks import ModelCheckpoint

    from lightning_helpers import build, loaders
    from wandb_bridge import WandbLogger

    class Module(build(L)["TinyModule"]):  # type: ignore[misc]
        def training_step(self, batch: Any, batch_idx: int) -> Any:
            if mode == "first" and self.global_step == BLOCK_AT:
                # Lightning's own SIGTERM handling: it stops at the end of this batch.
                _wait_for_sigterm(lambda: bool(self.trainer.received_sigterm))
            return super().training_step(batch, batch_idx)

    logger = WandbLogger(project="resume")  # wandb writes where WANDB_DIR says
    checkpoint = ModelCheckpoint(
        dirpath=str(root / "checkpoints"), every_n_train_steps=CHECKPOINT_EVERY, save_last=True, save_top_k=1
    )
    trainer = L.Trainer(
        max_steps=STEPS,
        logger=logger,
        callbacks=[checkpoint],
        log_every_n_steps=1,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(Module(), *loaders(), ckpt_path="last" if mode == "resume" else None)
    logger.finish()


def transformers(mode: str, root: Path) -> None:
    from transformers import TrainerCallback

    from transformers_helpers import make_args, make_trainer
    from wandb_bridge import WandbTrainerCallback

    class Block(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if mode == "first" and state.global_step == BLOCK_AT:
                _wait_for_sigterm()  # the default SIGTERM action ends the process

    args = make_args(root / "out", max_steps=STEPS, logging_steps=1, save_strategy="steps", save_steps=CHECKPOINT_EVERY)
    callback = WandbTrainerCallback(project="resume")
    trainer = make_trainer(args, [callback, Block()])
    trainer.train(resume_from_checkpoint=True if mode == "resume" else None)
    callback.finish()


def keras(mode: str, root: Path) -> None:
    import keras

    from keras_helpers import make_data, make_model
    from wandb_bridge import WandbKerasCallback

    steps_per_epoch = 4
    x, y = make_data(steps_per_epoch * 4)

    class Block(keras.callbacks.Callback):  # type: ignore[misc]
        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            if mode == "first" and int(keras.ops.convert_to_numpy(self.model.optimizer.iterations)) == BLOCK_AT:
                _wait_for_sigterm()

    folder = root / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    initial_epoch = 0
    model = make_model()
    if mode == "resume":
        newest = max(folder.glob("ckpt-*.keras"))
        initial_epoch = int(newest.stem.split("-")[1])
        model = keras.models.load_model(newest)
    checkpoint = keras.callbacks.ModelCheckpoint(str(folder / "ckpt-{epoch:02d}.keras"))
    callback = WandbKerasCallback(project="resume", log_freq="batch")
    model.fit(
        x,
        y,
        batch_size=4,
        epochs=STEPS // steps_per_epoch,
        initial_epoch=initial_epoch,
        verbose=0,
        callbacks=[checkpoint, callback, Block()],
    )
    callback.finish()


def transformers_jit(mode: str, root: Path) -> None:
    """``enable_jit_checkpoint=True``: SIGTERM at step 3; HF saves ``checkpoint-<step>``, stops, ``train()`` returns."""
    from transformers import TrainerCallback

    from transformers_helpers import make_args, make_trainer
    from wandb_bridge import WandbTrainerCallback

    class Block(TrainerCallback):
        def __init__(self) -> None:
            self.trainer: Any = None

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.global_step != 3:
                return
            jit = next(
                c for c in self.trainer.callback_handler.callbacks if type(c).__name__ == "JITCheckpointCallback"
            )
            # HF's handler asks for the checkpoint a few seconds after SIGTERM: wait for that event
            _wait_for_sigterm(lambda: bool(jit.jit_manager and jit.jit_manager.is_checkpoint_requested))

    args = make_args(root / "out", max_steps=STEPS, logging_steps=1, enable_jit_checkpoint=True)
    callback = WandbTrainerCallback(project="jit")
    block = Block()
    trainer = make_trainer(args, [callback, block])
    block.trainer = trainer
    trainer.train()
    print(f"returned {trainer.state.global_step}", flush=True)
    callback.finish()


if __name__ == "__main__":
    framework, attempt, directory = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    os.chdir(directory)
    scenarios = {
        "lightning": lightning,
        "transformers": transformers,
        "keras": keras,
        "transformers_jit": transformers_jit,
    }
    scenarios[framework](attempt, directory)
    print("finished", flush=True)
