"""Command line: ``python -m wandb_bridge demo`` and ``show PATH...`` (and the ``wandb-bridge`` console script)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line.

    Args:
        argv: the arguments (default ``sys.argv[1:]``).

    Returns:
        The process exit code.
    """
    parser = argparse.ArgumentParser(prog="wandb-bridge", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="train tiny models offline and show what was recorded")
    demo.add_argument("--dir", default=None, help="where the offline runs go (default: a new temp folder)")
    from wandb_bridge import viewer

    show = commands.add_parser(
        "show",
        help="show offline runs: config, summary, artifacts, one line per metric",
        description="Show W&B offline runs: header, exit status, config, summary, artifacts with aliases, and "
        "one line per metric (count, first, last, min, max, a sparkline against trainer/global_step).",
    )
    viewer.configure_parser(show)
    args = parser.parse_args(argv)
    if args.command == "demo":
        from wandb_bridge.demo import run_demo

        return run_demo(args.dir)
    if args.command == "show":
        return viewer.run_command(args)
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
