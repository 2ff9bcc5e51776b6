"""WandbTracker: real accelerate trainings on CPU (one process, and two gloo processes), real wandb offline, read back."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("accelerate")

import accelerate
import numpy as np

from accelerate_scripts import EPOCHS, train_accelerate
from wandb_bridge import WandbTracker
from wandb_bridge.testing import WandbOfflineRuns

HERE = Path(__file__).resolve().parent
STEPS = list(range(1, 9))  # 2 epochs of 4 optimizer steps


def _models(run: Any) -> list[Any]:
    return [a for a in run.artifacts if a.type == "model"]


def _steps(run: Any, key: str) -> list[Any]:
    return [step for step, _ in run.values(key)]


def _launch(wandb_offline: WandbOfflineRuns, folder: Path, mode: str) -> subprocess.CompletedProcess[str]:
    path = os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, **wandb_offline.env, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, str(HERE / "accelerate_scripts.py"), "accelerate", str(folder), mode],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def test_documented_usage_records_the_run_contract(wandb_offline: WandbOfflineRuns, tmp_path: Path) -> None:
    tracker = WandbTracker(log_model="all", monitor="val_loss", name="ours")
    info = train_accelerate([tracker], tmp_path, config={"lr": 0.1, "api_token": "s3cret", "sizes": {"batch": 8}})

    assert info["tracker"] == "WandbTracker"  # get_tracker("wandb") finds ours, as accelerate's own
    assert info["run"] == tracker.session.run_id  # get_tracker("wandb", unwrap=True) is the wandb run
    run = wandb_offline.run()
    assert run.project == "accel-proj"  # init_trackers' project_name, as with accelerate's tracker
    assert run.exit_code == 0  # end_training finished the run
    assert run.config == {"lr": 0.1, "api_token": "<redacted>", "sizes/batch": 8}
    assert _steps(run, "train/loss") == STEPS  # step= is trainer/global_step
    assert _steps(run, "val/loss") == [4, 8]  # in the row of the training step of the same step
    assert [row["trainer/global_step"] for row in run.history] == STEPS  # one row per step
    assert run.summary["val/loss"] == {"min": min(v for _, v in run.values("val/loss"))}
    assert [row.get("trainer/epoch") for row in run.history if "val/loss" in row] == [1, 2]
    assert run.metrics["*"]["step_metric"] == "trainer/global_step"

    models = _models(run)  # each save_state folder, once, with the contract's aliases and metadata
    assert [m.name for m in models] == [f"model-{run.run_id}"] * 2
    assert {"latest", "best", "step-8", "epoch-2"} <= set(models[-1].aliases)
    assert {"step-4", "epoch-1"} <= set(models[0].aliases)
    assert {"model.safetensors", "optimizer.bin", "random_states_0.pkl"} <= set(models[-1].files)
    meta = models[-1].metadata
    assert meta["framework"] == "accelerate" and meta["framework_version"] == accelerate.__version__
    assert meta["step"] == 8 and meta["epoch"] == EPOCHS and meta["monitor"] == "val/loss"
    assert meta["original_filename"] == "checkpoint_1" and meta["run_id"] == run.run_id
    assert not wandb_offline.grep("s3cret")


def test_side_by_side_with_accelerates_own_wandb_tracker(wandb_offline: WandbOfflineRuns, tmp_path: Path) -> None:
    """Same seed, same loop: accelerate's ``log_with="wandb"`` and ours record the same values at the same steps."""
    train_accelerate("wandb", tmp_path / "native", save=False, init_kwargs={"wandb": {"name": "native"}})
    train_accelerate([WandbTracker(name="ours", log_model="all", monitor="val_loss")], tmp_path / "ours")
    runs = {r.name: r for r in wandb_offline.runs()}
    native, ours = runs["native"], runs["ours"]

    names = {"train_loss": "train/loss", "val_loss": "val/loss", "epoch": "trainer/epoch"}
    for key, mapped in names.items():
        theirs = [(row["_step"], row[key]) for row in native.history if key in row]
        mine = [
            (row["trainer/global_step"], row[mapped])
            for row in ours.history
            if mapped in row and (key != "epoch" or "val/loss" in row)
        ]  # trainer/epoch is carried on every later row too
        assert len(theirs) == len(mine) > 0, key
        assert [s for s, _ in theirs] == [s for s, _ in mine], key
        np.testing.assert_allclose([v for _, v in theirs], [v for _, v in mine], rtol=1e-6, err_msg=key)
    assert native.config == ours.config == {"lr": 0.1, "batch_size": 8}
    assert native.exit_code == ours.exit_code == 0
    # What ours adds: the step axis as a metric, the best value in the summary, the save_state folders.
    assert "trainer/global_step" not in native.history[0] and not native.metrics
    assert ours.metrics["*"]["step_metric"] == "trainer/global_step"
    assert native.summary["val_loss"] == ours.summary["val/loss"]["min"]  # here the last value is the best
    assert not _models(native) and len(_models(ours)) == 2


