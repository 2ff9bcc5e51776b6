"""The demo (``python -m wandb_bridge demo``) and every script in examples/, each run as a user runs it.

Each test starts the script in a subprocess with the ``wandb_offline`` environment,
then reads back the runs it wrote and checks what the script's docstring claims.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from wandb_bridge.testing import RunRecord, WandbOfflineRuns, read_runs

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
FRAMEWORK_LABELS = ("plain loop", "Lightning", "transformers", "Keras", "accelerate", "Fabric")


def _run(wandb_offline: WandbOfflineRuns, *args: str, extra_env: dict[str, str] | None = None) -> str:
    """Run ``python ARGS`` from the repository root; return stdout + stderr, failing with them on a non-zero exit."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    env.update(wandb_offline.env)
    env.update(extra_env or {})
    done = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"exit code {done.returncode}:\n{output[-4000:]}"
    return output


def _steps(run: RunRecord, key: str) -> list[int]:
    return [step for step, _ in run.values(key)]


def _model_versions(run: RunRecord) -> list[tuple[str, ...]]:
    return [a.aliases for a in run.artifacts if a.type == "model"]


# ------------------------------------------------------------------ the demo


@pytest.mark.slow
def test_demo_trains_every_framework_and_prints_one_table(wandb_offline: WandbOfflineRuns, tmp_path: Path) -> None:
    target = tmp_path / "demo"
    output = _run(wandb_offline, "-m", "wandb_bridge", "demo", "--dir", str(target))  # 300 s limit

    for label in FRAMEWORK_LABELS:  # one progress line per framework, with its time
        assert re.search(rf"^  {re.escape(label)}\.+ +\d+\.\d s  done$", output, re.MULTILINE), output
    lines = output.splitlines()
    header = lines[next(i for i, line in enumerate(lines) if line.startswith("───")) - 1]
    assert header.split() == [
        "plain",
        "loop",
        "Lightning",
        "transformers",
        "Keras",
        "accelerate",
        "Fabric",
    ]  # one column per run

    def row(key: str) -> str:
        return next(line for line in output.splitlines() if line.startswith(key))[26:]

    assert row("trainer/global_step").count("1 .. 18") == 6
    assert row("history rows").split() == ["18"] * 6
    assert len(re.findall(r"\d+\.\d{3} → \d+\.\d{3}", row("train/loss"))) == 6
    assert len(re.findall(r"\d+\.\d{3} → \d+\.\d{3}", row("val/loss first"))) == 6
    assert row("val/loss in the summary").count("min ") == 6
    assert row("checkpoint versions").split() == ["3"] * 6
    assert row("alias latest").count("step-18") == 6
    assert row("alias best").count("step-") == 6
    assert row("exit code").split() == ["0"] * 6
    assert f"wandb sync {target.resolve() / 'wandb'}/offline-run-*" in output
    assert f"runs written to {target.resolve() / 'wandb'}" in output

    runs = read_runs(target / "wandb")
    assert sorted(r.name or "" for r in runs) == [
        "accelerate",
        "fabric",
        "keras",
        "lightning",
        "plain-loop",
        "transformers",
    ]
    for run in runs:  # the same contract, whatever trained the model
        assert _steps(run, "train/loss") == list(range(1, 19)), run.name
        assert _steps(run, "val/loss") == [6, 12, 18], run.name
        assert run.exit_code == 0
        assert {"latest", "best", "step-18"} <= set(_model_versions(run)[-1]), run.name
        assert all(a.metadata.get("run_id") == run.run_id for a in run.artifacts if a.type == "model")
    frameworks = {r.name: r.artifacts[-1].metadata.get("framework") for r in runs}
    assert frameworks == {
        "accelerate": "accelerate",
        "fabric": "lightning",
        "keras": "keras",
        "lightning": "lightning",
        "plain-loop": None,
        "transformers": "transformers",
    }


@pytest.mark.slow
def test_demo_skips_frameworks_that_are_not_installed(wandb_offline: WandbOfflineRuns, tmp_path: Path) -> None:
    # sys.modules[name] = None makes both importlib.util.find_spec and import see the package as absent.
    code = (
        "import sys; sys.modules.update(dict.fromkeys(['lightning', 'transformers', 'keras', 'accelerate']));"
        "from wandb_bridge.__main__ import main; sys.exit(main(['demo', '--dir', sys.argv[1]]))"
    )
    output = _run(wandb_offline, "-c", code, str(tmp_path / "demo"))
    for extra in ("lightning", "transformers", "keras", "accelerate"):
        assert re.search(rf"skipped, {extra} is not installed: pip install \"wandb-bridge\[{extra}\]\"", output), output
    assert re.search(r"^  plain loop\.+ +\d+\.\d s  done$", output, re.MULTILINE)
    assert "wandb sync" in output
    assert [r.name for r in read_runs(tmp_path / "demo" / "wandb")] == ["plain-loop"]


