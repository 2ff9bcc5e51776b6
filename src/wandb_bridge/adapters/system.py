"""Process and GPU statistics, sampled by the background worker, never on the training thread.

Reads host-side counters only (process RSS, ``torch.cuda`` allocator counters,
NVML utilisation when ``pynvml`` is installed): no device synchronisation.
Without a GPU, or without torch, the GPU figures are simply absent.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any


def current_cuda_device() -> int | None:
    """The CUDA device of the calling thread, if torch has initialised CUDA (no import)."""
    torch = sys.modules.get("torch")
    cuda = getattr(torch, "cuda", None)
    if cuda is None:
        return None
    try:
        if not cuda.is_initialized():
            return None
        return int(cuda.current_device())
    except Exception:  # a broken CUDA install must not stop training
        return None


def _statm_rss() -> float | None:
    """The resident set size from ``/proc/self/statm`` (Linux), or None where there is none."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            resident = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return float(resident * _PAGE_SIZE)


try:
    _PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
except (AttributeError, OSError, ValueError):  # pragma: no cover - not a POSIX system
    _PAGE_SIZE = 4096


class SystemSampler:
    """Samples ``perf/`` figures at most once per ``interval`` seconds."""

    def __init__(self, interval: float = 5.0, cuda_device: int | None = None) -> None:
        self.interval = interval
        self.cuda_device = cuda_device
        self._next = 0.0
        self._process: Any = None
        self._nvml: Any = None
        self._nvml_handle: Any = None
        self._nvml_tried = False

    def due(self, now: float | None = None) -> bool:
        """True when a new sample should be taken."""
        return (time.monotonic() if now is None else now) >= self._next

    def sample(self) -> dict[str, float]:
        """Read the statistics now and schedule the next sample."""
        self._next = time.monotonic() + self.interval
        stats: dict[str, float] = {}
        rss = self._rss_bytes()
        if rss is not None:
            stats["perf/process_rss_mb"] = rss / 2**20
        stats.update(self._cuda())
        stats.update(self._nvml_stats())
        return stats

    def _rss_bytes(self) -> float | None:
        statm = _statm_rss()  # Linux: one read of /proc, no psutil import (10 ms) on the first row
        if statm is not None:
            return statm
        if self._process is None:
            try:
                import psutil

                self._process = psutil.Process(os.getpid())
            except Exception:
                self._process = False
        if self._process:
            try:
                return float(self._process.memory_info().rss)
            except Exception:
                return None
        try:
            import resource

            return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
        except Exception:  # pragma: no cover - platform without resource
            return None

    def _cuda(self) -> dict[str, float]:
        if self.cuda_device is None:
            return {}
        torch = sys.modules.get("torch")
        try:
            cuda = torch.cuda  # type: ignore[union-attr]
            device = self.cuda_device
            return {
                "perf/cuda_memory_allocated_mb": cuda.memory_allocated(device) / 2**20,
                "perf/cuda_memory_reserved_mb": cuda.memory_reserved(device) / 2**20,
                "perf/cuda_max_memory_allocated_mb": cuda.max_memory_allocated(device) / 2**20,
            }
        except Exception:
            return {}

    def _nvml_stats(self) -> dict[str, float]:
        if self.cuda_device is None:
            return {}
        if not self._nvml_tried:
            self._nvml_tried = True
            try:
                import pynvml

                pynvml.nvmlInit()
                index = self.cuda_device
                visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
                ids = [v.strip() for v in visible.split(",") if v.strip()]
                if ids and index < len(ids) and ids[index].isdigit():
                    index = int(ids[index])
                self._nvml_handle = pynvml.nvmlDeviceGetHandleByIndex(index)
                self._nvml = pynvml
            except Exception:
                self._nvml = None
        if self._nvml is None:
            return {}
        try:
            util = self._nvml.nvmlDeviceGetUtilizationRates(self._nvml_handle)
            return {"perf/gpu_utilization": float(util.gpu), "perf/gpu_memory_utilization": float(util.memory)}
        except Exception:
            return {}
