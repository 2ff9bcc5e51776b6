"""A W&B sweep's parameters on every rank, and applied to any framework's arguments.

A sweep agent starts the training script with ``WANDB_SWEEP_ID`` and
``WANDB_SWEEP_PARAM_PATH`` (a YAML file ``{name: {value: v}}``) in its
environment; ``wandb.init`` puts the values into ``run.config`` of rank zero
only. :func:`sweep_params` reads them on rank zero and, when
``torch.distributed`` is initialised, hands them to every rank with one
``broadcast_object_list`` (every rank must call it, like any collective);
:func:`apply_sweep` writes them into Lightning hparams / ``LightningCLI``
namespaces, ``TrainingArguments`` or Keras settings, with one warning naming
the swept keys that matched nothing.

torch is never imported here: the broadcast happens only when the training
script already imported and initialised ``torch.distributed``.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import warnings
from collections.abc import Mapping, MutableMapping
from typing import Any

from wandb_bridge.core import hparams
from wandb_bridge.core.distributed import broadcast_object, initialised_group
from wandb_bridge.core.errors import WandbBridgeWarning

_lock = threading.Lock()
# The parameters this process received, by the environment they were read from
# (one broadcast per process and sweep run: later calls reuse them).
_cached: tuple[tuple[str | None, str | None], dict[str, Any]] | None = None


def read_param_file(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The sweep parameters of this process's agent (``WANDB_SWEEP_PARAM_PATH``), ``{}`` when none.

    Args:
        environ: the environment to read (``os.environ`` by default).

    Returns:
        ``name -> value`` (``{name: {value: v}}`` entries unwrapped).
    """
    env = os.environ if environ is None else environ
    path = env.get("WANDB_SWEEP_PARAM_PATH")
    if not env.get("WANDB_SWEEP_ID") or not path or not os.path.isfile(path):
        return {}
    import yaml  # wandb's own dependency

    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
    except (OSError, yaml.YAMLError):
        return {}
    if not isinstance(data, Mapping):
        return {}
    params: dict[str, Any] = {}
    for key, entry in data.items():
        if str(key).startswith("_"):
            continue
        params[str(key)] = entry["value"] if isinstance(entry, Mapping) and "value" in entry else entry
    return params


def sweep_params(environ: Mapping[str, str] | None = None, *, refresh: bool = False) -> dict[str, Any]:
    """The sweep's parameters on every rank: rank zero reads them, one broadcast hands them to the others.

    Without an initialised process group each process reads its own environment
    (``torchrun`` ranks inherit the agent's variables). With one, this is a
    collective: call it on every rank, before the framework reads its arguments.
    The result is kept for the process (a second call does not broadcast again)
    unless ``refresh``.

    Args:
        environ: the environment to read (``os.environ`` by default).
        refresh: read (and broadcast) again.

    Returns:
        ``name -> value``, ``{}`` outside a sweep.
    """
    global _cached
    env = os.environ if environ is None else environ
    key = (env.get("WANDB_SWEEP_ID"), env.get("WANDB_SWEEP_PARAM_PATH"))
    with _lock:
        if _cached is not None and _cached[0] == key and not refresh:
            return dict(_cached[1])
        dist = initialised_group()
        local = read_param_file(env) if dist is None or dist.get_rank() == 0 else None
        params = broadcast_object(local)
        _cached = (key, dict(params or {}))
        return dict(_cached[1])


def apply_sweep(target: Any, source: Any = None, *, warn: bool = True) -> Any:
    """Write a sweep's values into a framework's arguments; returns the updated arguments.

    ``target`` may be:

    * a dataclass (``transformers.TrainingArguments``): a new one is returned
      (``dataclasses.replace``, so derived fields are recomputed), values cast
      to the field's type;
    * a ``LightningModule`` or anything with a mutable ``hparams`` mapping:
      its ``hparams`` are updated in place and ``target`` is returned;
    * a mapping (Lightning hparams, a Keras settings dict, ``LightningCLI``'s
      ``jsonargparse.Namespace``, dotted keys such as ``model.lr`` included):
      a mutable one is updated in place; a read-only one is copied;
    * any other object (a Keras optimizer, an ``argparse.Namespace``): existing
      attributes are set.

    One warning names every swept key that matched nothing.

    Example:
        >>> hp = apply_sweep({"lr": 1e-3, "hidden": 32})   # doctest: +SKIP
        >>> model = LitModel(**hp)                          # every rank: the swept lr
        >>> args = apply_sweep(TrainingArguments(...), callback)  # doctest: +SKIP

    Args:
        target: the arguments to update.
        source: where the values come from: None (the sweep agent's parameter
            file, read on rank zero and broadcast: a collective when
            ``torch.distributed`` is initialised, so call it on every rank), a
            mapping of values, a :class:`~wandb_bridge.Session` (started if
            needed), a wandb run, or an object with a ``sweep_config(target)``
            method (``WandbTrainerCallback``). A session's or run's config only
            exists on rank zero; the broadcast values fill in the other ranks.
        warn: False skips the warning about unmatched keys.

    Returns:
        The updated arguments (a new object for dataclasses and read-only mappings).
    """
    values = swept_values(sweep_params() if source is None else _values_of(source, target))
    if not values:
        return target
    updated, matched = _apply(target, values)
    unmatched = sorted(set(values) - matched)
    if unmatched and warn:
        warnings.warn(
            f"The W&B sweep set {', '.join(repr(k) for k in unmatched)}, which match nothing in "
            f"{type(target).__name__}; these values are not used by training.",
            WandbBridgeWarning,
            stacklevel=2,
        )
    return updated


