"""Checkpoint files and folders -> artifact payload: snapshots, filters and digests.

A snapshot hard-links the files a framework wrote into a private staging
folder next to them. That costs microseconds on the training thread and keeps
the content even when the framework deletes or overwrites the checkpoint
before the background worker has hashed and handed it to wandb.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from wandb_bridge.adapters.markers import MARKER_FILE

STAGING_DIR_NAME = ".wandb-bridge-staging"
_CHUNK = 1 << 20
# Files up to this size are copied, not linked: a framework that rewrites a file
# in place (same inode) right after saving it could otherwise change a linked
# snapshot before the worker hashed it. Copying them costs well under a millisecond.
COPY_BELOW_BYTES = 4 << 20


@dataclass
class Snapshot:
    """The files of one checkpoint: ``(name inside the artifact, local path)`` pairs."""

    source: str
    files: list[tuple[str, str]]
    staging: str | None = None

    @property
    def size(self) -> int:
        """Total bytes of the payload."""
        return sum(os.path.getsize(p) for _, p in self.files if os.path.exists(p))

    def release(self) -> None:
        """Remove the private hard links (never the framework's own files)."""
        if self.staging is None:
            return
        shutil.rmtree(self.staging, ignore_errors=True)
        parent = os.path.dirname(self.staging)
        try:
            os.rmdir(parent)  # only succeeds once the staging root is empty
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
    """Hard-link (small files: copy) a checkpoint's files into a private staging folder beside it.

    Falls back to referencing the original files where links are impossible
    (another file system, no permission); the worker then reads them in place.
    ``name``, for a single-file checkpoint, is the file's name inside the
    artifact (default: its own name).
    """
    files = list_payload(path, include, exclude)
    if name is not None and os.path.isfile(path):
        files = [(name, full) for _, full in files]
    parent = os.path.dirname(os.path.abspath(path.rstrip("/\\")))
    staging = os.path.join(parent, STAGING_DIR_NAME, uuid.uuid4().hex[:12])
    linked: list[tuple[str, str]] = []
    try:
        for name, full in files:
            target = os.path.join(staging, name)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            if os.path.getsize(full) < COPY_BELOW_BYTES:
                shutil.copyfile(full, target)
            else:
                os.link(full, target)
            linked.append((name, target))
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
        return Snapshot(path, files, None)
    return Snapshot(path, linked, staging)


def digest(snap: Snapshot) -> str:
    """A content digest of the whole payload (names and bytes), computed off the hot path."""
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
