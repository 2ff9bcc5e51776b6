"""Checkpoint files and folders -> artifact payload: snapshots, filters and digests.

A snapshot keeps a checkpoint's content even when the framework deletes or
overwrites the files right after reporting them, at a cost of microseconds on
the training thread: large files are hard-linked into a private staging folder
beside them, small files are read into memory (the worker writes them out).
Hashing and handing the payload to wandb happen in the background worker.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import itertools
import json
import os
import re
import stat
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote, urlparse

from wandb_bridge.adapters.markers import MARKER_FILE

STAGING_DIR_NAME = ".wandb-bridge-staging"
_CHUNK = 1 << 20
# Files below this size are read into memory rather than linked: a framework that
# rewrites a file in place (same inode) right after saving it would otherwise change
# a linked snapshot before the worker hashed it. Reading them costs microseconds.
COPY_BELOW_BYTES = 4 << 20
_COUNTER = itertools.count()


@dataclass
class Snapshot:
    """The files of one checkpoint: ``(name inside the artifact, local path)`` pairs.

    ``pending`` holds the content of small files until :meth:`materialize`
    writes it to their staging paths (in the worker, off the training thread).
    """

    source: str
    files: list[tuple[str, str]]
    staging: str | None = None
    pending: list[tuple[str, bytes]] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    reference: Reference | None = None

    @classmethod
    def by_reference(
        cls, path: str, include: Sequence[str] | None = None, exclude: Sequence[str] = (), name: str | None = None
    ) -> Snapshot:
        """A checkpoint kept where it is: nothing is read, linked or staged (the worker lists it later)."""
        return cls(path, [], None, reference=Reference(path, include, exclude, name))

    def materialize(self) -> None:
        """Write the in-memory small files to their staging paths (idempotent)."""
        pending, self.pending = self.pending, []
        for target, data in pending:
            # another snapshot's release may have removed the (then empty) staging folder
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "wb") as handle:
                handle.write(data)

    def release(self) -> None:
        """Remove this snapshot's staged files (never the framework's own files)."""
        self.pending = []
        for path in self.created:
            try:
                os.unlink(path)
            except OSError:
                pass
        self.created = []
        if self.staging is not None:
            try:
                os.rmdir(self.staging)  # only succeeds once the staging folder is empty
            except OSError:
                pass
        self.staging = None


def list_payload(path: str, include: Sequence[str] | None = None, exclude: Sequence[str] = ()) -> list[tuple[str, str]]:
    """List the files of a checkpoint file or folder that belong in the artifact.

    Args:
        path: a file, or a folder (walked recursively; the staging folder is skipped).
        include: glob patterns (on the name inside the artifact); None keeps all.
        exclude: glob patterns to leave out (applied after ``include``).

    Raises:
        FileNotFoundError: ``path`` does not exist.
    """
    if os.path.isfile(path):
        items = [(os.path.basename(path), path)]
    elif os.path.isdir(path):
        items = []
        for root, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if d != STAGING_DIR_NAME)
            for name in sorted(files):
                if name.startswith(MARKER_FILE):
                    continue  # our own run index (adapters/markers.py), not the framework's files
                full = os.path.join(root, name)
                items.append((os.path.relpath(full, path).replace(os.sep, "/"), full))
    else:
        raise FileNotFoundError(f"checkpoint {path!r} does not exist")
    return [
        (name, full)
        for name, full in items
        if (include is None or _matches(name, include)) and not _matches(name, exclude)
    ]


def snapshot(
    path: str,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
    name: str | None = None,
) -> Snapshot:
    """Keep a checkpoint's content: hard-link large files, read small ones into memory.

    Falls back to referencing the original files where links are impossible
    (another file system, no permission); the worker then reads them in place.
    ``name``, for a single-file checkpoint, is the file's name inside the
    artifact (default: its own name).
    """
    content = read_small_file(path)  # the common case first: one small file, no stat of its own
    small = None if content is None else content_snapshot(path, content, include, exclude, name)
    return small or linked_snapshot(path, include, exclude, name)


def linked_snapshot(
    path: str,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
    name: str | None = None,
) -> Snapshot:
    """:func:`snapshot` without the small-file shortcut: large files hard-linked, small ones read."""
    files = list_payload(path, include, exclude)
    if name is not None and os.path.isfile(path):
        files = [(name, full) for _, full in files]
    staging = os.path.join(os.path.dirname(os.path.abspath(path.rstrip("/\\"))), STAGING_DIR_NAME)
    tag = f"{os.getpid()}-{next(_COUNTER)}"
    snap = Snapshot(path, [], staging)
    try:
        for index, (inner, full) in enumerate(files):
            target = os.path.join(staging, f"{tag}-{index}-{os.path.basename(inner)}")
            if os.path.getsize(full) < COPY_BELOW_BYTES:
                with open(full, "rb") as handle:
                    snap.pending.append((target, handle.read()))
            else:
                os.makedirs(staging, exist_ok=True)  # only links need the folder now
                os.link(full, target)
            snap.created.append(target)
            snap.files.append((inner, target))
    except OSError:
        snap.release()
        return Snapshot(path, files, None)
    return snap


def content_snapshot(
    path: str,
    content: bytes,
    include: Sequence[str] | None = None,
    exclude: Sequence[str] = (),
    name: str | None = None,
) -> Snapshot | None:
    """The snapshot of the single file ``path`` whose ``content`` was read already; None when it is filtered out."""
    inner = name or os.path.basename(path)
    if (include is not None and not _matches(inner, include)) or _matches(inner, exclude):
        return None
    staging = os.path.join(os.path.dirname(os.path.abspath(path)), STAGING_DIR_NAME)
    target = os.path.join(staging, f"{os.getpid()}-{next(_COUNTER)}-0-{os.path.basename(inner)}")
    return Snapshot(path, [(inner, target)], staging, [(target, content)], [target])


def read_small_file(path: str) -> bytes | None:
    """The content of ``path`` when it is a regular file under :data:`COPY_BELOW_BYTES`, else None.

    The common case (one small checkpoint file) in four system calls and no ``stat`` of its
    own (a small regular file is no folder, so no sharded one): this runs on the training thread.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size >= COPY_BELOW_BYTES:
            return None
        chunks, left = [], info.st_size
        while left > 0 and (chunk := os.read(fd, left)):
            chunks.append(chunk)
            left -= len(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


def digest(snap: Snapshot) -> str:
    """A content digest of the whole payload (names and bytes), computed off the hot path.

    For a checkpoint kept by reference it is the digest of the references (names,
    URIs and each entry's digest from :func:`resolve_references`).
    """
    if snap.reference is not None:
        ref = snap.reference
        total = hashlib.blake2b(digest_size=20)
        for entry in ref.entries:
            total.update(f"{entry.name}\0{entry.uri}\0{entry.digest}\0{entry.size}\0".encode())
        return total.hexdigest()
    snap.materialize()
    total = hashlib.blake2b(digest_size=20)
    for name, full in sorted(snap.files):
        total.update(name.encode())
        total.update(b"\0")
        with open(full, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                total.update(chunk)
    return total.hexdigest()


def _matches(name: str, patterns: Sequence[str]) -> bool:
    base = name.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatch(name, p) or fnmatch.fnmatch(base, p) for p in patterns)


# ------------------------------------------------------------------ references

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")


def is_remote(path: str) -> bool:
    """True for a URL with a scheme other than ``file://`` (``s3://``, ``gs://``, ``az://``, ``hdfs://``...)."""
    return "://" in path and bool(_SCHEME.match(path)) and not path.lower().startswith("file://")


def local_path(path: str) -> str:
    """A local path for ``path`` (a ``file://`` URL becomes its path)."""
    if "://" in path and path.lower().startswith("file://"):
        return unquote(urlparse(path).path)
    return path


def file_uri(path: str) -> str:
    """The ``file://`` URI of a local path (absolute, percent-encoded as wandb expects)."""
    return "file://" + quote(os.path.abspath(path).replace(os.sep, "/"))


@dataclass(frozen=True)
class RefEntry:
    """One referenced file: its name inside the artifact, URI, size and digest.

    ``digest`` is what the artifact manifest records: wandb's own format (base64
    MD5 of the content) for ``reference_digest="hash"`` on local files, a
    fingerprint of URI, size and modification time for ``"size_mtime"``, or None
    where wandb asks the object store itself (``s3://``, ``gs://``... with ``"hash"``).
    """

    name: str
    uri: str
    size: int | None
    digest: str | None
    mtime_ns: int | None = None


@dataclass
class Reference:
    """A checkpoint recorded by reference: what to list, and (after resolving) the entries."""

    path: str
    include: Sequence[str] | None = None
    exclude: Sequence[str] = ()
    name: str | None = None
    entries: list[RefEntry] = field(default_factory=list)
    resolved: bool = False


def holds_nothing(snap: Snapshot) -> bool:
    """True when a checkpoint has no file to log: all filtered out by ``include``/``exclude``, or an empty folder.

    A reference to a local file or folder is listed (names only, no byte read); a remote one counts as holding files.
    """
    ref = snap.reference
    if ref is None:
        return not snap.files
    if ref.resolved:
        return not ref.entries
    if is_remote(ref.path):
        return False
    try:
        return not list_payload(local_path(ref.path), ref.include, ref.exclude)
    except OSError:
        return False  # (gone: the upload says so)


def resolve_references(snap: Snapshot, mode: str) -> list[RefEntry]:
    """List and fingerprint a by-reference checkpoint (in the worker; idempotent).

    Local files (plain paths or ``file://``) become ``file://`` entries, one per
    file of a folder (run markers and staging excluded, ``include``/``exclude``
    applied). ``mode="hash"`` reads every byte once to compute wandb's base64 MD5
    (so ``artifact.download()`` verifies it); ``"size_mtime"`` reads no byte and
    trusts size and modification time. A remote URL is one entry; its size and
    modification time come from fsspec when it can read them.

    Raises:
        OSError: a local checkpoint no longer exists.
    """
    ref = snap.reference
    if ref is None:
        return []
    if ref.resolved:
        return ref.entries
    entries: list[RefEntry] = []
    if is_remote(ref.path):
        base = ref.name or ref.path.rstrip("/").rsplit("/", 1)[-1]
        size, stamp, tag = _remote_info(ref.path)
        fingerprint = None
        if mode != "hash" or not _store_checksums(ref.path):
            fingerprint = _fingerprint(ref.path, size, stamp, tag)
        entries.append(RefEntry(base, ref.path, size, fingerprint, None))
    else:
        local = local_path(ref.path)
        listed = list_payload(local, ref.include, ref.exclude)
        if ref.name is not None and os.path.isfile(local):
            listed = [(ref.name, full) for _, full in listed]
        for inner, full in listed:
            info = os.stat(full)
            uri = file_uri(full)
            value = _md5_b64(full) if mode == "hash" else _fingerprint(uri, info.st_size, info.st_mtime_ns, None)
            entries.append(RefEntry(inner, uri, info.st_size, value, info.st_mtime_ns))
    ref.entries, ref.resolved = entries, True
    return entries


def _md5_b64(path: str) -> str:
    md5 = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            md5.update(chunk)
    return base64.b64encode(md5.digest()).decode("ascii")


def _fingerprint(uri: str, size: int | None, stamp: int | float | None, tag: str | None) -> str:
    """A digest in wandb's format (base64 MD5) of what is trusted instead of the bytes."""
    text = f"wandb-bridge:size_mtime:{uri}:{size}:{stamp}:{tag}"
    return base64.b64encode(hashlib.md5(text.encode(), usedforsecurity=False).digest()).decode("ascii")


def _store_checksums(uri: str) -> bool:
    """True for the schemes whose object store gives wandb a checksum (ETag/MD5) without reading the bytes."""
    scheme = uri.split("://", 1)[0].lower()
    return scheme in ("s3", "gs", "http", "https")


def _remote_info(uri: str) -> tuple[int | None, float | None, str | None]:
    """Size, modification time and ETag of a remote object through fsspec, when it can tell (else Nones)."""
    try:
        import fsspec  # type: ignore[import-untyped]
    except ImportError:
        return None, None, None
    try:
        fs, inner = fsspec.core.url_to_fs(uri)
        info: dict[str, Any] = fs.info(inner)
    except Exception:  # no such filesystem installed, no credentials, not found
        return None, None, None
    size = info.get("size")
    stamp = info.get("mtime") or info.get("LastModified") or info.get("updated") or info.get("created")
    tag = info.get("ETag") or info.get("etag") or info.get("md5Hash")
    return (
        None if size is None else int(size),
        _as_number(stamp),
        None if tag is None else str(tag),
    )


def _as_number(value: Any) -> float | None:
    if value is None:
        return None
    timestamp = getattr(value, "timestamp", None)
    if callable(timestamp):
        return float(timestamp())
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


# ------------------------------------------------------------ sharded folders

_SHARD = re.compile(r"^(?P<stem>.+)-(?P<index>\d{5})-of-(?P<total>\d{5})(?P<ext>\.[^/]+)$")
_DISTCP = re.compile(rb"__\d+_\d+\.distcp")
_TAG = re.compile(r"^[\w.\-]{1,128}$")
_WRITING = (".tmp", ".partial", ".incomplete", ".lock")
# How long the worker waits for a sharded folder to be complete, and how long its files
# must keep their size and modification time to count as no longer being written.
SHARD_WAIT_S = 120.0
SETTLE_S = 0.2


def is_sharded(path: str) -> bool:
    """True when ``path`` is a folder that looks like a sharded checkpoint.

    Sharded safetensors / ``.bin`` with an index (``*.index.json``, or
    ``name-00001-of-00003.ext`` shards), ``torch.distributed.checkpoint`` folders
    (``.metadata``, ``*.distcp``, also inside sub-folders as FSDP and accelerate
    write them) and DeepSpeed folders (a ``latest`` file beside the tag folders,
    ``global_step<N>/`` or Lightning's ``checkpoint/``).
    """
    if not os.path.isdir(path):
        return False
    for _root, dirs, names in os.walk(path):
        dirs[:] = [d for d in dirs if d != STAGING_DIR_NAME]
        for name in names:
            if (
                name.endswith((".index.json", ".distcp"))
                or name == ".metadata"
                or _SHARD.match(name)
                or (name == "latest" and bool(dirs))  # DeepSpeed: "latest" names the tag folder
            ):
                return True
    return False


def incomplete(path: str) -> str | None:
    """Why the sharded checkpoint folder at ``path`` is not complete yet, or None when it is.

    Complete means: every shard an index names is present (``weight_map`` of
    ``*.index.json``; the ``*.distcp`` files a ``.metadata`` names), every
    ``-NNNNN-of-MMMMM`` series is whole and has its index, a folder of
    ``*.distcp`` files has its ``.metadata`` (written last by ``dcp.save``), the
    tag a DeepSpeed ``latest`` file names exists, and no temporary file remains.
    """
    if not os.path.isdir(path):
        return f"{path!r} does not exist"
    for root, dirs, names in os.walk(path):
        dirs[:] = sorted(d for d in dirs if d != STAGING_DIR_NAME)
        present = set(names)
        rel = os.path.relpath(root, path)
        where = "" if rel == "." else f"{rel}/"
        for name in sorted(names):
            if name.endswith(_WRITING):
                return f"{where}{name} is still being written"
            if name.endswith(".index.json"):
                missing = _missing_from_index(os.path.join(root, name), present)
                if missing:
                    return f"{where}{missing} named in {name} is missing"
        series: dict[tuple[str, str], tuple[int, set[int]]] = {}
        for name in names:
            match = _SHARD.match(name)
            if match:
                key = (match["stem"], match["ext"])
                seen = series.setdefault(key, (int(match["total"]), set()))[1]
                seen.add(int(match["index"]))
        for (stem, ext), (total, seen) in sorted(series.items()):
            if len(seen) < total:
                return f"{where}{stem}-*-of-{total:05d}{ext}: {len(seen)} of {total} shards present"
            if not any(n.endswith(".index.json") for n in names):
                return f"{where}the index of {stem}-*{ext} is missing"
        if any(n.endswith(".distcp") for n in names) or ".metadata" in present:
            if ".metadata" not in present:
                return f"{where}.metadata is missing (torch.distributed.checkpoint writes it last)"
            missing = _missing_from_dcp(os.path.join(root, ".metadata"), present)
            if missing:
                return f"{where}{missing} named in .metadata is missing"
        if "latest" in present and dirs:
            try:
                with open(os.path.join(root, "latest"), encoding="utf-8") as handle:
                    tag = handle.read(256).strip()
            except (OSError, ValueError):
                tag = ""
            if _TAG.match(tag) and not os.path.isdir(os.path.join(root, tag)):
                return f"{where}{tag}/ named in 'latest' is missing"
    return None


def _missing_from_index(index: str, present: set[str]) -> str | None:
    try:
        with open(index, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError):
        return os.path.basename(index)  # half-written index
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict):
        return None
    for shard in sorted({str(v) for v in weight_map.values()}):
        if shard not in present and not os.path.exists(os.path.join(os.path.dirname(index), shard)):
            return shard
    return None


