"""Keras 3 with ``wandb_bridge.WandbKerasCallback``, on the torch backend (JAX and TensorFlow work too).

Shows: ``loss``/``accuracy`` recorded as ``train/*`` and ``val_*`` as ``val/*`` on
``trainer/global_step`` (optimizer updates; ``log_freq=4``: a row every 4 steps
plus the epoch rows), ``model.evaluate(callbacks=[callback])`` as ``test/*`` in the
same run, the optimizer, loss, model and ``fit`` settings in the config, a table of
validation predictions (``log_predictions``), and the files your own
``keras.callbacks.ModelCheckpoint`` wrote uploaded as ``model-<run id>`` with
``latest``/``best``/``step-<S>``/``epoch-<E>`` aliases. No TensorFlow needed.

Keras picks its backend when it is first imported: this script sets
``KERAS_BACKEND=torch`` unless you chose one (``KERAS_BACKEND=jax python ...``).

Run (offline unless WANDB_MODE says otherwise; about 10 s on CPU)::

    pip install "wandb-bridge[keras]" torch
    python examples/keras_example.py [--dir DIR] [--epochs 4]
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")  # before keras is imported

import argparse
import tempfile
from pathlib import Path

import keras
import numpy as np

from wandb_bridge import WandbKerasCallback


def make_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """8 features in [0, 1); the label is 1 when their sum is above 4."""
    x = np.random.default_rng(seed).random((n, 8), dtype=np.float32)
    return x, (x.sum(axis=1, keepdims=True) > 4.0).astype("float32")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", help="where wandb writes the run (default: WANDB_DIR, else a new temp folder)")
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()
    root = Path(args.dir or os.environ.get("WANDB_DIR") or tempfile.mkdtemp(prefix="wandb-bridge-example-"))

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((8,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(1, activation="sigmoid")],
        name="classifier",
    )
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="binary_crossentropy", metrics=["accuracy"])
    (x, y), (xv, yv), (xt, yt) = make_data(512, 0), make_data(128, 1), make_data(128, 2)

    checkpoint = keras.callbacks.ModelCheckpoint(
        str(root / "checkpoints" / "model-{epoch:02d}.keras"), monitor="val_loss", save_best_only=True
    )
    with WandbKerasCallback(
        project="wandb-bridge-examples",
        name="keras",
        dir=str(root),
        mode=os.environ.get("WANDB_MODE", "offline"),
        log_model="all",  # every file the ModelCheckpoint writes (here: the improvements)
        log_freq=4,  # a row every 4 optimizer steps; "epoch" (default) has no per-batch hook at all
        log_predictions=8,  # a table of 8 validation samples per epoch
    ) as callback:  # leaving the block finishes the run (non-zero exit code on an exception)
        model.fit(
            x,
            y,
            validation_data=(xv, yv),
            epochs=args.epochs,
            batch_size=32,
            callbacks=[callback, checkpoint],
            verbose=0,
        )
        test = model.evaluate(xt, yt, callbacks=[callback], verbose=0, return_dict=True)  # -> test/*
        print(
            f"run {callback.run.id}: {int(model.optimizer.iterations)} steps, "
            f"test accuracy {test['accuracy']:.2f} ({keras.backend.backend()} backend)"
        )


if __name__ == "__main__":
    main()
