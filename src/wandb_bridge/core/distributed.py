"""Rank and world-size detection, and the rank policies (rank zero only, or one run per rank)."""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class RankInfo:
    """Where this process sits in a distributed job."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    node_rank: int = 0

    @property
    def is_zero(self) -> bool:
        """True on global rank zero."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """True when more than one process takes part."""
        return self.world_size > 1


def detect_rank(environ: Mapping[str, str] | None = None) -> RankInfo:
    """Find this process's global rank and the world size.

    ``torch.distributed`` is asked first when it is already imported and
    initialised (torch is never imported here); otherwise the launchers'
    variables ``RANK``/``WORLD_SIZE`` (torchrun, Lightning), ``SLURM_PROCID``/
    ``SLURM_NTASKS``, ``LOCAL_RANK`` with ``NODE_RANK`` are read.
    """
    env = os.environ if environ is None else environ
    local_rank = _int(env, "LOCAL_RANK", "SLURM_LOCALID") or 0
    node_rank = _int(env, "NODE_RANK", "GROUP_RANK", "SLURM_NODEID") or 0
    dist = sys.modules.get("torch.distributed")
    if dist is not None and getattr(dist, "is_available", lambda: False)() and dist.is_initialized():
        return RankInfo(dist.get_rank(), local_rank, dist.get_world_size(), node_rank)
    rank = _int(env, "RANK", "SLURM_PROCID", "JAX_PROCESS_ID")
    world = _int(env, "WORLD_SIZE", "SLURM_NTASKS", "JAX_NUM_PROCESSES") or 1
    if rank is None:
        local_world = _int(env, "LOCAL_WORLD_SIZE")
        if local_world is not None:
            rank = node_rank * local_world + local_rank
        else:
            rank = local_rank if node_rank == 0 else node_rank * 1000 + local_rank
    return RankInfo(rank, local_rank, max(world, rank + 1), node_rank)


def shared_group_id(environ: Mapping[str, str] | None = None) -> str:
    """A run-group id every rank of one job derives alike, without talking to the others."""
    env = os.environ if environ is None else environ
    parts = [
        env.get("TORCHELASTIC_RUN_ID", "") if env.get("TORCHELASTIC_RUN_ID") != "none" else "",
        env.get("SLURM_JOB_ID", ""),
        env.get("MASTER_ADDR", ""),
        env.get("MASTER_PORT", ""),
    ]
    if not any(parts[:2]) and not parts[3]:
        parts.append(str(os.getppid()))
    digest = hashlib.sha1("|".join(parts).encode()).hexdigest()[:10]
    return f"ddp-{digest}"


def _int(env: Mapping[str, str], *names: str) -> int | None:
    for name in names:
        text = env.get(name)
        if text is not None and text.strip().lstrip("-").isdigit():
            return int(text)
    return None
