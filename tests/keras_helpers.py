"""Tiny Keras 3 models and data for tests/test_keras.py (any backend; torch unless KERAS_BACKEND says otherwise).

Everything is made in code: a 4-feature binary classification problem whose
label is readable from the features (so training moves the loss) and a
two-layer dense model of 49 parameters.
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")  # before keras is imported; tests only

from typing import Any

import keras
import numpy as np

FEATURES = 4


def make_data(n: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` samples of 4 float features and a 0/1 label (sum of features > 2)."""
    rng = np.random.default_rng(seed)
    x = rng.random((n, FEATURES), dtype=np.float32)
    y = (x.sum(axis=1, keepdims=True) > 2.0).astype("float32")
    return x, y


def make_model(seed: int = 0, learning_rate: Any = 0.01, metrics: tuple[str, ...] = ("accuracy",)) -> Any:
    """A compiled 4 -> 8 -> 1 dense classifier with Adam (49 parameters)."""
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((FEATURES,)),
            keras.layers.Dense(8, activation="relu"),
            keras.layers.Dense(1, activation="sigmoid"),
        ],
        name="tiny",
    )
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss="binary_crossentropy",
        metrics=list(metrics),
    )
    return model


class BatchCounter(keras.callbacks.Callback):  # type: ignore[misc]
    """Counts the batches Keras ran (a reference for step numbers)."""

    def __init__(self) -> None:
        super().__init__()
        self.batches = 0

    def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
        self.batches += 1
