"""Resume after pre-emption: SIGTERM, restart from the checkpoint, the same run, each step once.

Per framework, two real processes (tests/resume_scripts.py): the first trains
with checkpoints every 5 steps and is sent SIGTERM at step 7 (so the run
recorded steps its last checkpoint does not hold); the second restarts from the
newest checkpoint the framework's way, passing no run id. Both offline run
folders are read back and merged by ``trainer/global_step``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from process_helpers import Child
from wandb_bridge import Session
from wandb_bridge.testing import RunRecord, WandbOfflineRuns

SCRIPTS = Path(__file__).with_name("resume_scripts.py")
STEPS, CHECKPOINT_STEP, BLOCK_AT = 16, {"lightning": 5, "transformers": 5, "keras": 4}, 7
# How the pre-empted process ends, as the framework ends it: Lightning stops at the
# end of the batch and exits by its SIGTERMException (a SystemExit without a code);
# transformers and Keras have no SIGTERM handling, so the default action ends them.
FIRST_EXIT = {"lightning": 0, "transformers": -signal.SIGTERM, "keras": -signal.SIGTERM}


def _child_env(wandb_offline: WandbOfflineRuns) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(wandb_offline.env)
    env["KERAS_BACKEND"] = "torch"
    env["OMP_NUM_THREADS"] = "1"  # tiny models: threads only compete with the other test worker
    return env


def _steps(run: RunRecord) -> list[int]:
    return [int(step) for step, _ in run.values("train/loss")]


@pytest.mark.slow
@pytest.mark.parametrize("framework", ["lightning", "transformers", "keras"])
def test_restart_from_checkpoint_continues_the_same_run(
    framework: str, wandb_offline: WandbOfflineRuns, tmp_path: Path
) -> None:
    env = _child_env(wandb_offline)
    command = [sys.executable, str(SCRIPTS), framework]
    with Child([*command, "first", str(tmp_path)], env=env, folder=tmp_path / "out", name="first") as first:
        first.wait_for_line("ready", timeout=180)  # at step BLOCK_AT, waiting for the signal
        first.process.send_signal(signal.SIGTERM)
        code = first.wait(timeout=60)
    assert code == FIRST_EXIT[framework], first.stderr()[-3000:]
    first_folders = set(wandb_offline.wandb_dir.glob("wandb/offline-run-*"))

    second = subprocess.run([*command, "resume", str(tmp_path)], env=env, capture_output=True, text=True, timeout=180)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "finished" in second.stdout
    # The run is rewound to the checkpoint's row (issue 18): nothing is skipped.
    assert "already recorded by the run's previous attempt" not in second.stderr

    runs = wandb_offline.runs()
    assert len(runs) == 2, [r.path for r in runs]
    # which attempt wrote which file: the folder that existed before the restart (not file times)
    (attempt1,) = [r for r in runs if r.folder in first_folders]
    (attempt2,) = [r for r in runs if r.folder not in first_folders]
    assert attempt1.run_id == attempt2.run_id  # one run, found from the checkpoint
    assert attempt1.preempting and attempt1.exit_code == 143
    assert not attempt2.preempting and attempt2.exit_code == 0
    steps1, steps2 = _steps(attempt1), _steps(attempt2)
    # The first attempt recorded past its last checkpoint; the restart rewinds the run to
    # the checkpoint's row (wandb.init(resume_from=...)) and records the later steps again.
    assert steps1 == list(range(1, steps1[-1] + 1)) and steps1[-1] >= BLOCK_AT > CHECKPOINT_STEP[framework]
    assert steps2 == list(range(CHECKPOINT_STEP[framework] + 1, STEPS + 1))


def test_checkpoint_marker_names_the_run_and_stays_out_of_payloads(
    wandb_offline: WandbOfflineRuns, tmp_path: Path
) -> None:
    folder = tmp_path / "checkpoint-3"
    folder.mkdir()
    (folder / "weights.bin").write_bytes(b"w3")
    single = tmp_path / "last.ckpt"
    single.write_bytes(b"w2")
    with Session(project="resume", group="g", log_model="all") as session:
        for step in (1, 2, 3, 4):
            session.log({"loss": 1.0 / step}, step=step)
            if step == 2:
                session.log_checkpoint(single, step=2, epoch=1)
            if step == 3:
                session.log_checkpoint(folder, step=3, epoch=1)
        run_id = session.run_id
    # The marker file, as the README documents it
    index = json.loads((tmp_path / "_wandb-bridge-runs.json").read_text())
    assert set(index["checkpoints"]) == {"last.ckpt", "checkpoint-3"}
    entry = index["checkpoints"]["last.ckpt"]
    assert (entry["run_id"], entry["project"], entry["group"], entry["step"], entry["epoch"]) == (
        run_id,
        "resume",
        "g",
        2,
        1,
    )
    assert entry["wandb_bridge_version"] and "framework" in entry
    assert index["runs"][run_id]["last_logged_step"] == 4  # updated when the run finished
    run = wandb_offline.run()
    files = {name for artifact in run.artifacts for name in artifact.files}
    assert "weights.bin" in files and not any("wandb-bridge-runs" in name for name in files)
    # ... and what it does: resuming from the marked file continues that run in its group,
    # without recording again the steps the run already has (1..4)
    # (resume="allow" given explicitly: no rewind, the skip rule)
    with (
        pytest.warns(UserWarning, match="already recorded"),
        Session(resume_from_checkpoint=single, resume="allow") as again,
    ):
        for step in (3, 4, 5):
            again.log({"loss": 0.0}, step=step)
        assert again.run_id == run_id
    attempts = [r for r in wandb_offline.runs() if r.run_id == run_id]
    assert len(attempts) == 2
    assert sorted(int(s) for r in attempts for s, _ in r.values("train/loss")) == [1, 2, 3, 4, 5]


def test_resume_from_checkpoint_continues_the_run_and_skips_recorded_steps(
    wandb_offline: WandbOfflineRuns, tmp_path: Path
) -> None:
    checkpoint = tmp_path / "ckpt.pt"
    with Session(project="resume") as first:  # log_model=False: the checkpoint is still marked
        for step in range(1, 6):
            first.log({"loss": float(step)}, step=step)
            if step == 3:
                checkpoint.write_bytes(b"weights at 3")
                first.log_checkpoint(checkpoint, step=3)
        run_id = first.run_id
    assert run_id is not None
    with (
        pytest.warns(UserWarning, match="already recorded"),  # resume="allow" given: the skip rule, no rewind
        Session(project="resume", resume_from_checkpoint=checkpoint, resume="allow") as second,
    ):
        for step in range(4, 9):  # training restarts after the checkpoint's step
            second.log({"loss": float(step) + 0.5}, step=step)
        assert second.run_id == run_id
        assert second.resumed_from is not None and second.resumed_from.step == 3
    with (
        pytest.warns(UserWarning, match="chosen explicitly"),
        Session(project="resume", id="explicit1", resume_from_checkpoint=checkpoint) as third,
    ):
        third.log({"loss": 1.0}, step=1)  # an explicit id wins: its own run, nothing skipped
    with Session(project="resume", resume="never", resume_from_checkpoint=checkpoint) as fourth:
        fourth.log({"loss": 2.0}, step=2)  # resume="never" opts out: a new run
        fresh = fourth.run_id
    assert fresh not in (None, run_id, "explicit1")
    by_id: dict[str, list[tuple[int, float]]] = {}
    for run in wandb_offline.runs():  # offline, each attempt is a folder of its own
        by_id.setdefault(run.run_id, []).extend((int(s), v) for s, v in run.values("train/loss"))
    assert sorted(by_id[run_id]) == [(1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0), (5, 5.0), (6, 6.5), (7, 7.5), (8, 8.5)]
    assert by_id["explicit1"] == [(1, 1.0)]
    assert by_id[str(fresh)] == [(2, 2.0)]


@pytest.mark.slow
def test_transformers_jit_checkpoint_on_sigterm_marks_preempting_and_leaves_the_run_to_the_script(
    wandb_offline: WandbOfflineRuns, tmp_path: Path
) -> None:
    env = _child_env(wandb_offline)
    with Child(
        [sys.executable, str(SCRIPTS), "transformers_jit", "first", str(tmp_path)], env=env, folder=tmp_path / "log"
    ) as child:
        child.wait_for_line("ready", timeout=180)
        child.process.send_signal(signal.SIGTERM)
        assert child.wait(timeout=120) == 0, child.stderr()[-3000:]  # train() returned; the script ended normally
    (returned,) = [int(line.split()[1]) for line in child.stdout().splitlines() if line.startswith("returned ")]
    saved = [int(p.name.split("-")[1]) for p in (tmp_path / "out").glob("checkpoint-*")]
    assert len(saved) == 1 and 3 <= saved[0] <= returned < STEPS  # HF saved once and stopped early
    run = wandb_offline.run()
    assert run.preempting  # our hook marked it
    assert run.exit_code == 0  # finished by the script's finish(), not by our SIGTERM handling
    assert _steps(run) == list(range(1, returned + 1))
