"""WandbTrainerCallback: real transformers Trainer runs on CPU, real wandb offline, read back."""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import signal
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("transformers")

from process_helpers import staged_files
from transformers_helpers import (
    PLANTED_TOKEN,
    ToyDataset,
    make_args,
    make_model,
    make_trainer,
)
from wandb_bridge import Session, WandbBridgeWarning, WandbTrainerCallback
from wandb_bridge.callbacks.transformers import NEVER_UPLOAD, WEIGHT_FILES, apply_sweep
from wandb_bridge.core.metrics import read_log_dict
from wandb_bridge.core.steps import epochs_completed, step_in_progress

HERE = Path(__file__).resolve().parent


def _steps(run: Any, key: str) -> list[Any]:
    return [step for step, _ in run.values(key)]


def _model_artifacts(run: Any) -> list[Any]:
    return [a for a in run.artifacts if a.type == "model"]


def test_keys_steps_merged_rows_and_end_of_training_summary(wandb_offline, tmp_path):
    callback = WandbTrainerCallback()
    args = make_args(tmp_path / "out", eval_strategy="steps", eval_steps=2)
    trainer = make_trainer(args, [callback])
    trainer.train()
    trainer.evaluate(metric_key_prefix="test")
    predicted = trainer.predict(ToyDataset(8, seed=2))
    callback.finish()

    run = wandb_offline.run()
    assert run.project == "huggingface"  # report_to="wandb"'s default project
    assert run.exit_code == 0
    assert _steps(run, "train/loss") == [2, 4, 6]
    assert _steps(run, "train/learning_rate") == [2, 4, 6]
    assert _steps(run, "train/grad_norm") == [2, 4, 6]
    # eval_* -> val/*, in the same row as the training values of that step
    for row in run.rows_with("val/loss"):
        assert "train/loss" in row
        assert "perf/val_runtime" in row
    assert _steps(run, "val/loss") == [2, 4, 6]
    assert [e for _, e in run.values("trainer/epoch")][:3] == pytest.approx([0.25, 0.5, 0.75])
    # evaluate(metric_key_prefix="test") and predict() -> test/* at the last step, one row
    assert run.values("test/loss") == [(6, pytest.approx(predicted.metrics["test_loss"]))]
    assert "perf/test_runtime" in run.rows_with("test/loss")[0]
    # end-of-training figures: summary only, never a history row
    for key in ("perf/train_runtime", "perf/train_samples_per_second", "perf/total_flos"):
        assert key in run.summary
        assert not run.rows_with(key)
    assert not any(k.startswith(("train_", "eval_", "total_flos")) for row in run.history for k in row)
    mean_loss = next(h["train_loss"] for h in trainer.state.log_history if "train_loss" in h)
    assert run.summary["train/loss_mean"] == pytest.approx(mean_loss)
    assert run.summary["train/loss"] == pytest.approx(run.values("train/loss")[-1][1])
    assert run.metrics["*"]["step_metric"] == "trainer/global_step"


def test_config_and_planted_hub_token_absent_everywhere(wandb_offline, tmp_path):
    callback = WandbTrainerCallback(log_model="all", config={"dataset": "toy"})
    args = make_args(tmp_path / "out", save_strategy="steps", save_steps=3)
    trainer = make_trainer(args, [callback], tokenizer=True)
    trainer.model.peft_config = {"default": {"r": 4, "lora_alpha": 8}}  # as a PEFT model carries it
    for parameter in trainer.model.bert.embeddings.parameters():  # frozen: trainable < total
        parameter.requires_grad = False
    frozen = sum(p.numel() for p in trainer.model.bert.embeddings.parameters())
    trainer.train()
    callback.finish()

    # the plant works: the Trainer wrote the token in clear into its checkpoint
    assert PLANTED_TOKEN.encode() in (tmp_path / "out" / "checkpoint-3" / "training_args.bin").read_bytes()

    run = wandb_offline.run()
    config = run.config
    assert config["learning_rate"] == 5e-3
    assert config["max_steps"] == 6
    assert config["dataset"] == "toy"
    assert config["hub_token"] == "<redacted>"
    assert config["model/hidden_size"] == 16
    assert config["model/id2label/1"] == "LABEL_1"
    assert config["peft/default/r"] == 4
    total = sum(p.numel() for p in trainer.model.parameters())
    assert config["model/num_parameters"] == total
    assert 0 < frozen < total
    assert config["model/num_trainable_parameters"] == total - frozen
    assert wandb_offline.grep(PLANTED_TOKEN) == []
    artifacts = _model_artifacts(run)
    assert len(artifacts) == 2
    for artifact in artifacts:
        assert "training_args.bin" not in artifact.files
        assert "optimizer.pt" in artifact.files  # checkpoint_files="all" keeps the rest
        for entry in artifact.files.values():
            assert PLANTED_TOKEN.encode() not in Path(entry["local_path"]).read_bytes()
    assert NEVER_UPLOAD == ("training_args.bin",)


