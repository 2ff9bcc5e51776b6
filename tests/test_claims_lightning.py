"""Documented claims (docs/, README) about ``WandbLogger`` that had no test: a user's run is left open, a wandb failure
warns once and training goes on, ``validate``/``test(ckpt_path=...)`` never switch runs."""

from __future__ import annotations

import warnings
from typing import Any

import pytest

pytest.importorskip("lightning")

import lightning.pytorch as L
from lightning.pytorch.callbacks import ModelCheckpoint

from lightning_helpers import TinyModule, loaders, trainer_kwargs
from process_helpers import kill_wandb_core
from wandb_bridge import WandbBridgeWarning, WandbLogger
from wandb_bridge.testing import WandbOfflineRuns


def _ours(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, WandbBridgeWarning)]


def test_a_run_you_started_is_used_and_left_open(wandb_offline: WandbOfflineRuns, tmp_path: Any) -> None:
    import wandb

    mine = wandb.init(project="mine", id="userrun1")
    logger = WandbLogger(project="ignored")
    L.Trainer(**trainer_kwargs(str(tmp_path), max_epochs=1), logger=logger).fit(TinyModule(), *loaders())
    logger.finish()
    assert logger.experiment is mine
    assert wandb.run is mine  # still open: ours did not finish it
    mine.log({"after": 1.0})
    mine.finish(exit_code=7)
    run = wandb_offline.run()
    assert run.run_id == "userrun1" and run.project == "mine"
    assert [s for s, _ in run.values("train/loss")] == list(range(1, 9))
    assert run.values("after", step_key="_step")[-1][1] == 1.0
    assert run.exit_code == 7  # the user's finish, not ours


class _KillWandbCore(L.Callback):  # type: ignore[misc]
    def on_train_batch_end(self, trainer: Any, *args: Any) -> None:
        if trainer.global_step == 4:
            kill_wandb_core()


@pytest.mark.timeout(180)
def test_a_wandb_failure_warns_once_and_training_goes_on(wandb_offline: WandbOfflineRuns, tmp_path: Any) -> None:
    logger = WandbLogger(project="fault")
    trainer = L.Trainer(**trainer_kwargs(str(tmp_path)), logger=logger, callbacks=[_KillWandbCore()])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(TinyModule(), *loaders())  # wandb-core killed at step 4, for real
        logger.finish()
    assert trainer.global_step == 16  # training finished
    faults = _ours(caught)  # one warning for the whole fault, naming where the rows are kept
    assert len(faults) == 1 and "wandb-bridge-unsent.jsonl" in faults[0], faults
    import json
    from pathlib import Path

    unsent = Path(logger.session.run_dir or "", "wandb-bridge-unsent.jsonl")
    kept = [json.loads(line)["trainer/global_step"] for line in unsent.read_text().splitlines()]
    assert set(range(6, 17)) <= set(kept)  # every row after the fault is kept locally
    # each row carries its step; the file, written by two processes, need not be in step order


def test_validate_and_test_with_ckpt_path_never_switch_runs(wandb_offline: WandbOfflineRuns, tmp_path: Any) -> None:
    first = WandbLogger(project="first")
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="val_loss")
    L.Trainer(**trainer_kwargs(str(tmp_path / "a"), max_epochs=1), logger=first, callbacks=[checkpoint]).fit(
        TinyModule(), *loaders()
    )
    first.finish()
    best = checkpoint.best_model_path
    second = WandbLogger(project="second")
    trainer = L.Trainer(**trainer_kwargs(str(tmp_path / "b")), logger=second)
    trainer.validate(TinyModule(), dataloaders=loaders()[1], ckpt_path=best)
    trainer.test(TinyModule(), dataloaders=loaders()[1], ckpt_path=best)
    second.finish()
    assert second.version != first.version
    by_id = {r.run_id: r for r in wandb_offline.runs()}
    assert set(by_id) == {first.version, second.version}
    assert by_id[second.version].project == "second"
    assert by_id[second.version].values("val/loss") and by_id[second.version].values("test/acc")
    assert not by_id[first.version].values("test/acc")
