"""Reader for the transaction log (``run-<id>.wandb``) of W&B offline runs.

An offline run folder looks like ``<WANDB_DIR>/wandb/offline-run-<date>_<time>-<id>/``
and holds ``run-<id>.wandb``: a 7-byte file header followed by records in the
LevelDB log framing, each record being a serialized
``wandb.proto.wandb_internal_pb2.Record``.

File layout, as written by wandb 0.31 (verified against real files):

* File header: ``b":W&B"``, the little-endian ``uint16`` ``0xBEE1``, and a
  version byte (``0``).
* The file is a sequence of 32 KiB blocks; block boundaries are counted from
  the start of the file, so the file header occupies the first 7 bytes of
  block 0.
* Each physical record has a 7-byte header: ``uint32`` CRC-32 (plain zlib
  CRC-32 of the type byte followed by the payload, not masked), ``uint16``
  payload length and ``uint8`` type (1 full, 2 first, 3 middle, 4 last).
  A logical record larger than the space left in a block is split into
  first/middle/last fragments.
* When fewer than 7 bytes remain in a block they are zero padding.

This module only needs ``wandb`` (for the protobuf classes) when a run is
actually parsed; importing it does not import ``wandb``.
"""

from __future__ import annotations

import fnmatch
import gzip
import importlib
import json
import math
import os
import struct
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# ``wandb.proto.wandb_internal_pb2`` messages are generated at runtime and have
# no static types; they are handled as ``Any`` here.
_Proto = Any

__all__ = [
    "ArtifactRecord",
    "RunFileError",
    "RunRecord",
    "find_run_files",
    "read_run",
    "read_runs",
]

_MAGIC = b":W&B"
_MAGIC_NUMBER = 0xBEE1
_FILE_VERSION = 0
_FILE_HEADER = struct.Struct("<4sHB")
_RECORD_HEADER = struct.Struct("<IHB")
_BLOCK_SIZE = 32 * 1024

_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4
_TYPE_NAMES = {_FULL: "FULL", _FIRST: "FIRST", _MIDDLE: "MIDDLE", _LAST: "LAST"}

_RUN_FILE_GLOB = "run-*.wandb"
_DEFAULT_STEP_KEY = "trainer/global_step"
_WANDB_INTERNAL_KEY = "_wandb"
_AGGREGATE_OPS = ("min", "max", "mean", "best", "first", "last")


class RunFileError(ValueError):
    """A ``.wandb`` transaction log is corrupt or is not a W&B run file.

    Attributes:
        path: The file that failed to parse.
        offset: Byte offset in the file where the problem was found.
        reason: Human-readable description of the problem.
    """

    def __init__(self, path: str | os.PathLike[str], offset: int, reason: str) -> None:
        self.path = Path(path)
        self.offset = offset
        self.reason = reason
        super().__init__(f"{self.path}: {reason} (at byte offset {offset})")


@dataclass(frozen=True)
class ArtifactRecord:
    """An artifact logged (or used) by a run, as recorded in the transaction log.

    Attributes:
        name: Artifact name without version or alias (``"model"``).
        type: Artifact type (``"model"``, ``"dataset"``, ...).
        aliases: Aliases as recorded. wandb appends ``"latest"`` itself, so
            ``run.log_artifact(a, aliases=["best"])`` records
            ``("best", "latest")``.
        metadata: The artifact metadata, JSON-decoded.
        files: Manifest entries: path inside the artifact -> ``{"digest",
            "size", "local_path", "ref"}``. ``local_path`` is wandb's staging
            copy of the file (under ``WANDB_DATA_DIR``); ``ref`` is ``None``
            unless the entry is a reference.
        digest: The manifest digest computed by wandb.
        description: The artifact description, or ``None``.
        tags: Artifact tags.
        id: Server id; only set for used artifacts (offline logged artifacts
            have no server id yet).
        manifest_file: For very large artifacts (more than 100,000 entries)
            wandb writes the manifest to a separate gzipped file instead of
            into the record; this is its path. ``files`` is read from it when
            it still exists and left empty otherwise.
    """

    name: str
    type: str
    aliases: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    digest: str = ""
    description: str | None = None
    tags: tuple[str, ...] = ()
    id: str | None = None
    manifest_file: Path | None = None


