"""WandbLogger under Lightning Fabric: real Fabric loops on CPU (one process, two gloo processes), read back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("lightning")

import numpy as np
from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger

from accelerate_scripts import train_fabric
from wandb_bridge import WandbLogger
from wandb_bridge.testing import WandbOfflineRuns

HERE = Path(__file__).resolve().parent


def _models(run: Any) -> list[Any]:
    return [a for a in run.artifacts if a.type == "model"]


def _steps(run: Any, key: str) -> list[Any]:
    return [step for step, _ in run.values(key)]


def test_fabric_log_log_dict_log_hyperparams_and_save(wandb_offline: WandbOfflineRuns, tmp_path: Path) -> None:
    logger = WandbLogger(project="fabric", log_model="all", monitor="val_loss")
    info = train_fabric(logger, tmp_path)

    run = wandb_offline.run()
    assert run.run_id == info["run"] and run.project == "fabric" and run.exit_code == 0
    assert run.config == {"lr": 0.1, "batch_size": 8}  # fabric.logger.log_hyperparams
    assert _steps(run, "train/loss") == list(range(1, 9))  # fabric.log(step=i), Lightning's 0-based step: i + 1
    assert _steps(run, "val/loss") == [4, 8]  # fabric.log_dict, in the row of the same training step
    assert [row["trainer/global_step"] for row in run.history] == list(range(1, 9))  # one row per step
    assert [row["trainer/epoch"] for row in run.history if "val/loss" in row] == [1, 2]
    assert run.summary["val/loss"] == {"min": min(v for _, v in run.values("val/loss"))}
    models = _models(run)  # fabric.save files, reported with logger.session.log_checkpoint
    assert len(models) == 2 and all(m.name == f"model-{run.run_id}" for m in models)
    assert {"step-4", "epoch-1"} <= set(models[0].aliases)
    assert {"latest", "best", "step-8", "epoch-2"} <= set(models[1].aliases)
    assert list(models[1].files) == ["epoch=1.ckpt"]
    assert models[1].metadata["step"] == 8 and models[1].metadata["monitor"] == "val/loss"
    assert models[1].metadata["framework"] == "lightning"


def test_fabric_log_without_step_gives_consecutive_steps(wandb_offline: WandbOfflineRuns) -> None:
    from lightning.fabric import Fabric

    logger = WandbLogger(project="fabric")
    fabric = Fabric(accelerator="cpu", devices=1, loggers=[logger])
    assert fabric.logger is logger
    for value in (3.0, 2.0, 1.0):
        fabric.log("loss", value)
    fabric.log_dict({"val_loss": 0.5, "acc": 0.9})
    logger.finalize("success")
    logger.finish()
    run = wandb_offline.run()
    assert run.values("train/loss") == [(1, 3.0), (2, 2.0), (3, 1.0)]
    assert run.values("val/loss") == [(4, 0.5)] and run.values("train/acc") == [(4, 0.9)]
    assert run.exit_code == 0


def test_side_by_side_with_lightnings_own_logger_under_fabric(wandb_offline: WandbOfflineRuns, tmp_path: Path) -> None:
    """Same seed, same Fabric loop: the same values; ours on the contract's step axis (first row 1), theirs on Lightning's (0)."""
    native = LightningWandbLogger(project="fabric", name="native", save_dir=str(wandb_offline.wandb_dir))
    train_fabric(native, tmp_path / "native", save=False)
    train_fabric(WandbLogger(project="fabric", name="ours", log_model="all"), tmp_path / "ours")
    runs = {r.name: r for r in wandb_offline.runs()}
    theirs, ours = runs["native"], runs["ours"]
    for key, mapped in (("train_loss", "train/loss"), ("val_loss", "val/loss")):
        native_values = theirs.values(key)
        our_values = ours.values(mapped)
        assert [s + 1 for s, _ in native_values] == [s for s, _ in our_values], key
        np.testing.assert_allclose([v for _, v in native_values], [v for _, v in our_values], rtol=1e-6)
    assert theirs.config == ours.config == {"lr": 0.1, "batch_size": 8}
    # Lightning's logger writes a row per log call (the epoch row apart from the step's losses); ours one per step.
    assert len(ours.history) == 8 and len(theirs.history) == 10  # theirs: one row per log call
    assert not _models(theirs) and len(_models(ours)) == 2


def test_two_gloo_processes_give_one_run_from_rank_zero(wandb_offline: WandbOfflineRuns, tmp_path: Path) -> None:
    path = os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, **wandb_offline.env, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(HERE / "accelerate_scripts.py"), "fabric", str(tmp_path), "zero"],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    infos = [json.loads((tmp_path / f"rank-{r}.json").read_text()) for r in (0, 1)]
    assert [i["world"] for i in infos] == [2, 2] and [i["enabled"] for i in infos] == [True, False]
    runs = wandb_offline.runs()
    assert [r.run_id for r in runs] == [infos[0]["run"]]
    run = runs[0]
    assert run.exit_code == 0 and run.project == "fabric-ddp"
    assert [row["trainer/global_step"] for row in run.history] == [1, 2, 3, 4]  # 2 steps a rank per epoch
    assert [len(m.files) for m in _models(run)] == [1, 1]
    assert {"latest", "step-4", "epoch-2"} <= set(_models(run)[-1].aliases)


def test_resume_from_a_fabric_save_file_continues_the_run(wandb_offline: WandbOfflineRuns, tmp_path: Path) -> None:
    from lightning.fabric import Fabric

    first = WandbLogger(project="fabric", log_model="all")
    train_fabric(first, tmp_path)
    checkpoint = tmp_path / "checkpoints" / "epoch=1.ckpt"
    second = WandbLogger(project="fabric", log_model="all", resume_from_checkpoint=str(checkpoint))
    fabric = Fabric(accelerator="cpu", devices=1, loggers=[second])
    state = fabric.load(checkpoint)
    for step in range(state["step"], state["step"] + 4):  # Lightning's 0-based step: 8..11 -> 9..12
        fabric.log("train_loss", 1.0 / (step + 1), step=step)
    second.finalize("success")
    second.finish()

    assert second.version == first.version
    attempts = [r for r in wandb_offline.runs() if r.run_id == first.version]  # offline: a folder per attempt
    assert len(attempts) == 2
    assert [row["trainer/global_step"] for run in attempts for row in run.history] == list(range(1, 13))
