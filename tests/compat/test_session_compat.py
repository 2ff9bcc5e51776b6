"""``Session`` and the user's own wandb code: the habits of the native integrations, with the core API.

The run a ``Session`` starts is the process's ``wandb.run``, so the user's own
``wandb.log`` / ``wandb.config`` / ``wandb.summary`` / ``wandb.finish`` reach it;
a finish by the user first hands over what the session still holds.
"""

from __future__ import annotations

import re
import socket
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
import wandb

from wandb_bridge import Session, WandbBridgeWarning
from wandb_bridge.testing import RunRecord, WandbOfflineRuns

STEPS = 6


def unsent_files(wandb_offline: WandbOfflineRuns) -> list[Path]:
    return list(wandb_offline.root.rglob("wandb-bridge-unsent.jsonl"))


def ours(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, WandbBridgeWarning)]


def histogram_rows(run: RunRecord, kind: str) -> list[dict[str, Any]]:
    pattern = re.compile(rf"{kind}/.+\._type")
    return [row for row in run.history if any(pattern.fullmatch(k) and v == "histogram" for k, v in row.items())]


def test_the_sessions_run_is_wandb_run(wandb_offline: WandbOfflineRuns) -> None:
    with Session(project="compat-session") as session:
        session.log({"loss": 1.0}, step=1)
        assert wandb.run is not None and wandb.run is session.run
    assert wandb.run is None  # finished by the session that started it
    run = wandb_offline.run()
    assert run.exit_code == 0 and run.values("train/loss") == [(1, 1.0)]


def test_wandb_log_inside_a_session_lands_at_the_current_step(wandb_offline: WandbOfflineRuns) -> None:
    with Session(project="compat-session") as session:
        for step in range(1, STEPS + 1):
            session.log({"loss": 1.0 / step}, step=step)
            wandb.log({"x": float(step)})

    run = wandb_offline.run()
    assert run.exit_code == 0
    assert run.values("x") == [(step, float(step)) for step in range(1, STEPS + 1)]  # key as written, current step
    assert not run.rows_with("train/x")
    assert [s for s, _ in run.values("train/loss")] == list(range(1, STEPS + 1))


def test_users_config_and_summary_reach_the_run(wandb_offline: WandbOfflineRuns) -> None:
    with Session(project="compat-session", config={"lr": 0.1}) as session:
        session.log({"loss": 1.0}, step=1)
        wandb.config.update({"user_note": "hello"})
        wandb.summary["user_best"] = 0.25

    run = wandb_offline.run()
    assert run.config["lr"] == 0.1 and run.config["user_note"] == "hello"
    assert run.summary["user_best"] == 0.25


@pytest.mark.parametrize("how", ["wandb.finish", "run.finish"])
def test_a_finish_by_the_user_hands_over_everything_first(wandb_offline: WandbOfflineRuns, how: str) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Session(project="compat-session") as session:
            for step in range(1, STEPS + 1):
                session.log({"loss": 1.0 / step}, step=step)
            assert wandb.run is session.run
            if how == "wandb.finish":
                wandb.finish()
            else:
                session.run.finish()
            assert wandb.run is None
            session.log({"loss": 0.0}, step=STEPS + 1)  # after the user's finish: no exception
        second = wandb.init(project="compat-second")  # and the user's next run is a new one
        wandb.log({"after": 1.0})
        wandb.finish()

    runs = {run.project: run for run in wandb_offline.runs()}
    first = runs["compat-session"]
    assert first.exit_code == 0
    assert [s for s, _ in first.values("train/loss")][:STEPS] == list(range(1, STEPS + 1))  # nothing lost
    assert runs["compat-second"].run_id == second.id != first.run_id
    assert not unsent_files(wandb_offline)
    assert not [m for m in ours(caught) if "unsent" in m or "could not" in m]