@dataclass(frozen=True)
class RunRecord:
    """Everything a W&B offline run recorded, reconstructed from its ``.wandb`` file.

    Attributes:
        path: The ``run-<id>.wandb`` file.
        run_id: The run id.
        project: Project name, or ``None`` if none was set.
        entity: Entity name, or ``None`` if none was set.
        name: Display name, or ``None`` (offline runs only get a generated
            name once synced).
        group: Run group, or ``None``.
        job_type: Job type, or ``None``.
        tags: Run tags.
        notes: Run notes, or ``None``.
        resumed: Whether the run record says the run was resumed.
        config: Final config after every config record (updates and removals
            applied in order), values JSON-decoded, the internal ``_wandb``
            key dropped. Nested dicts stay nested.
        history: One dict per history row (one per committed step). Keys are
            the logged keys; keys that wandb records as a nested key path
            (nested dicts, and media such as tables, whose fields wandb
            flattens) are joined with ``"."``, e.g. ``{"a": {"b": 1}}`` gives
            ``"a.b"``. ``_step``, ``_runtime`` and ``_timestamp`` are kept.
        summary: Final run summary, nested like wandb stores it (see
            :func:`read_run` for how it is reconstructed). ``_wandb`` is
            dropped.
        metrics: ``define_metric`` definitions, by name (or glob such as
            ``"val/*"``): ``{"step_metric", "summary", "step_sync", "hidden",
            "goal"}``.
        artifacts: Artifacts logged by the run, in order. This includes the
            artifacts wandb creates itself, e.g. ``run_table`` artifacts for
            logged ``wandb.Table`` values.
        used_artifacts: Artifacts recorded as used. wandb 0.31 refuses
            ``run.use_artifact`` in offline mode (it raises ``TypeError``), so
            this is empty for offline runs written by current wandb versions.
        exit_code: Exit code of the exit record, ``None`` if the run never
            finished. ``run.finish()`` records 0, ``run.finish(exit_code=1)``
            and an uncaught exception record 1.
        finished: Whether an exit record was written.
        files: Paths (relative to the run's ``files/`` folder) of files wandb
            was asked to save, in first-seen order.
        preempting: Whether ``run.mark_preempting()`` was recorded.
        truncated: The file ends in the middle of a record (a run still being
            written or a killed process). Everything before the incomplete
            record is returned.
        wandb_version: Version of the wandb producer from the header record.
    """

    path: Path
    run_id: str
    project: str | None = None
    entity: str | None = None
    name: str | None = None
    group: str | None = None
    job_type: str | None = None
    tags: tuple[str, ...] = ()
    notes: str | None = None
    resumed: bool = False
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    artifacts: list[ArtifactRecord] = field(default_factory=list)
    used_artifacts: list[ArtifactRecord] = field(default_factory=list)
    exit_code: int | None = None
    finished: bool = False
    files: tuple[str, ...] = ()
    preempting: bool = False
    truncated: bool = False
    wandb_version: str | None = None

    @property
    def folder(self) -> Path:
        """The run folder (``offline-run-<date>_<time>-<id>``)."""
        return self.path.parent

    def rows_with(self, key: str) -> list[dict[str, Any]]:
        """Return the history rows that contain ``key``.

        Args:
            key: A history key, nested keys joined with ``"."``.

        Returns:
            The matching rows, in logging order.
        """
        return [row for row in self.history if key in row]

    def values(self, key: str, step_key: str = _DEFAULT_STEP_KEY) -> list[tuple[Any, Any]]:
        """Return ``(step, value)`` pairs for every history row that has ``key``.

        Args:
            key: A history key, nested keys joined with ``"."``.
            step_key: The key used as the step; ``None`` is returned as the step
                for rows that lack it. Defaults to ``"trainer/global_step"``.

        Returns:
            ``[(row.get(step_key), row[key]) for rows containing key]``.
        """
        return [(row.get(step_key), row[key]) for row in self.history if key in row]

    def artifact(self, name: str) -> ArtifactRecord:
        """Return the latest logged artifact called ``name``.

        Args:
            name: The artifact name, optionally with an alias (``"model:best"``),
                in which case the latest version carrying that alias is returned.

        Returns:
            The last matching artifact in logging order.

        Raises:
            KeyError: No logged artifact matches; the message lists the names
                that are available.
        """
        base, _, alias = name.partition(":")
        for art in reversed(self.artifacts):
            if art.name == base and (not alias or alias in art.aliases):
                return art
        available = sorted({a.name for a in self.artifacts})
        raise KeyError(
            f"no artifact {name!r} was logged by run {self.run_id} ({self.path}); "
            f"logged artifacts: {available or 'none'}"
        )