def swept_values(config: Mapping[str, Any]) -> dict[str, Any]:
    """The values of a run config a sweep may apply: ``{"value": v}`` unwrapped; secrets, redacted values
    and wandb's own ``_wandb`` left out."""
    return {
        k: (v["value"] if isinstance(v, Mapping) and set(v) == {"value"} else v)
        for k, v in config.items()
        if not hparams.is_secret_key(k) and v != hparams.REDACTED and k != "_wandb"
    }


def _values_of(source: Any, target: Any) -> dict[str, Any]:
    if isinstance(source, Mapping):
        return dict(source)
    opener = getattr(source, "sweep_config", None)
    if callable(opener):
        config = opener(target)
    else:
        starter = getattr(source, "start", None)
        if callable(starter) and hasattr(source, "settings"):  # a Session
            starter()
        config = getattr(source, "config", {})
        as_dict = getattr(config, "as_dict", None)
        config = as_dict() if callable(as_dict) else config
    found = dict(config) if isinstance(config, Mapping) else {}
    return {**sweep_params(), **found}


def changes_for(target: Any, params: Mapping[str, Any]) -> dict[str, Any]:
    """The dataclass fields of ``target`` the sweep changes (``field -> cast value``)."""
    fields = {f.name for f in dataclasses.fields(target) if f.init}
    changes: dict[str, Any] = {}
    for key, value in params.items():
        if key not in fields or not isinstance(value, (bool, int, float, str)):
            continue
        current = getattr(target, key)
        value = cast_like(value, current)
        if value != current and not (hasattr(current, "value") and value == current.value):
            changes[key] = value
    return changes


def _apply(target: Any, values: Mapping[str, Any]) -> tuple[Any, set[str]]:
    if dataclasses.is_dataclass(target) and not isinstance(target, type):
        fields = {f.name for f in dataclasses.fields(target) if f.init}
        changes = changes_for(target, values)
        matched = {k for k in values if k in fields}
        return (dataclasses.replace(target, **changes) if changes else target), matched
    inner = getattr(target, "hparams", None)
    if inner is not None and not isinstance(target, Mapping) and _is_mapping_like(inner):
        _, matched = _apply(inner, values)
        return target, matched
    if _is_mapping_like(target):
        out = target if isinstance(target, MutableMapping) or hasattr(target, "__setitem__") else dict(target)
        matched = set()
        for key, value in values.items():
            if _contains(out, key):
                out[key] = cast_like(value, _get(out, key))
                matched.add(key)
        return out, matched
    matched = set()
    for key, value in values.items():
        current = getattr(target, key, _MISSING)
        if current is _MISSING or callable(current):
            continue
        try:
            setattr(target, key, cast_like(value, current))
        except (AttributeError, TypeError, ValueError):
            continue
        matched.add(key)
    return target, matched


_MISSING = object()


def _is_mapping_like(value: Any) -> bool:
    return isinstance(value, Mapping) or (
        hasattr(value, "__contains__") and hasattr(value, "__getitem__") and hasattr(value, "keys")
    )


def _contains(mapping: Any, key: str) -> bool:
    try:
        return bool(key in mapping)
    except TypeError:
        return False


def _get(mapping: Any, key: str) -> Any:
    try:
        return mapping[key]
    except (KeyError, TypeError):
        return None


def cast_like(value: Any, current: Any) -> Any:
    """``value`` converted to the type of ``current`` where that is lossless (``"3"`` -> 3 for an int field)."""
    if current is None or (isinstance(value, type(current)) and not isinstance(current, bool)):
        return value
    try:
        if isinstance(current, bool):
            if isinstance(value, str):
                return value.strip().lower() in ("1", "true", "yes", "on")
            return bool(value)
        if isinstance(current, int) and isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(current, float) and isinstance(value, (int, str)) and not isinstance(value, bool):
            return float(value)
        if isinstance(current, int) and isinstance(value, str):
            return int(value)
    except ValueError:
        return value
    return value


def _reset_for_tests() -> None:
    """Forget the parameters received (a new sweep run in the same process)."""
    global _cached
    with _lock:
        _cached = None


__all__ = ["apply_sweep", "cast_like", "changes_for", "read_param_file", "sweep_params"]
