"""transformers: the native ``report_to="wandb"`` habits, run unchanged against ``WandbTrainerCallback``.

Each test with a native counterpart is parametrised over ``integration``: the
same user snippet trains once with transformers' own ``WandbCallback``
(``report_to="wandb"``) and once with ours (``report_to="none",
callbacks=[WandbTrainerCallback()]``), each in its own offline sandbox, and the
finished run is read back. Both are configured the transformers way, through
``WANDB_*`` environment variables. Documented differences: the native callback's
step axis is ``train/global_step`` and its evaluation keys are ``eval/<m>``;
ours records ``trainer/global_step`` and ``val/<m>``; the step numbers are the
same (transformers counts optimizer steps completed).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("transformers")

import wandb
from transformers import TrainerCallback

import wandb_bridge
from transformers_helpers import make_args, make_trainer
from wandb_bridge.testing import RunRecord, WandbOfflineRuns

NATIVE, OURS = "native", "ours"
PROJECT = "compat-hf"


@pytest.fixture(params=[NATIVE, OURS])
def integration(
    request: pytest.FixtureRequest, wandb_offline: WandbOfflineRuns, monkeypatch: pytest.MonkeyPatch
) -> str:
    """Which integration the snippet trains with; the project comes from WANDB_PROJECT, as in HF's docs."""
    monkeypatch.setenv("WANDB_PROJECT", PROJECT)
    monkeypatch.chdir(wandb_offline.wandb_dir)
    return str(request.param)


def train(integration: str, output_dir: Path, user_callbacks: list[Any] | None = None, **overrides: Any) -> Any:
    """``Trainer(...).train()`` with the native integration or ours; returns the trainer."""
    callbacks = list(user_callbacks or [])
    if integration == NATIVE:
        args = make_args(output_dir, report_to="wandb", **overrides)
    else:
        args = make_args(output_dir, report_to="none", **overrides)
        callbacks.insert(0, wandb_bridge.WandbTrainerCallback())
    trainer = make_trainer(args, callbacks)
    trainer.train()
    return trainer


def step_key(integration: str) -> str:
    return "train/global_step" if integration == NATIVE else "trainer/global_step"


def eval_key(integration: str) -> str:
    return "eval/loss" if integration == NATIVE else "val/loss"


def histogram_rows(run: RunRecord, kind: str) -> list[dict[str, Any]]:
    """Rows holding a ``wandb.watch`` histogram of ``kind`` ("gradients" or "parameters")."""
    pattern = re.compile(rf"{kind}/.+\._type")
    return [row for row in run.history if any(pattern.fullmatch(k) and v == "histogram" for k, v in row.items())]


class UserLogs(TrainerCallback):  # type: ignore[misc]
    """User code: ``wandb.log`` from a custom callback at the end of every optimizer step."""

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        wandb.log({"custom_value": float(state.global_step)})


# ------------------------------------------------------------ framework metrics


def test_framework_metrics_same_steps_documented_names(
    integration: str, wandb_offline: WandbOfflineRuns, tmp_path: Path
) -> None:
    trainer = train(integration, tmp_path / "out", eval_strategy="steps", eval_steps=3)
    assert trainer.state.global_step == 6
    wandb.finish()

    run = wandb_offline.run()
    assert run.exit_code == 0
    assert run.project == PROJECT
    assert [s for s, _ in run.values("train/loss", step_key=step_key(integration))] == [2, 4, 6]
    assert [s for s, _ in run.values(eval_key(integration), step_key=step_key(integration))] == [3, 6]
    assert run.config["learning_rate"] == 5e-3 and run.config["max_steps"] == 6
    # the model config too: top-level natively, under model/ in ours (documented migration difference)
    assert run.config["hidden_size" if integration == NATIVE else "model/hidden_size"] == 16


def test_same_values_at_the_same_steps_side_by_side(
    wandb_offline: WandbOfflineRuns, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The same seeded training, once with each integration, in one test.
    monkeypatch.chdir(wandb_offline.wandb_dir)
    for integration in (NATIVE, OURS):
        monkeypatch.setenv("WANDB_PROJECT", integration)
        train(integration, tmp_path / integration, eval_strategy="steps", eval_steps=3)
        wandb.finish()

    runs = {run.project: run for run in wandb_offline.runs()}
    native, ours = runs[NATIVE], runs[OURS]
    assert native.exit_code == ours.exit_code == 0
    native_loss = native.values("train/loss", step_key="train/global_step")
    ours_loss = ours.values("train/loss")
    assert [s for s, _ in native_loss] == [s for s, _ in ours_loss] == [2, 4, 6]
    assert [v for _, v in ours_loss] == pytest.approx([v for _, v in native_loss], rel=1e-5)
    native_eval = native.values("eval/loss", step_key="train/global_step")
    ours_eval = ours.values("val/loss")
    assert [s for s, _ in native_eval] == [s for s, _ in ours_eval] == [3, 6]
    assert [v for _, v in ours_eval] == pytest.approx([v for _, v in native_eval], rel=1e-5)


# ------------------------------------------------------------ the user's own wandb calls


def test_wandb_log_in_a_user_callback(integration: str, wandb_offline: WandbOfflineRuns, tmp_path: Path) -> None:
    train(integration, tmp_path / "out", [UserLogs()], logging_steps=1)
    wandb.finish()

    run = wandb_offline.run()
    assert run.exit_code == 0
    pairs = run.values("custom_value", step_key=step_key(integration))
    assert sorted(v for _, v in pairs) == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]  # every call, key as written
    for step, value in pairs:
        if integration == NATIVE:  # on_step_end runs before this step's on_log: the previous step's value
            assert step == value - 1, pairs
        else:  # the step's own row or the next one, never 0
            assert step is not None and value <= step <= value + 1, pairs
    if integration == OURS:
        assert not run.rows_with("train/custom_value")
    assert [s for s, _ in run.values("train/loss", step_key=step_key(integration))] == [1, 2, 3, 4, 5, 6]


