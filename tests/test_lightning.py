"""WandbLogger: real Lightning Trainers (both namespaces) on CPU, real wandb offline, read back."""

from __future__ import annotations

import contextlib
import inspect
import itertools
import os
import signal
import socket
import subprocess
import sys
import warnings
from argparse import Namespace
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("lightning")

import lightning.pytorch as L
import numpy as np
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger

from lightning_helpers import (
    TinyDataModule,
    TinyModule,
    TwoOptimizerModule,
    build,
    loaders,
    trainer_kwargs,
)
from process_helpers import staged_files
from wandb_bridge import WandbBridgeWarning, WandbLogger
from wandb_bridge.testing import read_run

HERE = Path(__file__).resolve().parent


def _steps(run: Any, key: str) -> list[Any]:
    return [step for step, _ in run.values(key)]


def _rows_at(run: Any, step: int) -> list[dict[str, Any]]:
    return [row for row in run.history if row.get("trainer/global_step") == step]


def _models(run: Any) -> list[Any]:
    return [a for a in run.artifacts if a.type == "model"]


def _run_by_id(wandb_offline: Any, run_id: str | None) -> Any:
    found = [r for r in wandb_offline.runs() if r.run_id == run_id]
    assert len(found) == 1, [r.run_id for r in wandb_offline.runs()]
    return found[0]


def best_digest(models: list[Any]) -> str:
    """The digest of the epoch=1-step=16.ckpt version."""
    return next(a.digest for a in models if a.metadata["original_filename"] == "epoch=1-step=16.ckpt")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ------------------------------------------------------------ run contract


def test_fit_then_test_and_validate_step_axis_keys_rows_config_summary(wandb_offline, tmp_path):
    logger = WandbLogger(tags=["t1"])
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="val_loss")
    trainer = L.Trainer(
        **trainer_kwargs(str(tmp_path)),
        logger=logger,
        callbacks=[checkpoint, LearningRateMonitor(logging_interval="step")],
    )
    module, data = TinyModule(), TinyDataModule()
    trainer.fit(module, datamodule=data)
    assert trainer.global_step == 16
    tested = trainer.test(module, datamodule=data)[0]
    validated = trainer.validate(module, datamodule=data)[0]
    logger.finish()

    run = wandb_offline.run()
    assert run.exit_code == 0
    assert run.project == "lightning_logs"  # Lightning's WandbLogger default project
    assert run.run_id == logger.version
    # trainer/global_step = optimizer steps completed: 1..16, the first training row has 1
    assert _steps(run, "train/loss") == list(range(1, 17))
    assert run.history[0]["trainer/global_step"] == 1
    # Lightning's names map to train/, val/, test/
    assert not any(k in row for row in run.history for k in ("train_loss", "val_loss", "epoch"))
    # validation values land in the row of their step, with that step's training values
    assert _steps(run, "val/loss") == [8, 16, 16]  # fit: 8, 16; validate() after fit: 16
    for step in (8, 16):
        merged = _rows_at(run, step)[0]
        assert {"train/loss", "val/loss", "val/acc", "train/lr-SGD"} <= set(merged)
    # LearningRateMonitor: the lr used by each optimizer step, in that step's row (StepLR halves per epoch)
    assert run.values("train/lr-SGD") == [(s, pytest.approx(0.05 if s <= 8 else 0.025)) for s in range(1, 17)]
    # trainer/epoch counts completed epochs (8 batches per epoch), as in transformers and Keras
    assert [e for _, e in run.values("trainer/epoch")][:16] == [pytest.approx(s / 8) for s in range(1, 17)]
    # test()/validate() after fit: at the step the model was trained to
    assert run.values("test/acc") == [(16, pytest.approx(tested["test_acc"]))]
    assert run.values("val/loss")[-1] == (16, pytest.approx(validated["val_loss"]))
    # monitored metric (from ModelCheckpoint): best value in the summary
    best = min(v for _, v in run.values("val/loss"))
    assert run.summary["val/loss"]["min"] == pytest.approx(best)
    assert run.metrics["val/loss"]["summary"] == ["min"]
    # config: module + datamodule hparams, Trainer facts, secrets redacted
    config = run.config
    assert config["lr"] == 0.05 and config["hidden"] == 4 and config["batch_size"] == 4
    assert config["api_token"] == "<redacted>"
    assert not wandb_offline.grep("tok-secret-123")
    assert config["trainer/max_epochs"] == 2
    assert config["trainer/accumulate_grad_batches"] == 1
    assert config["trainer/precision"] == "32-true"
    assert config["trainer/world_size"] == 1 and config["trainer/devices"] == 1
    assert config["trainer/strategy"] == "single_device"
    assert config["trainer/lightning_package"] == "lightning"
    assert run.tags == ("t1",)


