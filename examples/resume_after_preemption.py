"""Resume after pre-emption: SIGTERM, checkpoint, restart, same W&B run, same step axis.

A cluster pre-empts a job by sending SIGTERM (SLURM, Kubernetes, spot VMs) and
later starts it again. This script plays both parts: it starts a training
process, sends it SIGTERM once it has saved a checkpoint, then starts it again.

The training process (``--worker``) is a plain PyTorch loop through
``wandb_bridge.Session``, the simplest place to see every step of the pattern:

1. Every checkpoint holds the model, the optimizer, the global step and the run
   id (``session.run_id``; the uploaded artifact's metadata holds it too).
2. On SIGTERM the loop finishes the step it is in, saves a checkpoint at exactly
   that step, marks the run as pre-empted and exits with code 143. (A ``Session``
   would otherwise handle SIGTERM itself: flush, mark pre-empted, finish with
   exit code 143, and let the process die. That is right when a framework owns
   the loop; here the loop stops itself, so ``handle_sigterm=False``.)
3. On restart it loads the checkpoint and opens ``Session(id=<run id>,
   resume="allow")``: the same run, continuing at the next ``trainer/global_step``.
   Steps are contiguous, none is logged twice.

Offline, each attempt is its own ``offline-run-*`` folder with the same run id;
``wandb sync`` uploads them into one run. Online it is one run from the start.
With the frameworks no run id is passed at all: each callback finds it in the
marker beside the checkpoint when Lightning resumes with ``trainer.fit(ckpt_path=...)``,
transformers with ``trainer.train(resume_from_checkpoint=...)`` and Keras with
``fit(initial_epoch=...)`` (see docs/resume.md).

Run (offline unless WANDB_MODE says otherwise; about 15 s on CPU)::

    python examples/resume_after_preemption.py [--dir DIR] [--steps 40]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

CHECKPOINT_EVERY = 10


def worker(root: Path, steps: int) -> int:
    """Train to ``steps``, resuming from ``root/checkpoints/last.pt`` when it exists; 143 when pre-empted."""
    import torch

    from wandb_bridge import Session

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())  # finish the step, then stop

    model = torch.nn.Linear(8, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    path = root / "checkpoints" / "last.pt"
    state = torch.load(path) if path.exists() else None
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    done = 0 if state is None else state["step"]
    print(f"attempt: starting at step {done + 1}" + ("" if state is None else f", resuming run {state['run_id']}"))

    with Session(
        project="wandb-bridge-examples",
        name="resume-after-preemption",
        id=None if state is None else state["run_id"],  # the same run again
        resume="allow",
        dir=str(root),
        mode=os.environ.get("WANDB_MODE", "offline"),
        log_model="all",
        handle_sigterm=False,  # this loop handles SIGTERM itself (see above)
    ) as session:

        def save(step: int) -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(".partial")  # write, then rename: never a half-written last.pt
            torch.save(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "step": step,
                    "run_id": session.run_id,
                },
                partial,
            )
            os.replace(partial, path)
            session.log_checkpoint(path, step=step)

        for step in range(done + 1, steps + 1):
            batch = torch.Generator().manual_seed(step)  # the data of a step does not depend on restarts
            x = torch.randn(16, 8, generator=batch)
            loss = torch.nn.functional.mse_loss(model(x), x.sum(dim=1, keepdim=True))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            session.log({"loss": loss.detach()}, step=step)
            time.sleep(0.1)  # a slow step, so that the pre-emption lands mid-training
            if step % CHECKPOINT_EVERY == 0 or stop.is_set():
                save(step)
            if stop.is_set():
                print(f"attempt: SIGTERM, checkpoint saved at step {step}, exiting with 143")
                session.mark_preempting()
                raise SystemExit(143)  # the with block finishes the run with exit code 143
    print(f"attempt: finished at step {steps}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", help="where wandb and the checkpoints go (default: WANDB_DIR, else a new temp folder)")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--worker", action="store_true", help="be the training process (the script starts it)")
    args = parser.parse_args()
    root = Path(args.dir or os.environ.get("WANDB_DIR") or tempfile.mkdtemp(prefix="wandb-bridge-example-"))
    if args.worker:
        return worker(root, args.steps)

    command = [sys.executable, __file__, "--worker", "--dir", str(root), "--steps", str(args.steps)]
    first = subprocess.Popen(command)
    checkpoint = root / "checkpoints" / "last.pt"
    while not checkpoint.exists() and first.poll() is None:  # wait for the first checkpoint
        time.sleep(0.05)
    first.send_signal(signal.SIGTERM)  # the cluster pre-empts the job
    print(f"pre-empted: exit code {first.wait()}")
    second = subprocess.run(command, check=False)  # ... and starts it again later
    print(f"restarted: exit code {second.returncode}; runs in {root / 'wandb'}")
    return second.returncode


if __name__ == "__main__":
    sys.exit(main())
