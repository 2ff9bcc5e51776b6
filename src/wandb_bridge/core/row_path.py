"""The row path of a session: the step clock, the values handed over, and one merged row per step.

:class:`RowPath` turns a ``log`` call into a :class:`~wandb_bridge.core.ops.LogRow`
on the training thread (which step it belongs to, whether a resumed run
recorded it already) and, on the worker, maps its keys, adds the ``perf/``
figures and merges it into the row of its step.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from wandb_bridge.adapters import system, wandb_sdk
from wandb_bridge.core.distributed import RankKeys
from wandb_bridge.core.faults import FaultBoundary
from wandb_bridge.core.metrics import (
    EPOCH_KEY,
    NUMBER_TYPES,
    STEP_KEY,
    KeyNormalizer,
    RowMerger,
    Stage,
    as_written,
    flatten_metrics,
    plain_numbers,
)
from wandb_bridge.core.ops import HealthRow, LogRow

Row = dict[str, Any]


# Rows of at least this many keys remember the names of their key set (at most _PLANS key sets).
_PLAN_KEYS = 16
_PLANS = 64


class RowPath:
    """Steps, keys and the merger of one session (see the module docstring)."""

    def __init__(self, faults: FaultBoundary) -> None:
        self._faults = faults
        self._lock = threading.Lock()
        self.keys: KeyNormalizer = KeyNormalizer()
        self._names: dict[Stage | None, dict[str, str]] = {}  # recorded key of each plain key, per stage
        self._plans: dict[tuple[Stage, tuple[str, ...]], list[str]] = {}  # recorded keys of a wide row's key set
        self.last_step: int | None = None
        # Optimizer steps completed, read from the framework (set by callbacks); see current_step.
        self.step_clock: Callable[[], int | None] | None = None
        # Resuming: the highest step the previous attempts recorded; not recorded again.
        self.skip_through: int | None = None
        self._merger = RowMerger()
        self._sampler: system.SystemSampler | None = None
        self._timing: tuple[int, float] | None = None
        self.stamp = 0.0  # the hand-over time (perf_counter) of the last value merged
        self.first_stamp = 0.0  # ... and of the first one

    def label_rank(self, rank: int) -> None:
        """This rank writes into another rank's run: its values are labelled ``rank-<r>/...``."""
        self.keys = RankKeys(rank)
        self._names = {}
        self._plans = {}

    def map_key(self, key: str) -> str:
        """The recorded name of a metric name (as the run records it now)."""
        return self.keys(key)

    def sample_system(self) -> None:
        """Add ``perf/`` and system figures to rows (``system_stats``)."""
        self._sampler = system.SystemSampler(cuda_device=system.current_cuda_device())

    @property
    def current_step(self) -> int:
        """The step a value logged now without a step belongs to (see :attr:`Session.current_step`)."""
        step = None
        if self.step_clock is not None:
            try:
                step = self.step_clock()
            except Exception:  # a framework object in teardown
                pass
        return max(1, int((self.last_step if step is None else step) or 0))

    def skips(self, step: int) -> bool:
        """True when a resumed run recorded ``step`` already (its values are not recorded again)."""
        return self.skip_through is not None and step <= self.skip_through

    def step_of(self, step: int | None, keep_keys: bool) -> int:
        """The step of values logged now: ``step``, the current one (a direct call) or the next one."""
        if step is None and keep_keys:
            return self.current_step  # the step in progress, not a new one
        if step is None:
            with self._lock:
                step = 1 if self.last_step is None else self.last_step + 1
                self.last_step = step
        elif self.last_step is None or step > self.last_step:
            self.last_step = step
        return step

    def advance_to(self, step: int) -> None:
        """Count from ``step`` on (a resumed checkpoint's step)."""
        if self.last_step is None or step > self.last_step:
            self.last_step = step

    # ---------------------------------------------------------------- worker

    def merge(self, op: LogRow) -> list[Row]:
        """Map ``op``'s keys and merge it; the rows it closed."""
        step, epoch, stage, values, stamp, samples, plain = op
        self.stamp = stamp
        if not self.first_stamp:
            self.first_stamp = stamp
        if stage is None:  # a direct call (wandb.log, experiment.log, log_image): keys as written
            return self._merger.add(step, as_written(values), None if epoch is None else float(epoch), keep_both=True)
        mapped = self._map(values, stage, plain)
        row_epoch = mapped.pop(EPOCH_KEY, epoch)
        mapped.pop(STEP_KEY, None)
        self._time(step, stamp, samples, mapped)
        return self._merger.add(step, mapped, None if row_epoch is None else float(row_epoch), adopt=True)

    def _map(self, values: Mapping[str, Any], stage: Stage, plain: bool) -> Row:
        """A new dict: ``values`` with their recorded names (nested mappings flattened).

        ``plain``: every value is exactly a float or an int (then a wide row whose key set came
        before is mapped in one go).
        """
        numbers = values.values()
        shape = None
        if plain and len(values) >= _PLAN_KEYS:  # a wide row: its names in one go when the same keys came before
            shape = (stage, tuple(values))
            plan = self._plans.get(shape)
            if plan is not None:
                return dict(zip(plan, numbers, strict=True))
        mapped: Row = {}
        keys = self.keys
        # (per key: one dict lookup; nested mappings and new keys take the long way)
        names = self._names.get(stage)
        if names is None:
            names = self._names[stage] = {}
        for key, value in values.items():
            flat = type(value) in NUMBER_TYPES or not isinstance(value, Mapping)
            name = names.get(key) if flat else None
            if name is not None:
                mapped[name] = value
                continue
            for full, inner in flatten_metrics({key: value}):
                if not full:
                    self._faults.warn("key:", "An empty metric key was skipped.")
                    continue
                name = keys(full, stage)
                mapped[name] = inner
                if flat and type(key) is str:
                    names[key] = name
        if shape is not None and len(mapped) == len(values):
            if len(self._plans) >= _PLANS:
                self._plans.clear()
            self._plans[shape] = list(mapped)  # one name per key, in the keys' order
        return mapped

    def health(self, op: HealthRow) -> list[Row]:
        """Read a health vector (the one device read, on the worker) and merge it into its step's row."""
        from wandb_bridge.adapters import torch_health

        numbers, hists = torch_health.read(op.values, op.histograms)
        row: Row = dict(zip(op.keys, numbers, strict=True))
        for key, counts_edges in hists.items():
            row[key] = wandb_sdk.make("Histogram", np_histogram=counts_edges)
        return self._merger.add(op.step, row, None)

    def close_row(self) -> list[Row]:
        """Close the open row."""
        return self._merger.drain()

    def _time(self, step: int, stamp: float, samples: int | None, mapped: Row) -> None:
        sampler = self._sampler
        if sampler is None:
            return
        previous = self._timing
        if previous is None or step <= previous[0]:
            if previous is None:
                self._timing = (step, stamp)
            return
        if sampler.due():
            last_step, last_stamp = previous
            per_step = (stamp - last_stamp) / (step - last_step)
            mapped["perf/step_time_s"] = per_step
            if samples:
                mapped["perf/samples_per_second"] = samples / per_step if per_step > 0 else 0.0
            mapped.update(sampler.sample())
        self._timing = (step, stamp)


def hand_over(metrics: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """Copy the values for the queue: tensors are detached (their autograd graph is freed now,
    not when the worker reads them); CPU scalars are read at once (no device sync on CPU), so
    the queue holds no tensor objects the garbage collector would walk.

    Returns:
        The copy, and whether every value was exactly a ``float`` or an ``int`` (the worker
        then maps a wide row's keys without looking at the values again).
    """
    values = dict(metrics)
    if plain_numbers(values.values()):  # (the common case: nothing to read)
        return values, True
    for key, value in values.items():
        if type(value).__module__.startswith("torch") and hasattr(value, "detach"):
            if value.device.type == "cpu" and value.numel() == 1:
                values[key] = value.item()
            else:
                values[key] = value.detach()
    return values, False