def test_pytorch_lightning_namespace(wandb_offline, tmp_path):
    pl = pytest.importorskip("pytorch_lightning")
    classes = build(pl)
    logger = WandbLogger(log_model="best")
    # one class serves both namespaces
    assert isinstance(logger, pl.loggers.Logger)
    assert isinstance(logger, L.loggers.Logger)
    checkpoint = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="val_acc", mode="max")
    trainer = pl.Trainer(**trainer_kwargs(str(tmp_path)), logger=logger, callbacks=[checkpoint])
    trainer.fit(classes["TinyModule"](), *loaders())
    logger.finish()

    run = wandb_offline.run()
    assert run.exit_code == 0
    assert _steps(run, "train/loss") == list(range(1, 17))
    assert _steps(run, "val/acc") == [8, 16]
    assert "train/loss" in run.rows_with("val/acc")[0]
    assert run.config["trainer/lightning_package"] == "pytorch_lightning"
    assert run.summary["val/acc"]["max"] == pytest.approx(max(v for _, v in run.values("val/acc")))
    best = [a for a in _models(run) if "best" in a.aliases][-1]
    assert best.metadata["framework_version"] == pl.__version__
    assert best.metadata["original_filename"] == Path(checkpoint.best_model_path).name
    assert best.metadata["monitor"] == "val/acc" and best.metadata["monitor_mode"] == "max"


def test_gradient_accumulation_counts_optimizer_steps(wandb_offline, tmp_path):
    logger = WandbLogger()
    trainer = L.Trainer(**trainer_kwargs(str(tmp_path), accumulate_grad_batches=4), logger=logger)
    trainer.fit(TinyModule(), *loaders())
    logger.finish()

    run = wandb_offline.run()
    assert trainer.global_step == 4  # 8 batches per epoch / 4, two epochs
    assert _steps(run, "train/loss") == [1, 2, 3, 4]
    assert _steps(run, "val/loss") == [2, 4]
    assert run.config["trainer/accumulate_grad_batches"] == 4
    assert len(run.history) == 4  # one row per optimizer step, validation merged in


def test_two_optimizers_manual_optimization(wandb_offline, tmp_path):
    logger = WandbLogger(log_model="all")
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="val_loss")
    trainer = L.Trainer(**trainer_kwargs(str(tmp_path), max_epochs=1), logger=logger, callbacks=[checkpoint])
    trainer.fit(TwoOptimizerModule(), *loaders())
    logger.finish()

    run = wandb_offline.run()
    # two optimizer steps per batch: trainer/global_step follows trainer.global_step
    assert trainer.global_step == 16
    assert _steps(run, "train/loss_a") == list(range(2, 17, 2))
    assert _steps(run, "train/loss_b") == list(range(2, 17, 2))
    assert _steps(run, "val/loss") == [16]
    # ... and so matches the step in Lightning's checkpoint file names
    assert Path(checkpoint.best_model_path).name == "epoch=0-step=16.ckpt"
    assert "step-16" in _models(run)[-1].aliases


# ------------------------------------------------------------ checkpoints


