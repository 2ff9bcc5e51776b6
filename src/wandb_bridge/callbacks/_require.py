"""Import a framework for a callback, or explain which extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType


def require(module: str, extra: str, what: str) -> ModuleType:
    """Import ``module`` or raise an ImportError naming the ``wandb-bridge`` extra.

    Args:
        module: the module to import (``"lightning.pytorch"``).
        extra: the extra that installs it (``"lightning"``).
        what: the wandb-bridge class that needs it, for the message.
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f'{what} needs {module.split(".")[0]}, which is not installed: pip install "wandb-bridge[{extra}]"'
        ) from exc
