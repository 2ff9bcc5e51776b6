"""Distributed and resumed runs (issue 18): sweeps on every rank, rewind on resume, all ranks in one run.

The distributed cases run 2 real gloo processes (tests/dist_runs_scripts.py);
the runs are real offline wandb runs read back from their ``.wandb`` files.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

from wandb_bridge import apply_sweep
from wandb_bridge.core import sweeps
from wandb_bridge.testing import WandbOfflineRuns

SCRIPTS = Path(__file__).with_name("dist_runs_scripts.py")


def _launch(wandb_offline: WandbOfflineRuns, mode: str, folder: Path, **extra_env: str) -> list[dict[str, Any]]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(wandb_offline.env)
    env.update(extra_env)
    out = folder / "out"
    out.mkdir()
    result = subprocess.run(
        [sys.executable, str(SCRIPTS), mode, str(folder / "rendezvous"), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return [json.loads((out / f"rank-{r}.json").read_text()) for r in range(2)]


def _param_file(tmp_path: Path, values: dict[str, Any]) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text("".join(f"{k}:\n  value: {json.dumps(v)}\n" for k, v in values.items()))
    return path


# ---------------------------------------------------------------- sweeps


@pytest.mark.slow
def test_sweep_values_reach_rank_one_in_lightning_and_transformers(
    wandb_offline: WandbOfflineRuns, tmp_path: Path
) -> None:
    params = _param_file(tmp_path, {"lr": 0.2, "hidden": 16, "model.lr": 0.3, "learning_rate": 0.02, "nope": 1})
    ranks = _launch(wandb_offline, "sweep", tmp_path, WANDB_SWEEP_ID="sweep-ddp-1", WANDB_SWEEP_PARAM_PATH=str(params))
    zero, one = ranks
    assert zero["has_param_file"] and not one["has_param_file"]  # rank 1 got them by the broadcast
    for rank in ranks:
        assert rank["lightning_hparams"] == {"lr": 0.2, "hidden": 16}
        assert rank["lightning_in_place"] == {"lr": 0.2, "hidden": 16}
        assert rank["cli_model_lr"] == 0.3
        assert rank["training_args"] == {"learning_rate": 0.02, "max_steps": 6}
    assert zero["run_id"] is not None and one["run_id"] is None  # rank_zero_only: one run
    run = wandb_offline.run()
    assert run.config["learning_rate"] == 0.02
    # One warning per apply_sweep call naming what matched nothing there (the dict: "nope" among others).
    assert any("'nope'" in message for message in one["warnings"])
    assert all("'lr'" not in message for message in one["warnings"][:1])


def test_apply_sweep_keras_settings_and_one_warning(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    os.environ.setdefault("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    params = _param_file(tmp_path, {"learning_rate": 0.01, "batch_size": 64, "dropout": 0.5, "typo_lr": 3})
    monkeypatch.setenv("WANDB_SWEEP_ID", "keras-sweep")
    monkeypatch.setenv("WANDB_SWEEP_PARAM_PATH", str(params))
    settings = {"learning_rate": 1e-3, "batch_size": 32, "epochs": 2}
    optimizer = keras.optimizers.Adam(learning_rate=1e-3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        swept = apply_sweep(settings)
        apply_sweep(optimizer)
    assert swept == {"learning_rate": 0.01, "batch_size": 64, "epochs": 2}
    assert float(keras.ops.convert_to_numpy(optimizer.learning_rate)) == pytest.approx(0.01)
    messages = [str(w.message) for w in caught if "W&B sweep set" in str(w.message)]
    assert len(messages) == 2  # one per call, each naming every unmatched key
    assert "'dropout'" in messages[0] and "'typo_lr'" in messages[0] and "'learning_rate'" not in messages[0]


def test_apply_sweep_outside_a_sweep_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WANDB_SWEEP_ID", raising=False)
    settings = {"learning_rate": 1e-3}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert apply_sweep(settings) is settings
    assert sweeps.sweep_params() == {}
