"""Fault injection: every fault is real (no mocked wandb); what the run recorded is read back."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from process_helpers import Child, kill_wandb_core, rows_logged_here, wait_until_gone, wandb_core_processes
from wandb_bridge import Session, WandbBridgeWarning
from wandb_bridge.testing import WandbOfflineRuns, read_run

SCRIPTS = Path(__file__).with_name("fault_scripts.py")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _child_env(wandb_offline: WandbOfflineRuns, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(wandb_offline.env)
    env.update(extra)
    return env


def _ours(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, WandbBridgeWarning)]


@pytest.mark.slow
def test_unreachable_server_falls_back_to_offline(
    wandb_offline: WandbOfflineRuns, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("WANDB_API_KEY", "a" * 40)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Session(project="faults", mode="online", settings={"init_timeout": 3}) as session:
            for step in (1, 2):
                session.log({"loss": 1.0 / step}, step=step)
            assert session.run.offline
    messages = [m for m in _ours(caught) if "could not be reached" in m]
    assert len(messages) == 1 and "wandb sync" in messages[0]
    run = next(r for r in wandb_offline.runs() if r.values("train/loss"))
    assert run.values("train/loss") == [(1, 1.0), (2, 0.5)]


@pytest.mark.slow
def test_unreachable_server_raises_with_on_error_raise(
    wandb_offline: WandbOfflineRuns, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("WANDB_API_KEY", "a" * 40)
    session = Session(project="faults", mode="online", on_error="raise", settings={"init_timeout": 3})
    with pytest.raises(Exception, match=r"127\.0\.0\.1") as raised:
        session.start()
    # wandb's own error, not one of ours wrapping it
    assert type(raised.value).__module__.split(".")[0] == "wandb", type(raised.value)
    assert session.run is None


@pytest.mark.slow
def test_no_api_key_and_no_tty_never_prompts(wandb_offline: WandbOfflineRuns, tmp_path: Path) -> None:
    env = _child_env(wandb_offline, HOME=str(tmp_path / "home"), WANDB_MODE="online")
    result = subprocess.run(
        [sys.executable, str(SCRIPTS), "no_api_key", str(tmp_path)],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "offline"
    assert "recorded offline" in result.stderr
    assert read_run(next(tmp_path.glob("wandb/offline-run-*"))).values("train/loss") == [(1, 1.0)]


@pytest.mark.parametrize("log_process", [True, False])
def test_wandb_core_killed_mid_run_keeps_training_and_rows(
    wandb_offline: WandbOfflineRuns, monkeypatch: pytest.MonkeyPatch, log_process: bool
) -> None:
    here = rows_logged_here(monkeypatch)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        session = Session(project="faults", log_process=log_process)
        for step in range(1, 21):
            session.log({"loss": float(step)}, step=step)
        session.flush()
        kill_wandb_core()  # returns once the process is gone
        for step in range(21, 41):
            session.log({"loss": float(step)}, step=step)
        session.finish()
    # "later calls are cheap": once a row failed, wandb is not asked again (at most the one
    # batch in flight when the fault was seen is tried from this process)
    assert len([row for row in here if row["trainer/global_step"] > 20]) <= 1
    broken = [m for m in _ours(caught) if "did not take a row" in m]
    assert len(broken) == 1
    unsent = Path(session.run_dir or "", "wandb-bridge-unsent.jsonl")
    rows = [json.loads(line) for line in unsent.read_text().splitlines()]
    steps = [r["trainer/global_step"] for r in rows]
    assert set(range(21, 41)) <= set(steps)  # nothing after the fault is lost
    assert steps == sorted(steps)


@pytest.mark.parametrize(("error", "code"), [(RuntimeError("boom"), 1), (KeyboardInterrupt(), 130)])
def test_exception_and_ctrl_c_record_nonzero_exit_and_last_checkpoint(
    wandb_offline: WandbOfflineRuns, tmp_path: Path, error: BaseException, code: int
) -> None:
    with pytest.raises(type(error)), Session(project="faults", log_model="end") as session:
        for step in (1, 2, 3):
            session.log({"loss": float(step)}, step=step)
            ckpt = tmp_path / f"ckpt-{step}.pt"
            ckpt.write_bytes(f"weights {step}".encode())
            session.log_checkpoint(ckpt, step=step)
        raise error
    run = wandb_offline.run()
    assert run.exit_code == code
    assert [s for s, _ in run.values("train/loss")] == [1, 2, 3]
    assert [a.metadata["step"] for a in run.artifacts if a.type == "model"] == [3]


@pytest.mark.slow
def test_sigterm_flushes_marks_preempting_and_exits_like_sigterm(
    wandb_offline: WandbOfflineRuns, tmp_path: Path
) -> None:
    with Child(
        [sys.executable, str(SCRIPTS), "sigterm", str(tmp_path)], env=_child_env(wandb_offline), folder=tmp_path / "out"
    ) as child:
        child.wait_for_line("ready", timeout=120)  # printed after step 100 and its checkpoint
        core = child.wandb_core()
        child.process.send_signal(signal.SIGTERM)
        assert child.wait(timeout=60) == -signal.SIGTERM, child.stderr()[-3000:]
    wait_until_gone(core, timeout=60)  # (it closes the run file after the child's end)
    run = read_run(next(tmp_path.glob("wandb/offline-run-*")))
    steps = [s for s, _ in run.values("train/loss")]
    assert steps == list(range(1, len(steps) + 1)) and len(steps) >= 100
    assert run.preempting and run.exit_code == 143
    assert [a.metadata["step"] for a in run.artifacts if a.type == "model"] == [100]


def test_missing_or_unreadable_checkpoint_is_skipped(wandb_offline: WandbOfflineRuns, tmp_path: Path) -> None:
    dangling = tmp_path / "dangling.ckpt"
    dangling.symlink_to(tmp_path / "gone.ckpt")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Session(project="faults", log_model="all") as session:
            session.log_checkpoint(tmp_path / "missing.ckpt", step=1)
            session.log_checkpoint(dangling, step=2)
            session.log({"loss": 1.0}, step=2)
    skipped = [m for m in _ours(caught) if "skipped" in m]
    assert len(skipped) == 2
    assert sum("missing.ckpt" in m for m in skipped) == 1
    assert sum("dangling.ckpt" in m for m in skipped) == 1
    run = wandb_offline.run()
    assert run.values("train/loss") == [(2, 1.0)] and not run.artifacts


@pytest.mark.slow
def test_staging_disk_full_skips_the_checkpoint(wandb_offline: WandbOfflineRuns, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPTS), "disk_full", str(tmp_path)],
        env=_child_env(wandb_offline),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "training finished" in result.stdout
    assert "WandbBridgeWarning" in result.stderr
    run = read_run(next(tmp_path.glob("wandb/offline-run-*")))
    assert run.values("train/loss") == [(1, 1.0), (2, 0.5)]
    assert run.exit_code == 0


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_finish_never_hangs_on_a_stuck_wandb(wandb_offline: WandbOfflineRuns) -> None:
    session = Session(project="faults", finish_timeout=2)
    session.log({"loss": 1.0}, step=1)
    session.flush()
    stuck = wandb_core_processes()
    assert stuck
    for proc in stuck:
        proc.suspend()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for step in range(2, 50):
                session.log({"loss": 1.0}, step=step)
            session.finish()  # a hang here is caught by the test's timeout
        assert any("wandb sync" in m for m in _ours(caught))  # "warn once": see test_claims_session.py
        assert session.finished
    finally:
        for proc in stuck:
            proc.kill()


def test_logging_from_several_threads_loses_nothing(wandb_offline: WandbOfflineRuns) -> None:
    with Session(project="faults") as session:

        def work(worker: int) -> None:
            for step in range(1, 51):
                session.log({f"worker{worker}": float(step)}, step=step)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    run = wandb_offline.run()
    for worker in range(4):
        values = run.values(f"train/worker{worker}")
        assert sorted(values) == [(s, float(s)) for s in range(1, 51)]


def test_full_queue_applies_backpressure_and_loses_nothing(wandb_offline: WandbOfflineRuns) -> None:
    with Session(project="faults", queue_size=2) as session:
        for step in range(1, 301):
            session.log({"loss": float(step)}, step=step)
    run = wandb_offline.run()
    assert [s for s, _ in run.values("train/loss")] == list(range(1, 301))


def test_bad_metric_input_has_a_defined_outcome(wandb_offline: WandbOfflineRuns) -> None:
    long_key = "k" * 300
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Session(project="faults") as session:
            session.log(
                {
                    "nan": float("nan"),
                    "pinf": float("inf"),
                    "ninf": -math.inf,
                    "none": None,
                    "text": "x",
                    "flag": True,
                    "big": 2**70,
                    "t0": torch.tensor(2.5),
                    "tvec": torch.ones(2),
                    "npf": np.float64(0.5),
                    "npa": np.arange(3),
                    "nested": {"a": {"b": 1.0}},
                    "with space": 1.0,
                    "": 3.0,
                    long_key: 4.0,
                },
                step=5,
            )
            session.log({"loss": 1.0}, step=3)  # a step going backwards
    run = wandb_offline.run()
    row = next(r for r in run.history if r.get("trainer/global_step") == 5)
    assert math.isnan(row["train/nan"]) and row["train/pinf"] == math.inf and row["train/ninf"] == -math.inf
    assert row["train/flag"] == 1 and row["train/t0"] == 2.5 and row["train/npf"] == 0.5
    assert row["nested/a/b"] == 1.0 and row["train/with space"] == 1.0
    assert float(row["train/big"]) == float(2**70)
    assert row[f"train/{long_key}"] == 4.0
    for skipped in ("train/none", "train/text", "train/tvec", "train/npa"):
        assert skipped not in row
    assert run.values("train/loss") == [(3, 1.0)]
    messages = _ours(caught)
    assert sum("empty metric key" in m for m in messages) == 1
    assert sum("train/npa" in m for m in messages) == 1
    assert not any(k in ("", "train/") for k in row)  # the empty key is not recorded


def test_bad_config_input_never_fails_the_run(wandb_offline: WandbOfflineRuns) -> None:
    cyclic: dict[str, object] = {}
    cyclic["me"] = cyclic
    config = {"cyc": cyclic, "obj": object(), "huge": "x" * (20 << 20), "fn": print, "path": Path("/p")}
    tags = ["t" * 100] + [f"tag{i}" for i in range(1000)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Session(project="faults", config=config, tags=tags) as session:
            session.log({"loss": 1.0}, step=1)
    assert _ours(caught)  # exactly one: see test_claims_session.py::test_bad_config_input_warns_once
    run = wandb_offline.run()
    assert run.config["cyc/me"] == "<cycle>" and run.config["path"] == "/p"
    assert run.config["obj"].startswith("<object object at")  # str() of the object
    assert "print" in run.config["fn"]  # a callable: its name
    truncated = re.fullmatch(r"<truncated: (\d+) chars>", run.config["huge"])
    assert truncated is not None and int(truncated.group(1)) >= 20 << 20
    assert len(run.tags) == 100 and all(len(t) <= 64 for t in run.tags)
    assert run.tags[0] == "t" * 64 and run.tags[1:] == tuple(f"tag{i}" for i in range(99))
    assert run.values("train/loss") == [(1, 1.0)]


def test_config_value_changed_between_runs_in_one_process(wandb_offline: WandbOfflineRuns) -> None:
    for lr in (0.1, 0.2):
        with Session(project="faults", config={"lr": lr}) as session:
            session.log({"loss": lr}, step=1)
    assert sorted(r.config["lr"] for r in wandb_offline.runs()) == [0.1, 0.2]


def test_planted_secrets_reach_no_recorded_file(
    wandb_offline: WandbOfflineRuns, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    api_key = "0123456789abcdef0123456789abcdef01234567"
    hf_token = "hf_PlantedTokenValue12345"
    monkeypatch.setenv("WANDB_API_KEY", api_key)
    monkeypatch.setenv("HF_TOKEN", hf_token)
    config = {
        "hub_token": "hub-secret-value-1",
        "db": {"password": "pw-secret-value-2"},
        "client_secret": "secret-value-3",
        "access_token": "token-value-4",
        "url": "https://user:url-pass-5@example.com/x",
        "cmd": f"train --token {hf_token}",
    }
    with Session(project="faults", config=config, log_model="all") as session:
        session.log({"loss": 1.0}, step=1)
        ckpt = tmp_path / "model.pt"
        ckpt.write_bytes(b"weights")
        session.log_checkpoint(ckpt, step=1)
    for secret in (
        api_key,
        hf_token,
        "hub-secret-value-1",
        "pw-secret-value-2",
        "secret-value-3",
        "token-value-4",
        "url-pass-5",
    ):
        assert wandb_offline.grep(secret) == [], secret
    assert wandb_offline.run().config["hub_token"] == "<redacted>"
