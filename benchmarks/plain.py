"""Plain torch: a hand-written loop with no logger, bare ``wandb`` ``run.log`` and ``Session.log``.

Worker: ``python -m benchmarks.plain --variant none|native|ours --steps N --warmup W --result FILE``.
A diagnostic variant ``ours_float`` hands ``loss.item()`` to ``Session.log`` instead of the
tensor (not part of the default run).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from benchmarks._harness import (
    BATCH,
    LR,
    Window,
    finish_timed,
    make_data,
    make_mlp,
    process_figures,
    setup_torch,
    worker_args,
    write_result,
)

NAME = "plain"
TITLE = "plain torch loop"
NATIVE = "wandb run.log({...})"
OURS = "Session.log"
MODULE = "benchmarks.plain"
# What the fork server imports once for every variant of this worker (``_forkserver``).
PRELOAD = ("torch", "wandb")


def unavailable() -> dict[str, str]:
    """Variants that cannot run here, with the reason (none for plain torch)."""
    return {}


def main(argv: Sequence[str] | None = None) -> None:
    """Train the tiny MLP for ``warmup + steps + 1`` steps, logging every step."""
    args = worker_args(argv)
    torch = setup_torch()
    device = torch.device(args.device)
    model = make_mlp(torch).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    x, y = make_data(torch)
    batches = list(zip(x.to(device).split(BATCH), y.to(device).split(BATCH), strict=True))
    window = Window.from_args(args)
    config = {"lr": LR, "batch_size": BATCH, "model": "mlp-32-64-1"}

    t_init = time.perf_counter()
    run = session = None
    if args.variant == "native":
        import wandb

        run = wandb.init(config=config)
    elif args.variant in ("ours", "ours_float"):
        from wandb_bridge import Session

        session = Session(config=config)
        session.start()
    elif args.variant != "none":
        raise SystemExit(f"unknown variant {args.variant!r}")
    init_s = time.perf_counter() - t_init

    mse = torch.nn.functional.mse_loss
    for index in range(window.total_steps):
        window.at_step_start(index)
        xb, yb = batches[index % len(batches)]
        opt.zero_grad(set_to_none=True)
        loss = mse(model(xb), yb)
        loss.backward()
        opt.step()
        step = index + 1
        if run is not None:
            run.log({"train/loss": loss.item(), "train/lr": LR, "trainer/global_step": step})
        elif session is not None:
            session.log({"loss": loss if args.variant == "ours" else loss.item(), "lr": LR}, step=step)
        if args.printing and step % 10 == 0:  # what a hand-written loop typically prints
            print(f"step {step} loss {loss.item():.4f}")

    finish_s = finish_timed(run, session)
    write_result(
        args.result,
        {
            "variant": args.variant,
            **window.figures(),
            "logged_steps": window.total_steps,
            "init_s": init_s,
            "finish_s": finish_s,
            **process_figures(),
        },
    )


if __name__ == "__main__":
    main()
