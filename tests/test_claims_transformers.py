"""Documented claims (docs/, README) about ``WandbTrainerCallback`` that had no test: a user's run is left open, a wandb
failure warns once and training goes on, ``log_model="end"`` uploads the newest and the best
``checkpoint-N``, the sweep-mismatch warning, rotated checkpoints drop their marker entries."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("transformers")

from transformers import TrainerCallback

from process_helpers import kill_wandb_core
from transformers_helpers import make_args, make_trainer
from wandb_bridge import WandbBridgeWarning, WandbTrainerCallback
from wandb_bridge.testing import WandbOfflineRuns


def _ours(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, WandbBridgeWarning)]


def test_a_run_you_started_is_used_and_left_open(wandb_offline: WandbOfflineRuns, tmp_path: Path) -> None:
    import wandb

    mine = wandb.init(project="mine", id="userrun1")
    callback = WandbTrainerCallback(project="ignored")
    make_trainer(make_args(tmp_path / "out"), [callback]).train()
    callback.finish()
    assert wandb.run is mine
    mine.log({"after": 1.0})
    mine.finish(exit_code=7)
    run = wandb_offline.run()
    assert run.run_id == "userrun1"
    assert [s for s, _ in run.values("train/loss")] == [2, 4, 6]
    assert run.exit_code == 7


class _KillWandbCore(TrainerCallback):  # type: ignore[misc]
    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == 3:
            kill_wandb_core()


@pytest.mark.timeout(180)
def test_a_wandb_failure_warns_once_and_training_goes_on(wandb_offline: WandbOfflineRuns, tmp_path: Path) -> None:
    callback = WandbTrainerCallback(project="fault")
    trainer = make_trainer(make_args(tmp_path / "out", logging_steps=1, max_steps=8), [callback, _KillWandbCore()])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.train()
        assert callback.session is not None
        run_dir = callback.session.run_dir
        callback.finish()
    assert trainer.state.global_step == 8  # training finished
    faults = _ours(caught)  # one warning for the whole fault, naming where the rows are kept
    assert len(faults) == 1 and "wandb-bridge-unsent.jsonl" in faults[0], faults
    unsent = Path(run_dir or "", "wandb-bridge-unsent.jsonl")
    kept = [json.loads(line)["trainer/global_step"] for line in unsent.read_text().splitlines()]
    assert set(range(5, 9)) <= set(kept)
    # each row carries its step; the file, written by two processes, need not be in step order


def test_log_model_end_uploads_the_newest_and_the_best_checkpoint(
    wandb_offline: WandbOfflineRuns, tmp_path: Path
) -> None:
    callback = WandbTrainerCallback(log_model="end")
    args = make_args(
        tmp_path / "out",
        max_steps=8,
        eval_strategy="steps",
        eval_steps=2,
        save_strategy="steps",
        save_steps=2,
        metric_for_best_model="loss",
        learning_rate=5e-2,
    )
    trainer = make_trainer(args, [callback])
    trainer.train()
    callback.finish()
    best_step = int(trainer.state.best_model_checkpoint.rsplit("-", 1)[1])
    models = [a for a in wandb_offline.run().artifacts if a.type == "model"]
    by_step = {a.metadata["step"]: a for a in models}
    assert set(by_step) == {best_step, 8}  # of the four checkpoints: the best and the newest
    assert len(models) == len(by_step)
    assert "best" in by_step[best_step].aliases
    assert by_step[8].metadata["original_filename"] == "checkpoint-8"


def test_a_sweep_run_with_disagreeing_arguments_warns(
    wandb_offline: WandbOfflineRuns, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = tmp_path / "sweep.yaml"
    params.write_text("learning_rate:\n  value: 0.01\n")
    monkeypatch.setenv("WANDB_SWEEP_ID", "sweep123")
    monkeypatch.setenv("WANDB_SWEEP_PARAM_PATH", str(params))
    callback = WandbTrainerCallback()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        make_trainer(make_args(tmp_path / "out", max_steps=2), [callback]).train()  # no apply_sweep
        callback.finish()
    mismatch = [m for m in _ours(caught) if "learning_rate" in m]
    assert len(mismatch) == 1, _ours(caught)
    assert wandb_offline.run().config["learning_rate"] == 0.01  # the swept value is what the run shows


def test_rotated_checkpoints_drop_their_marker_entries(wandb_offline: WandbOfflineRuns, tmp_path: Path) -> None:
    callback = WandbTrainerCallback()
    args = make_args(tmp_path / "out", max_steps=6, save_strategy="steps", save_steps=2, save_total_limit=1)
    make_trainer(args, [callback]).train()
    callback.finish()
    left = sorted(p.name for p in (tmp_path / "out").glob("checkpoint-*"))
    assert left == ["checkpoint-6"]  # the Trainer rotated the others away
    index = json.loads((tmp_path / "out" / "_wandb-bridge-runs.json").read_text())
    assert set(index["checkpoints"]) == {"checkpoint-6"}


@pytest.mark.slow
def test_rank_zero_only_false_gives_one_run_per_rank_in_one_group(
    wandb_offline: WandbOfflineRuns, tmp_path: Path
) -> None:
    import os
    import sys

    from test_transformers import HERE, _run_script

    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        str(HERE / "transformers_helpers.py"), "ddp", str(tmp_path),
    ]  # fmt: skip
    env = {**os.environ, **wandb_offline.env, "TEST_RANK_ZERO_ONLY": "0"}
    code, output = _run_script(command, env, tmp_path, timeout=150)
    assert code == 0, output[-3000:]
    ranks = {p.name: p.read_text().split() for p in tmp_path.glob("rank-*.txt")}
    ids = {ranks["rank-0.txt"][1], ranks["rank-1.txt"][1]}
    assert len(ids) == 2 and "-" not in ids  # every rank had a run of its own
    runs = {r.run_id: r for r in wandb_offline.runs()}
    assert set(runs) == ids
    assert len({r.group for r in runs.values()}) == 1 and next(iter(runs.values())).group
    assert sorted(r.job_type or "" for r in runs.values()) == ["rank-0", "rank-1"]
    for run in runs.values():
        assert [s for s, _ in run.values("train/loss")] == [1, 2, 3, 4]
        assert run.exit_code == 0
