"""Run markers: which W&B run wrote a checkpoint, kept in a small JSON file beside it.

Every checkpoint (a file such as Lightning's ``last.ckpt`` or Keras's
``ckpt-03.keras``, or a folder such as transformers' ``checkpoint-40/``) gets an
entry, keyed by its name, in ``_wandb-bridge-runs.json`` in the folder that holds
it. The index lives beside the checkpoints, never inside a checkpoint folder, so
it is part of no checkpoint payload, and its name matches none of the
frameworks' checkpoint discovery (Lightning's ``*last*`` files and ``*.ckpt``,
transformers' ``checkpoint-*`` rotation, Keras ``ModelCheckpoint`` templates);
the leading ``_`` keeps it out of ``Trainer.push_to_hub`` (which skips ``_*``)::

    {"format": 1,
     "checkpoints": {"last.ckpt": {"run_id": "ab12cd34", "project": "demo", "entity": null,
                                   "group": null, "step": 40, "epoch": 2, "framework": "lightning",
                                   "wandb_bridge_version": "0.1.0", "size": 1234}},
     "runs": {"ab12cd34": {"last_logged_step": 47, "wandb_steps": {"40": 39}}}}

``runs[<id>].last_logged_step`` is the highest step the run recorded: updated
when a checkpoint is reported, on SIGTERM and when the run finishes.
``runs[<id>].wandb_steps`` maps a checkpoint's ``trainer/global_step`` to
wandb's own ``_step`` of the history row holding that step (filled in once the
row was handed to wandb). A training that resumes from one of these
checkpoints rewinds the run to that ``_step`` (``wandb.init(resume_from=
"<id>?_step=<n>")``), so the history continues from the checkpoint; where a
rewind is not possible it does not record the steps already recorded again.

Writes are atomic (a temporary file, then ``os.replace``); entries of
checkpoints that no longer exist (rotated away) are dropped when the index is
written.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: The index file written beside checkpoints.
MARKER_FILE = "_wandb-bridge-runs.json"
FORMAT = 1


@dataclass(frozen=True)
class RunMarker:
    """The run that wrote a checkpoint, as recorded beside it."""

    checkpoint: str
    run_id: str
    project: str | None = None
    entity: str | None = None
    group: str | None = None
    step: int | None = None
    epoch: int | None = None
    framework: str | None = None
    wandb_bridge_version: str | None = None
    last_logged_step: int | None = None
    exact: bool = True
    #: wandb's ``_step`` of the history row of ``step`` (None when not known).
    wandb_step: int | None = None

    @property
    def recorded_through(self) -> int | None:
        """The highest step the run is known to have recorded (checkpoint step or later)."""
        steps = [s for s in (self.step, self.last_logged_step) if s is not None]
        return max(steps) if steps else None


def index_path(checkpoint: str) -> str:
    """The index file that describes ``checkpoint``."""
    folder, _ = _split(checkpoint)
    return os.path.join(folder, MARKER_FILE)


def write(checkpoint: str, info: Mapping[str, Any], last_logged_step: int | None) -> str:
    """Record that ``info["run_id"]`` wrote ``checkpoint``; returns the index path.

    Raises:
        OSError: the folder is not writable.
    """
    folder, name = _split(checkpoint)
    index = os.path.join(folder, MARKER_FILE)
    data = _load(index)
    entries = data["checkpoints"]
    for key in [k for k in entries if k != name and not os.path.exists(os.path.join(folder, k))]:
        del entries[key]
    entry = dict(info)
    size = _size(checkpoint)
    if size is not None:
        entry["size"] = size
    entries[name] = entry
    _raise_progress(data, str(info["run_id"]), last_logged_step)
    _store(index, data)
    return index


def record_progress(index: str, run_id: str, last_logged_step: int | None) -> None:
    """Raise ``runs[run_id].last_logged_step`` in an index written before (no-op when unchanged).

    Raises:
        OSError: the index cannot be written.
    """
    if last_logged_step is None or not os.path.exists(index):
        return
    data = _load(index)
    if _raise_progress(data, run_id, last_logged_step):
        _store(index, data)


def record_wandb_steps(index: str, run_id: str, steps: Mapping[int, int]) -> None:
    """Add ``trainer/global_step -> wandb _step`` entries to ``runs[run_id].wandb_steps`` of an index.

    Entries of checkpoints that no longer exist (rotated away) are dropped.

    Raises:
        OSError: the index cannot be written.
    """
    if not steps or not os.path.exists(index):
        return
    data = _load(index)
    run = data["runs"].setdefault(run_id, {})
    if not isinstance(run, dict):
        run = data["runs"][run_id] = {}
    known = run.get("wandb_steps")
    mapping: dict[str, int] = dict(known) if isinstance(known, dict) else {}
    changed = False
    for step, wandb_step in steps.items():
        if mapping.get(str(step)) != wandb_step:
            mapping[str(step)] = int(wandb_step)
            changed = True
    folder = os.path.dirname(index)
    wanted = {
        str(_int(entry.get("step")))
        for name, entry in data["checkpoints"].items()
        if isinstance(entry, Mapping) and os.path.exists(os.path.join(folder, name))
    }
    wanted |= {str(step) for step in steps}
    for key in [k for k in mapping if k not in wanted]:
        del mapping[key]
        changed = True
    if changed:
        run["wandb_steps"] = mapping
        _store(index, data)


def find(checkpoint: str, step: int | None = None) -> RunMarker | None:
    """The marker of ``checkpoint``, or None.

    Args:
        checkpoint: the checkpoint file or folder a training resumes from.
        step: its global step, when the caller knows it. Then a checkpoint
            written without a marker (e.g. by the framework's own handler on
            SIGTERM) is attributed to the run of the newest marked checkpoint
            in the same folder at or before that step (``exact=False``).
    """
    folder, name = _split(checkpoint)
    data = _load(os.path.join(folder, MARKER_FILE))
    entries: dict[str, Any] = data["checkpoints"]
    entry = entries.get(name)
    exact = True
    if isinstance(entry, Mapping) and "size" in entry and _size(checkpoint) not in (None, entry["size"]):
        entry = None  # the file was replaced by one this index does not describe
    if not isinstance(entry, Mapping) and step is not None:
        older = [e for e in entries.values() if isinstance(e, Mapping) and _int(e.get("step")) is not None]
        older = [e for e in older if (_int(e.get("step")) or 0) <= step]
        entry = max(older, key=lambda e: _int(e.get("step")) or 0, default=None)
        exact = False
    if not isinstance(entry, Mapping) or not entry.get("run_id"):
        return None
    run_id = str(entry["run_id"])
    run = data["runs"].get(run_id)
    last = _int(run.get("last_logged_step")) if isinstance(run, Mapping) else None
    found_step = _int(entry.get("step")) if exact else step
    wandb_steps = run.get("wandb_steps") if isinstance(run, Mapping) else None
    wandb_step = None
    if isinstance(wandb_steps, Mapping) and found_step is not None and exact:
        wandb_step = _int(wandb_steps.get(str(found_step)))
    return RunMarker(
        checkpoint=checkpoint,
        run_id=run_id,
        project=_str(entry.get("project")),
        entity=_str(entry.get("entity")),
        group=_str(entry.get("group")),
        step=found_step,
        epoch=_int(entry.get("epoch")) if exact else None,
        framework=_str(entry.get("framework")),
        wandb_bridge_version=_str(entry.get("wandb_bridge_version")),
        last_logged_step=last,
        exact=exact,
        wandb_step=wandb_step,
    )


def _split(checkpoint: str) -> tuple[str, str]:
    path = os.path.abspath(checkpoint.rstrip("/\\") or checkpoint)
    return os.path.dirname(path), os.path.basename(path)


def _size(path: str) -> int | None:
    try:
        return os.path.getsize(path) if os.path.isfile(path) else None
    except OSError:
        return None


def _load(index: str) -> dict[str, Any]:
    try:
        with open(index, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        data = None
    if not isinstance(data, dict):
        data = {}
    data["format"] = FORMAT
    if not isinstance(data.get("checkpoints"), dict):
        data["checkpoints"] = {}
    if not isinstance(data.get("runs"), dict):
        data["runs"] = {}
    return data


def _store(index: str, data: Mapping[str, Any]) -> None:
    temporary = f"{index}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        with open(temporary, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=1, sort_keys=True)
        os.replace(temporary, index)
    except BaseException:
        try:
            os.remove(temporary)
        except OSError:
            pass
        raise


def _raise_progress(data: dict[str, Any], run_id: str, step: int | None) -> bool:
    if step is None:
        return False
    run = data["runs"].setdefault(run_id, {})
    if not isinstance(run, dict):
        run = data["runs"][run_id] = {}
    previous = _int(run.get("last_logged_step"))
    if previous is not None and previous >= step:
        return False
    run["last_logged_step"] = int(step)
    return True


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
