"""Worker for test_health: 2 gloo processes training a sharded model with ``log_health``.

Usage: python health_dist_script.py fsdp2|fsdp1 RENDEZVOUS_FILE EXPECTED_JSON

``fsdp2`` (``fully_shard``, DTensor parameters): every rank measures, the sharded
norms are reduced across ranks, rank 0 records the run and writes what
``torch.nn.utils.get_total_norm`` gives on the same DTensor gradients and
weights to EXPECTED_JSON. ``fsdp1`` (``FullyShardedDataParallel``, flat shards):
the figures are rank 0's own, under ``health/rank-0/``; EXPECTED_JSON holds
``get_total_norm`` of rank 0's local shards.
"""

from __future__ import annotations

import faulthandler
import json
import os
import sys
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.distributed.fsdp import FullyShardedDataParallel, fully_shard

from wandb_bridge import Session

STEPS = 3


def _norm(tensors: list[Any]) -> float:
    total = torch.nn.utils.get_total_norm(tensors)
    return float(total.full_tensor() if hasattr(total, "full_tensor") else total)


def _work(rank: int, world: int, mode: str, rendezvous: str, out: str) -> None:
    faulthandler.enable()  # a native abort prints where it happened
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world)
    torch.manual_seed(0)
    model: nn.Module = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    prefix = ""
    if mode == "fsdp2":
        fully_shard(model[0])  # type: ignore[index]
        fully_shard(model[2])  # type: ignore[index]
        fully_shard(model)
    else:
        model = FullyShardedDataParallel(model, device_id=torch.device("cpu"), use_orig_params=True)
        prefix = "_fsdp_wrapped_module."
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    groups = {g: [f"{prefix}{g}.weight", f"{prefix}{g}.bias"] for g in ("0", "2")}
    expected: dict[int, dict[str, float]] = {}
    gen = torch.Generator().manual_seed(100 + rank)  # each rank its own data
    with Session(project="dist", log_health=True, health_every=1) as session:
        monitor = session.health_monitor()
        assert monitor is not None
        for step in range(1, STEPS + 1):
            optimizer.zero_grad()
            x = torch.randn(16, 4, generator=gen)
            loss = nn.functional.mse_loss(model(x), x.sum(dim=1, keepdim=True))
            loss.backward()
            params = dict(model.named_parameters())
            grads = {n: p.grad for n, p in params.items() if p.grad is not None}  # fsdp1: empty shards have none
            before = {n: p.detach().clone() for n, p in params.items()}
            row = {"health/grad_norm": _norm(list(grads.values()))}
            for group, names in groups.items():
                if any(n in grads for n in names):
                    row[f"health/grad_norm/{group}"] = _norm([grads[n] for n in names if n in grads])
            monitor.before_step(step, model)
            optimizer.step()
            monitor.after_step()
            row["health/weight_norm"] = _norm([p.detach() for p in params.values()])
            row["health/update_ratio"] = _norm([params[n].detach() - before[n] for n in params]) / _norm(
                list(before.values())
            )
            for group, names in groups.items():
                if sum(params[n].numel() for n in names):
                    row[f"health/weight_norm/{group}"] = _norm([params[n].detach() for n in names])
            if mode == "fsdp1":
                row = {f"health/rank-{rank}/{k[len('health/') :]}": v for k, v in row.items()}
            expected[step] = row
            session.log({"loss": loss.detach()}, step=step)
        assert session.enabled == (rank == 0)
    if rank == 0:
        with open(out, "w") as handle:
            json.dump(expected, handle)
    dist.barrier()
    dist.destroy_process_group()
    _end_without_teardown(rank)


def _end_without_teardown(rank: int) -> None:
    """Rank 1 holds no run: end it without the interpreter's teardown, where torch's gloo threads
    sometimes abort the process ("terminate called without an active exception") after the work is done."""
    if rank != 0:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


if __name__ == "__main__":
    mp.spawn(_work, args=(2, sys.argv[1], sys.argv[2], sys.argv[3]), nprocs=2, join=True)
