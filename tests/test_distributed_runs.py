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

from wandb_bridge import Session, apply_sweep
from wandb_bridge.adapters import markers
from wandb_bridge.core import sweeps
from wandb_bridge.testing import RunRecord, WandbOfflineRuns

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


# ---------------------------------------------------------------- rewind on resume


def _run_record_fields(run: RunRecord) -> dict[str, Any]:
    """The run record's rewind fields, as wandb wrote them (the reader leaves ``_wandb`` out of the config)."""
    from wandb.proto import wandb_internal_pb2 as pb

    from wandb_bridge.testing import reader

    found: dict[str, Any] = {}
    for _, payload in reader._scan_log(run.path, run.path.read_bytes()).records:
        record = pb.Record()
        record.ParseFromString(payload)
        if record.WhichOneof("record_type") == "run":
            found["starting_step"] = record.run.starting_step
            if record.run.HasField("branch_point"):
                point = record.run.branch_point
                found["branch_point"] = (point.run, point.value, point.metric)
    return found


def _first_attempt(tmp_path: Path, checkpoint_step: int = 4, last: int = 10) -> tuple[Path, str]:
    checkpoint = tmp_path / "ckpt.pt"
    with Session(project="rewind") as first:
        first.log({"warmup": 1.0}, step=0)  # wandb's _step and the global step differ by one
        for step in range(1, last + 1):
            first.log({"loss": float(step)}, step=step)
            if step == checkpoint_step:
                checkpoint.write_bytes(b"weights")
                first.log_checkpoint(checkpoint, step=step)
        run_id = first.run_id
    assert run_id is not None
    return checkpoint, run_id


def test_resume_from_an_earlier_checkpoint_rewinds_the_run(wandb_offline: WandbOfflineRuns, tmp_path: Path) -> None:
    checkpoint, run_id = _first_attempt(tmp_path)
    index = json.loads(Path(markers.index_path(str(checkpoint))).read_text())
    # The run markers map the checkpoint's trainer/global_step to wandb's _step of its row.
    assert index["runs"][run_id]["wandb_steps"] == {"4": 4}
    assert index["runs"][run_id]["last_logged_step"] == 10
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Session(project="rewind", resume_from_checkpoint=checkpoint) as second:
            for step in range(5, 8):  # training restarts after the checkpoint's step
                second.log({"loss": float(step) + 0.5}, step=step)
            assert second.run_id == run_id
            moment = second.run.settings.resume_from
            assert (moment.run, moment.value, moment.metric) == (run_id, 4, "_step")
    assert not [w for w in caught if "already recorded" in str(w.message)]  # nothing skipped
    first, resumed = sorted(wandb_offline.runs(), key=lambda r: str(r.folder))
    assert first.run_id == resumed.run_id == run_id
    # read back from the resumed run's record: a rewind of the run to _step 4 (global step 4) ...
    assert _run_record_fields(resumed)["branch_point"] == (run_id, 4.0, "_step")
    # ... whose history continues from the checkpoint: steps 5-7 again, with the new values
    assert resumed.values("train/loss") == [(5, 5.5), (6, 6.5), (7, 7.5)]
    assert [row["_step"] for row in resumed.history] == [5, 6, 7]


def test_resume_skips_recorded_steps_when_no_rewind_point_is_known(
    wandb_offline: WandbOfflineRuns, tmp_path: Path
) -> None:
    checkpoint, run_id = _first_attempt(tmp_path)
    path = Path(markers.index_path(str(checkpoint)))
    index = json.loads(path.read_text())
    del index["runs"][run_id]["wandb_steps"]  # a marker written before the map existed
    path.write_text(json.dumps(index))
    with (
        pytest.warns(UserWarning, match="already recorded") as caught,
        Session(project="rewind", resume_from_checkpoint=checkpoint) as second,
    ):
        for step in range(5, 13):
            second.log({"loss": float(step) + 0.5}, step=step)
        assert second.run.settings.resume_from is None
    messages = [str(w.message) for w in caught if "already recorded" in str(w.message)]
    assert len(messages) == 1 and "holds no wandb _step" in messages[0]
    resumed = max(wandb_offline.runs(), key=lambda r: str(r.folder))
    assert "branch_point" not in _run_record_fields(resumed)
    assert resumed.values("train/loss") == [(11, 11.5), (12, 12.5)]  # steps 5-10 were recorded before


def test_marker_step_map_waits_for_the_checkpoint_row(tmp_path: Path) -> None:
    checkpoint = tmp_path / "last.ckpt"
    checkpoint.write_bytes(b"x")
    index = markers.write(str(checkpoint), {"run_id": "r1", "step": 7}, 7)
    markers.record_wandb_steps(index, "r1", {7: 12})
    found = markers.find(str(checkpoint))
    assert found is not None and found.wandb_step == 12 and found.step == 7
    other = tmp_path / "other.ckpt"
    other.write_bytes(b"y")
    markers.write(str(other), {"run_id": "r1", "step": 9}, 9)
    checkpoint.unlink()  # rotated away: its entry and its map entry go at the next write
    markers.record_wandb_steps(index, "r1", {9: 14})
    data = json.loads(Path(index).read_text())
    assert data["runs"]["r1"]["wandb_steps"] == {"9": 14}
    assert markers.find(str(other)) is not None and markers.find(str(other)).wandb_step == 14  # type: ignore[union-attr]
