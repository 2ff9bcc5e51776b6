"""core/steps.py and core/checkpoint_reports.py: the step rules the callbacks hand their counts to, and the
reporting of a checkpoint callback's files (on a real offline run)."""

from __future__ import annotations

from pathlib import Path

from wandb_bridge.core.checkpoint_reports import CallbackFiles, SavedFiles, SaveTime, reports_files
from wandb_bridge.core.session import Session
from wandb_bridge.core.steps import evaluation_step, fractional_epoch, planned_rows, reaches_every
from wandb_bridge.testing import WandbOfflineRuns


def test_evaluation_results_outside_training_go_to_the_optimizer_step_or_the_runs_last_step() -> None:
    assert evaluation_step(12, 30) == 12  # a trained model: its optimizer's step
    assert evaluation_step(0, 30) == 30  # a fresh or reloaded model evaluated after training: the run's last row
    assert evaluation_step(0, None) == 0 and evaluation_step(0, 0) == 0  # nothing logged yet


def test_a_batch_call_is_logged_when_it_reaches_every_n_optimizer_steps() -> None:
    # one batch per call, one batch per step: batches 2, 4, 6 (steps 2, 4, 6) with every=2
    logged = [raw for raw in range(1, 7) if reaches_every(raw, raw, per_call=1, accumulation=1, every=2)]
    assert logged == [2, 4, 6]
    # 3 batches per call (steps_per_execution=3), every=2: the calls ending at steps 3 and 6 cross 2 and 4/6
    assert [reaches_every(s, s, per_call=3, accumulation=1, every=2) for s in (3, 6, 9)] == [True, True, True]
    assert reaches_every(4, 4, per_call=1, accumulation=1, every=5) is False
    # gradient accumulation 2: 4 batches make step 2; every=2 logs the batch that completes step 2 only
    logged = [raw for raw in range(1, 9) if reaches_every(raw // 2, raw, per_call=1, accumulation=2, every=2)]
    assert logged == [4, 8]


def test_fractional_epoch_of_a_batch() -> None:
    assert fractional_epoch(1, 2, 8) == 1.25
    assert fractional_epoch(1, 2, None) == 1.0 and fractional_epoch(1, 2, float("inf")) == 1.0


def test_only_the_writer_of_checkpoint_files_reports_them() -> None:
    # rank_zero_only=False: every rank has its run; only rank 0 (Lightning's writer) reports the shared paths
    assert [reports_files(rank) for rank in (None, 0, 1, 3)] == [True, True, False, False]


def _write(path: Path, content: bytes) -> str:
    path.write_bytes(content)
    return str(path)


def test_callback_files_report_new_files_with_the_callbacks_verdict(
    wandb_offline: WandbOfflineRuns, tmp_path: Path
) -> None:
    reports = CallbackFiles(payload_name="model.ckpt")
    with Session(project="demo", log_model="all", monitor="val_loss", framework="plain") as session:
        best = _write(tmp_path / "epoch=0.ckpt", b"w0")
        saved = SavedFiles({best: 1.0}, best, "ModelCheckpoint", {"monitor": "val_loss"})
        reports.report(session, saved, ["val/loss"], 0, SaveTime(step=2, epoch=1, metrics={"val_loss": 1.0}))
        reports.report(session, saved, ["val/loss"], 0, SaveTime(step=2, epoch=1))  # nothing new: no version
        last = _write(tmp_path / "last.ckpt", b"w1")
        saved = SavedFiles({best: 1.0, last: 1.5}, best, "ModelCheckpoint", {"monitor": "val_loss"})
        reports.report(session, saved, ["val/loss"], 0, SaveTime(step=4, epoch=2))
    arts = [a for a in wandb_offline.run().artifacts if a.type == "model"]
    assert [a.metadata["step"] for a in arts] == [2, 4]
    assert "best" in arts[0].aliases and "best" not in arts[1].aliases  # the callback's own best file
    assert arts[1].metadata["ModelCheckpoint"] == {"monitor": "val_loss", "score": 1.5}
    assert set(arts[0].files) == {"model.ckpt"} and arts[0].metadata["original_filename"] == "epoch=0.ckpt"


def test_planned_rows() -> None:
    assert planned_rows(1500, 1) == 1500
    assert planned_rows(1000, 10) == 100
    assert planned_rows(1000, 0.1) == 10  # a fraction of the steps (the Trainer's logging_steps=0.1)
    assert planned_rows(None, 1) == 0
    assert planned_rows(-1, 1) == 0  # max_steps unknown
    assert planned_rows(float("inf"), 1) == 0
    assert planned_rows(100, None) == 0
