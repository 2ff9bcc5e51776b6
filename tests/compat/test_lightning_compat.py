"""Lightning: the native WandbLogger's documented habits, run unchanged against ``wandb_bridge.WandbLogger``.

Every test that has a native counterpart is parametrised over ``integration``:
the same user snippet runs once with ``lightning.pytorch.loggers.WandbLogger``
and once with ``wandb_bridge.WandbLogger``, each in its own offline sandbox, and
the finished run is read back as a user would see it. The assertions are the
user-visible outcome both must share (no crash, the user's own values recorded at
the same or the adjacent step, the same exit code) plus each side's documented
difference (Lightning's own logger writes 0-based steps and keeps Lightning's
metric names; ours writes optimizer steps completed, so +1, and ``train/``,
``val/`` prefixes on the framework's metrics).

Both loggers are built without ``save_dir``; the test runs in ``WANDB_DIR`` so
that the native logger's default ``save_dir="."`` writes there too.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("lightning")

import lightning.pytorch as L
import torch
import wandb
from lightning.pytorch.loggers import WandbLogger as NativeWandbLogger

import wandb_bridge
from lightning_helpers import TinyDataModule, TinyModule, loaders, trainer_kwargs
from wandb_bridge.testing import RunRecord, WandbOfflineRuns

STEPS = 16  # 2 epochs of 8 batches
NATIVE, OURS = "native", "ours"


@pytest.fixture(params=[NATIVE, OURS])
def integration(
    request: pytest.FixtureRequest, wandb_offline: WandbOfflineRuns, monkeypatch: pytest.MonkeyPatch
) -> str:
    """Which logger the snippet gets; the test runs in WANDB_DIR (the native logger's save_dir=".")."""
    monkeypatch.chdir(wandb_offline.wandb_dir)
    return str(request.param)


def make_logger(integration: str, **kwargs: Any) -> Any:
    """The snippet's ``WandbLogger(...)``: Lightning's own or ours, same arguments."""
    cls = NativeWandbLogger if integration == NATIVE else wandb_bridge.WandbLogger
    return cls(**kwargs)


def fit(logger: Any, module: Any, root: Path, **overrides: Any) -> Any:
    trainer = L.Trainer(**trainer_kwargs(str(root), **overrides), logger=logger)
    train, val = loaders()
    trainer.fit(module, train, val)
    return trainer


def loss_key(integration: str) -> str:
    """Lightning's ``self.log("train_loss")`` as each logger records it."""
    return "train_loss" if integration == NATIVE else "train/loss"


def train_steps(integration: str) -> list[int]:
    """The documented step of each training row: 0-based natively, optimizer steps completed in ours."""
    return list(range(STEPS)) if integration == NATIVE else list(range(1, STEPS + 1))


def keys(run: RunRecord) -> set[str]:
    """Top-level history keys (media and tables are recorded as ``key.<field>``)."""
    return {key.split(".")[0] for row in run.history for key in row}


def has_key(run: RunRecord, name: str) -> bool:
    """Whether ``name`` was logged (a histogram or media value is recorded as ``name.<field>``)."""
    return any(key == name or key.startswith(name + ".") for row in run.history for key in row)


def histogram_rows(run: RunRecord, kind: str) -> list[dict[str, Any]]:
    """Rows holding a ``wandb.watch`` histogram of ``kind`` ("gradients" or "parameters") for ``layer.weight``.

    wandb names them ``<kind>/layer.weight``, or ``<kind>/graph_<n>layer.weight``
    after an earlier ``watch`` in the same process.
    """
    pattern = re.compile(rf"{kind}/(graph_\d+)?layer\.weight\._type")
    return [row for row in run.history if any(pattern.fullmatch(k) and v == "histogram" for k, v in row.items())]


def assert_at_current_step(integration: str, pairs: list[tuple[Any, Any]]) -> None:
    """Each value ``v`` (the module's ``global_step`` when it was logged) is at step ``v`` or adjacent.

    Native: the row gets the last ``trainer/global_step`` written (wandb's
    ``step_sync``), so ``v - 1`` or ``v``; ours: ``v`` steps were completed, the
    row in progress is ``v + 1``, so ``v`` or ``v + 1``. Never all at 0.
    """
    assert pairs, "the user's values were not recorded"
    for step, value in pairs:
        assert step is not None, pairs
        low, high = (max(int(value) - 1, 0), int(value)) if integration == NATIVE else (int(value), int(value) + 1)
        assert low <= step <= high, (integration, step, value, pairs)
    assert len({step for step, _ in pairs}) > 1, pairs


class WandbLogInTrainingStep(TinyModule):  # type: ignore[misc,valid-type]
    """Lightning docs: ``wandb.log`` inside ``training_step``."""

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        wandb.log({"custom_value": float(self.global_step)})
        return super().training_step(batch, batch_idx)  # type: ignore[no-any-return]


class ExperimentLogInSteps(TinyModule):  # type: ignore[misc,valid-type]
    """``self.logger.experiment.log`` in training and validation steps (one distinct value per call)."""

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        self.logger.experiment.log({"exp_train": float(self.global_step)})
        return super().training_step(batch, batch_idx)  # type: ignore[no-any-return]

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self.logger.experiment.log({"exp_val": float(self.global_step) + batch_idx / 10})
        super().validation_step(batch, batch_idx)


# ------------------------------------------------------------ side by side in one test


def test_same_values_side_by_side_step_plus_one(
    wandb_offline: WandbOfflineRuns, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The same seeded training, once with each logger, in one test: the same values,
    # ours one step later (optimizer steps completed) and under train/ and val/.
    monkeypatch.chdir(wandb_offline.wandb_dir)
    for integration in (NATIVE, OURS):
        L.seed_everything(0, verbose=False)
        fit(make_logger(integration, project=integration), TinyModule(), tmp_path / integration)
        wandb.finish()

    runs = {run.project: run for run in wandb_offline.runs()}
    native, ours = runs[NATIVE], runs[OURS]
    assert native.exit_code == ours.exit_code == 0
    native_loss, ours_loss = native.values("train_loss"), ours.values("train/loss")
    assert [s + 1 for s, _ in native_loss] == [s for s, _ in ours_loss] == list(range(1, STEPS + 1))
    assert [v for _, v in ours_loss] == pytest.approx([v for _, v in native_loss], rel=1e-6)
    native_val, ours_val = native.values("val_loss"), ours.values("val/loss")
    assert [s for s, _ in native_val] == [7, 15] and [s for s, _ in ours_val] == [8, 16]
    assert [v for _, v in ours_val] == pytest.approx([v for _, v in native_val], rel=1e-6)
    assert native.config["lr"] == ours.config["lr"] == 0.05


# ------------------------------------------------------------ the user's own wandb calls


def test_wandb_log_inside_training_step(integration: str, wandb_offline: WandbOfflineRuns, tmp_path: Path) -> None:
    trainer = fit(make_logger(integration, project="compat"), WandbLogInTrainingStep(), tmp_path)
    assert trainer.global_step == STEPS
    wandb.finish()

    run = wandb_offline.run()
    assert run.exit_code == 0
    pairs = run.values("custom_value")
    assert sorted(v for _, v in pairs) == [float(s) for s in range(STEPS)]  # every call recorded, key as written
    assert_at_current_step(integration, pairs)
    assert [s for s, _ in run.values(loss_key(integration))] == train_steps(integration)
    if integration == OURS:
        assert "train/custom_value" not in keys(run)


def test_experiment_log_in_training_and_validation_steps(
    integration: str, wandb_offline: WandbOfflineRuns, tmp_path: Path
) -> None:
    fit(make_logger(integration, project="compat"), ExperimentLogInSteps(), tmp_path)
    wandb.finish()

    run = wandb_offline.run()
    assert run.exit_code == 0
    train_pairs = run.values("exp_train")
    assert sorted(v for _, v in train_pairs) == [float(s) for s in range(STEPS)]
    assert_at_current_step(integration, train_pairs)
    val_pairs = run.values("exp_val")
    # 2 validation batches per epoch, after epoch 1 (8 steps) and epoch 2 (16 steps)
    assert sorted(v for _, v in val_pairs) == pytest.approx([8.0, 8.1, 16.0, 16.1])
    assert_at_current_step(integration, [(s, int(v)) for s, v in val_pairs])
    assert not {"train/exp_train", "train/exp_val", "val/exp_val"} & keys(run)


def test_user_config_and_summary_reach_the_run(
    integration: str, wandb_offline: WandbOfflineRuns, tmp_path: Path
) -> None:
    logger = make_logger(integration, project="compat")
    fit(logger, TinyModule(), tmp_path)
    wandb.config.update({"user_note": "hello", "user_layers": 3})
    wandb.summary["user_best"] = 0.25
    wandb.finish()

    run = wandb_offline.run()
    assert run.exit_code == 0
    assert run.config["user_note"] == "hello" and run.config["user_layers"] == 3
    assert run.config["lr"] == 0.05  # the module's save_hyperparameters() as well
    assert run.summary["user_best"] == 0.25


# ------------------------------------------------------------ finishing the run yourself


def test_wandb_finish_after_fit_then_a_new_run(
    integration: str, wandb_offline: WandbOfflineRuns, tmp_path: Path
) -> None:
    fit(make_logger(integration, project="compat"), TinyModule(), tmp_path)
    wandb.finish()
    assert wandb.run is None
    second = wandb.init(project="compat-second")
    wandb.log({"after": 1.0})
    wandb.finish()

    runs = {run.project: run for run in wandb_offline.runs()}
    assert set(runs) == {"compat", "compat-second"}
    first = runs["compat"]
    assert first.exit_code == 0
    assert [s for s, _ in first.values(loss_key(integration))] == train_steps(integration)
    assert len(first.rows_with("val_loss" if integration == NATIVE else "val/loss")) == 2
    assert runs["compat-second"].run_id == second.id != first.run_id
    assert [v for _, v in runs["compat-second"].values("after", step_key="_step")] == [1.0]
    assert runs["compat-second"].exit_code == 0
    if integration == OURS:
        assert not list(wandb_offline.root.rglob("wandb-bridge-unsent.jsonl"))


def test_experiment_finish_after_fit(integration: str, wandb_offline: WandbOfflineRuns, tmp_path: Path) -> None:
    logger = make_logger(integration, project="compat")
    fit(logger, TinyModule(), tmp_path)
    logger.experiment.finish()

    run = wandb_offline.run()
    assert run.exit_code == 0
    assert [s for s, _ in run.values(loss_key(integration))] == train_steps(integration)
    assert len(run.rows_with("val_loss" if integration == NATIVE else "val/loss")) == 2
    if integration == OURS:
        assert not list(wandb_offline.root.rglob("wandb-bridge-unsent.jsonl"))


def test_test_after_wandb_finish_goes_on_in_a_new_run(wandb_offline: WandbOfflineRuns, tmp_path: Path) -> None:
    # Ours only: with Lightning's own logger, trainer.test() after wandb.finish() raises
    # wandb's UsageError ("Run ... is finished"); ours never stops the user's script.
    logger = wandb_bridge.WandbLogger(project="compat")
    trainer = L.Trainer(**trainer_kwargs(str(tmp_path)), logger=logger)
    module, data = TinyModule(), TinyDataModule()
    trainer.fit(module, datamodule=data)
    wandb.finish()
    tested = trainer.test(module, datamodule=data)[0]
    wandb.finish()

    runs = wandb_offline.runs()
    fitted = [run for run in runs if run.values("train/loss")]
    assert len(fitted) == 1 and fitted[0].exit_code == 0
    assert [s for s, _ in fitted[0].values("train/loss")] == train_steps(OURS)
    assert not fitted[0].values("test/loss")  # the finished run is not written to again
    later = [run for run in runs if run.values("test/loss")]
    assert len(later) == 1 and later[0].exit_code == 0
    assert later[0].values("test/loss") == [(STEPS, pytest.approx(tested["test_loss"]))]


# ------------------------------------------------------------ media and tables


def test_log_image_table_text_keys_kept(integration: str, wandb_offline: WandbOfflineRuns, tmp_path: Path) -> None:
    logger = make_logger(integration, project="compat")
    fit(logger, TinyModule(), tmp_path)
    logger.log_image(key="samples", images=[torch.rand(3, 8, 8), torch.rand(3, 8, 8)], caption=["a", "b"])
    logger.log_table(key="tbl", columns=["x", "y"], data=[[1, 2], [3, 4]])
    logger.log_text(key="txt", columns=["text"], data=[["hello"], ["world"]])
    wandb.finish()

    run = wandb_offline.run()
    assert run.exit_code == 0
    recorded = keys(run)
    assert {"samples", "tbl", "txt"} <= recorded
    assert not {"train/samples", "train/tbl", "train/txt"} & recorded
    assert run.rows_with("samples.count")[0]["samples.count"] == 2
    assert run.rows_with("tbl.nrows")[0]["tbl.nrows"] == 2


def test_log_image_with_explicit_step_after_fit(
    integration: str, wandb_offline: WandbOfflineRuns, tmp_path: Path
) -> None:
    logger = make_logger(integration, project="compat")
    fit(logger, TinyModule(), tmp_path)
    logger.log_image(key="samples", images=[torch.rand(3, 8, 8)], step=3)
    wandb.finish()

    run = wandb_offline.run()
    assert run.exit_code == 0
    steps = [row.get("trainer/global_step") for row in run.rows_with("samples._type")]
    # Lightning's logger writes the step as given; ours adds 1, as for every Lightning step
    assert steps == ([3] if integration == NATIVE else [4])
    assert [s for s, _ in run.values(loss_key(integration))] == train_steps(integration)


# ------------------------------------------------------------ watch


@pytest.mark.parametrize("log", ["gradients", "all"])
def test_logger_watch(integration: str, log: str, wandb_offline: WandbOfflineRuns, tmp_path: Path) -> None:
    logger = make_logger(integration, project="compat")
    module = TinyModule()
    logger.watch(module, log=log, log_freq=4)
    trainer = fit(logger, module, tmp_path)
    assert trainer.global_step == STEPS  # training is not dead
    wandb.finish()

    run = wandb_offline.run()
    assert run.exit_code == 0
    gradients = histogram_rows(run, "gradients")
    assert len(gradients) >= 2  # log_freq=4 over 16 steps
    assert bool(histogram_rows(run, "parameters")) == (log == "all")
    assert [s for s, _ in run.values(loss_key(integration))] == train_steps(integration)


# ------------------------------------------------------------ LightningCLI


def cli_args(integration: str, root: Path, save_dir: Path | None) -> list[str]:
    logger_class = "lightning.pytorch.loggers.WandbLogger" if integration == NATIVE else "wandb_bridge.WandbLogger"
    args = [
        "fit",
        f"--trainer.logger={logger_class}",
        "--trainer.logger.project=compat-cli",
        "--model.lr=0.02",
        "--data.batch_size=8",
    ]
    if save_dir is not None:
        args.append(f"--trainer.logger.save_dir={save_dir}")
    return args + trainer_cli_args(root)


def trainer_cli_args(root: Path) -> list[str]:
    return [
        f"--trainer.default_root_dir={root}",
        "--trainer.max_epochs=1",
        "--trainer.accelerator=cpu",
        "--trainer.devices=1",
        "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false",
        "--trainer.log_every_n_steps=1",
        "--trainer.num_sanity_val_steps=0",
    ]


def assert_cli_run(integration: str, wandb_offline: WandbOfflineRuns, cli: Any) -> None:
    assert cli.trainer.global_step == 4  # 32 samples, batch 8
    wandb.finish()
    run = wandb_offline.run()
    assert run.exit_code == 0
    assert run.project == "compat-cli"
    # the CLI's values reach the run config (the module's and datamodule's hyper-parameters)
    assert run.config["lr"] == 0.02
    assert run.config["batch_size"] == 8
    expected = [0, 1, 2, 3] if integration == NATIVE else [1, 2, 3, 4]
    assert [s for s, _ in run.values(loss_key(integration))] == expected


@pytest.mark.parametrize("with_save_dir", [False, True], ids=["no_save_dir", "save_dir"])
def test_lightning_cli_logger_on_command_line(
    integration: str, with_save_dir: bool, wandb_offline: WandbOfflineRuns, tmp_path: Path
) -> None:
    pytest.importorskip("jsonargparse")
    from lightning.pytorch.cli import LightningCLI

    save_dir = wandb_offline.wandb_dir if with_save_dir else None
    cli = LightningCLI(TinyModule, TinyDataModule, args=cli_args(integration, tmp_path, save_dir))
    assert_cli_run(integration, wandb_offline, cli)


@pytest.mark.parametrize("with_save_dir", [False, True], ids=["no_save_dir", "save_dir"])
def test_lightning_cli_logger_in_yaml_config(
    integration: str, with_save_dir: bool, wandb_offline: WandbOfflineRuns, tmp_path: Path
) -> None:
    pytest.importorskip("jsonargparse")
    from lightning.pytorch.cli import LightningCLI

    logger_class = "lightning.pytorch.loggers.WandbLogger" if integration == NATIVE else "wandb_bridge.WandbLogger"
    init_args = "        project: compat-cli\n"
    if with_save_dir:
        init_args += f"        save_dir: {wandb_offline.wandb_dir}\n"
    config = tmp_path / "config.yaml"
    config.write_text(
        f"trainer:\n  logger:\n    class_path: {logger_class}\n    init_args:\n{init_args}"
        "model:\n  lr: 0.02\ndata:\n  batch_size: 8\n",
        encoding="utf-8",
    )
    cli = LightningCLI(TinyModule, TinyDataModule, args=["fit", f"--config={config}", *trainer_cli_args(tmp_path)])
    assert_cli_run(integration, wandb_offline, cli)


# ------------------------------------------------------------ constructor arguments


def test_init_kwarg_that_wandb_accepts(integration: str, wandb_offline: WandbOfflineRuns, tmp_path: Path) -> None:
    logger = make_logger(integration, project="compat", save_code=False, notes="kwargs pass through")
    fit(logger, TinyModule(), tmp_path)
    wandb.finish()

    run = wandb_offline.run()
    assert run.exit_code == 0
    assert run.notes == "kwargs pass through"
    assert [s for s, _ in run.values(loss_key(integration))] == train_steps(integration)


def test_misspelt_keyword_raises_type_error_naming_the_valid_one(wandb_offline: WandbOfflineRuns) -> None:
    # Lightning's own logger hands unknown keywords to wandb.init at the first use of
    # the run; ours checks them at construction (a typo must not lose the whole run).
    with pytest.raises(TypeError, match="log_model"):
        wandb_bridge.WandbLogger(project="compat", log_mdoel="all")
    assert not wandb_offline.runs()