# ---------------------------------------------------------------------------
# Locating run files


def find_run_files(path: str | os.PathLike[str]) -> list[Path]:
    """Find the ``run-*.wandb`` files under ``path``.

    Symlinked folders (wandb's ``latest-run`` link) are not followed, so every
    run is listed once. A folder given directly may itself be such a link.

    Args:
        path: A ``.wandb`` file, a run folder, a ``wandb/`` folder or any folder
            above it.

    Returns:
        The files, sorted by modification time then path.

    Raises:
        FileNotFoundError: ``path`` does not exist.
    """
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"{root} does not exist")
    if root.is_file():
        return [root]
    found: list[Path] = []
    for dirpath, _dirnames, filenames in os.walk(root, followlinks=False):
        for filename in filenames:
            candidate = Path(dirpath) / filename
            if fnmatch.fnmatchcase(filename, _RUN_FILE_GLOB) and not candidate.is_symlink():
                found.append(candidate)
    return sorted(found, key=lambda p: (p.stat().st_mtime, str(p)))


def read_run(path: str | os.PathLike[str]) -> RunRecord:
    """Read one W&B offline run.

    The summary is reconstructed by replaying the log in order, the way wandb
    maintains it: every history row sets each of its keys to the logged value
    (nested key paths become nested dicts), except that keys with a
    ``define_metric(summary=...)`` aggregate get a dict of aggregates, e.g.
    ``define_metric("loss", summary="min")`` gives ``summary["loss"] ==
    {"min": <min over history>}`` (``"min,last"`` gives ``{"min": ...,
    "last": ...}``, ``"none"`` leaves the key out, ``"copy"`` keeps the plain
    last value); history values that are ``None`` are not copied into the
    summary. Explicit summary records (``run.summary[...] = ...``,
    ``run.summary.update``, ``del run.summary[...]``) are applied in order, so
    they win over earlier history rows and lose to later ones. wandb 0.31
    itself writes a summary record before each history row with exactly these
    values; for keys that such a record set, its values are used as-is.

    wandb's service process writes the file asynchronously: in the process
    that ran wandb, ``run.finish()`` can return before the file is complete.
    Call ``wandb.teardown()`` (or ``WandbOfflineRuns.flush()``) before reading,
    or read after that process has exited.

    Args:
        path: The ``run-<id>.wandb`` file, the run folder, or a folder that
            contains exactly one run (``wandb/`` or the folder above it).

    Returns:
        The parsed run.

    Raises:
        FileNotFoundError: ``path`` does not exist or holds no run file.
        ValueError: ``path`` holds several runs (use :func:`read_runs`).
        RunFileError: The file is not a W&B transaction log or is corrupt.
    """
    files = find_run_files(path)
    if not files:
        raise FileNotFoundError(f"no {_RUN_FILE_GLOB} file found under {Path(path)}")
    if len(files) > 1:
        listing = "\n".join(f"  {f}" for f in files)
        raise ValueError(
            f"{Path(path)} contains {len(files)} runs; pass one of them or use read_runs() to read them all:\n{listing}"
        )
    return _read_file(files[0])


def count_history(path: str | os.PathLike[str]) -> int:
    """How many history rows one W&B offline run recorded, without decoding them.

    The file's framing and checksums are verified as :func:`read_run` does, but no
    value is decoded and no summary is replayed, so a run of tens of thousands of
    rows is counted in a fraction of the time ``len(read_run(path).history)`` takes.

    Args:
        path: As for :func:`read_run`: the run file, its folder, or a folder holding one run.

    Raises:
        FileNotFoundError: ``path`` does not exist or holds no run file.
        ValueError: ``path`` holds several runs.
        RunFileError: The file is not a W&B transaction log or is corrupt.
    """
    files = find_run_files(path)
    if len(files) != 1:
        read_run(path)  # raises the error that fits (no run, several runs)
    scan = _scan_log(files[0], files[0].read_bytes())
    return sum(1 for _, record in _iter_protos(files[0], scan) if record.WhichOneof("record_type") == "history")


