"""2-process gloo scripts for tests/test_distributed_runs.py (run as a script).

Usage: python dist_runs_scripts.py MODE RENDEZVOUS_FILE OUT_DIR

The processes meet through a file (``init_method="file://..."``), so no TCP port
is chosen ahead of time. Each rank writes what it saw to ``OUT_DIR/rank-<r>.json``.

Modes:

* ``sweep``: the sweep agent's variables (``WANDB_SWEEP_ID`` +
  ``WANDB_SWEEP_PARAM_PATH``) are kept on rank 0 only (rank 1 drops the file
  path, as on a node the agent's file does not reach); ``apply_sweep`` builds a
  Lightning module's hparams, a ``LightningCLI``-style namespace and
  ``TrainingArguments`` on each rank.
* ``shared``: ``Session(rank_zero_only=False, shared_run=True)`` on each rank;
  offline this falls back to one run per rank (grouped); each rank reports
  the settings wandb was given.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path
from typing import Any

import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).parent))


def _sweep(rank: int, out: Path) -> dict[str, Any]:
    import lightning.pytorch as L
    from jsonargparse import Namespace

    from transformers_helpers import make_args
    from wandb_bridge import WandbTrainerCallback, apply_sweep

    class Module(L.LightningModule):
        def __init__(self, lr: float = 0.05, hidden: int = 4) -> None:
            super().__init__()
            self.save_hyperparameters()

    report: dict[str, Any] = {"rank": rank, "has_param_file": "WANDB_SWEEP_PARAM_PATH" in os.environ}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        hp = apply_sweep({"lr": 0.05, "hidden": 4})  # one broadcast; later calls reuse it
        module = Module(**hp)
        report["lightning_hparams"] = dict(module.hparams)
        in_place = apply_sweep(Module())  # a module's hparams, updated in place
        report["lightning_in_place"] = dict(in_place.hparams)
        cli = apply_sweep(Namespace({"model.lr": 0.05, "trainer.max_epochs": 1}))
        report["cli_model_lr"] = cli["model.lr"]
        callback = WandbTrainerCallback(project="sweep-ddp")
        args = apply_sweep(make_args(out / f"hf-{rank}", learning_rate=1e-3), callback)
        report["training_args"] = {"learning_rate": args.learning_rate, "max_steps": args.max_steps}
        session = callback.session  # the public property (the callback no longer has _session)
        report["run_id"] = None if session is None or session.run is None else session.run_id
        if session is not None:
            session.finish(0)
    report["warnings"] = [str(w.message) for w in caught if "W&B sweep set" in str(w.message)]
    return report


def _shared(rank: int, out: Path) -> dict[str, Any]:
    from wandb_bridge import Session

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        session = Session(project="shared", shared_run=True, name="job")
        session.log({"loss": float(rank * 10 + 1)}, step=1)
        run = session.run
        settings = run.settings
        report = {
            "rank": rank,
            "run_id": session.run_id,
            "mode": settings.mode,
            "x_primary": settings.x_primary,
            "x_label": settings.x_label,
            "x_update_finish_state": settings.x_update_finish_state,
            "group": run.group,
            "job_type": run.job_type,
        }
        session.finish(0)
    report["warnings"] = [str(w.message) for w in caught if "shared" in str(w.message).lower()]
    return report


def _work(rank: int, world: int, mode: str, rendezvous: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world)
    os.environ["RANK"], os.environ["WORLD_SIZE"] = str(rank), str(world)  # as torchrun sets them
    if rank != 0:
        os.environ.pop("WANDB_SWEEP_PARAM_PATH", None)  # only rank 0 can read the agent's file
    folder = Path(out)
    report = _sweep(rank, folder) if mode == "sweep" else _shared(rank, folder)
    (folder / f"rank-{rank}.json").write_text(json.dumps(report, default=str))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    run_mode, rendezvous_file, out_dir = sys.argv[1:4]
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(20000 + os.getpid() % 20000))  # only names the group
    mp.spawn(_work, args=(2, run_mode, rendezvous_file, out_dir), nprocs=2, join=True)
