"""Metric keys, values, and merging one step's values into one row (the step rules: :mod:`.steps`).

Everything here is pure (no wandb, no framework, no threads) so the three
framework callbacks cannot drift apart: they pass raw names and values, this
module decides the recorded names, the step columns and what a value becomes.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Stage = Literal["train", "val", "test"]

STEP_KEY = "trainer/global_step"
EPOCH_KEY = "trainer/epoch"
STEP_KEYS = frozenset({STEP_KEY, EPOCH_KEY})

_STAGE_PREFIXES: tuple[tuple[str, Stage], ...] = (
    ("validation_", "val"),
    ("valid_", "val"),
    ("eval_", "val"),
    ("val_", "val"),
    ("test_", "test"),
    ("predict_", "test"),
    ("train_", "train"),
    ("training_", "train"),
)
_EXACT: dict[str, str] = {
    "epoch": EPOCH_KEY,
    "global_step": STEP_KEY,
    "trainer/global_step": STEP_KEY,
}
# Throughput, time and device memory figures go under perf/.
_PERF = re.compile(
    r"(^|_)(runtime|samples_per_second|steps_per_second|tokens_per_second|"
    r"flos|total_flos|throughput|step_time|mem_\w+|memory\w*|jit_compilation_time)$"
)


def normalize_key(key: str, stage: Stage = "train") -> str:
    """Map a framework's metric name to the recorded key.

    ``val_loss``, ``valid_loss``, ``validation_loss``, ``eval_loss`` become
    ``val/loss``; ``test_acc`` becomes ``test/acc``; an unprefixed name becomes
    ``<stage>/<name>``; a name that already holds a ``/`` is kept as written.
    Throughput, run time and memory figures go under ``perf/`` (``eval_runtime``
    becomes ``perf/val_runtime``). ``epoch`` is ``trainer/epoch``.

    Args:
        key: the name as the framework or user wrote it.
        stage: the stage an unprefixed name belongs to.

    Returns:
        The key to record.
    """
    if "/" in key:
        return key
    exact = _EXACT.get(key)
    if exact is not None:
        return exact
    lowered = key.lower()
    for prefix, prefix_stage in _STAGE_PREFIXES:
        if lowered.startswith(prefix) and len(key) > len(prefix):
            stage, key = prefix_stage, key[len(prefix) :]
            break
    if key == "total_flos" or _PERF.search(key.lower()):
        return f"perf/{key}" if key == "total_flos" else f"perf/{stage}_{key}"
    return f"{stage}/{key}"


class KeyNormalizer:
    """:func:`normalize_key` with a cache, for the hot path."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, Stage], str] = {}

    def __call__(self, key: str, stage: Stage = "train") -> str:
        """Return the recorded key for ``key`` in ``stage``."""
        found = self._cache.get((key, stage))
        if found is None:
            found = normalize_key(key, stage)
            self._cache[(key, stage)] = found
        return found


def flatten_metrics(values: Mapping[str, Any], parent: str = "") -> Iterator[tuple[str, Any]]:
    """Yield ``(key, value)`` pairs, joining nested mappings' keys with ``/``."""
    for key, value in values.items():
        name = f"{parent}/{key}" if parent else str(key)
        if isinstance(value, Mapping):
            yield from flatten_metrics(value, name)
        else:
            yield name, value


# ------------------------------------------------------ a logger's prefix


def prefixed_key(key: str, prefix: str, join: str = "-", *, step_keys_too: bool = False) -> str:
    """A recorded key under a logger's ``prefix`` (Lightning's ``prefix="a"``: ``train/loss`` -> ``a-train/loss``).

    Args:
        key: the recorded key (already mapped) or, for values the user names directly, the key as written.
        prefix: the prefix; empty: none.
        join: what joins prefix and key (Lightning's ``LOGGER_JOIN_CHAR``).
        step_keys_too: also prefix the step columns (:data:`STEP_KEYS`), which
            otherwise keep their names (keys the user names directly get the prefix, whatever they are).
    """
    if not prefix or (key in STEP_KEYS and not step_keys_too):
        return key
    return f"{prefix}{join}{key}"


# ---------------------------------------------------------------------- values

#: Why a value was not recorded, keyed by a short reason code.
SKIP_REASONS = {
    "none": "None is not a metric value",
    "str": "strings are not metric values (log text with a table or the config)",
    "multi": "only single-element tensors and arrays are metric values",
    "type": "this type is not a metric value",
    "key": "empty metric key",
}


@dataclass
class ValueReport:
    """What conversion found in one batch of rows: skipped and non-finite keys."""

    skipped: dict[str, str] = field(default_factory=dict)
    non_finite: set[str] = field(default_factory=set)


class Verbatim:
    """A value the user logged directly (``wandb.log``) that is no metric number: handed to wandb as it is.

    wandb itself records strings, None, nested dicts, arrays and multi-element
    tensors (as histograms) from ``wandb.log``; the library's own checks on metric
    values do not apply to them.
    """

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


