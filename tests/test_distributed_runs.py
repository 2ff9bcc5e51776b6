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


# ---------------------------------------------------------------- all ranks in one run


@pytest.mark.slow
def test_shared_run_offline_falls_back_to_grouped_runs(wandb_offline: WandbOfflineRuns, tmp_path: Path) -> None:
    ranks = _launch(wandb_offline, "shared", tmp_path)
    for rank in ranks:
        # offline, wandb cannot share a run: each rank records its own, grouped, with one warning
        assert rank["mode"] == "offline" and rank["x_primary"] is True and rank["x_label"] is None
        assert rank["job_type"] == f"rank-{rank['rank']}"
        (message,) = rank["warnings"]
        assert "shared_run=True, but mode='offline'" in message and "(ranks 0, 1)" in message
    assert ranks[0]["group"] == ranks[1]["group"] and ranks[0]["run_id"] != ranks[1]["run_id"]
    runs = wandb_offline.runs()
    assert sorted(r.job_type or "" for r in runs) == ["rank-0", "rank-1"]
    assert {r.group for r in runs} == {ranks[0]["group"]}
    assert all(r.exit_code == 0 for r in runs)
    assert sorted(v for r in runs for _, v in r.values("train/loss")) == [1.0, 11.0]


@pytest.mark.live
@pytest.mark.slow
def test_shared_run_puts_every_rank_in_one_run(tmp_path: Path) -> None:
    """Needs a W&B server (WANDB_API_KEY): wandb's shared mode is online only."""
    out = tmp_path / "out"
    out.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "WANDB_SERVICE")}
    env.update({"WANDB_MODE": "online", "WANDB_DIR": str(tmp_path), "WANDB_SILENT": "true"})
    result = subprocess.run(
        [sys.executable, str(SCRIPTS), "shared", str(tmp_path / "rendezvous"), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    zero, one = (json.loads((out / f"rank-{r}.json").read_text()) for r in range(2))
    assert zero["run_id"] == one["run_id"]  # one run, rank 0's id
    assert (zero["mode"], one["mode"]) == ("shared", "shared")
    assert (zero["x_primary"], one["x_primary"]) == (True, False)
    assert (zero["x_update_finish_state"], one["x_update_finish_state"]) == (True, False)  # only rank 0 finishes it
    assert (zero["x_label"], one["x_label"]) == ("rank-0", "rank-1")
    assert not zero["warnings"] and not one["warnings"]


def test_shared_run_settings_and_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    from wandb_bridge.core.distributed import RankInfo, RankKeys, plan_shared_run
    from wandb_bridge.core.settings import Settings

    assert Settings.resolve(shared_run=True).rank_zero_only is False  # every rank in one run
    assert Settings.resolve().shared_run is False
    with pytest.raises(ValueError, match="rank_zero_only=False"):
        Settings.resolve(shared_run=True, rank_zero_only=True)
    with pytest.raises(ValueError, match="shared_run must be True or False"):
        Settings.resolve(shared_run="yes")
    # without a process group, only an id given to every rank can be shared
    one = RankInfo(rank=1, world_size=2)
    plan, why = plan_shared_run(one, None, None)
    assert plan is None and why is not None and "not initialised" in why
    plan, why = plan_shared_run(one, "abc12345", None)
    assert why is None and plan is not None and (plan.run_id, plan.label, plan.primary) == ("abc12345", "rank-1", False)
    plan, why = plan_shared_run(RankInfo(), "abc12345", "wandb 0.18.0 has no shared mode")
    assert plan is None and why == "wandb 0.18.0 has no shared mode (rank 0)"
    assert RankKeys(1)("loss") == "rank-1/train/loss" and RankKeys(1)("val_loss") == "rank-1/val/loss"
