"""Blocking time on the training thread per checkpoint save: native vs ours.

* native: what Lightning's ``WandbLogger(log_model="all")`` does after each save:
  ``wandb.Artifact(...)``, ``add_file(path)``, ``run.log_artifact(artifact, aliases=...)``.
* ours: ``Session(log_model="all").log_checkpoint(path, step=..., epoch=..., metrics=...)``.

The worker trains the tiny MLP, and every ``--every`` steps writes a checkpoint file
(``torch.save`` of the state dict, padded with ``--size-mb`` MB of fresh random bytes
so no two saves have the same content) and hands it over. Only the hand-over call
is timed: writing the file is the framework's cost, the same on both sides. The
time ``finish()`` then takes (hashing, staging and handing over what was deferred)
is reported separately.

Worker: ``python -m benchmarks.checkpoint --variant native|ours --size-mb 64 --saves 3 --result FILE``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

from benchmarks._harness import (
    BATCH,
    LR,
    finish_timed,
    make_data,
    make_mlp,
    process_figures,
    setup_torch,
    worker_args,
    write_result,
)

MODULE = "benchmarks.checkpoint"


def write_checkpoint(torch: Any, model: Any, path: str, size_mb: int, step: int) -> None:
    """Save the model's state dict, plus ``size_mb`` MB of random padding (distinct content every time)."""
    state: dict[str, Any] = {"model": model.state_dict(), "step": step}
    if size_mb > 0:
        state["padding"] = torch.frombuffer(bytearray(os.urandom(size_mb << 20)), dtype=torch.uint8)
    torch.save(state, path)


def main(argv: Sequence[str] | None = None) -> None:
    """Train, save ``--saves`` checkpoints and time each hand-over."""
    args = worker_args(argv, {"size-mb": 0, "saves": 3, "every": 100})
    torch = setup_torch()
    model = make_mlp(torch)
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    x, y = make_data(torch)
    batches = list(zip(x.split(BATCH), y.split(BATCH), strict=True))
    folder = os.path.abspath("checkpoints")
    os.makedirs(folder, exist_ok=True)

    run = session = None
    wandb: Any = None
    if args.variant == "native":
        import wandb

        run = wandb.init()
    elif args.variant == "ours":
        from wandb_bridge import Session

        session = Session(log_model="all", monitor="val_loss")
        session.start()
    else:
        raise SystemExit(f"unknown variant {args.variant!r}")

    mse = torch.nn.functional.mse_loss
    blocking: list[float] = []
    step = 0
    for save in range(args.saves):
        for _ in range(args.every):
            xb, yb = batches[step % len(batches)]
            opt.zero_grad(set_to_none=True)
            loss = mse(model(xb), yb)
            loss.backward()
            opt.step()
            step += 1
            if run is not None:
                run.log({"train/loss": loss.item(), "trainer/global_step": step})
            elif session is not None:
                session.log({"loss": loss}, step=step)
        path = os.path.join(folder, f"epoch={save}-step={step}.ckpt")
        write_checkpoint(torch, model, path, args.size_mb, step)
        val = float(loss.item())
        start = time.perf_counter()
        if run is not None:
            artifact = wandb.Artifact(
                name=f"model-{run.id}", type="model", metadata={"score": val, "step": step, "original_filename": path}
            )
            artifact.add_file(path, name="model.ckpt")
            run.log_artifact(artifact, aliases=["latest", f"step-{step}"])
        elif session is not None:
            session.log_checkpoint(path, step=step, epoch=save, metrics={"val_loss": val})
        blocking.append(time.perf_counter() - start)

    finish_s = finish_timed(run, session)
    write_result(
        args.result,
        {
            "variant": args.variant,
            "size_mb": args.size_mb,
            "file_bytes": os.path.getsize(path),
            "blocking_s": blocking,
            "finish_s": finish_s,
            **process_figures(),
        },
    )


if __name__ == "__main__":
    main()