def test_user_config_wins_over_what_the_trainer_holds(wandb_offline, tmp_path):
    # issue 15: the user's config= always wins over extracted values, in every framework
    callback = WandbTrainerCallback(config={"learning_rate": 0.5, "model": {"hidden_size": 99}, "dataset": "toy"})
    make_trainer(make_args(tmp_path / "out", max_steps=2), [callback]).train()
    callback.finish()

    config = wandb_offline.run().config
    assert config["learning_rate"] == 0.5  # TrainingArguments hold 5e-3
    assert config["model/hidden_size"] == 99  # the model config says 16
    assert config["dataset"] == "toy"
    assert config["max_steps"] == 2 and config["model/num_hidden_layers"] == 1  # the rest is extracted


def test_the_trainer_log_dicts_as_the_core_reads_them():
    train = read_log_dict({"loss": 0.5, "grad_norm": 1.0, "learning_rate": 1e-3, "epoch": 0.5})
    assert (train.stage, train.summary) == ("train", False)
    assert read_log_dict({"eval_loss": 0.4, "eval_runtime": 0.1, "epoch": 1.0}).stage == "val"
    assert read_log_dict({"test_loss": 0.4}).stage == read_log_dict({"predict_loss": 0.4}).stage == "test"
    end = read_log_dict({"train_runtime": 3.0, "total_flos": 10.0, "train_loss": 0.3, "epoch": 1.0})
    assert end.summary and end.stage == "train"
    assert end.values == {"train_runtime": 3.0, "total_flos": 10.0, "loss_mean": 0.3}  # no epoch, train_loss renamed
    assert [epochs_completed(e) for e in (None, 0.25, 1.0, 0.9999999999, 2.5)] == [None, 0, 1, 1, 2]
    assert (step_in_progress(4), step_in_progress(4, in_step=False)) == (5, 4)  # inside step 5, after step 4


@pytest.mark.parametrize("log_model", ["all", "best"])
def test_checkpoints_with_best_from_trainer_state(wandb_offline, tmp_path, log_model):
    callback = WandbTrainerCallback(log_model=log_model)
    args = make_args(
        tmp_path / "out",
        eval_strategy="steps",
        eval_steps=2,
        save_strategy="steps",
        save_steps=2,
        load_best_model_at_end=True,
        metric_for_best_model="loss",
        learning_rate=2e-2,
    )
    trainer = make_trainer(args, [callback])
    trainer.train()
    callback.finish()

    run = wandb_offline.run()
    artifacts = _model_artifacts(run)
    assert {a.name for a in artifacts} == {f"model-{run.run_id}"}
    eval_losses = dict(run.values("val/loss"))
    assert sorted(eval_losses) == [2, 4, 6]
    steps = [a.metadata["step"] for a in artifacts]
    if log_model == "all":
        assert steps == [2, 4, 6]
        assert "latest" in artifacts[-1].aliases
    else:  # uploaded only when it was the best so far
        improving = [s for s in (2, 4, 6) if eval_losses[s] <= min(eval_losses[t] for t in (2, 4, 6) if t <= s)]
        assert steps == improving
        assert all("best" in a.aliases for a in artifacts)
    for artifact in artifacts:
        meta = artifact.metadata
        assert meta["framework"] == "transformers"
        assert meta["monitor"] == "val/loss"
        assert meta["monitor_mode"] == "min"
        assert meta["score"] == pytest.approx(eval_losses[meta["step"]])
        assert meta["epoch"] == 0
        assert meta["original_filename"] == f"checkpoint-{meta['step']}"
        assert f"step-{meta['step']}" in artifact.aliases
    best_step = int(trainer.state.best_model_checkpoint.rsplit("-", 1)[1])
    best = [a for a in artifacts if "best" in a.aliases]
    # the newest version carrying "best" is the Trainer's best checkpoint
    assert best[-1].metadata["step"] == best_step
    assert "min" in run.metrics["val/loss"]["summary"]
    assert run.summary["val/loss"]["min"] == pytest.approx(min(eval_losses.values()))


