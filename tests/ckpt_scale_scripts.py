"""Two gloo processes writing ``torch.distributed.checkpoint`` folders, for tests/test_checkpoints_at_scale.py.

``python tests/ckpt_scale_scripts.py ROOT`` starts 2 workers with
``torch.multiprocessing.spawn``; they meet through a ``file://`` rendezvous in
``ROOT`` and each sets ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` before the process
group exists (the session reads them). Each rank opens a ``Session`` (rank 1's
is a no-op), saves two checkpoints with ``dcp.save`` (every rank writes its own
``__<rank>_0.distcp`` shard, rank 0 the ``.metadata``) and reports each folder
with ``log_checkpoint``; then, with ``rank_zero_only=False`` (a run per rank), both
ranks report one more shared folder. Each worker writes ``rank-<r>.json`` with what it saw.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch


def _worker(rank: int, root: str) -> None:
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": str(rank)})
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp

    from wandb_bridge import Session

    dist.init_process_group("gloo", init_method=f"file://{root}/rendezvous", rank=rank, world_size=2)
    saved = []
    with Session(project="dcp", log_model="all", system_stats=False) as session:
        for step in (1, 2):
            folder = os.path.join(root, f"dcp-step-{step}")
            # A key per rank: each rank writes its own shard (tiny tensors only).
            state = {f"layer{rank}.weight": torch.full((16,), float(10 * step + rank))}
            dcp.save(state, checkpoint_id=folder)
            session.log_checkpoint(folder, step=step)
            saved.append(folder)
        info = {"rank": rank, "enabled": session.enabled, "run": session.run_id if session.started else None}
    dist.barrier()
    # One run per rank: the shared folder is logged by global rank 0's run only.
    with Session(project="dcp", log_model="all", system_stats=False, rank_zero_only=False, group="per-rank") as s:
        folder = os.path.join(root, "dcp-per-rank")
        dcp.save({f"layer{rank}.weight": torch.full((16,), float(100 + rank))}, checkpoint_id=folder)
        s.log_checkpoint(folder, step=3)
        info["per_rank_run"] = s.run_id
    dist.barrier()
    dist.destroy_process_group()
    Path(root, f"rank-{rank}.json").write_text(json.dumps({**info, "saved": saved}), encoding="utf-8")


def main(root: str) -> None:
    """Start the two workers and wait for them."""
    import torch.multiprocessing as mp

    mp.spawn(_worker, args=(root,), nprocs=2, join=True)


if __name__ == "__main__":
    main(sys.argv[1])