def read_runs(path: str | os.PathLike[str]) -> list[RunRecord]:
    """Read every W&B offline run under a folder.

    Args:
        path: A folder searched recursively for ``run-*.wandb`` (or a single
            ``.wandb`` file).

    Returns:
        The runs, sorted by file modification time then path. Empty if there
        are none.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        RunFileError: One of the files is corrupt.
    """
    return [_read_file(f) for f in find_run_files(path)]


# ---------------------------------------------------------------------------
# Low-level framing


@dataclass
class _LogScan:
    records: list[tuple[int, bytes]]
    truncated: bool


def _scan_log(path: Path, data: bytes) -> _LogScan:
    """Split a transaction log into (offset, payload) records, verifying the framing."""
    size = len(data)
    if size < _FILE_HEADER.size:
        raise RunFileError(path, 0, f"file is {size} bytes long, too short for the {_FILE_HEADER.size}-byte header")
    magic, number, version = _FILE_HEADER.unpack_from(data, 0)
    if magic != _MAGIC or number != _MAGIC_NUMBER:
        raise RunFileError(path, 0, f"not a W&B transaction log (bad file header {data[:7]!r})")
    if version != _FILE_VERSION:
        raise RunFileError(path, 6, f"unsupported W&B transaction log version {version}")

    records: list[tuple[int, bytes]] = []
    pending: list[bytes] = []
    pending_offset = -1
    offset = _FILE_HEADER.size
    while offset < size:
        left_in_block = _BLOCK_SIZE - offset % _BLOCK_SIZE
        if left_in_block < _RECORD_HEADER.size:
            padding = data[offset : offset + left_in_block]
            if padding.strip(b"\0"):
                raise RunFileError(path, offset, "non-zero bytes in block padding")
            offset += left_in_block
            continue
        if size - offset < _RECORD_HEADER.size:
            # A record header cut short: the writer was interrupted.
            return _LogScan(records, truncated=True)
        crc, length, rtype = _RECORD_HEADER.unpack_from(data, offset)
        if crc == 0 and length == 0 and rtype == 0 and not data[offset:].strip(b"\0"):
            # Zero-filled tail: space allocated but never written (crash).
            return _LogScan(records, truncated=True)
        if rtype not in _TYPE_NAMES:
            raise RunFileError(path, offset, f"invalid record type {rtype}")
        start = offset + _RECORD_HEADER.size
        end = start + length
        if length > left_in_block - _RECORD_HEADER.size:
            raise RunFileError(
                path,
                offset,
                f"record length {length} runs past the end of its 32 KiB block",
            )
        if end > size:
            return _LogScan(records, truncated=True)
        payload = data[start:end]
        actual = zlib.crc32(payload, zlib.crc32(bytes((rtype,))))
        if actual != crc:
            raise RunFileError(path, offset, f"CRC mismatch (stored {crc:#010x}, computed {actual:#010x})")
        if rtype == _FULL:
            if pending:
                raise RunFileError(path, offset, "FULL record while a fragmented record is incomplete")
            records.append((offset, payload))
        elif rtype == _FIRST:
            if pending:
                raise RunFileError(path, offset, "FIRST fragment while a fragmented record is incomplete")
            pending = [payload]
            pending_offset = offset
        else:
            if not pending:
                raise RunFileError(path, offset, f"{_TYPE_NAMES[rtype]} fragment without a FIRST fragment")
            pending.append(payload)
            if rtype == _LAST:
                records.append((pending_offset, b"".join(pending)))
                pending = []
        offset = end
    return _LogScan(records, truncated=bool(pending))


# ---------------------------------------------------------------------------
# Record interpretation


_NUMBER_START = frozenset("-0123456789")


def _decode_json(path: Path, offset: int, text: str, what: str) -> Any:
    if text and text[0] in _NUMBER_START:  # most values are numbers: int()/float() take a quarter of the time
        try:
            return int(text) if text.isdigit() or (text[0] == "-" and text[1:].isdigit()) else float(text)
        except ValueError:
            pass  # not a plain number: json.loads decides (and reports what is invalid)
    try:
        return json.loads(text)
    except ValueError as exc:
        raise RunFileError(path, offset, f"invalid JSON in {what}: {text[:80]!r}") from exc