def test_every_checkpoint_callback_followed_best_alias_metadata_and_dedup(wandb_offline, tmp_path):
    logger = WandbLogger(log_model="all")
    by_loss = ModelCheckpoint(dirpath=tmp_path / "loss", monitor="val_loss", save_last=True)
    by_acc = ModelCheckpoint(dirpath=tmp_path / "acc", filename="acc-{epoch}", monitor="val_acc", mode="max")
    trainer = L.Trainer(**trainer_kwargs(str(tmp_path)), logger=logger, callbacks=[by_loss, by_acc])
    trainer.fit(TinyModule(), *loaders())

    # A last.ckpt re-save with unchanged content is not uploaded again ...
    last = Path(by_loss.last_model_path)
    os.utime(last, ns=(last.stat().st_mtime_ns + 10**9,) * 2)
    logger.after_save_checkpoint(by_loss)
    # ... a re-save with new content is
    torch.save({"changed": True}, last)
    logger.after_save_checkpoint(by_loss)
    logger.finish()

    run = wandb_offline.run()
    models = _models(run)
    assert {a.name for a in models} == {f"model-{run.run_id}"}
    assert all(list(a.files) == ["model.ckpt"] for a in models)  # as Lightning's WandbLogger names it
    names = [a.metadata["original_filename"] for a in models]
    assert {"epoch=0-step=8.ckpt", "epoch=1-step=16.ckpt", "acc-epoch=0.ckpt", "acc-epoch=1.ckpt"} <= set(names)
    assert names[-1] == "last.ckpt"  # the changed re-save
    # last.ckpt versions: step 8; the content of epoch=1-step=16.ckpt (step 16), logged again only to
    # move "latest" back from acc-epoch=1.ckpt (wandb keeps one copy per digest); the changed re-save.
    # Every other save of the same content added no version: 7 in all.
    assert names.count("last.ckpt") == 3
    assert len(models) == 7
    last_digests = [a.digest for a in models if a.metadata["original_filename"] == "last.ckpt"]
    assert len(set(last_digests)) == 3
    same_as_best = [a for a in models if a.digest == best_digest(models)]
    assert [a.metadata["original_filename"] for a in same_as_best] == ["epoch=1-step=16.ckpt", "last.ckpt"]
    # the best alias follows the first callback's best_model_path (the run's monitor is its val_loss)
    best = [a for a in models if "best" in a.aliases]
    assert [a.metadata["original_filename"] for a in best][-1] == Path(by_loss.best_model_path).name
    assert not any(a.metadata["original_filename"].startswith("acc-") for a in best)
    meta = best[-1].metadata
    assert meta["monitor"] == "val/loss" and meta["monitor_mode"] == "min"
    assert type(meta["score"]) is float and meta["score"] == pytest.approx(float(by_loss.best_model_score))
    assert meta["ModelCheckpoint"]["monitor"] == "val_loss" and meta["ModelCheckpoint"]["mode"] == "min"
    assert meta["framework"] == "lightning" and meta["step"] == 16 and meta["epoch"] == 2  # epochs completed
    assert {"step-16", "epoch-2"} <= set(best[-1].aliases)
    acc = next(a for a in models if a.metadata["original_filename"] == "acc-epoch=1.ckpt")
    assert acc.metadata["ModelCheckpoint"]["monitor"] == "val_acc"
    assert acc.metadata["ModelCheckpoint"]["mode"] == "max"
    assert type(acc.metadata["ModelCheckpoint"]["score"]) is float
    assert "latest" in models[-1].aliases


def test_log_model_true_offline_uploads_latest_and_best_at_end_of_fit(wandb_offline, tmp_path):
    # Lightning's WandbLogger refuses offline=True with log_model=True
    logger = WandbLogger(offline=True, log_model=True)
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="val_loss", save_top_k=2, save_last=True)
    trainer = L.Trainer(**trainer_kwargs(str(tmp_path), max_epochs=3), logger=logger, callbacks=[checkpoint])
    trainer.fit(TinyModule(lr=0.01), *loaders())
    # uploaded at the end of fit, not only at finish: wandb staged the artifact's files by then
    assert logger.session.flush()
    assert staged_files(wandb_offline.data_dir) != []
    logger.finish()

    run = wandb_offline.run()
    models = _models(run)
    # not every save: the best and the newest checkpoint, at the end of fit
    by_file = {a.metadata["original_filename"]: a for a in models}
    assert set(by_file) == {Path(checkpoint.best_model_path).name, "last.ckpt"}
    assert "best" in by_file[Path(checkpoint.best_model_path).name].aliases
    assert "latest" in by_file["last.ckpt"].aliases
    # last.ckpt has the same content as the best (both saved at the last step): one version
    # holds both aliases, its file is uploaded once
    assert by_file["last.ckpt"].digest == by_file[Path(checkpoint.best_model_path).name].digest
    assert len({a.digest for a in models}) == 1


