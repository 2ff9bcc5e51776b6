"""Config capture: extract an object's values, count parameters, flatten with ``/``, make JSON-safe, redact secrets,
cap the size, and the rule that the user's ``config=`` wins over what a framework callback extracted.

The config-extraction interface every callback (and ``Settings``) uses:

- :func:`config_of` (an object -> a dict): a mapping, ``argparse``/jsonargparse ``Namespace``, dataclass, or an
  object with ``as_dict()``/``to_dict()``/attributes.
- :func:`count_parameters` (``(size or shape, trainable)`` pairs -> :class:`ParameterCounts`): no framework needed.
- :func:`extracted_config` (extracted values, the user's ``config=``) -> the flat values to pass to
  ``Session.log_config``: every key the user set is left out, so the user's value stays in the run config.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import PurePath
from typing import Any, NamedTuple

REDACTED = "<redacted>"
MAX_CONFIG_BYTES = 1_000_000
MAX_VALUE_CHARS = 10_000
MAX_TAG_LENGTH = 64
MAX_TAGS = 100

_SECRET_KEY = re.compile(
    r"token|secret|passw(or)?d|passwd|api_?key|apikey|private_?key|credential|auth_?key",
    re.IGNORECASE,
)
# Keys that contain "token" but name no secret (a tokenizer, a token count or id).
_NOT_SECRET_KEY = re.compile(r"(^|[/._])tokeni[sz]er|token_?ids?$|_tokens?_id$|tokens_seen$", re.IGNORECASE)
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.\-]*://)(?P<user>[^:/@\s]+):(?P<pw>[^@/\s]+)@")
# Environment variables whose values are secrets wherever they turn up.
_SECRET_ENV = ("WANDB_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HUGGINGFACE_TOKEN")


def is_secret_key(key: str) -> bool:
    """True when a config key's name says its value is a secret."""
    last = key.rsplit("/", 1)[-1]
    return bool(_SECRET_KEY.search(last)) and not _NOT_SECRET_KEY.search(last)


def redact_text(text: str, secrets: Sequence[str] = ()) -> str:
    """Remove URL credentials and known secret values from a string."""
    if "@" in text and "://" in text:
        text = _URL_CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:{REDACTED}@", text)
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, REDACTED)
    return text


def known_secrets(environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """Values of well-known secret environment variables (at least 8 characters)."""
    env = os.environ if environ is None else environ
    return tuple(v for name in _SECRET_ENV if len(v := env.get(name, "")) >= 8)


def to_json_safe(value: Any, _seen: set[int] | None = None) -> Any:
    """Convert ``value`` to plain JSON types (dict, list, str, int, float, bool, None).

    Paths, enums, dtypes, sets and callables become strings; dataclasses and
    objects with ``to_dict()`` become dicts; cycles become ``"<cycle>"``.
    Non-finite floats stay floats (wandb records them).
    """
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value
    seen = set() if _seen is None else _seen
    if id(value) in seen:
        return "<cycle>"
    if isinstance(value, enum.Enum):
        return to_json_safe(value.value, seen) if isinstance(value.value, (str, int, float)) else value.name
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "size", getattr(value, "numel", lambda: 2)) in (1,):
        try:
            return to_json_safe(item(), seen)
        except (TypeError, ValueError):
            pass
    seen.add(id(value))
    try:
        if isinstance(value, Mapping):
            return {str(k): to_json_safe(v, seen) for k, v in value.items()}
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {f.name: to_json_safe(getattr(value, f.name), seen) for f in dataclasses.fields(value)}
        if isinstance(value, (list, tuple)):
            return [to_json_safe(v, seen) for v in value]
        if isinstance(value, (set, frozenset)):
            return sorted((to_json_safe(v, seen) for v in value), key=repr)
        to_dict = getattr(value, "to_dict", None)
        if callable(to_dict) and not isinstance(value, type):
            try:
                return to_json_safe(to_dict(), seen)
            except Exception:  # a broken to_dict() must not break config capture
                pass
    finally:
        seen.discard(id(value))
    if callable(value):
        return getattr(value, "__qualname__", None) or repr(value)
    return str(value)