def test_checkpoint_files_weights_uploads_only_weights_and_configs(wandb_offline, tmp_path):
    callback = WandbTrainerCallback(log_model="end", checkpoint_files="weights")
    args = make_args(tmp_path / "out", save_strategy="steps", save_steps=3)
    trainer = make_trainer(args, [callback], tokenizer=True, train_size=24)  # 6 steps = 1 epoch
    trainer.train()
    # log_model="end": logged when train() ends, not only when the run finishes (wandb has
    # staged the artifact's files by then)
    assert callback.session is not None and callback.session.flush()
    assert staged_files(wandb_offline.data_dir) != []
    callback.finish()

    written = set(os.listdir(tmp_path / "out" / "checkpoint-6"))
    assert {"optimizer.pt", "scheduler.pt", "trainer_state.json", "training_args.bin"} <= written
    run = wandb_offline.run()
    (artifact,) = _model_artifacts(run)
    # The tokenizer's own files differ by version: tokenizer.json (5.x), vocab.txt + special_tokens_map.json (4.x).
    assert {"config.json", "model.safetensors", "tokenizer_config.json"} <= set(artifact.files) <= set(WEIGHT_FILES)
    assert {"latest", "step-6", "epoch-1"} <= set(artifact.aliases)  # epochs completed
    assert artifact.metadata["checkpoint_files"] == "weights"


def test_log_model_end_without_checkpoint_saves_final_model_once(wandb_offline, tmp_path):
    callback = WandbTrainerCallback(log_model="end")
    trainer = make_trainer(make_args(tmp_path / "out"), [callback])
    trainer.train()
    callback.finish()

    assert not list((tmp_path / "out").glob("checkpoint-*"))
    run = wandb_offline.run()
    (artifact,) = _model_artifacts(run)
    assert {"model.safetensors", "config.json"} <= set(artifact.files)
    assert artifact.metadata["final_model"] is True
    assert artifact.metadata["step"] == 6
    assert "latest" in artifact.aliases


