"""Child processes for test_log_process: a Session in a fresh, single-threaded interpreter.

There the logging process is forked (pytest's own timeout thread makes the test
process multi-threaded, so sessions started inside the tests spawn it). Each
scenario prints one JSON line: what the helper process was, and how many rows
this process logged itself.

Usage: python log_process_scripts.py SCENARIO DIR
"""

from __future__ import annotations

import gc
import json
import sys
import time
import weakref
from pathlib import Path
from typing import Any

import psutil

from wandb_bridge import Session
from wandb_bridge.adapters.row_process import HELPER_NAME
from wandb_bridge.core import row_sinks


def trainer(directory: Path) -> None:
    """A transformers Trainer logging every step: the callback plans its rows, the helper logs them all."""
    import torch
    from transformers import Trainer, TrainingArguments

    from wandb_bridge.callbacks.transformers import WandbTrainerCallback

    here = _count_rows_here()

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(4, 1)

        def forward(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
            loss = torch.nn.functional.mse_loss(self.layer(x).squeeze(-1), labels)
            return {"loss": loss}

    data = [{"x": torch.randn(4), "labels": torch.randn(())} for _ in range(64)]
    args = TrainingArguments(
        output_dir=str(directory / "out"),
        max_steps=600,
        logging_steps=1,
        per_device_train_batch_size=8,
        report_to="none",
        save_strategy="no",
        disable_tqdm=True,
        use_cpu=True,
    )
    callback = WandbTrainerCallback(project="proc")
    Trainer(model=Tiny(), args=args, train_dataset=data, callbacks=[callback]).train()
    during = _helpers()
    callback.finish()
    print(json.dumps({"helper_name": HELPER_NAME, "during": during, "here": here}), flush=True)


def lightning(directory: Path) -> None:
    """A Lightning fit with max_steps, its run started before the fit: the logger plans the rows at the
    fit's start, and the helper logs them all."""
    import lightning.pytorch as pl
    import torch

    from wandb_bridge import WandbLogger

    here = _count_rows_here()

    class Tiny(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(4, 1)

        def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
            loss = torch.nn.functional.mse_loss(self.layer(batch[0]), batch[1])
            self.log("loss", loss)
            return loss

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.01)

    data = torch.utils.data.TensorDataset(torch.randn(64, 4), torch.randn(64, 1))
    logger = WandbLogger(project="proc")
    logger.experiment.config.update({"before": "fit"})  # the run starts before the Trainer exists
    trainer = pl.Trainer(
        max_steps=600,
        log_every_n_steps=1,
        logger=logger,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    trainer.fit(Tiny(), torch.utils.data.DataLoader(data, batch_size=8))
    during = _helpers()
    logger.finish()
    print(json.dumps({"helper_name": HELPER_NAME, "during": during, "here": here}), flush=True)


def _helpers() -> list[dict[str, Any]]:
    out = []
    for proc in psutil.Process().children():
        if proc.name() != "wandb-core":
            out.append({"name": proc.name(), "cmdline": proc.cmdline(), "pid": proc.pid})
    return out


def _count_rows_here() -> list[int]:
    """Rows logged by this process (HereSink.send), by their step."""
    here: list[int] = []
    original = row_sinks.HereSink.send

    def send(self: row_sinks.HereSink, rows: list[dict[str, Any]]) -> None:
        here.extend(int(row["trainer/global_step"]) for row in rows)
        original(self, rows)

    row_sinks.HereSink.send = send  # type: ignore[method-assign]
    return here


class _Cycle:
    me: object = None


def run(
    directory: Path,
    log_process: bool | str,
    steps: int,
    pause: float,
    plan: int = 0,
    queue_size: int = 10_000,
    trains: bool = False,
    user_freeze: bool = False,
) -> None:
    if trains:  # a training process (log_process="auto" forks a waiting helper for one)
        import torch  # noqa: F401
    here = _count_rows_here()
    del directory  # (the run goes where WANDB_DIR points)
    if user_freeze:
        gc.freeze()  # the script's own (as a pre-forking server does): the session must leave it
    cycle = _Cycle()
    cycle.me = cycle
    freed = weakref.ref(cycle)
    session = Session(project="proc", log_process=log_process, queue_size=queue_size)
    if plan:
        session.plan_rows(plan)
    session.start()
    started = _helpers()
    frozen_during = gc.get_freeze_count()
    del cycle  # garbage from here on, freed only by the collector
    extra = {f"metric_{i}": 0.5 for i in range(9)} if steps > 10_000 else {}  # the benchmark's narrow rows
    for step in range(1, steps + 1):
        if pause:
            time.sleep(pause)  # the training step (the GIL is free meanwhile, as in a torch step)
        session.log({"loss": 1.0 / step, **extra}, step=step)
    session.flush()
    during = _helpers()
    waits = session._parts.pipeline.waits if session._parts.pipeline is not None else None
    choice = session._parts.router.choice
    looks = (choice.looks, choice.share) if choice is not None else None
    gc.collect()
    cycle_freed_during = freed() is None
    session.finish()
    frozen_after = gc.get_freeze_count()
    gc.collect()
    after = [h for h in _helpers() if psutil.pid_exists(h["pid"]) and psutil.Process(h["pid"]).status() != "zombie"]
    report = {"self": psutil.Process().cmdline(), "started": started, "during": during, "after": after, "here": here}
    report["waits"], report["looks"] = waits, looks
    report["frozen"] = {"during": frozen_during, "after": frozen_after, "user": user_freeze}
    report["cycle_freed"] = {"during": cycle_freed_during, "after": freed() is None}
    print(json.dumps({"helper_name": HELPER_NAME, **report}), flush=True)


if __name__ == "__main__":
    scenario, folder = sys.argv[1], Path(sys.argv[2])
    cases: dict[str, tuple[bool | str, int, float, int, int, bool]] = {
        "always": (True, 50, 0.0, 0, 10_000, False),
        "auto_short": ("auto", 20, 0.0, 0, 10_000, False),
        "auto_short_training": ("auto", 20, 0.0, 0, 10_000, True),
        "auto_training": ("auto", 400, 0.002, 0, 10_000, True),
        "auto_planned": ("auto", 30, 0.0, 1000, 10_000, False),
        # Steps of 0.5 ms: a batch of ~90 rows every time the worker wakes (every 0.05 s).
        "auto_fast_training": ("auto", 2000, 0.0005, 0, 10_000, True),
        # A loop that only logs (the benchmark's narrow rows), into a queue it never fills.
        "auto_tight": ("auto", 20_000, 0.0, 0, 1_000_000, False),
    }
    if scenario == "big":  # a process holding more memory than a fork should copy: spawned
        from wandb_bridge.adapters import row_process

        row_process.FORK_MAX_RSS = 1
        run(folder, True, 50, 0.0)
    elif scenario == "user_froze":  # the script froze its objects itself before the run
        run(folder, True, 50, 0.0, user_freeze=True)
    elif scenario == "trainer":
        trainer(folder)
    elif scenario == "lightning":
        lightning(folder)
    else:
        run(folder, *cases[scenario])