def test_no_checkpoint_callback_saves_final_weights_once(wandb_offline, tmp_path):
    logger = WandbLogger(log_model="end")
    trainer = L.Trainer(**trainer_kwargs(str(tmp_path), enable_checkpointing=False), logger=logger)
    trainer.fit(TinyModule(), *loaders())
    trainer.test(TinyModule(), dataloaders=loaders()[1])  # a later test() saves nothing more
    logger.finish()

    run = wandb_offline.run()
    saved = tmp_path / "lightning_logs" / run.run_id / "checkpoints" / "final.ckpt"
    assert saved.is_file()
    restored = TinyModule.load_from_checkpoint(saved)  # Lightning's own format
    assert restored.hparams.lr == 0.05
    (model,) = _models(run)
    assert list(model.files) == ["model.ckpt"]
    assert {"latest", "step-16", "epoch-2"} <= set(model.aliases)
    assert model.metadata["original_filename"] == "final.ckpt"


# -------------------------------------------------------------- lifecycle


def test_failed_fit_nonzero_exit_code_keeps_checkpoints_lightning_drops_them(wandb_offline, tmp_path):
    theirs = LightningWandbLogger(project="fail", save_dir=str(wandb_offline.wandb_dir), log_model=True)
    ours = WandbLogger(project="fail", log_model=True)
    for logger, root in ((theirs, tmp_path / "theirs"), (ours, tmp_path / "ours")):
        checkpoint = ModelCheckpoint(dirpath=root / "ckpt", monitor="val_loss")
        trainer = L.Trainer(**trainer_kwargs(str(root)), logger=logger, callbacks=[checkpoint])
        with pytest.raises(RuntimeError, match="boom"):
            trainer.fit(TinyModule(fail_at_step=10), *loaders())
        assert Path(checkpoint.best_model_path).name == "epoch=0-step=8.ckpt"
        if logger is theirs:
            theirs.experiment.finish(exit_code=1)  # it leaves its run open

    lightning_run = _run_by_id(wandb_offline, theirs.version)
    our_run = _run_by_id(wandb_offline, ours.version)
    assert our_run.exit_code == 1
    assert _steps(our_run, "train/loss") == list(range(1, 11))
    # Lightning's logger uploads log_model=True checkpoints only after a successful fit
    assert _models(lightning_run) == []
    (kept,) = _models(our_run)
    assert kept.metadata["original_filename"] == "epoch=0-step=8.ckpt"
    assert {"best", "latest"} <= set(kept.aliases)


def test_keyboard_interrupt_records_exit_code_130(wandb_offline, tmp_path):
    class Interrupted(TinyModule):  # type: ignore[misc,valid-type]
        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            if self.global_step == 3:
                raise KeyboardInterrupt
            return super().training_step(batch, batch_idx)  # type: ignore[no-any-return]

    logger = WandbLogger()
    trainer = L.Trainer(**trainer_kwargs(str(tmp_path)), logger=logger)
    handler = signal.getsignal(signal.SIGINT)
    try:
        # Lightning >= 2.4 turns Ctrl-C into sys.exit(1) after finalize("failed"); older ones return from fit
        with contextlib.suppress(SystemExit):
            trainer.fit(Interrupted(), *loaders())
    finally:
        signal.signal(signal.SIGINT, handler)  # Lightning ignores SIGINT from then on

    run = wandb_offline.run()
    assert run.exit_code == 130
    assert _steps(run, "train/loss") == [1, 2, 3]