def test_env_log_model_checkpoint_means_all(wandb_offline, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_LOG_MODEL", "checkpoint")
    monkeypatch.setenv("WANDB_PROJECT", "from-env")
    callback = WandbTrainerCallback()
    args = make_args(tmp_path / "out", save_strategy="steps", save_steps=2, run_name="named-run")
    make_trainer(args, [callback]).train()
    callback.finish()

    run = wandb_offline.run()
    assert run.project == "from-env"
    assert run.name == "named-run"
    assert [a.metadata["step"] for a in _model_artifacts(run)] == [2, 4, 6]


def test_predictions_table_per_evaluation(wandb_offline, tmp_path):
    callback = WandbTrainerCallback(log_predictions=3)
    args = make_args(tmp_path / "out", eval_strategy="steps", eval_steps=3)
    trainer = make_trainer(args, [callback], tokenizer=True)
    trainer.train()
    callback.finish()

    run = wandb_offline.run()
    rows = [row for row in run.history if any(k.startswith("val/predictions") for k in row)]
    assert [row["trainer/global_step"] for row in rows] == [3, 6]
    assert all("val/loss" in row for row in rows)  # same row as the evaluation's metrics
    tables = sorted((run.folder / "files").rglob("*.table.json"))
    assert len(tables) == 2
    content = json.loads(tables[-1].read_text())
    # the one prediction-table schema of every framework (issue 15; was input, label, prediction)
    assert content["columns"] == ["sample", "input", "target", "prediction"]
    assert len(content["data"]) == 3
    eval_set = ToyDataset(8, seed=1)
    for i, (sample, text, label, prediction) in enumerate(content["data"]):
        assert sample == i
        words = text.split()
        assert len(words) == 8 and all(w.startswith("w") for w in words)  # decoded by the tokenizer
        assert words[0] == f"w{int(eval_set.ids[i, 0]) - 5}"
        assert label == int(eval_set.labels[i])
        assert prediction in (0, 1)


def test_two_train_calls_give_two_runs_with_their_own_config(wandb_offline, tmp_path):
    callback = WandbTrainerCallback()
    trainer = make_trainer(make_args(tmp_path / "out", max_steps=4), [callback])
    trainer.train()
    first = callback.run
    trainer.args.learning_rate = 1e-3
    trainer.train()
    assert callback.run is not first
    second_id = callback.run.id
    callback.finish()

    by_id = {r.run_id: r for r in wandb_offline.runs()}
    assert len(by_id) == 2
    runs = [by_id[first.id], by_id[second_id]]  # the order they were trained in, not file times
    assert [r.config["learning_rate"] for r in runs] == [5e-3, 1e-3]
    assert all(r.exit_code == 0 for r in runs)
    assert [_steps(r, "train/loss") for r in runs] == [[2, 4], [2, 4]]


def test_report_to_wandb_warns_once(wandb_offline, tmp_path):
    callback = WandbTrainerCallback()
    args = make_args(tmp_path / "out", report_to=["wandb"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer = make_trainer(args, [callback])
        callback.setup(trainer.args, trainer.state, trainer.model)
    callback.finish()
    mine = [w for w in caught if issubclass(w.category, WandbBridgeWarning) and "report_to" in str(w.message)]
    assert len(mine) == 1
    assert "report_to='none'" in str(mine[0].message)


def test_same_training_loss_as_report_to_wandb(wandb_offline, tmp_path):
    import wandb

    native = make_trainer(make_args(tmp_path / "native", report_to="wandb", logging_steps=1))
    native.train()
    native_id = wandb.run.id
    wandb.finish()
    callback = WandbTrainerCallback()
    ours = make_trainer(make_args(tmp_path / "ours", logging_steps=1), [callback])
    ours.train()
    our_id = callback.run.id
    callback.finish()

    by_id = {r.run_id: r for r in wandb_offline.runs()}
    native_run, our_run = by_id[native_id], by_id[our_id]
    native_loss = native_run.values("train/loss", step_key="train/global_step")
    our_loss = our_run.values("train/loss")
    assert [s for s, _ in our_loss] == [1, 2, 3, 4, 5, 6]
    assert [s for s, _ in native_loss] == [s for s, _ in our_loss]
    assert [v for _, v in our_loss] == pytest.approx([v for _, v in native_loss], rel=1e-6)


def test_hyperparameter_search_trials_get_their_own_runs(wandb_offline, tmp_path):
    optuna = pytest.importorskip("optuna")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    callback = WandbTrainerCallback()
    args = make_args(tmp_path / "out", max_steps=2, logging_steps=1, run_name="search")
    trainer = make_trainer(args, [callback], model_init=True)
    trainer.hyperparameter_search(
        hp_space=lambda trial: {"learning_rate": trial.suggest_float("learning_rate", 1e-4, 1e-2, log=True)},
        n_trials=2,
        direction="minimize",
        backend="optuna",
    )
    callback.finish()

    runs = wandb_offline.runs()
    assert len(runs) == 2
    rates = [r.config["learning_rate"] for r in runs]
    assert rates[0] != rates[1]
    assert [r.config["trial/learning_rate"] for r in runs] == rates
    assert {r.group for r in runs} == {"search"}
    assert len({r.name for r in runs}) == 2
    assert all(r.exit_code == 0 for r in runs)
    assert all(_steps(r, "train/loss") == [1, 2] for r in runs)


def test_apply_sweep_from_sweep_agent_environment(wandb_offline, tmp_path, monkeypatch):
    params = tmp_path / "sweep.yaml"
    params.write_text("learning_rate:\n  value: 0.01\nper_device_train_batch_size:\n  value: 2\n")
    monkeypatch.setenv("WANDB_SWEEP_ID", "sweep123")
    monkeypatch.setenv("WANDB_SWEEP_PARAM_PATH", str(params))
    callback = WandbTrainerCallback()
    args = make_args(tmp_path / "out", max_steps=2)
    swept = apply_sweep(args, callback)
    assert (swept.learning_rate, swept.per_device_train_batch_size) == (0.01, 2)
    assert (args.learning_rate, args.per_device_train_batch_size) == (5e-3, 4)  # not modified
    trainer = make_trainer(swept, [callback])
    trainer.train()
    callback.finish()

    run = wandb_offline.run()
    assert run.config["learning_rate"] == 0.01
    assert run.config["per_device_train_batch_size"] == 2
    assert run.config["model/hidden_size"] == 16  # the config is completed when training starts
    assert trainer.state.train_batch_size == 2


def test_apply_sweep_with_a_mapping_or_session(wandb_offline, tmp_path):
    args = make_args(tmp_path / "out")
    updated = apply_sweep(
        args,
        {
            "learning_rate": 0.02,
            "num_train_epochs": 2,
            "per_device_train_batch_size": 8.0,
            "hub_token": "<redacted>",
            "not_an_argument": 1,
            "model/hidden_size": 8,
        },
    )
    assert updated.learning_rate == 0.02
    assert updated.per_device_train_batch_size == 8 and isinstance(updated.per_device_train_batch_size, int)
    assert updated.num_train_epochs == 2.0
    assert updated.hub_token == PLANTED_TOKEN
    assert apply_sweep(args, {"learning_rate": 5e-3}) is args
    with Session(config={"learning_rate": 0.03}) as session:
        assert apply_sweep(args, session).learning_rate == 0.03


def test_wandb_disabled_records_nothing_and_trains(wandb_offline, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_DISABLED", "true")
    callback = WandbTrainerCallback(log_model="end")
    trainer = make_trainer(make_args(tmp_path / "out"), [callback])
    trainer.train()
    callback.finish()
    assert trainer.state.global_step == 6
    assert wandb_offline.runs() == []
    assert not (tmp_path / "out" / "wandb-final-model").exists()


def test_callback_pickles_without_its_run(wandb_offline, tmp_path):
    callback = WandbTrainerCallback(log_model="all", log_predictions=2)
    callback.setup(make_args(tmp_path / "out"))
    assert callback.run is not None
    copy = pickle.loads(pickle.dumps(callback))
    callback.finish()
    assert copy.session is None
    assert (copy.settings.log_model, copy.log_predictions) == ("all", 2)
    # The copy's parts share its one holder again: its next setup starts a run it can finish.
    assert copy.setup(make_args(tmp_path / "out")) is copy.session is not None
    copy.finish()
    assert len(wandb_offline.runs()) == 2  # the original's run and the copy's, both finished


def test_invalid_arguments_are_refused():
    with pytest.raises(ValueError, match="checkpoint_files"):
        WandbTrainerCallback(checkpoint_files="optimizer")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="log_predictions"):
        WandbTrainerCallback(log_predictions=-1)
    with pytest.raises(ValueError, match="log_model"):
        WandbTrainerCallback(log_model="sometimes")


def _run_script(command: list[str], env: dict[str, str], folder: Path, timeout: float) -> tuple[int, str]:
    """Run a test script; on a hang, dump its stacks, kill it and its workers, and fail."""
    env = {**env, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", "PYTHONFAULTHANDLER": "1"}
    log = folder / "script.log"
    with open(log, "w") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            # torchrun starts its workers in sessions of their own: they announce their pids.
            pids = [int(p.name.split("-")[1]) for p in folder.glob("pid-*")]
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGABRT)  # faulthandler prints every thread's stack
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGABRT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)  # the stacks are written before SIGABRT ends it
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            pytest.fail(f"{command[-2]} script hung for {timeout:.0f} s:\n{log.read_text()[-6000:]}")
    return process.returncode, log.read_text()


@pytest.mark.slow
def test_torchrun_two_processes_give_one_run(wandb_offline, tmp_path):
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(HERE / "transformers_helpers.py"),
        "ddp",
        str(tmp_path),
    ]
    code, output = _run_script(command, {**os.environ, **wandb_offline.env}, tmp_path, timeout=150)
    assert code == 0, output[-3000:]
    ranks = {p.name: p.read_text().split() for p in tmp_path.glob("rank-*.txt")}
    zero, run_id, world = ranks["rank-0.txt"]
    assert (zero, world) == ("1", "2") and run_id != "-"  # a real 2-process gloo group
    assert ranks["rank-1.txt"] == ["0", "-", "2"]
    run = wandb_offline.run()
    assert run.run_id == run_id
    assert run.project == "ddp"
    assert run.exit_code == 0
    assert _steps(run, "train/loss") == [1, 2, 3, 4]


@pytest.mark.slow
def test_exception_in_training_finishes_run_with_nonzero_exit_code(wandb_offline, tmp_path):
    command = [sys.executable, str(HERE / "transformers_helpers.py"), "crash", str(tmp_path)]
    code, output = _run_script(command, {**os.environ, **wandb_offline.env}, tmp_path, timeout=120)
    assert code == 1
    assert "training failed at step 3" in output
    run = wandb_offline.run()
    assert run.finished and run.exit_code == 1
    assert _steps(run, "train/loss") == [1, 2]


def test_model_helper_is_tiny():
    assert sum(p.numel() for p in make_model().parameters()) < 20_000