def flatten(config: Mapping[str, Any], parent: str = "", sep: str = "/") -> dict[str, Any]:
    """Flatten nested mappings into ``{"a/b": value}``; lists stay values."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{parent}{sep}{key}" if parent else str(key)
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, name, sep))
        else:
            flat[name] = value
    return flat


def redact(flat: Mapping[str, Any], secrets: Sequence[str] = ()) -> dict[str, Any]:
    """Replace secret values of a flat config with ``"<redacted>"``.

    A value is secret when its key matches ``*token*``, ``*secret*``,
    ``*password*`` or ``*api_key*`` (numbers, bools and None are kept: token ids
    and counts are not secrets), or when it holds a known secret value or URL
    credentials.
    """
    out: dict[str, Any] = {}
    for key, value in flat.items():
        if is_secret_key(key) and value not in (None, "") and not isinstance(value, (bool, int, float)):
            out[key] = REDACTED
        else:
            out[key] = _redact_value(value, secrets)
    return out


def _redact_value(value: Any, secrets: Sequence[str]) -> Any:
    if isinstance(value, str):
        return redact_text(value, secrets)
    if isinstance(value, list):
        return [_redact_value(v, secrets) for v in value]
    if isinstance(value, dict):
        return {
            k: REDACTED if is_secret_key(k) and isinstance(v, str) and v else _redact_value(v, secrets)
            for k, v in value.items()
        }
    return value


def prepare_config(
    config: Mapping[str, Any], secrets: Sequence[str] | None = None, max_bytes: int = MAX_CONFIG_BYTES
) -> tuple[dict[str, Any], list[str]]:
    """Flatten, make JSON-safe, redact and size-cap a config for ``run.config``.

    Args:
        config: any mapping (nested, with non-JSON values).
        secrets: secret values to scrub wherever they appear (defaults to the
            values of well-known secret environment variables).
        max_bytes: the size the JSON of the whole config may reach; over it the
            largest values are replaced by a ``"<truncated: N chars>"`` note.

    Returns:
        The flat config and a list of human-readable notes about what was
        truncated (empty when nothing was).
    """
    secrets = known_secrets() if secrets is None else secrets
    safe = to_json_safe(dict(config))
    flat = redact(flatten(safe), secrets)
    notes: list[str] = []
    sizes = {k: len(json.dumps(v, default=str)) for k, v in flat.items()}
    for key, size in sizes.items():
        if size > MAX_VALUE_CHARS:
            flat[key] = f"<truncated: {size} chars>"
            sizes[key] = 40
            notes.append(key)
    total = sum(sizes.values()) + sum(len(k) + 4 for k in sizes)
    if total > max_bytes:
        for key in sorted(sizes, key=sizes.__getitem__, reverse=True):
            if total <= max_bytes:
                break
            total -= sizes[key] + len(key) + 4
            del flat[key]
            notes.append(key)
    return flat, notes


def clean_tags(tags: Sequence[str]) -> tuple[tuple[str, ...], list[str]]:
    """Cap tags at 64 characters and 100 tags, dropping duplicates.

    Returns:
        The tags to use and notes on what was changed.
    """
    out: list[str] = []
    notes: list[str] = []
    for tag in tags:
        text = str(tag)
        if len(text) > MAX_TAG_LENGTH:
            notes.append(f"tag {text[:20]!r}... cut to {MAX_TAG_LENGTH} characters")
            text = text[:MAX_TAG_LENGTH]
        if text and text not in out:
            out.append(text)
    if len(out) > MAX_TAGS:
        notes.append(f"{len(out)} tags given, kept the first {MAX_TAGS}")
        out = out[:MAX_TAGS]
    return tuple(out), notes


# ------------------------------------------------------------ config extraction


def config_of(value: Any, *, fallback_key: str | None = None) -> dict[str, Any]:
    """The values of a config-like object as a (shallow) dict.

    Tried in this order: ``as_dict()`` (jsonargparse ``Namespace``), a mapping
    (``dict``, Lightning's ``AttributeDict``), ``to_dict()`` (``TrainingArguments``,
    a transformers ``PretrainedConfig``), a dataclass's fields, an object's
    attributes (``argparse.Namespace``, a plain object).

    Args:
        value: the object.
        fallback_key: for a value without attributes (a number, a string...):
            ``{fallback_key: value}``; None raises instead.

    Returns:
        A new dict (nested values are kept as they are; :func:`prepare_config`
        flattens them).

    Raises:
        ValueError: ``value`` has no values to read and ``fallback_key`` is None.
    """
    as_dict = getattr(value, "as_dict", None)
    if callable(as_dict) and not isinstance(value, type):
        return dict(as_dict())
    if isinstance(value, Mapping):
        return dict(value)
    to_dict = getattr(value, "to_dict", None)
    if callable(to_dict) and not isinstance(value, type):
        return dict(to_dict())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if hasattr(value, "__dict__"):
        return dict(vars(value))
    if fallback_key is not None:
        return {fallback_key: value}
    raise ValueError(f"config must be a mapping or an object with attributes, got {value!r}")


class ParameterCounts(NamedTuple):
    """How many parameters a model has, and how many of them are trained."""

    total: int
    trainable: int

    @property
    def non_trainable(self) -> int:
        """The parameters that are not trained (frozen weights, buffers held as weights)."""
        return self.total - self.trainable


def count_parameters(parameters: Iterable[tuple[int | Sequence[int], bool]]) -> ParameterCounts:
    """Count parameters from ``(size, trainable)`` pairs, with no framework imported.

    Args:
        parameters: one pair per weight tensor: its number of elements (or its
            shape, whose product is taken) and whether it is trained.

    Returns:
        The total and the trainable count.
    """
    total = trainable = 0
    for size, trained in parameters:
        count = size if isinstance(size, int) else _product(size)
        total += count
        if trained:
            trainable += count
    return ParameterCounts(total, trainable)


def _product(shape: Sequence[int]) -> int:
    count = 1
    for dim in shape:
        count *= int(dim)
    return count


def extracted_config(extracted: Mapping[str, Any], user: Mapping[str, Any] | None) -> dict[str, Any]:
    """What a callback extracted, ready for ``Session.log_config``, without the keys the user set.

    The rule, in one place: the user's ``config=`` always wins. The session
    records the user's config when the run starts; values a framework callback
    reads later (``TrainingArguments``, hparams, ``fit`` arguments, model facts)
    never overwrite a key the user gave. Keys are compared flat (``model/lr``
    in the user's config covers ``{"model": {"lr": ...}}`` extracted).

    Args:
        extracted: the values a callback read from the framework (nested or flat).
        user: the user's ``config=`` (``Settings.config``), or None.

    Returns:
        The flat, JSON-safe extracted values minus the user's keys (the session
        redacts and size-caps them, as every config it records).
    """
    flat = flatten(to_json_safe(dict(extracted)))
    if not user:
        return flat
    given = flatten(to_json_safe(dict(user)))
    return {key: value for key, value in flat.items() if key not in given}