def as_written(values: Mapping[str, Any]) -> dict[str, Any]:
    """The values of a direct ``wandb.log`` call, keys kept: numbers stay metrics, the rest is :class:`Verbatim`."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        kind = type(value)
        number = kind in (int, float, bool) or is_media(value)
        scalar = (is_tensor(value) and value.numel() == 1) or (
            kind.__module__ == "numpy" and getattr(value, "size", 2) == 1 and hasattr(value, "item")
        )
        out[str(key)] = value if number or scalar else Verbatim(value)
    return out


def is_tensor(value: object) -> bool:
    """True for a torch tensor, checked without importing torch."""
    return type(value).__module__.startswith("torch") and hasattr(value, "detach")


def is_media(value: object) -> bool:
    """True for a wandb data type (Image, Table, Histogram...), passed through as is.

    A non-empty list or tuple of them (``[wandb.Image, ...]``, what
    ``log_image`` of the frameworks records) counts as media too.
    """
    if isinstance(value, (list, tuple)):
        return bool(value) and all(_from_wandb(v) for v in value)
    return _from_wandb(value)


def _from_wandb(value: object) -> bool:
    module = type(value).__module__
    return module == "wandb" or module.startswith("wandb.")


def convert_rows(rows: list[dict[str, Any]]) -> ValueReport:
    """Turn every value of ``rows`` into something wandb records as a number, in place.

    Tensors are read in one device transfer per device for the whole batch (no
    ``.item()`` per value). Numpy scalars and single-element arrays become Python
    numbers, bools become 0/1, NaN and infinities are kept. Values that cannot be
    a metric are removed and reported.

    Args:
        rows: rows of ``key -> value``; modified in place.

    Returns:
        The keys that were skipped (with a reason) and the keys holding NaN/inf.
    """
    report = ValueReport()
    tensors: list[tuple[dict[str, Any], str, Any]] = []
    for row in rows:
        if _all_finite_numbers(row.values()):  # (the common case, at C speed: nothing to convert or report)
            continue
        removed: list[str] = []
        for key, value in row.items():  # (values are replaced in place; removals wait for the end)
            kind = type(value)
            if kind is float:
                if value - value:  # NaN or +-inf (x - x is 0.0 for every finite x)
                    report.non_finite.add(key)
                continue
            if kind is int or is_media(value):
                continue
            if kind is Verbatim:
                row[key] = value.value
                continue
            if kind is bool:
                row[key] = int(value)
                continue
            reason: str | None
            if is_tensor(value):
                if value.numel() == 1:
                    tensors.append((row, key, value))
                    continue
                reason = "multi"
            else:
                converted, reason = _convert_plain(value)
                if reason is None:
                    row[key] = converted
                    if isinstance(converted, float) and not math.isfinite(converted):
                        report.non_finite.add(key)
                    continue
            removed.append(key)
            report.skipped[key] = reason or "type"
        for key in removed:
            del row[key]
    if tensors:
        _read_tensors(tensors, report)
    return report


NUMBER_TYPES = (float, int)
_NUMBER_SET = frozenset(NUMBER_TYPES)


def plain_numbers(values: Iterable[object]) -> bool:
    """True when every value is exactly a ``float`` or an ``int`` (no bool, tensor, numpy scalar or mapping)."""
    return _NUMBER_SET.issuperset(map(type, values))


def _all_finite_numbers(values: Collection[Any]) -> bool:
    """True when every value is a plain ``float``/``int`` and none is NaN or infinite.

    A row of 1,000 keys is checked in about 25 us instead of the per-key loop's 60:
    the types in one pass, then one ``sum`` (NaN or an infinity anywhere makes it
    non-finite; a sum that overflows only sends the row the long way).
    """
    if not plain_numbers(values):
        return False
    try:
        total = sum(values)
    except OverflowError:  # an int beyond float range beside floats
        return False
    return not total - total


def _convert_plain(value: Any) -> tuple[Any, str | None]:
    if value is None:
        return None, "none"
    if isinstance(value, (str, bytes)):
        return None, "str"
    if isinstance(value, bool):
        return int(value), None
    if isinstance(value, (int, float)):
        return (value if isinstance(value, int) else float(value)), None
    size = getattr(value, "size", None)
    item = getattr(value, "item", None)
    if item is not None and (size is None or size == 1):
        try:
            number = item()
        except (TypeError, ValueError):
            return None, "type"
        if isinstance(number, bool):
            return int(number), None
        if isinstance(number, (int, float)):
            return number, None
        return None, "type"
    if size is not None and size != 1 and item is not None:
        return None, "multi"
    return None, "type"


def _read_tensors(tensors: list[tuple[dict[str, Any], str, Any]], report: ValueReport) -> None:
    torch = sys.modules.get("torch")
    by_device: dict[Any, list[tuple[dict[str, Any], str, Any]]] = {}
    for entry in tensors:
        by_device.setdefault(entry[2].device, []).append(entry)
    for entries in by_device.values():
        numbers: list[Any]
        if torch is not None and len(entries) > 1:
            with torch.no_grad():
                stacked = torch.stack([t.detach().reshape(()).to(torch.float64) for _, _, t in entries])
                numbers = stacked.tolist()
            ints = [not (t.is_floating_point() or t.is_complex()) for _, _, t in entries]
        else:
            numbers = [t.detach().reshape(()).item() for _, _, t in entries]
            ints = [False] * len(entries)
        for (row, key, tensor), number, is_int in zip(entries, numbers, ints, strict=True):
            if tensor.dtype == getattr(torch, "bool", None) or is_int:
                number = int(number)
            if isinstance(number, complex):
                del row[key]
                report.skipped[key] = "type"
                continue
            row[key] = number
            if isinstance(number, float) and not math.isfinite(number):
                report.non_finite.add(key)


# ------------------------------------------------------------------- merging


class RowMerger:
    """Collects values per global step and releases one row per step.

    A row stays open until a value for a later step arrives or :meth:`drain`
    is called, so values from different hooks for one step share one row. A
    value for a step older than the open row is released as its own row (it is
    recorded, not dropped).
    """

    def __init__(self) -> None:
        self._step: int | None = None
        self._row: dict[str, Any] = {}
        self.last_epoch: float | None = None
        self.late_rows = 0

    def add(
        self,
        step: int,
        values: Mapping[str, Any],
        epoch: float | None = None,
        keep_both: bool = False,
        adopt: bool = False,
    ) -> list[dict[str, Any]]:
        """Add ``values`` recorded at ``step``.

        Args:
            step: the global step.
            values: recorded keys and values.
            epoch: the (fractional) epoch, if known.
            keep_both: a key already in the open row starts a second row for the
                same step instead of replacing the value (direct ``wandb.log`` calls:
                each value the user logged is kept, as wandb keeps it).
            adopt: ``values`` is a new dict the caller lets go of: a row it opens is that
                dict (a row of 1,000 keys is not copied again).

        Returns:
            Rows that are complete now (each holds ``trainer/global_step``).
        """
        ready: list[dict[str, Any]] = []
        if epoch is not None:
            self.last_epoch = epoch
        if keep_both and step == self._step and not self._row.keys().isdisjoint(values):
            ready.append(self._close())
            self._step = step
            self._row = {STEP_KEY: step}
        elif self._step is None or step > self._step:
            if self._step is not None:
                ready.append(self._close())
            self._step = step
            if adopt and type(values) is dict:
                values[STEP_KEY] = step
                self._row = values
                if epoch is not None:
                    values[EPOCH_KEY] = epoch
                return ready
            self._row = {STEP_KEY: step}
        elif step < self._step:
            self.late_rows += 1
            late = {STEP_KEY: step, **values}
            if epoch is not None:
                late[EPOCH_KEY] = epoch
            ready.append(late)
            return ready
        self._row.update(values)
        if epoch is not None:
            self._row[EPOCH_KEY] = epoch
        return ready

    def drain(self) -> list[dict[str, Any]]:
        """Close the open row, if any, and return it."""
        if self._step is None:
            return []
        return [self._close()]

    def _close(self) -> dict[str, Any]:
        row = self._row
        if EPOCH_KEY not in row and self.last_epoch is not None:
            row[EPOCH_KEY] = self.last_epoch
        self._step, self._row = None, {}
        return row


# ------------------------------------------------- a framework's log dict


#: Keys of the log dict a framework writes once, when training ends (transformers' ``train()``:
#: ``train_runtime``, ``total_flos``, ``train_loss``...): its figures go to the summary.
END_OF_TRAINING_KEYS = ("train_runtime", "total_flos")


@dataclass(frozen=True)
class LogDict:
    """Where the values of one framework log dict go (see :func:`read_log_dict`).

    Attributes:
        values: the values, with the names to pass to ``Session.log``/``log_summary``.
        stage: the stage of their unprefixed names.
        summary: end-of-training figures: summary values, never a history row.
    """

    values: Mapping[str, Any]
    stage: Stage
    summary: bool = False


def log_stage(values: Mapping[str, Any]) -> Stage:
    """The stage of a log dict, from its first stage-prefixed key: ``eval_*`` -> val, ``test_*``/``predict_*`` -> test.

    A dict without such a key (``loss``, ``learning_rate``, ``grad_norm``) is a training log.
    """
    for key in values:
        if key.startswith("eval_"):
            return "val"
        if key.startswith(("test_", "predict_")):
            return "test"
    return "train"


def read_log_dict(logs: Mapping[str, Any]) -> LogDict:
    """Read one log dict a framework hands over (transformers' ``on_log``).

    The end-of-training dict (it holds every key of :data:`END_OF_TRAINING_KEYS`)
    becomes summary values without its ``epoch``, its ``train_loss`` (the mean
    training loss of the whole call) named ``loss_mean`` so that it stays apart
    from the last logged ``train/loss``. Any other dict is a history row of
    :func:`log_stage`'s stage.
    """
    if not all(key in logs for key in END_OF_TRAINING_KEYS):
        return LogDict(logs, log_stage(logs))  # (Session.log copies what it keeps)
    values = dict(logs)
    values.pop("epoch", None)
    if "train_loss" in values:
        values["loss_mean"] = values.pop("train_loss")
    return LogDict(values, "train", summary=True)