def test_user_config_wins_over_hyperparameters_and_trainer_facts(wandb_offline, tmp_path):
    # The core's one config rule (as in transformers and Keras): a key given in config= is never overwritten.
    logger = WandbLogger(config={"lr": 0.5, "trainer": {"max_epochs": 99}, "mine": "kept"})
    L.Trainer(**trainer_kwargs(str(tmp_path), max_epochs=1), logger=logger).fit(TinyModule(lr=0.05), *loaders())
    logger.finish()

    run = wandb_offline.run()
    assert run.config["lr"] == 0.5 and run.config["mine"] == "kept"
    assert run.config["trainer/max_epochs"] == 99
    assert run.config["hidden"] == 4  # the module's other hyper-parameters are recorded
    assert run.config["trainer/accumulate_grad_batches"] == 1  # and the Trainer's other facts


def test_second_fit_with_new_logger_gets_its_own_run(wandb_offline, tmp_path):
    first = WandbLogger(config={"only_first": 1})
    L.Trainer(**trainer_kwargs(str(tmp_path / "a"), max_epochs=1), logger=first).fit(TinyModule(), *loaders())
    second = WandbLogger(config={"only_second": 2})
    L.Trainer(**trainer_kwargs(str(tmp_path / "b"), max_epochs=1), logger=second).fit(TinyModule(hidden=8), *loaders())
    # starting the second run finished the first (idle after its fit)
    assert first.session.finished and not second.session.finished
    second.finish()

    run_a = _run_by_id(wandb_offline, first.version)
    run_b = _run_by_id(wandb_offline, second.version)
    assert run_a.exit_code == 0
    assert run_a.run_id != run_b.run_id
    assert run_a.config["hidden"] == 4 and "only_second" not in run_a.config
    assert run_b.config["hidden"] == 8 and "only_first" not in run_b.config
    assert _steps(run_a, "train/loss") == _steps(run_b, "train/loss") == list(range(1, 9))
    assert run_b.exit_code == 0


# ---------------------------------------------------------- public API


def test_constructor_and_methods_of_lightning_logger(wandb_offline, tmp_path):
    ours = inspect.signature(WandbLogger.__init__).parameters
    theirs = inspect.signature(LightningWandbLogger.__init__).parameters
    assert list(theirs) == [*list(ours)[: len(theirs) - 1], "kwargs"]
    for method in ("log_table", "log_text", "log_image", "log_audio", "log_video", "watch", "use_artifact"):
        if not hasattr(LightningWandbLogger, method):
            continue  # log_audio / log_video are newer than Lightning 2.1
        assert list(inspect.signature(getattr(WandbLogger, method)).parameters) == list(
            inspect.signature(getattr(LightningWandbLogger, method)).parameters
        )
    with pytest.raises(ValueError, match="log_model"):
        WandbLogger(log_model="sometimes")

    logger = WandbLogger(
        name="my-run", version="fixedid1", project="api", prefix="fold1", save_dir=tmp_path / "wb", group="g"
    )
    assert (logger.name, logger.version, logger.save_dir) == ("api", "fixedid1", str(tmp_path / "wb"))
    logger.log_hyperparams(Namespace(lr=0.1, password="hunter22"))
    logger.experiment.config.update({"direct": True})
    logger.log_metrics({"train_loss": 0.5}, step=0)  # no Trainer: Lightning's 0-based step + 1
    logger.log_table("preds", columns=["a", "b"], data=[[1, 2]], step=0)
    logger.log_text("notes", columns=["text"], data=[["hello"]], step=0)
    logger.log_image("samples", [np.zeros((4, 4, 3), dtype=np.uint8)] * 2, step=0, caption=["x", "y"])
    with pytest.raises(ValueError, match="Expected 2 items"):
        logger.log_image("samples", [np.zeros((4, 4, 3))] * 2, caption=["only one"])
    logger.watch(torch.nn.Linear(2, 2))
    logger.finish()

    wandb_offline.flush()
    assert wandb_offline.runs() == []  # save_dir is wandb's dir (WANDB_DIR does not win)
    run = read_run(tmp_path / "wb")
    assert (run.run_id, run.name, run.project, run.group) == ("fixedid1", "my-run", "api", "g")
    assert run.config["lr"] == 0.1 and run.config["password"] == "<redacted>" and run.config["direct"] is True
    (row,) = run.history
    assert row["trainer/global_step"] == 1
    assert row["fold1-train/loss"] == 0.5  # prefix + "-" as in Lightning, before the recorded key
    # keys the user names in a direct call are kept as written (Lightning's prefix applies, as there)
    for key in ("fold1-preds", "fold1-notes", "fold1-samples"):
        assert any(k.startswith(f"{key}.") for k in row), key
    assert not any(k.startswith("fold1-train/") and k != "fold1-train/loss" for k in row)


