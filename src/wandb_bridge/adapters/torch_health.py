"""Training health on torch tensors: fused on-device norms, read back off the training thread.

On a health step (which steps, which groups and the key names are the core's
policy, handed in: :class:`~wandb_bridge.core.health.HealthPolicy` fits :class:`Policy`) the
monitor runs a handful of fused kernels (``torch._foreach_norm`` over all
gradients and weights, one ``index_add_`` per figure to sum them per group)
and hands ONE stacked device tensor to the session; the session's worker
reads it with one transfer. Nothing here calls ``.item()``, ``.tolist()``,
``.cpu()`` or branches on a tensor's value, so the training thread never waits
for the device. Between health steps ``before_step`` / ``after_step`` return
after one integer test.

Sharded parameters: DTensor parameters (FSDP2 ``fully_shard``, tensor
parallel) are measured on their local shards and reduced once per health step
with one ``all_reduce`` of the stacked squared sums (replicated placements
count once), so the figures are the true global ones; every rank must then
call the monitor (the framework callbacks do). Parameters of the older
``FullyShardedDataParallel`` wrapper are flat shards: their figures are per
rank and recorded under ``health/rank-<r>/...``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import torch

Named = Sequence[tuple[str, Any]]
#: Receives ``(step, keys, values, histograms)`` on a health step.
HealthSink = Callable[[int, Sequence[str], Any, Mapping[str, Any]], None]
#: Bins of the histograms (as ``wandb.watch``).
HISTOGRAM_BINS = 64


class Policy(Protocol):
    """What the monitor asks of the policy that drives it (the core's ``HealthPolicy``)."""

    def due(self, step: int) -> bool:
        """True when optimizer step ``step`` is measured."""
        ...

    def histogram_due(self, step: int) -> bool:
        """True when histograms are built at ``step``."""
        ...

    def group_names(self, names: Sequence[str]) -> list[str | None]:
        """The group of each parameter name (None: in no group)."""
        ...

    def keys(
        self, grad_groups: Iterable[str], weight_groups: Iterable[str], *, loss_scale: bool, rank: int | None
    ) -> list[str]:
        """The keys of one health vector, in the order the values are stacked (``rank``: per-rank figures)."""
        ...

    def histogram_key(self, kind: Literal["grad", "weight"], group: str, rank: int | None) -> str:
        """The key of one group's histogram."""
        ...


@dataclass
class _Layout:
    """What is fixed for one set of parameters: names, groups, index tensors on the device."""

    names: tuple[str, ...]
    groups: list[str]  # group names, in order of first appearance
    index: list[int]  # group index per parameter (-1: in no group)
    replica: list[bool]  # False: a replicated DTensor copy that must not count again
    sizes: list[int]  # elements per parameter (global for a DTensor, this rank's for a flat shard)
    sharded: bool  # DTensor parameters: reduce across ranks
    per_rank: bool  # flat shards (FSDP1): per-rank figures
    device_index: dict[Any, Any] = field(default_factory=dict)

    def index_on(self, device: Any, rows: tuple[int, ...]) -> Any:
        """The group indexes of the parameters ``rows``, as a device tensor (built once)."""
        key = (device, rows)
        found = self.device_index.get(key)
        if found is None:
            found = _on_device([max(self.index[r], 0) for r in rows], torch.long, device)
            self.device_index[key] = found
        return found

    def select(self, tensor: Any, positions: Sequence[int]) -> Any:
        """``tensor[positions]`` with an index tensor built once per device (no host-to-device copy later)."""
        positions = tuple(positions)
        if positions == tuple(range(tensor.shape[0])):
            return tensor
        key = (tensor.device, ("select", *positions))
        found = self.device_index.get(key)
        if found is None:
            found = _on_device(list(positions), torch.long, tensor.device)
            self.device_index[key] = found
        return tensor.index_select(0, found)


def _on_device(values: list[Any], dtype: Any, device: Any) -> Any:
    """A small tensor of ``values`` on ``device``, copied without making the host wait (pinned, non-blocking)."""
    host = torch.tensor(values, dtype=dtype)
    if device.type == "cuda":
        return host.pin_memory().to(device, non_blocking=True)
    return host.to(device)


@dataclass
class _Pending:
    """A health step between ``before_step`` and ``after_step``."""

    step: int
    fetch: Callable[[], Named]
    layout: _Layout
    grad_rows: tuple[int, ...]
    grad_sq: Any  # [total, per group...] squared sums (device)
    nonfinite: Any  # 0-d count (device)
    before: list[Any]  # copies of the local weights
    loss_scale: Any
    histograms: dict[str, Any]


class TorchHealth:
    """Gradient and weight statistics of a torch model at chosen optimizer steps.

    Call :meth:`before_step` right before ``optimizer.step()`` (gradients final:
    accumulated, unscaled) and :meth:`after_step` right after it. On steps the
    policy does not pick both return at once.

    Args:
        policy: which steps, which groups, histograms, and the key names.
        sink: receives ``(step, keys, values, histograms)`` on a health step;
            None records nothing (a rank that only takes part in the reduction).
        warn: ``warn(key, message)`` emits a warning once per key.
        owner: the caller's name, for warnings.
    """

    def __init__(
        self,
        policy: Policy,
        sink: HealthSink | None,
        *,
        warn: Callable[[str, str], object],
        owner: str = "wandb-bridge",
    ) -> None:
        self.policy = policy
        self._sink = sink
        self._owner = owner
        self._warn = warn
        self._layouts: dict[tuple[str, ...], _Layout] = {}
        self._pending: _Pending | None = None
        self.steps_measured = 0

    def due(self, step: int) -> bool:
        """True when ``step`` is a health step."""
        return self.policy.due(step)

    # ------------------------------------------------------------- the hooks

    def before_step(
        self,
        step: int,
        model: Any,
        *,
        grads: Sequence[Any | None] | None = None,
        scaler: Any = None,
        optimizer: Any = None,
        weights_before: Sequence[Any] | None = None,
    ) -> None:
        """Measure the gradients of optimizer step ``step`` and keep a copy of the weights.

        Args:
            step: the optimizer step being taken (steps completed once it is done).
            model: a ``torch.nn.Module`` (its trainable parameters), or a callable
                returning ``(name, parameter)`` pairs, or such a sequence.
            grads: the gradients, one per parameter (None: each parameter's ``.grad``).
            scaler: a ``torch.amp.GradScaler`` (its scale is recorded when enabled)
                or a number / tensor holding the loss scale.
            optimizer: the optimizer about to step; with a ``GradScaler`` that has
                not unscaled its gradients yet (``scaler.unscale_(optimizer)`` not
                called), the figures are divided by the scale, so they are the
                gradients' true values either way.
            weights_before: copies of the weights before the update, one per
                parameter, when the caller made them earlier (Keras: the update
                already happened); they are used up.
        """
        if not self.policy.due(step):
            return
        self._pending = None
        fetch = _fetcher(model)
        named = fetch()
        if not named:
            return
        with torch.no_grad():
            self._pending = self._measure_grads(step, fetch, named, grads, scaler, optimizer, weights_before)

    def after_step(self) -> None:
        """Measure the weights after the step and hand the health vector over."""
        pending, self._pending = self._pending, None
        if pending is None:
            return
        with torch.no_grad():
            keys, vector, hists = self._finish(pending)
        self.steps_measured += 1
        if self._sink is not None:
            self._sink(pending.step, keys, vector, hists)

    # ---------------------------------------------------------- computation

    def _layout(self, named: Named) -> _Layout:
        names = tuple(name for name, _ in named)
        layout = self._layouts.get(names)
        if layout is not None:
            return layout
        group_of = self.policy.group_names(names)
        groups: list[str] = []
        index: list[int] = []
        for group in group_of:
            if group is None:
                index.append(-1)
                continue
            if group not in groups:
                groups.append(group)
            index.append(groups.index(group))
        replica: list[bool] = []
        sharded = per_rank = False
        for name, param in named:
            counted, is_dtensor = _counts(param)
            replica.append(counted)
            sharded = sharded or is_dtensor
            per_rank = per_rank or "_flat_param" in name or "_fsdp_wrapped_module" in name
        if sharded and not _world_reduce_possible(named):
            per_rank, sharded = True, False
        if per_rank:
            self._warn(
                "per-rank",
                f"{self._owner}: these parameters are shards this process cannot reduce to a global norm "
                "(FullyShardedDataParallel flat parameters, or a device mesh that is not the whole job); "
                "health figures are per rank, under health/rank-<r>/.",
            )
        sizes = [int(param.numel()) for _, param in named]
        layout = _Layout(names, groups, index, replica, sizes, sharded, per_rank)
        self._layouts[names] = layout
        return layout

    def _measure_grads(
        self,
        step: int,
        fetch: Callable[[], Named],
        named: Named,
        grads: Sequence[Any | None] | None,
        scaler: Any,
        optimizer: Any,
        weights_before: Sequence[Any] | None,
    ) -> _Pending | None:
        layout = self._layout(named)
        if grads is None:
            grads = [param.grad for _, param in named]
        rows = tuple(i for i, g in enumerate(grads) if g is not None)
        weights = [_local(param) for _, param in named]
        device = weights[0].device
        dtype = _accumulation_dtype(device)
        n_groups = len(layout.groups)
        if rows:
            local_grads = [_local(grads[i]) for i in rows]
            norms = torch._foreach_norm(local_grads, 2, dtype=torch.float32)
            sq = _stack_on(norms, device, dtype).square()
            sq = sq * _replica_mask(layout, rows, device, dtype)
            grad_sq = _group_sums(sq, layout, rows, device, dtype, n_groups)
            nonfinite = _stack_on([(~torch.isfinite(g)).sum() for g in local_grads], device, dtype).sum()
        else:
            grad_sq = torch.zeros(n_groups + 1, dtype=dtype, device=device)
            nonfinite = torch.zeros((), dtype=dtype, device=device)
        hists: dict[str, Any] = {}
        if self.policy.histogram_due(step) and rows:
            hists.update(self._group_values("grad", [_local(grads[i]) for i in rows], rows, layout))
        inverse = _pending_unscale(scaler, optimizer, device, dtype)
        if inverse is not None:  # the gradients still hold loss * scale: report the true ones
            grad_sq = grad_sq * inverse.square()
            hists = {key: values * inverse.to(values.dtype) for key, values in hists.items()}
        return _Pending(
            step=step,
            fetch=fetch,
            layout=layout,
            grad_rows=rows,
            grad_sq=grad_sq,
            nonfinite=nonfinite,
            before=list(torch._foreach_mul(weights, 1.0))
            if weights_before is None
            else [_local(w) for w in weights_before],
            loss_scale=_loss_scale(scaler, device, dtype),
            histograms=hists,
        )

    def _finish(self, pending: _Pending) -> tuple[list[str], Any, dict[str, Any]]:
        layout = pending.layout
        named = pending.fetch()
        if tuple(name for name, _ in named) != layout.names:
            named = []  # the model changed between the two hooks: no update ratio this time
        device = pending.grad_sq.device
        dtype = pending.grad_sq.dtype
        n_groups = len(layout.groups)
        all_rows = tuple(range(len(layout.names)))
        mask = _replica_mask(layout, all_rows, device, dtype)
        before = pending.before
        after = [_local(param) for _, param in named] if named else before
        before_sq = _stack_on(torch._foreach_norm(before, 2, dtype=torch.float32), device, dtype).square() * mask
        after_sq = _stack_on(torch._foreach_norm(after, 2, dtype=torch.float32), device, dtype).square() * mask
        torch._foreach_sub_(before, after)  # the copies become -(update)
        delta_sq = _stack_on(torch._foreach_norm(before, 2, dtype=torch.float32), device, dtype).square() * mask
        sums = torch.cat(
            [
                pending.grad_sq,
                _group_sums(after_sq, layout, all_rows, device, dtype, n_groups),
                _group_sums(before_sq, layout, all_rows, device, dtype, n_groups),
                _group_sums(delta_sq, layout, all_rows, device, dtype, n_groups),
                pending.nonfinite.reshape(1),
            ]
        )
        if layout.sharded:
            torch.distributed.all_reduce(sums)
        width = n_groups + 1
        grad_norm = sums[:width].sqrt()
        weight_norm = sums[width : 2 * width].sqrt()
        before_norm = sums[2 * width : 3 * width].sqrt()
        update_norm = sums[3 * width : 4 * width].sqrt()
        ratio = update_norm / before_norm
        present = _groups_with(layout, pending.grad_rows)
        # Groups holding no element (an FSDP rank's empty shards) get no weight figures: 0/0 is no ratio.
        sized = _groups_with(layout, tuple(r for r in all_rows if layout.sizes[r] > 0))
        weights_at = [0, *(g + 1 for g in sized)]
        parts = [
            layout.select(grad_norm, [0, *(g + 1 for g in present)]),
            layout.select(weight_norm, weights_at),
            layout.select(ratio, weights_at),
            sums[-1:],
        ]
        if pending.loss_scale is not None:
            parts.append(pending.loss_scale.reshape(1))
        vector = torch.cat(parts)
        keys = self.policy.keys(
            (layout.groups[g] for g in present),
            (layout.groups[g] for g in sized),
            loss_scale=pending.loss_scale is not None,
            rank=_rank(layout),
        )
        hists = dict(pending.histograms)
        if self.policy.histogram_due(pending.step):
            hists.update(self._group_values("weight", after, all_rows, layout))
        return keys, vector, hists

    def _group_values(
        self, kind: Literal["grad", "weight"], tensors: Sequence[Any], rows: tuple[int, ...], layout: _Layout
    ) -> dict[str, Any]:
        """One flat copy of the values of each group (for histograms, built by the worker)."""
        members: dict[int, list[Any]] = {}
        for tensor, row in zip(tensors, rows, strict=True):
            group = layout.index[row]
            if group >= 0 and tensor.numel():
                members.setdefault(group, []).append(tensor.reshape(-1))
        rank = _rank(layout)
        return {
            self.policy.histogram_key(kind, layout.groups[g], rank): torch.cat(parts)
            for g, parts in sorted(members.items())
        }


# ------------------------------------------------------------- the reading


def read(values: Any, histograms: Mapping[str, Any]) -> tuple[list[float], dict[str, tuple[Any, Any]]]:
    """Read a health vector and build its histograms (the worker calls this, off the training thread).

    Returns:
        The numbers (one transfer), and ``key -> (counts, bin_edges)`` numpy
        histograms of the finite values.
    """
    import numpy as np

    numbers = [float(v) for v in values.detach().to(torch.float64).cpu().tolist()]
    hists: dict[str, tuple[Any, Any]] = {}
    for key, tensor in histograms.items():
        array = tensor.detach().to(torch.float32).cpu().numpy()
        array = array[np.isfinite(array)]
        if array.size:
            hists[key] = np.histogram(array, bins=HISTOGRAM_BINS)
    return numbers, hists


# --------------------------------------------------------------- helpers


def _fetcher(model: Any) -> Callable[[], Named]:
    if isinstance(model, torch.nn.Module):
        return lambda: [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if callable(model):
        return lambda: list(model())
    fixed = list(model)
    return lambda: fixed


def _local(tensor: Any) -> Any:
    """The local shard of a DTensor, the tensor itself otherwise (always detached)."""
    to_local = getattr(tensor, "to_local", None)
    if to_local is not None and hasattr(tensor, "placements"):
        return to_local().detach()
    return tensor.detach()


def _counts(param: Any) -> tuple[bool, bool]:
    """``(counts on this rank, is a DTensor)``: a replicated placement counts on mesh coordinate 0 only."""
    placements = getattr(param, "placements", None)
    if placements is None or not hasattr(param, "device_mesh"):
        return True, False
    coordinate = param.device_mesh.get_coordinate() or [0] * len(placements)
    for dim, placement in enumerate(placements):
        if placement.is_replicate() and coordinate[dim] != 0:
            return False, True
    return True, True


def _world_reduce_possible(named: Named) -> bool:
    """True when every DTensor lives on a mesh that spans the whole job (one all_reduce is right)."""
    if not torch.distributed.is_available() or not torch.distributed.is_initialized():
        return False
    world = torch.distributed.get_world_size()
    for _, param in named:
        mesh = getattr(param, "device_mesh", None)
        placements = getattr(param, "placements", ())
        if mesh is None:
            continue
        if mesh.size() != world or any(p.is_partial() for p in placements):
            return False
    return True


def _accumulation_dtype(device: Any) -> Any:
    return torch.float32 if device.type == "mps" else torch.float64


def _stack_on(tensors: Iterable[Any], device: Any, dtype: Any) -> Any:
    """One 1-D tensor of 0-d values on ``device`` (a single stack when they share a device)."""
    values = list(tensors)
    if all(t.device == device for t in values):
        return torch.stack(values).reshape(-1).to(dtype)
    return torch.stack([t.reshape(()).to(device=device, dtype=dtype, non_blocking=True) for t in values])


def _replica_mask(layout: _Layout, rows: tuple[int, ...], device: Any, dtype: Any) -> Any:
    if all(layout.replica[r] for r in rows):
        return torch.ones((), dtype=dtype, device=device)
    key = (device, ("mask", *rows))
    found = layout.device_index.get(key)
    if found is None:
        found = _on_device([1.0 if layout.replica[r] else 0.0 for r in rows], dtype, device)
        layout.device_index[key] = found
    return found


def _group_sums(sq: Any, layout: _Layout, rows: tuple[int, ...], device: Any, dtype: Any, n_groups: int) -> Any:
    """``[total, group 0, group 1, ...]`` of per-parameter squared norms (one index_add_)."""
    groups = torch.zeros(n_groups, dtype=dtype, device=device)
    in_group = tuple(i for i, r in enumerate(rows) if layout.index[r] >= 0)
    if n_groups and in_group:
        values = sq if len(in_group) == len(rows) else layout.select(sq, in_group)
        groups.index_add_(0, layout.index_on(device, tuple(rows[i] for i in in_group)), values)
    return torch.cat([sq.sum().reshape(1), groups])


def _groups_with(layout: _Layout, rows: tuple[int, ...]) -> list[int]:
    present = {layout.index[r] for r in rows if layout.index[r] >= 0}
    return sorted(present)


def _rank(layout: _Layout) -> int | None:
    """This process's rank when the layout's figures are per rank (flat shards), else None."""
    if not layout.per_rank:
        return None
    return torch.distributed.get_rank() if torch.distributed.is_initialized() else 0


def _pending_unscale(scaler: Any, optimizer: Any, device: Any, dtype: Any) -> Any:
    """``1 / scale`` (device tensor) when ``scaler`` has not unscaled ``optimizer``'s gradients yet, else None."""
    states = getattr(scaler, "_per_optimizer_states", None)
    if optimizer is None or not isinstance(states, Mapping) or not scaler.is_enabled():
        return None
    stage = states.get(id(optimizer), {}).get("stage")
    if getattr(stage, "name", None) == "UNSCALED":
        return None
    scale = getattr(scaler, "_scale", None)
    if not isinstance(scale, torch.Tensor):
        return None
    return scale.detach().reshape(()).to(device=device, dtype=dtype, non_blocking=True).reciprocal()


def _loss_scale(scaler: Any, device: Any, dtype: Any) -> Any:
    if scaler is None:
        return None
    if isinstance(scaler, (int, float)):
        return torch.full((), float(scaler), dtype=dtype, device=device)  # a fill kernel, no copy
    if isinstance(scaler, torch.Tensor):
        return scaler.detach().reshape(()).to(device=device, dtype=dtype, non_blocking=True)
    enabled = getattr(scaler, "is_enabled", None)
    if enabled is not None and not enabled():
        return None
    scale = getattr(scaler, "_scale", None)  # the device tensor behind get_scale(), read without a sync
    if isinstance(scale, torch.Tensor):
        return scale.detach().reshape(()).to(device=device, dtype=dtype, non_blocking=True)
    return None


__all__ = ["HISTOGRAM_BINS", "TorchHealth", "read"]
