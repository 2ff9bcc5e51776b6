"""Worker for test_distributed: 2 gloo processes, each opening a Session (run as a script)."""

from __future__ import annotations

import os
import socket
import sys

import torch.distributed as dist
import torch.multiprocessing as mp

from wandb_bridge import Session


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _work(rank: int, world: int, port: int, rank_zero_only: bool) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    with Session(project="dist", rank_zero_only=rank_zero_only, name="job") as session:
        for step in range(1, 4):
            session.log({"loss": float(rank * 10 + step)}, step=step)
        assert session.enabled == (rank == 0 or not rank_zero_only)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    zero_only = sys.argv[1] == "zero"
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    port = _free_port()
    os.environ.setdefault("MASTER_PORT", str(port))
    mp.spawn(_work, args=(2, port, zero_only), nprocs=2, join=True)