def test_per_batch_validation_values_stay_on_the_training_step(wandb_offline, tmp_path):
    logger = WandbLogger()
    trainer = L.Trainer(**trainer_kwargs(str(tmp_path), val_check_interval=4), logger=logger)
    with pytest.warns(WandbBridgeWarning, match="Per-batch validation values"):
        trainer.fit(TinyModule(per_batch_val=True), *loaders())
    logger.finish()

    run = wandb_offline.run()
    # Lightning passes the evaluation batch count as the step; ours records the training step
    assert _steps(run, "val/batch_loss") == [4, 8, 12, 16]
    assert _steps(run, "val/loss") == [4, 8, 12, 16]
    steps = [row["trainer/global_step"] for row in run.history]
    assert steps == sorted(steps) == list(range(1, 17))


# ------------------------------------------------------------ equivalence


def test_same_values_as_lightning_wandb_logger_without_split_rows(wandb_offline, tmp_path):
    """Lightning's own logger vs ours on the same seeded training."""
    runs = {}
    for kind, logger in (
        ("theirs", LightningWandbLogger(project="equiv", save_dir=str(wandb_offline.wandb_dir))),
        ("ours", WandbLogger(project="equiv")),
    ):
        L.seed_everything(7)
        trainer = L.Trainer(
            **trainer_kwargs(str(tmp_path / kind), val_check_interval=4),
            logger=logger,
            callbacks=[LearningRateMonitor(logging_interval="step")],
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", WandbBridgeWarning)
            trainer.fit(TinyModule(per_batch_val=True), *loaders())
        if kind == "theirs":
            logger.experiment.finish()
        else:
            logger.finish()
        runs[kind] = _run_by_id(wandb_offline, logger.version)
    theirs, ours = runs["theirs"], runs["ours"]

    # the same training loss values, at Lightning's step + 1 (ours counts completed optimizer steps)
    their_loss = theirs.values("train_loss")
    assert [s for s, _ in their_loss] == list(range(16))
    assert ours.values("train/loss") == [(s + 1, pytest.approx(v, rel=1e-6)) for s, v in their_loss]
    # the same validation values
    assert [v for _, v in ours.values("val/loss")] == pytest.approx([v for _, v in theirs.values("val_loss")])

    # Lightning's: every log_metrics call is its own row, so one step is split over several rows
    their_step3 = [r for r in theirs.history if r.get("trainer/global_step") == 3]
    assert any("train_loss" in r for r in their_step3) and any("val_loss" in r for r in their_step3)
    assert not any("train_loss" in r and "val_loss" in r for r in their_step3)
    # ... and per-batch validation values are written at the evaluation batch count, which
    # clashes with (and runs backwards against) the training steps on the same axis
    their_axis = [r["trainer/global_step"] for r in theirs.history if "trainer/global_step" in r]
    assert any(b < a for a, b in itertools.pairwise(their_axis))
    assert [s for s, _ in theirs.values("val_batch_loss")] == [0, 1, 2, 3, 4, 5, 6, 7]
    assert len(theirs.history) > 2 * len(ours.history)

    # ours: one row per step, monotonic; validation and lr in the row of their training step
    our_axis = [r["trainer/global_step"] for r in ours.history]
    assert our_axis == list(range(1, 17))
    for row in ours.rows_with("val/loss"):
        assert {"train/loss", "train/lr-SGD", "val/acc", "val/batch_loss"} <= set(row)
    # Lightning's logger writes the lr of a step in a row of its own
    assert len(theirs.values("lr-SGD")) == len(ours.values("train/lr-SGD")) == 16
    assert not any("lr-SGD" in r and "train_loss" in r for r in theirs.history)


# -------------------------------------------------------------------- DDP


@pytest.mark.slow
def test_ddp_spawn_one_run(wandb_offline, tmp_path, monkeypatch):
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(_free_port()))
    logger = WandbLogger(project="spawn", log_model="all", system_stats=False)
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="val_loss")
    trainer = L.Trainer(
        **trainer_kwargs(
            str(tmp_path), devices=2, strategy="ddp_spawn", max_epochs=1, limit_train_batches=4, limit_val_batches=1
        ),
        logger=logger,
        callbacks=[checkpoint],
    )
    trainer.fit(TinyModule(), *loaders())  # the logger is pickled into both workers

    run = wandb_offline.run()  # exactly one run: rank 0's
    assert run.run_id == logger.version  # the id fixed when the logger was pickled
    assert not logger.session.started  # the main process never opened a run
    assert run.exit_code == 0  # finished when the worker exited
    assert _steps(run, "train/loss") == [1, 2, 3, 4]
    assert _steps(run, "val/loss") == [4]
    assert run.config["trainer/world_size"] == 2
    assert [a.metadata["original_filename"] for a in _models(run)] == ["epoch=0-step=4.ckpt"]