def test_user_config_and_summary_after_train(integration: str, wandb_offline: WandbOfflineRuns, tmp_path: Path) -> None:
    train(integration, tmp_path / "out")
    wandb.config.update({"user_note": "hello"})
    wandb.summary["user_best"] = 0.25
    wandb.finish()

    run = wandb_offline.run()
    assert run.exit_code == 0
    assert run.config["user_note"] == "hello"
    assert run.summary["user_best"] == 0.25
    assert len(run.rows_with("train/loss")) == 3


def test_wandb_finish_after_train_then_a_new_run(
    integration: str, wandb_offline: WandbOfflineRuns, tmp_path: Path
) -> None:
    train(integration, tmp_path / "out")
    wandb.finish()
    assert wandb.run is None
    second = wandb.init(project="compat-second")
    wandb.log({"after": 1.0})
    wandb.finish()

    runs = {run.project: run for run in wandb_offline.runs()}
    assert set(runs) == {PROJECT, "compat-second"}
    first = runs[PROJECT]
    assert first.exit_code == 0
    assert [s for s, _ in first.values("train/loss", step_key=step_key(integration))] == [2, 4, 6]
    assert runs["compat-second"].run_id == second.id != first.run_id
    assert [v for _, v in runs["compat-second"].values("after", step_key="_step")] == [1.0]
    if integration == OURS:
        assert not list(wandb_offline.root.rglob("wandb-bridge-unsent.jsonl"))


def test_a_second_train_after_wandb_finish_gets_a_new_run(
    integration: str, wandb_offline: WandbOfflineRuns, tmp_path: Path
) -> None:
    # notebooks: train, wandb.finish(), train again with a fresh Trainer
    train(integration, tmp_path / "one")
    wandb.finish()
    train(integration, tmp_path / "two")
    wandb.finish()

    runs = wandb_offline.runs()
    assert len(runs) == 2 and runs[0].run_id != runs[1].run_id
    for run in runs:
        assert run.exit_code == 0
        assert [s for s, _ in run.values("train/loss", step_key=step_key(integration))] == [2, 4, 6]


def test_evaluate_after_wandb_finish_goes_on_in_a_new_run(wandb_offline: WandbOfflineRuns, tmp_path: Path) -> None:
    # Ours only: with report_to="wandb", trainer.evaluate() after wandb.finish() raises
    # "You must call wandb.init() before wandb.log()"; ours never stops the user's script.
    trainer = train(OURS, tmp_path / "out")
    wandb.finish()
    metrics = trainer.evaluate()
    wandb.finish()

    runs = wandb_offline.runs()
    trained = [run for run in runs if run.values("train/loss")]
    assert len(trained) == 1 and trained[0].exit_code == 0
    assert [s for s, _ in trained[0].values("train/loss")] == [2, 4, 6]
    later = [run for run in runs if run.values("val/loss")]
    assert len(later) == 1 and later[0].exit_code == 0 and later[0] is not trained[0]
    assert later[0].values("val/loss") == [(6, pytest.approx(metrics["eval_loss"]))]


# ------------------------------------------------------------ watch


def test_wandb_watch_env_all(
    integration: str, wandb_offline: WandbOfflineRuns, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_WATCH", "all")
    # transformers' callback watches with log_freq=max(100, logging_steps): histograms from step 100 on
    trainer = train(integration, tmp_path / "out", max_steps=102, logging_steps=50)
    assert trainer.state.global_step == 102  # training is not dead
    wandb.finish()

    run = wandb_offline.run()
    assert run.exit_code == 0
    assert histogram_rows(run, "gradients")
    assert histogram_rows(run, "parameters")
    assert [s for s, _ in run.values("train/loss", step_key=step_key(integration))] == [50, 100]


# ------------------------------------------------------------ constructor arguments (ours only)


def test_init_kwarg_that_wandb_accepts(wandb_offline: WandbOfflineRuns, tmp_path: Path) -> None:
    callback = wandb_bridge.WandbTrainerCallback(project=PROJECT, save_code=False, notes="kwargs pass through")
    make_trainer(make_args(tmp_path / "out"), [callback]).train()
    wandb.finish()

    run = wandb_offline.run()
    assert run.exit_code == 0
    assert run.notes == "kwargs pass through"
    assert len(run.rows_with("train/loss")) == 3


def test_misspelt_keyword_raises_type_error_naming_the_valid_one(wandb_offline: WandbOfflineRuns) -> None:
    with pytest.raises(TypeError, match="log_model"):
        wandb_bridge.WandbTrainerCallback(project=PROJECT, log_mdoel="all")
    assert not wandb_offline.runs()