def _missing_from_dcp(metadata: str, present: set[str]) -> str | None:
    """The first ``*.distcp`` file the ``.metadata`` pickle names that is absent (read as bytes: never unpickled)."""
    try:
        with open(metadata, "rb") as handle:
            data = handle.read()
    except OSError:
        return ".metadata"
    names: set[str] = {bytes(m).decode() for m in _DISTCP.findall(data)}
    for name in sorted(names):
        if name not in present:
            return name
    return None


def _signature(path: str) -> list[tuple[str, int, int]]:
    out = []
    for name, full in list_payload(path):
        info = os.stat(full)
        out.append((name, info.st_size, info.st_mtime_ns))
    return out


def wait_complete(path: str, timeout: float = SHARD_WAIT_S, settle: float = SETTLE_S) -> str | None:
    """Wait (in the worker) until the sharded folder at ``path`` is complete and no file changes.

    Returns:
        None once complete and stable for ``settle`` seconds; otherwise the reason
        it still was not after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        reason = incomplete(path)
        if reason is None:
            try:
                before = _signature(path)
                time.sleep(settle)
                if _signature(path) == before and incomplete(path) is None:
                    return None
            except OSError as exc:
                reason = str(exc)
            else:
                reason = "its files are still changing"
        if time.monotonic() >= deadline:
            return reason
        time.sleep(min(settle, max(0.0, deadline - time.monotonic())))
