"""core/training_end.py: the end of training every framework callback hands its save to, on a real offline run."""

from __future__ import annotations

from pathlib import Path

import pytest

from process_helpers import staged_files
from wandb_bridge import Session
from wandb_bridge.core.training_end import SavedCheckpoint, end_training
from wandb_bridge.testing import WandbOfflineRuns


def _saver(folder: Path, calls: list[str]) -> SavedCheckpoint:
    path = folder / "final.bin"
    path.write_bytes(b"final weights")
    calls.append(str(path))
    return SavedCheckpoint(str(path), step=7, epoch=2, metrics={"val/loss": 0.5}, metadata={"saved_by": "test"})


def test_a_due_final_model_is_saved_reported_and_uploaded_while_the_run_stays_open(
    wandb_offline: WandbOfflineRuns, tmp_path: Path
) -> None:
    calls: list[str] = []
    with Session(project="demo", log_model="end") as session:
        session.log({"loss": 1.0}, step=7)
        saved = end_training(
            session, "end", trained=True, checkpoint_exists=False, save=lambda: _saver(tmp_path, calls)
        )
        assert saved and calls == [str(tmp_path / "final.bin")]
        assert session.flush()
        assert staged_files(wandb_offline.data_dir) != []  # uploaded at the end of training, not at finish
        session.log({"loss": 0.5}, step=8)  # the run is still open
    run = wandb_offline.run()
    (art,) = [a for a in run.artifacts if a.type == "model"]
    assert {"step-7", "epoch-2"} <= set(art.aliases)
    assert art.metadata["saved_by"] == "test" and art.metadata["epoch"] == 2
    assert run.values("train/loss") == [(7, 1.0), (8, 0.5)]


@pytest.mark.parametrize(
    ("log_model", "trained", "exists"), [(False, True, False), ("end", False, False), ("end", True, True)]
)
def test_no_final_model_unless_log_model_asks_training_ended_and_no_checkpoint_exists(
    wandb_offline: WandbOfflineRuns, tmp_path: Path, log_model: object, trained: bool, exists: bool
) -> None:
    calls: list[str] = []
    with Session(project="demo", log_model=log_model) as session:  # type: ignore[arg-type]
        session.log({"loss": 1.0}, step=1)
        saved = end_training(
            session,
            session.settings.log_model,
            trained=trained,
            checkpoint_exists=exists,
            save=lambda: _saver(tmp_path, calls),
        )
        assert not saved and calls == []
    assert [a for a in wandb_offline.run().artifacts if a.type == "model"] == []


def test_the_end_uploads_run_when_saving_fails(wandb_offline: WandbOfflineRuns, tmp_path: Path) -> None:
    def broken() -> SavedCheckpoint:
        raise OSError("disk full")

    earlier = tmp_path / "checkpoint-3.bin"
    earlier.write_bytes(b"epoch 3")
    with Session(project="demo", log_model="end") as session:
        session.log_checkpoint(earlier, step=3)
        assert session.flush() and staged_files(wandb_offline.data_dir) == []  # "end": kept for the end
        with pytest.raises(OSError, match="disk full"):  # the caller's error boundary decides what it means
            end_training(session, "end", trained=True, checkpoint_exists=False, save=broken)
        assert session.flush()
        assert staged_files(wandb_offline.data_dir) != []  # the end uploads ran all the same
    (art,) = [a for a in wandb_offline.run().artifacts if a.type == "model"]
    assert "step-3" in art.aliases


def test_a_process_that_saves_but_does_not_log_only_saves(tmp_path: Path) -> None:
    calls: list[str] = []
    assert end_training(None, "all", trained=True, checkpoint_exists=False, save=lambda: _saver(tmp_path, calls))
    assert calls == [str(tmp_path / "final.bin")]
