"""Rank and world-size detection, the rank policies, and the few collectives they need.

Three ways to record a distributed job (docs/distributed.md): rank zero only
(one run), one run per rank in one group (``rank_zero_only=False``), or every
rank in one run (``shared_run=True``: wandb's shared mode). torch is never
imported here: the collectives run only when the training script already
imported and initialised ``torch.distributed``.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from wandb_bridge.core.metrics import KeyNormalizer, Stage


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


def initialised_group() -> Any:
    """``torch.distributed`` when imported, initialised and with more than one process, else None."""
    dist = sys.modules.get("torch.distributed")
    if dist is None or not getattr(dist, "is_available", lambda: False)() or not dist.is_initialized():
        return None
    return dist if dist.get_world_size() > 1 else None


def broadcast_object(value: Any, src: int = 0) -> Any:
    """``value`` of rank ``src`` on every rank (one ``broadcast_object_list``); ``value`` itself without a group.

    A collective: every rank of the initialised process group must call it.
    """
    dist = initialised_group()
    if dist is None:
        return value
    box = [value if dist.get_rank() == src else None]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def gather_object(value: Any) -> list[Any]:
    """Every rank's ``value``, in rank order (one ``all_gather_object``); ``[value]`` without a group.

    A collective: every rank of the initialised process group must call it.
    """
    dist = initialised_group()
    if dist is None:
        return [value]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, value)
    return out


@dataclass(frozen=True)
class SharedRun:
    """How this rank joins a run shared by every rank (wandb's shared mode)."""

    run_id: str
    rank: int

    @property
    def primary(self) -> bool:
        """Rank zero writes the run's metadata and files and decides its final state."""
        return self.rank == 0

    @property
    def label(self) -> str:
        """The label of this rank's system statistics and console output in the run."""
        return f"rank-{self.rank}"


def plan_shared_run(rank: RankInfo, run_id: str | None, missing: str | None) -> tuple[SharedRun | None, str | None]:
    """Agree on a shared run: the run id of rank zero, or why the ranks fall back to grouped runs.

    One ``all_gather_object`` (a collective: every rank calls it when it starts its
    run): each rank hands over what it lacks for shared mode (``missing``), rank zero
    also its run id. Any rank's reason makes every rank fall back alike.

    Args:
        rank: this process's rank.
        run_id: rank zero's run id (ignored on the other ranks).
        missing: why this rank cannot join a shared run, or None.

    Returns:
        ``(SharedRun, None)`` or ``(None, reason)``.
    """
    if initialised_group() is None and run_id is None:
        return None, missing or (
            "torch.distributed is not initialised, so rank zero's run id cannot reach the other ranks "
            "(start the run after init_process_group, or pass id=... to every rank)"
        )
    reports = gather_object((missing, run_id if rank.is_zero else None))
    by_reason: dict[str, list[int]] = {}
    for r, (why, _) in enumerate(reports):
        if why:
            by_reason.setdefault(str(why), []).append(r)
    shared_id = reports[0][1] if len(reports) > 1 else run_id
    if by_reason:
        parts = [f"{why} (rank{'s' if len(r) > 1 else ''} {', '.join(map(str, r))})" for why, r in by_reason.items()]
        return None, "; ".join(parts)
    if not shared_id:
        return None, "rank zero has no run id to share"
    return SharedRun(str(shared_id), rank.rank), None


def join_shared_run(rank: RankInfo, run_id: str | None, mode: str | None) -> tuple[SharedRun | None, str | None]:
    """Every rank's share of one run (``shared_run=True``), or why the ranks fall back to grouped runs.

    Called by each rank as its run starts (a collective when ``torch.distributed``
    is initialised). Rank zero's id (``run_id`` when given, else a new one) reaches
    the others in the same collective that tells whether every rank can join.
    """
    from wandb_bridge.adapters import wandb_sdk

    try:
        missing = wandb_sdk.shared_mode_missing(mode)
    except Exception as exc:  # wandb cannot be inspected: no shared mode
        missing = f"wandb could not be inspected ({exc!r})"
    own = run_id or (wandb_sdk.new_run_id() if rank.is_zero else None)
    return plan_shared_run(rank, own, missing)


class RankKeys(KeyNormalizer):
    """Recorded keys of a non-primary rank in a shared run: ``rank-<r>/<key>`` (rank zero keeps the plain keys)."""

    def __init__(self, rank: int) -> None:
        super().__init__()
        self.prefix = f"rank-{rank}/"

    def __call__(self, key: str, stage: Stage = "train") -> str:
        """Return the rank-labelled recorded key for ``key`` in ``stage``."""
        return self.prefix + super().__call__(key, stage)


def _int(env: Mapping[str, str], *names: str) -> int | None:
    for name in names:
        text = env.get(name)
        if text is not None and text.strip().lstrip("-").isdigit():
            return int(text)
    return None
