"""Training health: which optimizer steps are measured, how parameters form groups, the key names.

Framework-agnostic policy (no torch, no framework, no wandb), key names included. The device
work lives in :mod:`wandb_bridge.adapters.torch_health`, which imports nothing of the core: it is
driven by the :class:`HealthPolicy` and the warn-once function handed to it. The callbacks only
call :func:`monitor` and the monitor's ``before_step`` / ``after_step``.

Keys (all under ``health/``, recorded in the row of their optimizer step,
``trainer/global_step``):

* ``health/grad_norm``: L2 norm of all gradients the optimizer steps with;
  ``health/grad_norm/<group>`` the same per group;
* ``health/weight_norm`` and ``health/weight_norm/<group>``: L2 norm of the
  weights after the step;
* ``health/update_ratio`` and ``health/update_ratio/<group>``:
  ``||W_after - W_before|| / ||W_before||`` for the step;
* ``health/nonfinite_grads``: number of NaN / inf gradient values;
* ``health/loss_scale``: the mixed-precision loss scale, when there is one;
* ``health/hist/grad/<group>`` and ``health/hist/weight/<group>``: histograms,
  every ``health_histograms`` steps when that is set.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from wandb_bridge.core.errors import OnceWarner

if TYPE_CHECKING:
    from wandb_bridge.core.settings import Settings

PREFIX = "health"
GRAD_NORM = f"{PREFIX}/grad_norm"
WEIGHT_NORM = f"{PREFIX}/weight_norm"
UPDATE_RATIO = f"{PREFIX}/update_ratio"
NONFINITE = f"{PREFIX}/nonfinite_grads"
LOSS_SCALE = f"{PREFIX}/loss_scale"
HIST_GRAD = f"{PREFIX}/hist/grad"
HIST_WEIGHT = f"{PREFIX}/hist/weight"

#: The default of ``health_every``.
DEFAULT_EVERY = 50

_SEPARATORS = re.compile(r"[./]")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]+")

#: What the monitor hands over on a health step: ``(step, keys, values, histograms)``;
#: ``values`` is one device tensor holding one number per key (read later, off the
#: training thread), ``histograms`` maps a key to the device tensors it is built from.
Sink = Callable[[int, Sequence[str], Any, Mapping[str, Any]], None]


@dataclass(frozen=True)
class HealthPolicy:
    """When health is measured and how parameter names become groups.

    Attributes:
        every: measure at optimizer steps that are multiples of this.
        groups: ``(pattern, group)`` pairs (fnmatch globs on parameter names), first
            match wins; parameters matching none count in the global figures only.
            None: one group per top-level module (see :meth:`group_names`).
        histograms: build histograms at optimizer steps that are multiples of this
            (None: never).
    """

    every: int = DEFAULT_EVERY
    groups: tuple[tuple[str, str], ...] | None = None
    histograms: int | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> HealthPolicy:
        """The policy of resolved settings (``health_every``, ``health_groups``, ``health_histograms``)."""
        groups = None if settings.health_groups is None else tuple(settings.health_groups.items())
        return cls(settings.health_every, groups, settings.health_histograms)

    def due(self, step: int) -> bool:
        """True when optimizer step ``step`` (steps completed after it) is measured."""
        return step > 0 and (step % self.every == 0 or self.histogram_due(step))

    def histogram_due(self, step: int) -> bool:
        """True when histograms are built at ``step``."""
        return self.histograms is not None and step > 0 and step % self.histograms == 0

    def group_names(self, names: Sequence[str]) -> list[str | None]:
        """The group of each parameter name (None: in no group).

        With a user mapping, the first matching pattern names the group. By
        default the dotted (or ``/``-separated) path components every name
        shares are skipped (``model.``, ``module.``, ``_orig_mod.``, a Keras
        model's own name) and the next component is the group: ``encoder``,
        ``decoder``, ``classifier``, ``0``, ``2``...
        """
        if self.groups is not None:
            return [self._match(name) for name in names]
        parts = [_SEPARATORS.split(name) for name in names]
        shared = _shared_depth(parts)
        return [safe_name(p[shared] if len(p) > shared else p[-1]) for p in parts]

    def keys(
        self, grad_groups: Iterable[str], weight_groups: Iterable[str], *, loss_scale: bool, rank: int | None
    ) -> list[str]:
        """The keys of one health vector (:func:`layout`); under ``health/rank-<r>/`` when ``rank`` is given."""
        keys = layout(grad_groups, weight_groups, loss_scale=loss_scale)
        return keys if rank is None else per_rank(keys, rank)

    def histogram_key(self, kind: Literal["grad", "weight"], group: str, rank: int | None) -> str:
        """``health/hist/grad/<group>`` or ``health/hist/weight/<group>``; per rank when ``rank`` is given."""
        key = f"{HIST_GRAD if kind == 'grad' else HIST_WEIGHT}/{group}"
        return key if rank is None else per_rank([key], rank)[0]

    def _match(self, name: str) -> str | None:
        assert self.groups is not None
        for pattern, group in self.groups:
            if fnmatch.fnmatchcase(name, pattern):
                return safe_name(group)
        return None


def _shared_depth(parts: Sequence[Sequence[str]]) -> int:
    """How many leading components all names share (never the last one of any name)."""
    if not parts:
        return 0
    limit = min(len(p) for p in parts) - 1
    depth = 0
    while depth < limit and all(p[depth] == parts[0][depth] for p in parts):
        depth += 1
    return depth


def safe_name(group: str) -> str:
    """A group name usable in a key (anything but letters, digits, ``_.-`` becomes ``_``)."""
    return _UNSAFE.sub("_", str(group)).strip("_") or "_"


def layout(grad_groups: Iterable[str], weight_groups: Iterable[str], *, loss_scale: bool) -> list[str]:
    """The keys of one health vector, in the order the values are stacked.

    ``[grad_norm, grad_norm/<g>..., weight_norm, weight_norm/<g>..., update_ratio,
    update_ratio/<g>..., nonfinite_grads, (loss_scale)]``.
    """
    grads, weights = list(grad_groups), list(weight_groups)
    keys = [GRAD_NORM, *(f"{GRAD_NORM}/{g}" for g in grads)]
    keys += [WEIGHT_NORM, *(f"{WEIGHT_NORM}/{g}" for g in weights)]
    keys += [UPDATE_RATIO, *(f"{UPDATE_RATIO}/{g}" for g in weights)]
    keys.append(NONFINITE)
    if loss_scale:
        keys.append(LOSS_SCALE)
    return keys


def per_rank(keys: Sequence[str], rank: int) -> list[str]:
    """Keys of figures that hold one rank's shards only: ``health/rank-<r>/...``."""
    return [f"{PREFIX}/rank-{rank}/{k[len(PREFIX) + 1 :]}" for k in keys]


def validate(
    log_health: object, every: object, groups: object, histograms: object
) -> tuple[bool, int, dict[str, str] | None, int | None]:
    """Check the health settings (``Settings.resolve`` calls this).

    Returns:
        ``(log_health, health_every, health_groups, health_histograms)``.

    Raises:
        ValueError: a value is not allowed (the message says which and why).
    """
    if log_health is None:
        log_health = False
    if not isinstance(log_health, bool):
        raise ValueError(f"log_health must be True or False, got {log_health!r}")
    if every is None:
        every = DEFAULT_EVERY
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ValueError(f"health_every must be an int >= 1 (optimizer steps), got {every!r}")
    if histograms is not None and (isinstance(histograms, bool) or not isinstance(histograms, int) or histograms < 1):
        raise ValueError(f"health_histograms must be None or an int >= 1 (optimizer steps), got {histograms!r}")
    mapping: dict[str, str] | None = None
    if groups is not None:
        if not isinstance(groups, Mapping) or not groups:
            raise ValueError(
                "health_groups must be a non-empty mapping of parameter-name patterns to group names, "
                f'e.g. {{"encoder.*": "encoder"}}, got {groups!r}'
            )
        mapping = {}
        for pattern, group in groups.items():
            if not isinstance(pattern, str) or not isinstance(group, str) or not pattern or not group:
                raise ValueError(f"health_groups entries must be non-empty strings, got {pattern!r}: {group!r}")
            mapping[pattern] = group
    return log_health, every, mapping, histograms


def monitor(settings: Settings, sink: Sink | None, *, owner: str = "wandb-bridge") -> Any:
    """A torch health monitor for these settings, or None when ``log_health`` is off.

    Args:
        settings: resolved settings.
        sink: where a health step's values go (a session's :meth:`hand_over_health`);
            None on a process that records nothing (it still takes part in the
            reduction of sharded parameters).
        owner: the caller's name, for warnings.

    Returns:
        A :class:`~wandb_bridge.adapters.torch_health.TorchHealth`, or None.
    """
    if not settings.log_health or settings.disabled:
        return None
    from wandb_bridge.adapters.torch_health import TorchHealth

    return TorchHealth(HealthPolicy.from_settings(settings), sink, warn=OnceWarner().warn, owner=owner)