def _run_ddp_helpers(wandb_offline, tmp_path, *mode: str) -> subprocess.CompletedProcess[str]:
    """Run tests/lightning_helpers.py (a 2-process gloo ddp fit) in ``tmp_path``; it must succeed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MASTER_", "LOCAL_RANK", "NODE_RANK"))}
    env.update(wandb_offline.env)
    env.update(PYTHONPATH=os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")]))
    done = subprocess.run(
        [sys.executable, str(HERE / "lightning_helpers.py"), str(tmp_path), *mode],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


@pytest.mark.slow
def test_ddp_one_run_then_one_run_per_rank(wandb_offline, tmp_path):
    done = _run_ddp_helpers(wandb_offline, tmp_path)
    lines = [line.split() for line in done.stdout.splitlines() if line.startswith(("ONE ", "PER_RANK "))]
    one = {int(rank): run for kind, _, rank, _, run in lines if kind == "ONE"}
    per_rank = {int(rank): run for kind, _, rank, _, run in lines if kind == "PER_RANK"}
    assert one[1] == "None" and one[0] != "None"  # rank 1 had no run
    assert per_rank[0] != per_rank[1] and "None" not in per_rank.values()

    runs = {r.run_id: r for r in wandb_offline.runs()}
    assert set(runs) == {one[0], per_rank[0], per_rank[1]}
    single = runs[one[0]]
    assert single.exit_code == 0
    assert _steps(single, "train/loss") == [1, 2, 3, 4]
    assert single.config["trainer/world_size"] == 2
    assert len(_models(single)) == 1
    for rank in (0, 1):
        run = runs[per_rank[rank]]
        assert run.group == "per-rank-group" and run.job_type == f"rank-{rank}"
        assert _steps(run, "train/loss") == [1, 2, 3, 4]
        assert run.exit_code == 0


@pytest.mark.slow
def test_ddp_final_weights_are_reported_by_rank_zeros_run_only(wandb_offline, tmp_path):
    """rank_zero_only=False, no ModelCheckpoint: every rank saves final.ckpt into rank 0's path (a collective
    save); only the writer's run reports it (core/checkpoint_reports.reports_files), not a copy per rank."""
    done = _run_ddp_helpers(wandb_offline, tmp_path, "final")
    lines = [line.split() for line in done.stdout.splitlines() if line.startswith("FINAL ")]
    final = {int(rank): run for _, _, rank, _, run in lines}
    assert final[0] != final[1] and "None" not in final.values()
    runs = {r.run_id: r for r in wandb_offline.runs()}
    assert set(runs) == set(final.values())
    assert [a.metadata["original_filename"] for a in _models(runs[final[0]])] == ["final.ckpt"]
    assert _models(runs[final[1]]) == []
    assert all(runs[final[rank]].exit_code == 0 for rank in (0, 1))