def test_a_run_the_user_started_is_used_and_left_open(wandb_offline: WandbOfflineRuns) -> None:
    user_run = wandb.init(project="compat-session")
    with Session() as session:
        session.log({"loss": 1.0}, step=1)
        assert session.run is user_run
    assert wandb.run is user_run  # left open
    wandb.log({"after": 2.0})
    wandb.finish()

    run = wandb_offline.run()
    assert run.exit_code == 0
    assert run.values("train/loss") == [(1, 1.0)]
    assert [v for _, v in run.values("after")] == [2.0]
    assert not unsent_files(wandb_offline)


@pytest.mark.parametrize("log", ["gradients", "all"])
def test_session_watch(wandb_offline: WandbOfflineRuns, log: str) -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    x, y = torch.randn(16, 4), torch.randn(16, 1)
    with Session(project="compat-session") as session:
        session.watch(model, log=log, log_freq=2)
        for step in range(1, STEPS + 1):
            optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(model(x), y)
            loss.backward()
            optimizer.step()
            session.log({"loss": loss}, step=step)

    run = wandb_offline.run()
    assert run.exit_code == 0
    assert [s for s, _ in run.values("train/loss")] == list(range(1, STEPS + 1))  # training was not dead
    assert len(histogram_rows(run, "gradients")) >= 2  # log_freq=2 over 6 backward passes
    assert bool(histogram_rows(run, "parameters")) == (log == "all")


def test_init_kwarg_that_wandb_accepts(wandb_offline: WandbOfflineRuns) -> None:
    with Session(project="compat-session", save_code=False, notes="kwargs pass through") as session:
        session.log({"loss": 1.0}, step=1)
    run = wandb_offline.run()
    assert run.exit_code == 0 and run.notes == "kwargs pass through"
    assert run.values("train/loss") == [(1, 1.0)]


def test_misspelt_keyword_raises_type_error_naming_the_valid_one(wandb_offline: WandbOfflineRuns) -> None:
    with pytest.raises(TypeError, match="log_model"):
        Session(project="compat-session", log_mdoel="all")
    assert not wandb_offline.runs()


@pytest.mark.parametrize("rank_zero_only", [True, False], ids=["rank_zero", "per_rank"])
def test_system_stats_cover_every_gpu_in_rank_zero_mode(
    wandb_offline: WandbOfflineRuns, monkeypatch: pytest.MonkeyPatch, rank_zero_only: bool
) -> None:
    # Global rank 0 of a 2-process job on one node (the launcher's variables; no process group here).
    # wandb's default (no device list) monitors every GPU of the node, as the native integrations do;
    # only per-rank runs narrow the monitor to their own device. Read from the run's own settings:
    # this machine may have no GPU to show it in the system charts.
    for name, value in {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2"}.items():
        monkeypatch.setenv(name, value)
    with Session(project="compat-session", system_stats=True, rank_zero_only=rank_zero_only) as session:
        session.log({"loss": 1.0}, step=1)
        devices = session.run.settings.x_stats_gpu_device_ids
    assert devices == (None if rank_zero_only else [0])
    assert wandb_offline.run().values("train/loss") == [(1, 1.0)]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_offline_fallback_leaves_exactly_one_run_folder(
    wandb_offline: WandbOfflineRuns, monkeypatch: pytest.MonkeyPatch
) -> None:
    # tests/test_faults.py checks the fallback keeps the data; this checks nothing else is left
    # for `wandb sync` to upload (the issue saw an empty "ghost" run folder with exit 0 beside it).
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("WANDB_API_KEY", "a" * 40)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        with Session(project="compat-fallback", mode="online", settings={"init_timeout": 3}) as session:
            for step in (1, 2):
                session.log({"loss": 1.0 / step}, step=step)

    wandb_offline.flush()
    root = wandb_offline.wandb_dir / "wandb"
    folders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.is_symlink())  # not wandb's latest-run link
    assert len(folders) == 1, folders
    assert folders[0].startswith("offline-run-")
    run = wandb_offline.run()
    assert run.exit_code == 0
    assert run.values("train/loss") == [(1, 1.0), (2, 0.5)]