def test_resume_from_a_save_state_folder_continues_the_run(wandb_offline: WandbOfflineRuns, tmp_path: Path) -> None:
    first = WandbTracker(log_model="all", name="resumable")
    train_accelerate([first], tmp_path)
    folder = tmp_path / "checkpoints" / "checkpoint_1"
    second = WandbTracker(log_model="all", resume_from_checkpoint=str(folder))
    train_accelerate([second], tmp_path, start_epoch=2, epochs=3)  # load_state, then one more epoch

    run_id = first.session.run_id
    assert second.session.run_id == run_id and second.session.resumed_from is not None
    attempts = [r for r in wandb_offline.runs() if r.run_id == run_id]  # offline: one folder per attempt
    assert len(attempts) == 2
    steps = [row["trainer/global_step"] for run in attempts for row in run.history]
    assert steps == list(range(1, 13))  # steps 1..8, then 9..12 after load_state: each once
    assert {"step-12", "epoch-3", "latest"} <= set(_models(attempts[1])[-1].aliases)


def test_direct_calls_log_images_and_tables(wandb_offline: WandbOfflineRuns) -> None:
    tracker = WandbTracker(project="direct")
    tracker.start()
    tracker.log({"loss": 0.5}, step=1)
    tracker.log_images({"images": [np.zeros((4, 4, 3), dtype=np.uint8)]}, step=1)
    tracker.log_table("table", columns=["a", "b"], data=[[1, 2]], step=2)
    tracker.finish()
    run = wandb_offline.run()
    assert [row["trainer/global_step"] for row in run.history] == [1, 2]
    # keys named in a direct call are kept as written (no train/ prefix); metrics from log() are mapped
    assert run.history[0]["train/loss"] == 0.5 and "images.count" in run.history[0]
    assert run.history[1]["table._type"] == "table-file"
    assert not any(k.startswith(("train/images", "train/table")) for row in run.history for k in row)


def test_two_gloo_processes_give_one_run_from_rank_zero(wandb_offline: WandbOfflineRuns, tmp_path: Path) -> None:
    done = _launch(wandb_offline, tmp_path, "zero")
    assert done.returncode == 0, done.stderr[-3000:]
    infos = [json.loads((tmp_path / f"rank-{r}.json").read_text()) for r in (0, 1)]
    assert [i["world"] for i in infos] == [2, 2]
    assert [i["enabled"] for i in infos] == [True, False]  # rank 1: a no-op, even when called directly
    runs = wandb_offline.runs()
    assert [r.run_id for r in runs] == [infos[0]["run"]]
    run = runs[0]
    assert run.exit_code == 0 and run.project == "accel-ddp"
    assert [row["trainer/global_step"] for row in run.history] == list(range(1, 5))  # 2 epochs of 2 steps a rank
    models = _models(run)
    assert len(models) == 2 and {"latest", "step-4", "epoch-2"} <= set(models[-1].aliases)
    assert {"random_states_0.pkl", "random_states_1.pkl"} <= set(models[-1].files)  # both ranks' files


def test_a_failed_training_ends_the_run_with_a_non_zero_exit_code(
    wandb_offline: WandbOfflineRuns, tmp_path: Path
) -> None:
    done = _launch(wandb_offline, tmp_path, "fail")
    assert done.returncode != 0 and "training failed on purpose" in done.stderr
    run = wandb_offline.run()
    assert run.exit_code == 1
    assert _steps(run, "train/loss") == [1, 2, 3, 4, 5]  # everything logged before the failure was kept
    assert {"step-4", "latest"} <= set(_models(run)[-1].aliases)


def test_missing_accelerate_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "accelerate", None)
    monkeypatch.delitem(sys.modules, "wandb_bridge.callbacks.accelerate", raising=False)
    with pytest.raises(ImportError, match=r'pip install "wandb-bridge\[accelerate\]"'):
        importlib.import_module("wandb_bridge.callbacks.accelerate")
