"""wandb-bridge: one W&B integration for Lightning, transformers and Keras 3.

Public names are loaded lazily (PEP 562): ``import wandb_bridge`` imports no
framework and not wandb; ``from wandb_bridge import WandbLogger`` imports
Lightning only then.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from wandb_bridge._version import __version__

if TYPE_CHECKING:
    from wandb_bridge.callbacks.accelerate import WandbTracker
    from wandb_bridge.callbacks.keras import WandbKerasCallback
    from wandb_bridge.callbacks.lightning import WandbLogger
    from wandb_bridge.callbacks.transformers import WandbTrainerCallback
    from wandb_bridge.core.errors import WandbBridgeWarning
    from wandb_bridge.core.session import Session
    from wandb_bridge.core.settings import Settings
    from wandb_bridge.core.sweeps import apply_sweep

_LAZY = {
    "Session": "wandb_bridge.core.session",
    "Settings": "wandb_bridge.core.settings",
    "WandbBridgeWarning": "wandb_bridge.core.errors",
    "WandbLogger": "wandb_bridge.callbacks.lightning",
    "WandbTrainerCallback": "wandb_bridge.callbacks.transformers",
    "WandbKerasCallback": "wandb_bridge.callbacks.keras",
    "WandbTracker": "wandb_bridge.callbacks.accelerate",
    "apply_sweep": "wandb_bridge.core.sweeps",
}

__all__ = [
    "Session",
    "Settings",
    "WandbBridgeWarning",
    "WandbKerasCallback",
    "WandbLogger",
    "WandbTracker",
    "WandbTrainerCallback",
    "__version__",
    "apply_sweep",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'wandb_bridge' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
