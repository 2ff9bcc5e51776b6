"""The core on its own: works without torch, numpy or any framework installed (nox session `core`)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from wandb_bridge import Session
from wandb_bridge.testing import WandbOfflineRuns


def test_plain_python_values_without_torch(wandb_offline: WandbOfflineRuns, tmp_path: Path) -> None:
    checkpoint = tmp_path / "model.bin"
    checkpoint.write_bytes(b"weights")
    with Session(project="core", log_model="all") as session:
        for step in range(1, 4):
            session.log({"loss": 1.0 / step, "val_acc": step / 10, "ok": True}, step=step, epoch=0)
        session.log_checkpoint(checkpoint, step=3)
    run = wandb_offline.run()
    assert run.values("val/acc") == [(1, 0.1), (2, 0.2), (3, 0.3)]
    assert [v for _, v in run.values("train/ok")] == [1, 1, 1]
    assert [a.type for a in run.artifacts] == ["model"]


def test_import_loads_no_wandb_torch_or_framework() -> None:
    code = (
        "import sys, wandb_bridge; "
        "from wandb_bridge import Session, Settings; "
        "bad = [m for m in ('wandb', 'torch', 'lightning', 'pytorch_lightning', 'transformers', 'keras', 'tensorflow', 'numpy') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ}, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("name", "blocked", "extra"),
    [
        ("WandbLogger", "lightning, pytorch_lightning", "lightning"),
        ("WandbTrainerCallback", "transformers", "transformers"),
        ("WandbKerasCallback", "keras", "keras"),
    ],
)
def test_missing_framework_names_the_extra(name: str, blocked: str, extra: str) -> None:
    code = (
        "import sys\n"
        f"for m in {blocked.split(', ')!r}: sys.modules[m] = None\n"
        "import wandb_bridge\n"
        "try:\n"
        f"    getattr(wandb_bridge, {name!r})\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert f'pip install "wandb-bridge[{extra}]"' in result.stdout, result.stdout + result.stderr
