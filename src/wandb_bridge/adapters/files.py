"""Checkpoint files and folders -> artifact payload: snapshots, filters and digests.

A snapshot keeps a checkpoint's content even when the framework deletes or
overwrites the files right after reporting them, at a cost of microseconds on
the training thread: large files are hard-linked into a private staging folder
beside them, small files are read into memory (the worker writes them out).
Hashing and handing the payload to wandb happen in the background worker.
"""

from __future__ import annotations

import fnmatch
import hashlib
import itertools
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field

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


def list_payload(
    path: str, include: Sequence[str] | None = None, exclude: Sequence[str] = ()
) -> list[tuple[str, str]]:
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
    small = _read_small_file(path)
    if small is not None:
        inner = name or os.path.basename(path)
        if (include is None or _matches(inner, include)) and not _matches(inner, exclude):
            staging = os.path.join(os.path.dirname(os.path.abspath(path)), STAGING_DIR_NAME)
            target = os.path.join(staging, f"{os.getpid()}-{next(_COUNTER)}-0-{os.path.basename(inner)}")
            return Snapshot(path, [(inner, target)], staging, [(target, small)], [target])
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


def _read_small_file(path: str) -> bytes | None:
    """The content of ``path`` when it is a regular file under :data:`COPY_BELOW_BYTES`, else None.

    The common case (one small checkpoint file) in a few system calls: this runs on the
    training thread.
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
    """A content digest of the whole payload (names and bytes), computed off the hot path."""
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
