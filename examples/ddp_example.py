"""Distributed data parallel (2 processes, CPU, gloo) with ``wandb_bridge.Session``: one run, not two.

Every rank runs the same code and opens a ``Session``; by default only global rank 0
creates a run, and on the other ranks the session is a no-op with the same API,
so no ``if rank == 0`` is needed around logging. The loss logged is the mean over
the ranks (``all_reduce``); checkpoints are saved by rank 0 only, as usual with DDP.
``--per-rank`` passes ``rank_zero_only=False`` instead: one run per rank, grouped
(``group`` shared, ``job_type="rank-<r>"``).

The same holds for the framework integrations: Lightning ``strategy="ddp"``,
``torchrun`` with transformers, Keras under a distribution: one run from rank 0.

Run (offline unless WANDB_MODE says otherwise; about 15 s on CPU)::

    python examples/ddp_example.py [--dir DIR] [--per-rank]
    # or with torchrun (one process per rank, same code path):
    torchrun --standalone --nproc_per_node 2 examples/ddp_example.py --dir DIR
"""

from __future__ import annotations

import argparse
import os
import socket
import tempfile
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler

from wandb_bridge import Session

EPOCHS = 3


def train(rank: int, world_size: int, init_method: str, root: str, per_rank: bool) -> None:
    """One rank: join the process group, train a DDP model, log through a Session."""
    dist.init_process_group("gloo", init_method=init_method, rank=rank, world_size=world_size)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(512, 8, generator=generator)
    data = TensorDataset(x, x @ torch.linspace(-1.0, 1.0, 8).unsqueeze(1))
    sampler = DistributedSampler(data, num_replicas=world_size, rank=rank, shuffle=True, seed=0)
    loader = DataLoader(data, batch_size=16, sampler=sampler)  # 16 batches per rank and epoch
    torch.manual_seed(0)
    model = DistributedDataParallel(torch.nn.Linear(8, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)

    with Session(
        project="wandb-bridge-examples",
        name="ddp",
        config={"world_size": world_size, "batch_size_per_rank": 16, "lr": 0.05},
        dir=root,
        mode=os.environ.get("WANDB_MODE", "offline"),
        rank_zero_only=not per_rank,  # default True: rank 0 logs, the other ranks' sessions do nothing
        log_model="end",
    ) as session:
        step = 0
        for epoch in range(EPOCHS):
            sampler.set_epoch(epoch)
            for batch, (xb, yb) in enumerate(loader):
                loss = torch.nn.functional.mse_loss(model(xb), yb)
                optimizer.zero_grad()
                loss.backward()  # DDP averages the gradients over the ranks here
                optimizer.step()
                step += 1
                mean = loss.detach().clone()
                dist.all_reduce(mean)  # every rank takes part; only rank 0's session records it
                session.log(
                    {"loss": mean / world_size, "rank_loss": loss.detach()},
                    step=step,
                    epoch=epoch + (batch + 1) / len(loader),
                    samples=len(xb) * world_size,
                )
            if rank == 0:
                path = Path(root) / "checkpoints" / f"step={step}.pt"
                path.parent.mkdir(parents=True, exist_ok=True)
                torch.save(model.module.state_dict(), path)
                session.log_checkpoint(path, step=step, epoch=epoch + 1)  # epochs completed
        if session.enabled:
            print(f"rank {rank}: run {session.run_id}, {step} steps")
    dist.barrier()
    dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", help="where wandb writes the run (default: WANDB_DIR, else a new temp folder)")
    parser.add_argument("--per-rank", action="store_true", help="one run per rank, in one group")
    args = parser.parse_args()
    root = args.dir or os.environ.get("WANDB_DIR") or tempfile.mkdtemp(prefix="wandb-bridge-example-")
    if "RANK" in os.environ:  # started by torchrun: this process is one rank
        train(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), "env://", root, args.per_rank)
    else:  # started by hand: spawn 2 ranks on this machine
        mp.spawn(train, args=(2, f"tcp://127.0.0.1:{free_port()}", root, args.per_rank), nprocs=2, join=True)


if __name__ == "__main__":
    main()