# ------------------------------------------------------------------ examples


@pytest.mark.slow
def test_plain_loop_example(wandb_offline: WandbOfflineRuns) -> None:
    output = _run(wandb_offline, "examples/plain_loop.py", "--dir", str(wandb_offline.wandb_dir))
    run = wandb_offline.run()
    assert _steps(run, "train/loss") == list(range(1, 49))
    assert _steps(run, "val/loss") == [16, 32, 48]
    assert _steps(run, "test/loss") == [48]
    assert len(run.history) == 48  # validation and test values share the rows of their steps
    assert run.config["model/hidden"] == 16 and run.config["lr"] == 0.05
    assert run.summary["val/loss"] == {"min": min(v for _, v in run.values("val/loss"))}
    assert [next(a for a in aliases if a.startswith("step-")) for aliases in _model_versions(run)] == [
        "step-16",
        "step-32",
        "step-48",
    ]
    assert run.exit_code == 0
    assert f"wandb sync {run.folder}" in output


@pytest.mark.slow
def test_lightning_example(wandb_offline: WandbOfflineRuns) -> None:
    _run(wandb_offline, "examples/lightning_example.py", "--dir", str(wandb_offline.wandb_dir))
    run = wandb_offline.run()
    assert _steps(run, "train/loss") == list(range(1, 49))
    assert _steps(run, "val/loss") == [16, 32, 48]
    assert _steps(run, "test/loss") == [48]  # trainer.test() in the same run, at the trained step
    assert run.config["lr"] == 0.05 and run.config["trainer/max_epochs"] == 3
    versions = _model_versions(run)
    assert versions and "best" in versions[-1]
    assert run.exit_code == 0


@pytest.mark.slow
def test_transformers_example(wandb_offline: WandbOfflineRuns) -> None:
    output = _run(wandb_offline, "examples/transformers_example.py", "--dir", str(wandb_offline.wandb_dir))
    run = wandb_offline.run()
    assert _steps(run, "train/loss") == list(range(2, 37, 2))  # logging_steps=2, 12 steps per epoch
    assert _steps(run, "val/accuracy") == [12, 24, 36]
    assert _steps(run, "test/accuracy") == [36]
    assert run.summary["val/accuracy"] == {"max": max(v for _, v in run.values("val/accuracy"))}
    assert run.config["model/hidden_size"] == 32 and run.config["metric_for_best_model"] == "accuracy"
    models = [a for a in run.artifacts if a.type == "model"]
    assert models and "best" in models[-1].aliases
    assert all("training_args.bin" not in a.files and "optimizer.pt" not in a.files for a in models)
    assert "model.safetensors" in models[-1].files
    assert "val/predictions" in run.summary
    assert run.exit_code == 0
    assert "test accuracy" in output


@pytest.mark.slow
def test_keras_example(wandb_offline: WandbOfflineRuns) -> None:
    env = {"KERAS_BACKEND": "torch"}
    output = _run(wandb_offline, "examples/keras_example.py", "--dir", str(wandb_offline.wandb_dir), extra_env=env)
    run = wandb_offline.run()
    assert _steps(run, "train/loss") == list(range(4, 65, 4))  # log_freq=4, 16 steps per epoch
    assert _steps(run, "val/loss") == [16, 32, 48, 64]
    assert _steps(run, "test/accuracy") == [64]
    assert run.config["keras/backend"] == "torch"
    models = [a for a in run.artifacts if a.type == "model"]
    assert models and all(len(a.files) == 1 and next(iter(a.files)).endswith(".keras") for a in models)
    assert "best" in models[-1].aliases
    assert run.exit_code == 0
    assert "(torch backend)" in output


