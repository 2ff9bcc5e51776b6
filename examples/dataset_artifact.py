"""Log a data set as a W&B artifact, then train on it as the input of another run.

Two runs, as in a real pipeline:

1. ``prepare`` (``job_type="dataset"``) writes ``data.csv`` and logs it with
   ``session.log_artifact(path, name="toy-regression", kind="dataset", metadata=...)``:
   hashed and staged off the calling thread, uploaded by wandb (now, or by
   ``wandb sync`` for an offline run).
2. ``train`` (``job_type="train"``) declares ``toy-regression:latest`` as its input
   with ``session.use_artifact(...)`` and trains on the downloaded file, so W&B
   shows the lineage data -> run -> model.

Offline: wandb 0.31 cannot use an artifact in an offline run (``run.use_artifact``
raises ``Cannot use artifact when in offline mode``). ``Session.use_artifact``
never lets that stop training (with the default ``on_error="warn"`` it warns and
returns None), and this script does not even ask offline: it trains on the local
copy of the file and records in the config which artifact it stands for and the
file's sha256 (also in the artifact's metadata), so the runs can be matched up
after ``wandb sync``. Online, the same script records the real input.

Run (offline unless WANDB_MODE says otherwise; a few seconds on CPU)::

    python examples/dataset_artifact.py [--dir DIR]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import os
import random
import tempfile
from pathlib import Path

import torch

from wandb_bridge import Session

ARTIFACT = "toy-regression"


def prepare(root: Path, mode: str) -> Path:
    """Run 1: write the data set and log it as a ``dataset`` artifact."""
    path = root / "data" / "data.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["x1", "x2", "x3", "y"])
        for _ in range(200):
            x = [rng.uniform(-1, 1) for _ in range(3)]
            writer.writerow([*x, 2 * x[0] - x[1] + 0.5 * x[2] + rng.gauss(0, 0.05)])
    sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
    with Session(
        project="wandb-bridge-examples", name="prepare", job_type="dataset", dir=str(root), mode=mode
    ) as session:
        session.log_artifact(
            path,
            name=ARTIFACT,
            kind="dataset",
            aliases=["latest"],
            metadata={"rows": 200, "columns": ["x1", "x2", "x3", "y"], "sha256": sha256},
        )
        print(f"run {session.run_id}: logged {ARTIFACT} ({path})")
    return path


def train(root: Path, mode: str, local_copy: Path) -> None:
    """Run 2: use the data set artifact as input (the local copy when offline) and fit a linear model."""
    with Session(project="wandb-bridge-examples", name="train", job_type="train", dir=str(root), mode=mode) as session:
        run = session.start()
        artifact = None
        if run is not None and not run.offline:
            artifact = session.use_artifact(f"{ARTIFACT}:latest", "dataset")  # recorded as this run's input
        path = Path(artifact.download()) / "data.csv" if artifact is not None else local_copy
        session.log_config(
            {
                "dataset": {
                    "artifact": f"{ARTIFACT}:latest",
                    "source": "artifact" if artifact is not None else "local copy (offline runs cannot use artifacts)",
                    "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
                }
            }
        )
        with path.open() as handle:
            rows = [[float(v) for v in row] for row in list(csv.reader(handle))[1:]]
        data = torch.tensor(rows)
        x, y = data[:, :3], data[:, 3:]
        model = torch.nn.Linear(3, 1)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        for step in range(1, 51):
            loss = torch.nn.functional.mse_loss(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            session.log({"loss": loss.detach()}, step=step)
        print(f"run {session.run_id}: trained on {path} ({len(rows)} rows), final loss {loss.item():.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", help="where wandb and the data go (default: WANDB_DIR, else a new temp folder)")
    args = parser.parse_args()
    root = Path(args.dir or os.environ.get("WANDB_DIR") or tempfile.mkdtemp(prefix="wandb-bridge-example-"))
    mode = os.environ.get("WANDB_MODE", "offline")
    local_copy = prepare(root, mode)
    train(root, mode, local_copy)


if __name__ == "__main__":
    main()
