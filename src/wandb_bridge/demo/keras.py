"""Keras 3: ``model.fit`` with :class:`~wandb_bridge.WandbKerasCallback`.

Keras picks its backend (``KERAS_BACKEND``) when it is first imported, so the
demo runs this module in a child process whose environment names the backend
(torch unless you set ``KERAS_BACKEND``)::

    KERAS_BACKEND=torch python -m wandb_bridge.demo.keras ROOT   # prints the run id
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from wandb_bridge.demo.common import BATCH_SIZE, EPOCHS, FEATURES, LEARNING_RATE, make_data, run_args

LABEL = "Keras"
BACKEND = os.environ.get("KERAS_BACKEND") or "torch"  # read only: the child gets it in its own environment
REQUIRES = ("keras", BACKEND)
INSTALL = f'pip install "wandb-bridge[keras]" {BACKEND}'


def train(root: Path) -> str:
    """Fit the demo regression with Keras; ``ModelCheckpoint`` files become artifacts.

    Returns:
        The run id.
    """
    import keras
    import numpy as np

    from wandb_bridge import WandbKerasCallback

    train_rows, val_rows = make_data()
    x, y = np.array([r[0] for r in train_rows], "float32"), np.array([[r[1]] for r in train_rows], "float32")
    xv, yv = np.array([r[0] for r in val_rows], "float32"), np.array([[r[1]] for r in val_rows], "float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((FEATURES,)), keras.layers.Dense(1)], name="regression")
    model.compile(optimizer=keras.optimizers.SGD(LEARNING_RATE), loss="mse")
    callback = WandbKerasCallback(log_model="all", log_freq="batch", **run_args(root, "keras"))
    checkpoint = keras.callbacks.ModelCheckpoint(str(root / "keras" / "model-{epoch:02d}.keras"), monitor="val_loss")
    with callback:  # leaving the block finishes the run
        model.fit(
            x,
            y,
            validation_data=(xv, yv),
            epochs=EPOCHS,
            batch_size=BATCH_SIZE,
            shuffle=False,
            callbacks=[callback, checkpoint],
            verbose=0,
        )
        return str(callback.run.id)


if __name__ == "__main__":
    print(train(Path(sys.argv[1])))