@pytest.mark.slow
def test_ddp_example_records_one_run(wandb_offline: WandbOfflineRuns) -> None:
    output = _run(wandb_offline, "examples/ddp_example.py", "--dir", str(wandb_offline.wandb_dir))
    run = wandb_offline.run()  # two ranks, one run
    assert _steps(run, "train/loss") == list(range(1, 49))
    assert run.config["world_size"] == 2
    assert "best" in _model_versions(run)[-1] and "step-48" in _model_versions(run)[-1]
    assert run.exit_code == 0
    assert output.count("rank 0: run") == 1 and "rank 1: run" not in output


@pytest.mark.slow
def test_resume_after_preemption_example(wandb_offline: WandbOfflineRuns) -> None:
    output = _run(wandb_offline, "examples/resume_after_preemption.py", "--dir", str(wandb_offline.wandb_dir))
    assert "pre-empted: exit code 143" in output
    attempts = wandb_offline.runs()  # offline: one run file per attempt, the same run id
    assert len(attempts) == 2
    # the attempt that recorded step 1 ran first (not taken from file times)
    first, second = sorted(attempts, key=lambda r: min(_steps(r, "train/loss"), default=10**9))
    assert first.run_id == second.run_id
    assert (first.exit_code, first.preempting) == (143, True)
    assert second.exit_code == 0
    steps = _steps(first, "train/loss") + _steps(second, "train/loss")
    assert steps == list(range(1, 41))  # contiguous, none twice
    assert 10 <= _steps(first, "train/loss")[-1] < 40
    last_saved = max(a.metadata["step"] for a in first.artifacts)
    assert last_saved == _steps(first, "train/loss")[-1]  # the checkpoint at the step the attempt stopped at
    assert {a.metadata["run_id"] for a in first.artifacts + second.artifacts} == {first.run_id}


@pytest.mark.slow
def test_sweep_run_reproduced_offline(wandb_offline: WandbOfflineRuns, tmp_path: Path) -> None:
    yaml = pytest.importorskip("yaml")
    sweep = yaml.safe_load((EXAMPLES / "sweep" / "sweep.yaml").read_text())
    assert sweep["metric"] == {"name": "val/loss", "goal": "minimize"}
    assert sweep["program"] == "train.py" and (EXAMPLES / "sweep" / sweep["program"]).is_file()

    params = tmp_path / "params.yaml"
    params.write_text("learning_rate: {value: 0.05}\nper_device_train_batch_size: {value: 8}\n")
    env = {"WANDB_SWEEP_ID": "local", "WANDB_SWEEP_PARAM_PATH": str(params)}
    _run(wandb_offline, "examples/sweep/train.py", "--dir", str(wandb_offline.wandb_dir), extra_env=env)
    run = wandb_offline.run()
    assert run.config["learning_rate"] == 0.05 and run.config["per_device_train_batch_size"] == 8
    assert {v for _, v in run.values("train/learning_rate")} == {0.05}  # the Trainer used the swept value
    assert _steps(run, "val/loss") == [16, 32]  # 128 samples / batch 8 = 16 steps per epoch, 2 epochs
    assert "val/loss" in run.summary  # the metric the sweep optimises
    assert set(sweep["parameters"]) <= set(run.config)


@pytest.mark.slow
def test_dataset_artifact_example(wandb_offline: WandbOfflineRuns) -> None:
    output = _run(wandb_offline, "examples/dataset_artifact.py", "--dir", str(wandb_offline.wandb_dir))
    by_job = {r.job_type: r for r in wandb_offline.runs()}  # told apart by job type, not file times
    assert set(by_job) == {"dataset", "train"}
    prepare, train = by_job["dataset"], by_job["train"]
    data = prepare.artifact("toy-regression")
    assert data.type == "dataset" and list(data.files) == ["data.csv"]
    assert data.metadata["rows"] == 200
    assert train.config["dataset/sha256"] == data.metadata["sha256"]  # trained on exactly that file
    assert train.config["dataset/source"].startswith("local copy")  # offline: no use_artifact in wandb 0.31
    assert _steps(train, "train/loss") == list(range(1, 51))
    assert train.exit_code == 0 and prepare.exit_code == 0
    assert "Cannot use artifact" not in output  # offline is handled, not failed and warned about


def test_every_example_has_a_docstring_with_its_command() -> None:
    scripts = sorted(EXAMPLES.rglob("*.py"))
    assert len(scripts) == 8
    for script in scripts:
        source = script.read_text()
        assert source.startswith('"""'), script
        docstring = source.split('"""')[1]
        assert f"python examples/{script.name}" in docstring or "python train.py" in docstring, script
