"""Rank policies with real torch.distributed (gloo) processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from wandb_bridge.core.distributed import detect_rank, shared_group_id
from wandb_bridge.testing import WandbOfflineRuns

WORKER = Path(__file__).with_name("dist_session_worker.py")


def _launch(wandb_offline: WandbOfflineRuns, mode: str, folder: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(wandb_offline.env)
    rendezvous = folder / "rendezvous"  # a file, not a port: nothing to race for
    result = subprocess.run(
        [sys.executable, str(WORKER), mode, str(rendezvous)], env=env, capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.slow
def test_rank_zero_only_gives_one_run(wandb_offline: WandbOfflineRuns, tmp_path: Path) -> None:
    _launch(wandb_offline, "zero", tmp_path)
    run = wandb_offline.run()
    assert run.values("train/loss") == [(1, 1.0), (2, 2.0), (3, 3.0)]
    assert run.exit_code == 0


@pytest.mark.slow
def test_one_run_per_rank_in_one_group(wandb_offline: WandbOfflineRuns, tmp_path: Path) -> None:
    _launch(wandb_offline, "all", tmp_path)
    runs = wandb_offline.runs()
    assert len(runs) == 2
    assert len({r.group for r in runs}) == 1 and runs[0].group
    assert sorted(r.job_type for r in runs) == ["rank-0", "rank-1"]
    by_job = {r.job_type: r for r in runs}
    assert by_job["rank-1"].values("train/loss") == [(1, 11.0), (2, 12.0), (3, 13.0)]
    assert by_job["rank-0"].name == "job-rank-0"


def test_rank_from_launcher_variables() -> None:
    assert detect_rank({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}).rank == 3
    slurm = detect_rank({"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1"})
    assert (slurm.rank, slurm.world_size, slurm.local_rank) == (5, 8, 1)
    nodes = detect_rank({"LOCAL_RANK": "1", "NODE_RANK": "1", "LOCAL_WORLD_SIZE": "2"})
    assert nodes.rank == 3
    assert detect_rank({}).is_zero and not detect_rank({}).distributed


def test_group_id_is_shared_by_ranks_of_one_job() -> None:
    a = shared_group_id({"MASTER_ADDR": "h", "MASTER_PORT": "1", "RANK": "0"})
    b = shared_group_id({"MASTER_ADDR": "h", "MASTER_PORT": "1", "RANK": "1"})
    c = shared_group_id({"MASTER_ADDR": "h", "MASTER_PORT": "2"})
    assert a == b != c
