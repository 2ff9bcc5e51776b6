"""``keep_checkpoints=N``: delete old checkpoint versions through the public ``wandb.Api``.

This module never imports wandb: it is handed the public API object
(``wandb.Api()``, from :meth:`~wandb_bridge.adapters.wandb_sdk.RunHandle.public_api`)
and uses only its public calls: ``api.artifacts(type_name, name)``, and on each
version ``.version``, ``.aliases``, ``.used_by()`` and ``.delete(delete_aliases=True)``
(only once no alias but ``step-<S>``/``epoch-<E>`` is left on it).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

# Aliases every version gets from the checkpoint policy: they do not protect a version.
_AUTOMATIC = re.compile(r"^(?:step-\d+|epoch-\d+|v\d+)$")


def protective(aliases: Iterable[str]) -> list[str]:
    """The aliases that keep a version: all but ``step-<S>``, ``epoch-<E>`` and ``v<N>``.

    ``latest``, ``best`` and the user's own aliases protect a version.
    """
    return [a for a in aliases if not _AUTOMATIC.match(str(a))]


@dataclass
class Pruned:
    """What one retention pass did."""

    deleted: list[str] = field(default_factory=list)
    kept_aliased: list[str] = field(default_factory=list)
    kept_used: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)


def prune(api: Any, path: str, keep: int, *, run_id: str | None, kind: str = "model", pending: int = 0) -> Pruned:
    """Delete the versions of ``path`` beyond the newest ``keep`` that hold no protective alias.

    Args:
        api: the public ``wandb.Api()`` (or an object with the same calls).
        path: ``"entity/project/name"`` of the artifact collection.
        keep: how many of the newest versions to keep whatever their aliases.
        run_id: this run; a version another run used (``used_by()``) is never deleted.
        kind: the artifact type.
        pending: versions this run logged that the server may not list yet
            (still uploading); they count among the newest.

    Returns:
        The versions deleted, and those kept beyond ``keep`` (aliased, used by
        another run) or that could not be deleted.
    """
    out = Pruned()
    versions = sorted(api.artifacts(kind, path), key=_version_number, reverse=True)
    for artifact in versions[max(0, keep - pending) :]:
        label = f"{path}:{artifact.version}"
        if protective(artifact.aliases):
            out.kept_aliased.append(label)
            continue
        try:
            users = [getattr(run, "id", None) for run in artifact.used_by()]
            if any(user != run_id for user in users):
                out.kept_used.append(label)
                continue
            # Its remaining aliases are our step-/epoch- ones: the server refuses to delete
            # a version with aliases unless they go with it.
            artifact.delete(delete_aliases=True)
        except Exception as exc:  # a server error: keep the version, report it
            out.failed.append((label, repr(exc)))
            continue
        out.deleted.append(label)
    return out


def _version_number(artifact: Any) -> int:
    text = str(getattr(artifact, "version", "v-1"))
    try:
        return int(text.lstrip("v"))
    except ValueError:
        return -1