def _item_path(key: str, nested_key: Sequence[str]) -> list[str]:
    return [key] if key else list(nested_key)


def _set_path(target: dict[str, Any], keys: Sequence[str], value: Any) -> None:
    node = target
    for key in keys[:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    node[keys[-1]] = value


def _del_path(target: dict[str, Any], keys: Sequence[str]) -> None:
    node: Any = target
    for key in keys[:-1]:
        node = node.get(key) if isinstance(node, dict) else None
        if node is None:
            return
    if isinstance(node, dict):
        node.pop(keys[-1], None)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass
class _Aggregate:
    count: int = 0
    total: float = 0.0
    minimum: Any = None
    maximum: Any = None
    first: Any = None
    seen_first: bool = False

    def add(self, value: Any) -> None:
        if not self.seen_first:
            self.first = value
            self.seen_first = True
        if _is_number(value) and not math.isnan(value):
            self.count += 1
            self.total += value
            self.minimum = value if self.minimum is None else min(self.minimum, value)
            self.maximum = value if self.maximum is None else max(self.maximum, value)


class _RunBuilder:
    """Accumulates the state of a run while replaying its records in order."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.run_id = _run_id_from_filename(path)
        self.project: str | None = None
        self.entity: str | None = None
        self.name: str | None = None
        self.group: str | None = None
        self.job_type: str | None = None
        self.tags: tuple[str, ...] = ()
        self.notes: str | None = None
        self.resumed = False
        self.config: dict[str, Any] = {}
        self.history: list[dict[str, Any]] = []
        self.summary: dict[str, Any] = {}
        self.metrics: dict[str, dict[str, Any]] = {}
        self.artifacts: list[ArtifactRecord] = []
        self.artifact_client_ids: set[str] = set()
        self.used_artifacts: list[ArtifactRecord] = []
        self.exit_code: int | None = None
        self.finished = False
        self.files: dict[str, None] = {}
        self.preempting = False
        self.wandb_version: str | None = None
        self.aggregates: dict[str, _Aggregate] = {}
        # Summary paths set by summary records since the last history row.
        self.summary_touched: set[tuple[str, ...]] = set()

    # -- dispatch ---------------------------------------------------------

    def add(self, offset: int, record: _Proto) -> None:
        kind = record.WhichOneof("record_type")
        if kind == "header":
            producer = record.header.version_info.producer
            self.wandb_version = producer.split("+", 1)[0] or None
        elif kind == "run":
            self._run(offset, record.run)
        elif kind == "config":
            self._config(offset, record.config)
        elif kind == "history":
            self._history(offset, record.history)
        elif kind == "summary":
            self._summary(offset, record.summary)
        elif kind == "metric":
            self._metric(record.metric)
        elif kind == "artifact":
            self._artifact(offset, record.artifact)
        elif kind == "request" and record.request.WhichOneof("request_type") == "log_artifact":
            self._artifact(offset, record.request.log_artifact.artifact)
        elif kind == "use_artifact":
            use = record.use_artifact
            self.used_artifacts.append(ArtifactRecord(name=use.name, type=use.type, id=use.id))
        elif kind == "exit":
            self.exit_code = record.exit.exit_code
            self.finished = True
        elif kind == "files":
            for item in record.files.files:
                self.files.setdefault(item.path, None)
        elif kind == "preempting":
            self.preempting = True

    # -- record kinds -----------------------------------------------------

    def _run(self, offset: int, run: _Proto) -> None:
        # Every run record wandb writes is a full snapshot of the run's
        # attributes (a later one follows e.g. ``run.name = ...``); its config
        # and summary parts are updates.
        self.run_id = run.run_id or self.run_id
        self.project = run.project or self.project
        self.entity = run.entity or self.entity
        self.name = run.display_name or None
        self.group = run.run_group or None
        self.job_type = run.job_type or None
        self.tags = tuple(run.tags)
        self.notes = run.notes or None
        self.resumed = self.resumed or run.resumed
        self._config(offset, run.config)
        self._summary(offset, run.summary)

    def _config(self, offset: int, config: _Proto) -> None:
        for update in config.update:
            keys = _item_path(update.key, update.nested_key)
            if keys:
                value = _decode_json(self.path, offset, update.value_json, f"config {keys}")
                _set_path(self.config, keys, value)
        for remove in config.remove:
            keys = _item_path(remove.key, remove.nested_key)
            if keys:
                _del_path(self.config, keys)

    def _summary(self, offset: int, summary: _Proto) -> None:
        for update in summary.update:
            keys = _item_path(update.key, update.nested_key)
            if keys:
                value = _decode_json(self.path, offset, update.value_json, f"summary {keys}")
                _set_path(self.summary, keys, value)
                self.summary_touched.add(tuple(keys))
        for remove in summary.remove:
            keys = _item_path(remove.key, remove.nested_key)
            if keys:
                _del_path(self.summary, keys)
                self.summary_touched.add(tuple(keys))

    def _history(self, offset: int, history: _Proto) -> None:
        row: dict[str, Any] = {}
        paths: list[tuple[list[str], Any]] = []
        for item in history.item:
            keys = _item_path(item.key, item.nested_key)
            if not keys:
                continue
            value = self._history_value(offset, item, keys)
            row[".".join(keys)] = value
            paths.append((keys, value))
        if "_step" not in row and history.HasField("step"):
            row["_step"] = history.step.num
        self.history.append(row)
        for keys, value in paths:
            self._summarize(keys, value)
        self.summary_touched.clear()

    def _history_value(self, offset: int, item: _Proto, keys: list[str]) -> Any:
        if item.value_json:
            return _decode_json(self.path, offset, item.value_json, f"history {keys}")
        kind = item.WhichOneof("value")
        if kind is None or kind == "none":
            return None
        if kind == "json":
            return _decode_json(self.path, offset, item.json, f"history {keys}")
        return getattr(item, kind)

    def _summarize(self, keys: list[str], value: Any) -> None:
        """Update the summary from one history value, as wandb does."""
        flat = ".".join(keys)
        aggregate = self.aggregates.setdefault(flat, _Aggregate())
        if value is None:
            return
        aggregate.add(value)
        if tuple(keys) in self.summary_touched:
            return  # wandb wrote this step's summary value itself.
        metric = self._metric_for(flat)
        ops: list[str] = list(metric["summary"]) if metric else []
        if "none" in ops:
            return
        wanted = [op for op in _AGGREGATE_OPS if op in ops]
        if not wanted:
            _set_path(self.summary, keys, value)
            return
        goal = metric["goal"] if metric else None
        result: dict[str, Any] = {}
        for op in wanted:
            if op == "first":
                result["first"] = aggregate.first
            elif op == "last":
                result["last"] = value
            elif aggregate.count:
                if op == "min" or (op == "best" and goal == "minimize"):
                    result[op] = aggregate.minimum
                elif op == "max" or (op == "best" and goal == "maximize"):
                    result[op] = aggregate.maximum
                elif op == "mean":
                    result["mean"] = aggregate.total / aggregate.count
        _set_path(self.summary, keys, result if result else value)

    def _metric_for(self, flat_key: str) -> dict[str, Any] | None:
        metric = self.metrics.get(flat_key)
        if metric is not None:
            return metric
        best: tuple[int, dict[str, Any]] | None = None
        for name, definition in self.metrics.items():
            is_match = name.endswith("*") and flat_key.startswith(name[:-1])
            if is_match and (best is None or len(name) > best[0]):
                best = (len(name), definition)
        return best[1] if best else None

    def _metric(self, metric: _Proto) -> None:
        if getattr(metric, "expanded_from_glob", False):  # the field is newer than wandb 0.19.0
            return
        name = metric.name or metric.glob_name
        if not name:
            return
        summary_ops = [
            op
            for op in ("min", "max", "mean", "best", "last", "first", "none", "copy")
            if getattr(metric.summary, op, False)  # "first" is newer than wandb 0.19
        ]
        goal = {1: "minimize", 2: "maximize"}.get(metric.goal)
        new: dict[str, Any] = {
            "step_metric": metric.step_metric or None,
            "summary": summary_ops,
            "step_sync": metric.options.step_sync,
            "hidden": metric.options.hidden,
            "goal": goal,
        }
        old = self.metrics.get(name)
        if old is None or metric._control.overwrite:
            self.metrics[name] = new
            return
        # Without overwrite, wandb merges a new definition into the old one.
        merged = dict(old)
        if new["step_metric"]:
            merged["step_metric"] = new["step_metric"]
        merged["summary"] = list(dict.fromkeys([*old["summary"], *summary_ops]))
        merged["step_sync"] = old["step_sync"] or new["step_sync"]
        merged["hidden"] = old["hidden"] or new["hidden"]
        merged["goal"] = goal or old["goal"]
        self.metrics[name] = merged

    def _artifact(self, offset: int, art: _Proto) -> None:
        if art.client_id:
            if art.client_id in self.artifact_client_ids:
                return
            self.artifact_client_ids.add(art.client_id)
        metadata: dict[str, Any] = {}
        if art.metadata:
            decoded = _decode_json(self.path, offset, art.metadata, f"artifact {art.name} metadata")
            metadata = decoded if isinstance(decoded, dict) else {"value": decoded}
        files: dict[str, dict[str, Any]] = {}
        for entry in art.manifest.contents:
            files[entry.path] = {
                "digest": entry.digest,
                "size": entry.size,
                "local_path": entry.local_path or None,
                "ref": entry.ref or None,
            }
        manifest_file: Path | None = None
        if art.manifest.manifest_file_path:
            manifest_file = Path(art.manifest.manifest_file_path)
            files.update(_read_manifest_file(manifest_file))
        self.artifacts.append(
            ArtifactRecord(
                name=art.name,
                type=art.type,
                aliases=tuple(art.aliases),
                metadata=metadata,
                files=files,
                digest=art.digest,
                description=art.description or None,
                tags=tuple(art.tags),
                manifest_file=manifest_file,
            )
        )

    def build(self, truncated: bool) -> RunRecord:
        config = {k: v for k, v in self.config.items() if k != _WANDB_INTERNAL_KEY}
        summary = {k: v for k, v in self.summary.items() if k != _WANDB_INTERNAL_KEY}
        return RunRecord(
            path=self.path,
            run_id=self.run_id,
            project=self.project,
            entity=self.entity,
            name=self.name,
            group=self.group,
            job_type=self.job_type,
            tags=self.tags,
            notes=self.notes,
            resumed=self.resumed,
            config=config,
            history=self.history,
            summary=summary,
            metrics=self.metrics,
            artifacts=self.artifacts,
            used_artifacts=self.used_artifacts,
            exit_code=self.exit_code,
            finished=self.finished,
            files=tuple(self.files),
            preempting=self.preempting,
            truncated=truncated,
            wandb_version=self.wandb_version,
        )


def _read_manifest_file(path: Path) -> dict[str, dict[str, Any]]:
    """Read a gzipped JSON-lines manifest written for very large artifacts."""
    files: dict[str, dict[str, Any]] = {}
    try:
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            for line in handle:
                if not line.strip():
                    continue
                entry = json.loads(line)
                files[entry["path"]] = {
                    "digest": entry.get("digest"),
                    "size": entry.get("size"),
                    "local_path": entry.get("local_path"),
                    "ref": entry.get("ref"),
                }
    except FileNotFoundError:
        return {}
    return files


def _run_id_from_filename(path: Path) -> str:
    stem = path.name
    if stem.endswith(".wandb"):
        stem = stem[: -len(".wandb")]
    return stem[len("run-") :] if stem.startswith("run-") else stem


def _iter_protos(path: Path, scan: _LogScan) -> Iterator[tuple[int, _Proto]]:
    # Imported lazily: reading the framing needs no wandb, parsing records does.
    pb2: Any = importlib.import_module("wandb.proto.wandb_internal_pb2")
    for offset, payload in scan.records:
        record = pb2.Record()
        try:
            record.ParseFromString(payload)
        except Exception as exc:  # google.protobuf.message.DecodeError
            raise RunFileError(path, offset, f"record is not a valid protobuf: {exc}") from exc
        yield offset, record


def _read_file(path: Path) -> RunRecord:
    data = path.read_bytes()
    scan = _scan_log(path, data)
    builder = _RunBuilder(path)
    for offset, record in _iter_protos(path, scan):
        builder.add(offset, record)
    return builder.build(scan.truncated)
