"""Keras 3 (torch backend): no logger, wandb's ``WandbMetricsLogger(log_freq="batch")``, ours.

wandb's Keras integration (``wandb.integration.keras``) imports TensorFlow; where
TensorFlow is not installed the native variant is reported as unavailable and
ours is compared with no logger only.

Worker: ``python -m benchmarks.keras_bench --variant none|native|ours --steps N --result FILE``.
"""

from __future__ import annotations

import importlib.util
import os
import time
from collections.abc import Sequence
from typing import Any

from benchmarks._harness import (
    BATCH,
    HIDDEN,
    IN_FEATURES,
    LR,
    Window,
    finish_and_report,
    make_data,
    setup_torch,
    worker_args,
)

NAME = "keras"
TITLE = "Keras 3 fit (torch backend)"
NATIVE = 'WandbMetricsLogger(log_freq="batch")'
OURS = "WandbKerasCallback"
MODULE = "benchmarks.keras_bench"
# What the fork server imports once for every variant of this worker (``_forkserver``).
PRELOAD = ("torch", "keras", "wandb")
OURS_MODULE = "wandb_bridge.callbacks.keras"


def unavailable() -> dict[str, str]:
    """Variants that cannot run here, with the reason."""
    if importlib.util.find_spec("keras") is None:
        return dict.fromkeys(("none", "native", "ours"), "keras is not installed")
    missing: dict[str, str] = {}
    if importlib.util.find_spec("tensorflow") is None:
        missing["native"] = "native unavailable (needs TensorFlow)"
    if importlib.util.find_spec(OURS_MODULE) is None:
        missing["ours"] = f"{OURS_MODULE} does not exist yet"
    return missing


def main(argv: Sequence[str] | None = None) -> None:
    """Fit the tiny MLP for ``warmup + steps + 1`` batches in one epoch."""
    args = worker_args(argv)
    os.environ.setdefault("KERAS_BACKEND", "torch")  # the worker's own process only
    torch = setup_torch()
    import keras

    window = Window.from_args(args)
    total = window.total_steps
    keras.utils.set_random_seed(0)

    class Timer(keras.callbacks.Callback):  # type: ignore[misc]
        def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:  # noqa: ARG002
            window.at_step_start(batch)

    x, y = make_data(torch)
    repeats = -(-total * BATCH // len(x))
    xs = x.repeat(repeats, 1)[: total * BATCH].numpy()
    ys = y.repeat(repeats, 1)[: total * BATCH].numpy()

    callbacks: list[Any] = [Timer()]
    logger: Any = None
    t_init = time.perf_counter()
    if args.variant == "native":
        import wandb
        from wandb.integration.keras import WandbMetricsLogger

        wandb.init()
        logger = WandbMetricsLogger(log_freq="batch")
    elif args.variant == "ours":
        from wandb_bridge import WandbKerasCallback

        logger = WandbKerasCallback(log_freq="batch")
    elif args.variant != "none":
        raise SystemExit(f"unknown variant {args.variant!r}")
    if logger is not None:
        callbacks.append(logger)
    init_s = time.perf_counter() - t_init

    model = keras.Sequential(
        [keras.Input((IN_FEATURES,)), keras.layers.Dense(HIDDEN, activation="relu"), keras.layers.Dense(1)]
    )
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=LR), loss="mse")
    model.fit(xs, ys, batch_size=BATCH, epochs=1, shuffle=False, verbose="auto" if args.bar else 0, callbacks=callbacks)
    t_end = time.perf_counter()
    finish_and_report(args.result, args.variant, logger, window, t_end, init_s=init_s)


if __name__ == "__main__":
    main()
