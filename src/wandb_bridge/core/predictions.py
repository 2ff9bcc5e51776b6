"""Prediction tables: one schema for every framework, the key they are logged under, their cells.

Every integration that logs predictions (Keras ``log_predictions``, transformers
``log_predictions``) logs one ``wandb.Table`` with the columns :data:`COLUMNS`:

* ``sample``: the sample's index among the logged samples (0, 1, ...);
* ``input``: the sample's input(s): text as written, the values when there are
  at most :data:`MAX_LISTED` of them (a JSON list), else ``shape=... mean=...
  min=... max=...`` (or ``shape=... dtype=...`` when not numeric); several
  inputs are joined with ``" | "``;
* ``target``: the expected output (None when the framework has none);
* ``prediction``: the model's output; a target or prediction is a number when it
  is one value, text as written, else a JSON list (floats rounded to 5 decimals).

The table is logged at :func:`predictions_key` (``val/predictions`` for the
validation data, ``test/predictions`` for a test evaluation) in the row of the
evaluation's step. The framework side only reads its samples and model outputs
and hands them over as framework-neutral values: numpy arrays, nested lists,
numbers, or strings it already decoded.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from wandb_bridge.core.metrics import Stage, normalize_key

if TYPE_CHECKING:
    from wandb_bridge.core.session import Session

#: The columns of every prediction table, in this order.
COLUMNS = ("sample", "input", "target", "prediction")
#: The name a prediction table is logged under, before the stage prefix.
NAME = "predictions"
#: An input with at most this many values is shown as its values, else as statistics.
MAX_LISTED = 6
_DECIMALS = 5


def predictions_key(stage: Stage = "val") -> str:
    """The history key of the prediction table of ``stage`` (``"val/predictions"`` by default)."""
    return normalize_key(NAME, stage)


def check_count(count: object) -> int:
    """A framework's ``log_predictions`` argument: how many samples per table (0: none).

    Raises:
        ValueError: it is not an int >= 0.
    """
    if not isinstance(count, int) or isinstance(count, bool) or count < 0:
        raise ValueError(f"log_predictions must be an int >= 0, got {count!r}")
    return count


def table_rows(inputs: Sequence[Any], targets: Sequence[Any] | None, predictions: Sequence[Any]) -> list[list[Any]]:
    """The rows of a prediction table (:data:`COLUMNS`).

    Args:
        inputs: one batch-first value per model input (an array, a list, a list
            of strings): sample ``i`` is ``[part[i] for part in inputs]``.
        targets: the same for the targets, or None when there are none.
        predictions: the same for the model's outputs.

    Returns:
        One row per sample, as many as the shortest of the first parts has.
    """
    parts = [p for p in (inputs, targets, predictions) if p is not None]
    if any(len(p) == 0 for p in parts):
        return []
    count = min(len(p[0]) for p in parts)
    return [
        [
            i,
            input_cell([a[i] for a in inputs]),
            None if targets is None else value_cell([a[i] for a in targets]),
            value_cell([a[i] for a in predictions]),
        ]
        for i in range(count)
    ]


def input_cell(parts: Sequence[Any]) -> str:
    """A short text for one sample's input(s): text as is, the values when few, else shape and statistics."""
    texts = []
    for part in parts:
        if isinstance(part, str):
            texts.append(part)
            continue
        plain = _plain(part)
        shape = _shape(part, plain)
        leaves = list(_leaves(plain))
        if len(leaves) <= MAX_LISTED:
            texts.append(json.dumps(_rounded(plain)))
        elif all(_is_number(v) for v in leaves):
            numbers = [float(v) for v in leaves]
            texts.append(
                f"shape={shape} mean={math.fsum(numbers) / len(numbers):.4g} "
                f"min={min(numbers):.4g} max={max(numbers):.4g}"
            )
        else:
            texts.append(f"shape={shape} dtype={getattr(part, 'dtype', type(leaves[0]).__name__)}")
    return " | ".join(texts)


def value_cell(parts: Sequence[Any]) -> Any:
    """A table cell for one sample's target(s) or prediction(s): a number, text, or a short JSON list."""
    if len(parts) == 1 and isinstance(parts[0], str):
        return parts[0]
    values = [_plain(p) for p in parts]
    if len(values) == 1:
        leaves = list(_leaves(values[0]))
        if len(leaves) == 1:
            return leaves[0]
    return json.dumps([_rounded(v) for v in values] if len(values) > 1 else _rounded(values[0]))


class PredictionTable:
    """The prediction tables of one run: logs each table, and the samples once.

    Args:
        session: the session of the run.
        stage: the data the samples come from (``"val"`` or ``"test"``).
    """

    def __init__(self, session: Session, stage: Stage = "val") -> None:
        self._session = session
        self.stage: Stage = stage
        self.samples_logged = False

    @property
    def session(self) -> Session:
        """The session the tables are logged to."""
        return self._session

    @property
    def key(self) -> str:
        """The history key the tables are logged under."""
        return predictions_key(self.stage)

    def log(
        self,
        inputs: Sequence[Any],
        targets: Sequence[Any] | None,
        predictions: Sequence[Any],
        *,
        step: int,
        epoch: float | None = None,
    ) -> None:
        """Log one table (see :func:`table_rows` for the arguments) in the row of ``step``."""
        session = self._session
        table = session.wandb_type("Table", columns=list(COLUMNS), data=table_rows(inputs, targets, predictions))
        session.log({self.key: table}, step=step, epoch=epoch, stage=self.stage)

    def log_samples(self, path: str | os.PathLike[str], count: int) -> None:
        """Log the file holding the samples once, as the ``dataset`` artifact ``<stage>-samples-<run id>``.

        Its name goes into the config at ``predictions/artifact`` (with ``predictions/samples``
        and ``predictions/key``). Later calls do nothing.
        """
        if self.samples_logged:
            return
        self.samples_logged = True
        session = self._session
        session.start()
        if not session.enabled:
            return
        name = f"{self.stage}-samples-{session.run_id or 'run'}"
        key = self.key
        session.log_artifact(path, name=name, kind="dataset", metadata={"samples": count, "table_key": key})
        session.log_config({NAME: {"artifact": name, "samples": count, "key": key}})


def _plain(value: Any) -> Any:
    """Numbers and nested lists from an array, a scalar array or a list of them."""
    tolist = getattr(value, "tolist", None)
    if callable(tolist) and not isinstance(value, (str, bytes)):
        value = tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _leaves(value: Any) -> Any:
    if isinstance(value, list):
        for item in value:
            yield from _leaves(item)
    else:
        yield value


def _shape(value: Any, plain: Any) -> tuple[int, ...]:
    shape = getattr(value, "shape", None)
    if shape is not None:
        return tuple(int(s) for s in shape)
    dims: list[int] = []
    while isinstance(plain, list):
        dims.append(len(plain))
        plain = plain[0] if plain else None
    return tuple(dims)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _rounded(value: Any) -> Any:
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    if isinstance(value, float):
        return round(value, _DECIMALS)
    return value


__all__ = [
    "COLUMNS",
    "MAX_LISTED",
    "NAME",
    "PredictionTable",
    "check_count",
    "input_cell",
    "predictions_key",
    "table_rows",
    "value_cell",
]
