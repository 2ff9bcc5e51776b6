"""Child processes for test_faults: each scenario runs a Session in a fresh interpreter.

Usage: python fault_scripts.py SCENARIO DIR
"""

from __future__ import annotations

import os
import resource
import signal
import sys
import threading
import time
from pathlib import Path

from wandb_bridge import Session


def sigterm(directory: Path) -> None:
    """Log until killed by SIGTERM; the parent checks what was recorded."""
    session = Session(project="faults", dir=str(directory), log_model="all")
    step = 0
    while True:
        step += 1
        session.log({"loss": 1.0 / step}, step=step)
        if step == 100:
            ckpt = directory / "ckpt.pt"
            ckpt.write_bytes(b"weights at 100")
            session.log_checkpoint(ckpt, step=step)
            print("ready", flush=True)
        time.sleep(0.001)


def _log_until_signal(session: Session, ready_at: int) -> None:
    """Log a row every millisecond, say "ready" once step ``ready_at`` was logged, until a signal ends it."""
    step = 0
    while True:
        step += 1
        session.log({"loss": 1.0 / step}, step=step)
        if step == ready_at:
            print("ready", flush=True)
        time.sleep(0.001)


def until_signal(directory: Path) -> None:
    """Log every millisecond until a signal ends the process (no checkpoint)."""
    _log_until_signal(Session(project="faults", dir=str(directory)), 100)


def helper_starting(directory: Path) -> None:
    """Say "ready" while the spawned logging process still starts (imports wandb), then log until a signal."""
    threading.Thread(target=time.sleep, args=(600,), daemon=True).start()  # a second thread: spawned, not forked
    _log_until_signal(Session(project="faults", dir=str(directory), log_process=True), 20)


def disk_full(directory: Path) -> None:
    """Checkpoint staging hits the file-size limit (EFBIG, like a full disk); training goes on."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    big = directory / "big.ckpt"
    big.write_bytes(os.urandom(6 << 20))
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, resource.RLIM_INFINITY))
    with Session(project="faults", dir=str(directory), log_model="all") as session:
        session.log({"loss": 1.0}, step=1)
        session.log_checkpoint(big, step=1)
        session.log({"loss": 0.5}, step=2)
    print("training finished", flush=True)


def no_api_key(directory: Path) -> None:
    """Online mode with no key and no TTY: never a login prompt, an offline run instead."""
    with Session(project="faults", dir=str(directory), mode="online") as session:
        session.log({"loss": 1.0}, step=1)
        print("offline" if session.run is not None and session.run.offline else "online", flush=True)


if __name__ == "__main__":
    scenario, folder = sys.argv[1], Path(sys.argv[2])
    scenarios = {
        "sigterm": sigterm,
        "until_signal": until_signal,
        "helper_starting": helper_starting,
        "disk_full": disk_full,
        "no_api_key": no_api_key,
    }
    scenarios[scenario](folder)
