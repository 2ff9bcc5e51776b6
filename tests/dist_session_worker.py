"""Worker for test_distributed: 2 gloo processes, each opening a Session (run as a script).

Usage: python dist_session_worker.py zero|all RENDEZVOUS_FILE

The processes meet through a file (``init_method="file://..."``), so no TCP port
is chosen ahead of time and none can be taken by another test in between.
``MASTER_ADDR``/``MASTER_PORT`` are still set (to values nothing binds): they are
what the ranks derive their shared run group from, as under ``torchrun``.
"""

from __future__ import annotations

import os
import sys

import torch.distributed as dist
import torch.multiprocessing as mp

from wandb_bridge import Session


def _work(rank: int, world: int, rendezvous: str, rank_zero_only: bool) -> None:
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world)
    with Session(project="dist", rank_zero_only=rank_zero_only, name="job") as session:
        for step in range(1, 4):
            session.log({"loss": float(rank * 10 + step)}, step=step)
        assert session.enabled == (rank == 0 or not rank_zero_only)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    zero_only = sys.argv[1] == "zero"
    rendezvous_file = sys.argv[2]
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(20000 + os.getpid() % 20000))  # only names the group
    mp.spawn(_work, args=(2, rendezvous_file, zero_only), nprocs=2, join=True)
