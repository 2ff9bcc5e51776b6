"""Checkpoint reports: snapshot on the training thread; policy, dedup, upload and retention in the worker.

:class:`CheckpointUploads` owns what the session keeps about checkpoints: the
:class:`~wandb_bridge.core.checkpoints.CheckpointPolicy` (which report becomes
an artifact version, with which aliases), the snapshots held for a later
upload, the content digests already uploaded and the aliases each holds,
offline ``keep_checkpoints`` deferrals and online pruning.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from wandb_bridge.adapters import files, retention, wandb_sdk
from wandb_bridge.core import hparams
from wandb_bridge.core.checkpoints import CheckpointEvent, CheckpointPolicy, Upload, score_from
from wandb_bridge.core.distributed import RankInfo
from wandb_bridge.core.faults import FAILED, FaultBoundary
from wandb_bridge.core.metrics import flatten_metrics
from wandb_bridge.core.ops import (
    Checkpoint,
    Marker,
    Op,
    Saved,
    ShardedCheckpoint,
    SmallCheckpoint,
    UploadEnd,
    UploadFiles,
)
from wandb_bridge.core.run_markers import RunMarkers
from wandb_bridge.core.settings import Settings


class CheckpointUploads:
    """The checkpoint part of a session (see the module docstring).

    Args:
        settings: the session's settings.
        faults: its fault boundary.
        rank: this process's rank.
        markers: the run markers written beside checkpoints.
        map_key: the recorded name of a metric name.
        framework: the framework's name and version, for the metadata.
        put: queues an operation for the worker.
    """

    def __init__(
        self,
        settings: Settings,
        faults: FaultBoundary,
        rank: RankInfo,
        markers: RunMarkers,
        map_key: Callable[[str], str],
        framework: tuple[str | None, str | None],
        put: Callable[[Op], None],
    ) -> None:
        self._settings = settings
        self._put = put
        self._faults = faults
        self._rank = rank
        self._markers = markers
        self._map_key = map_key
        self._framework = framework
        self.policy = CheckpointPolicy(settings.log_model, None, settings.monitor_mode)
        self._handle: wandb_sdk.RunHandle | None = None
        self.reported = 0  # checkpoints reported (training thread; the policy counts in the worker)
        self.uploaded = 0
        self._retained: dict[int, files.Snapshot] = {}
        self._digests: set[str] = set()
        self._alias_holder: dict[str, str] = {}  # alias -> digest of the version that holds it
        self._end_uploaded: tuple[int, int] | None = None
        self._final = False  # the end of the run: snapshots are released after their upload
        # Offline keep_checkpoints holds versions back until the end; online it prunes in the background.
        self._deferred: list[tuple[Upload, files.Snapshot]] = []
        self._prune_lock = threading.Lock()
        # A seam for tests: a callable returning the public wandb.Api (default: the real one).
        self.public_api_factory: Any = None
        self.retention_log: list[retention.Pruned] = []

    def attach(self, handle: wandb_sdk.RunHandle) -> None:
        """The run versions are logged to."""
        self._handle = handle

    # --------------------------------------------------------- training thread

    def report(
        self,
        path: str,
        at: int | None,
        epoch: int | None,
        metrics: Mapping[str, Any] | None,
        options: tuple[float | None, bool | None, Sequence[str], Mapping[str, Any] | None],
        selection: tuple[Sequence[str] | None, Sequence[str], str | None],
    ) -> None:
        """The training thread's half of :meth:`Session.log_checkpoint`: queue the checkpoint for the worker.

        Only the content is kept here (the framework may overwrite or delete the files
        next), or nothing at all for a reference; the policy, the marker, the
        completeness check of a sharded folder and the upload run in the worker.

        Args:
            path: the checkpoint (a remote URL, or a local path).
            at: its step.
            epoch: its epoch.
            metrics: metrics at save time.
            options: the score, the framework's verdict, extra aliases and metadata.
            selection: include patterns, exclude patterns, the payload name.
        """
        include, exclude, payload_name = selection
        remote = files.is_remote(path)
        if not remote:
            path = files.local_path(path)
        snap = None
        sharded = False
        if self.policy.enabled:
            by_reference = remote or self._settings.checkpoint_storage == "reference"
            # The common case, a small file: read it, and leave the rest of the call to the worker.
            content = None if by_reference else files.read_small_file(path)
            if content is not None:
                self.reported += 1
                copied = None if metrics is None else dict(metrics)
                self._put(SmallCheckpoint(path, at, epoch, copied, options, selection, content))
                return
            sharded = not remote and files.is_sharded(path)
            if by_reference:
                snap = files.Snapshot.by_reference(path, include, exclude, payload_name)
            elif not sharded:
                try:
                    snap = files.linked_snapshot(path, include, exclude, payload_name)
                except OSError as exc:
                    self._put(Marker(path, at, epoch))
                    self._faults.input_fault("checkpoint", f"checkpoint {path!r} skipped: {exc}")
                    return
        self.reported += 1
        score, is_best, aliases, metadata = options
        saved = Saved(
            path, at, epoch, None if metrics is None else dict(metrics), score, is_best, tuple(aliases), metadata
        )
        if sharded:
            self._put(ShardedCheckpoint(saved, snap, (include, tuple(exclude), payload_name)))
        else:
            self._put(Checkpoint(saved, snap))

    def small(self, op: SmallCheckpoint) -> None:
        """The worker's half of reporting a small file: its record and snapshot, then :meth:`saved`."""
        include, exclude, payload_name = op.selection
        snap = files.content_snapshot(op.path, op.content, include, exclude, payload_name)
        if snap is None:  # filtered out: a checkpoint with nothing to upload
            snap = files.Snapshot(op.path, [])
        score, is_best, aliases, metadata = op.options
        saved = Saved(op.path, op.step, op.epoch, op.metrics, score, is_best, tuple(aliases), metadata)
        self.saved(Checkpoint(saved, snap))

    def artifact(
        self, path: str, name: str, kind: str, aliases: Sequence[str], metadata: Mapping[str, Any] | None
    ) -> None:
        """The training thread's half of :meth:`Session.log_artifact`: keep the files' content, queue the upload."""
        try:
            snap = files.snapshot(path)
        except OSError as exc:
            self._faults.input_fault("artifact", f"artifact {name!r} skipped: {exc}")
            return
        self._put(UploadFiles(snap, name, kind, tuple(aliases), hparams.to_json_safe(dict(metadata or {}))))

    # ---------------------------------------------------------------- worker

    def sharded(self, op: ShardedCheckpoint) -> None:
        """A sharded folder: wait until it is complete, then handle it as one checkpoint."""
        saved, snap = op.saved, op.snap
        path = saved.path
        if not self._settings.rank_zero_only and self._rank.rank != 0:
            # One run per rank: the folder is shared by all ranks; global rank 0 logs it, once.
            self._markers.write(path, saved.step, saved.epoch)
            return
        reason = files.wait_complete(path)
        if reason is not None:
            self._markers.write(path, saved.step, saved.epoch)
            self._faults.warn(
                f"ckpt:{path}",
                f"Sharded checkpoint {path!r} was not logged: still incomplete after "
                f"{files.SHARD_WAIT_S:.0f} s ({reason}).",
            )
            return
        if snap is None:
            try:
                snap = files.snapshot(path, *op.spec)
            except OSError as exc:
                self._markers.write(path, saved.step, saved.epoch)
                self._faults.warn(f"ckpt:{path}", f"Checkpoint {path!r} was not uploaded: {exc}")
                return
        self.saved(Checkpoint(saved, snap))

    def saved(self, op: Checkpoint) -> None:
        """The worker's half of :meth:`Session.log_checkpoint`: marker, policy, uploads."""
        saved, snap = op.saved, op.snap
        self._markers.write(saved.path, saved.step, saved.epoch)
        if snap is None:
            return
        if files.holds_nothing(snap):  # before the policy: it is no candidate for "latest" or "best"
            snap.release()
            self._nothing_left(saved.path)
            return
        policy = self.policy
        try:
            score = saved.score
            if score is None and saved.metrics:
                mapped = {self._map_key(str(k)): v for k, v in flatten_metrics(saved.metrics)}
                score = score_from(mapped, policy.monitor)
            event = CheckpointEvent(
                path=saved.path,
                step=saved.step,
                epoch=None if saved.epoch is None else int(saved.epoch),
                score=None if score is None else float(score),
                is_best=saved.is_best,
                aliases=saved.aliases,
                metadata=dict(saved.metadata or {}),
                sequence=policy.seen + 1,
            )
        except (TypeError, ValueError) as exc:
            snap.release()
            self._faults.warn(f"ckpt:{saved.path}", f"Checkpoint {saved.path!r} was not uploaded: {exc}")
            return
        uploads, released = policy.on_saved(event)
        latest = policy.latest
        if uploads or (policy.log_model == "end" and latest is not None):
            assert latest is not None
            self._retained[latest.sequence] = snap
        else:
            snap.release()
        for old in released:
            if old.sequence != (latest.sequence if latest else -1):
                gone = self._retained.pop(old.sequence, None)
                if gone is not None:
                    gone.release()
        for upload in uploads:
            self._queue_upload(upload)

    def upload_end(self, op: UploadEnd) -> None:
        """Upload the end-of-run checkpoints (after every checkpoint reported before)."""
        self._final = self._final or op.final
        self._flush_deferred()
        if op.only_if_new and self._end_uploaded == self._end_key():
            return
        for upload in self.policy.at_end():
            self._queue_upload(upload)
        self._end_uploaded = self._end_key()

    def _end_key(self) -> tuple[int, int]:
        latest, best = self.policy.latest, self.policy.best
        return (-1 if latest is None else latest.sequence, -1 if best is None else best.sequence)

    def upload_files(self, op: UploadFiles) -> None:
        """Log a file or folder as an artifact (:meth:`Session.log_artifact`)."""
        snap = op.snap
        snap.materialize()
        handle = self._handle
        assert handle is not None
        try:
            handle.log_artifact(op.name, op.kind, snap.files, op.aliases, op.metadata)
        finally:
            snap.release()

    def close(self) -> None:
        """Release the snapshots still held (the run ends)."""
        for snap in self._retained.values():
            snap.release()
        self._retained.clear()

    def _queue_upload(self, upload: Upload) -> None:
        snap = self._retained.get(upload.event.sequence)
        if snap is None:
            return
        log_model = self.policy.log_model
        if log_model != "end" or self._final:
            self._retained.pop(upload.event.sequence, None)
        keep = self._settings.keep_checkpoints
        handle = self._handle
        if keep is not None and handle is not None and handle.offline and log_model != "end":
            self._defer(upload, snap, keep)
            return
        logged = self._upload(upload, snap)
        if logged is not None and keep is not None and handle is not None and not handle.offline:
            self._prune_later(logged, keep)

    def _upload(self, upload: Upload, snap: files.Snapshot) -> Any:
        """Log one checkpoint version; returns the logged wandb artifact (None when nothing new was logged)."""
        handle = self._handle
        assert handle is not None
        settings = self._settings
        try:
            refs = files.resolve_references(snap, settings.reference_digest)
            if files.holds_nothing(snap):  # (a reference found empty once listed)
                self._nothing_left(upload.event.path)
                return None
            digest = files.digest(snap)
            duplicate = digest in self._digests
            moving = [a for a in upload.aliases if a in ("latest", "best")]
            if duplicate and all(self._alias_holder.get(a) == digest for a in moving):
                return None
            # Same content again but with aliases its version does not hold (e.g. "latest" on a
            # last.ckpt identical to the best checkpoint): log it again. wandb keeps one version
            # per content digest and only moves the aliases; no file is uploaded twice.
            name = settings.checkpoint_name or f"model-{handle.id}"
            framework, version = self._framework
            meta = self.policy.metadata(upload.event, run_id=handle.id, framework=framework, framework_version=version)
            if snap.reference is not None:
                meta["checkpoint_storage"] = "reference"
                meta["reference_digest"] = settings.reference_digest
            references = [(r.name, r.uri, r.digest, r.size) for r in refs]
            logged = self._faults.guard_worker(
                "log a checkpoint",
                handle.log_artifact,
                *(name, "model", snap.files, upload.aliases, meta, None, references),
            )
            if logged is FAILED:
                return None
            self._alias_holder.update(dict.fromkeys(upload.aliases, digest))
            if duplicate:
                return None
            self._digests.add(digest)
            self.uploaded += 1
            return logged
        except OSError as exc:
            self._faults.warn(f"ckpt:{upload.event.path}", f"Checkpoint {upload.event.path!r} was not uploaded: {exc}")
            return None
        finally:
            if upload.event.sequence not in self._retained or self._final:
                snap.release()

    def _nothing_left(self, path: str) -> None:
        """A checkpoint with no file to upload (all filtered out by ``include``/``exclude``, or an empty
        folder): no model version is logged for it (an empty one would hide the previous version's files)."""
        self._faults.warn(
            f"ckpt-empty:{path}",
            f"Checkpoint {path!r} was not uploaded: no file of it is left to upload "
            "(check log_checkpoint's include/exclude, or the folder is empty).",
        )

    # ------------------------------------------------------------ retention

    def _defer(self, upload: Upload, snap: files.Snapshot, keep: int) -> None:
        """Offline ``keep_checkpoints``: hold the version back; drop those that would not be kept.

        Nothing can be deleted from an offline run before it is synced, so the
        versions that retention would delete are never logged: the newest ``keep``,
        the one holding ``best`` and those with the user's own aliases are logged at
        the end of training (:meth:`Session.upload_end_checkpoints` or :meth:`Session.finish`).
        """
        if self._retained.get(upload.event.sequence) is snap:
            self._retained.pop(upload.event.sequence, None)  # the deferral owns the snapshot now
        if snap.reference is not None:
            try:  # fingerprint now: the framework may delete or rewrite the files before the end
                files.resolve_references(snap, self._settings.reference_digest)
            except OSError as exc:
                path = upload.event.path
                self._faults.warn(f"ckpt:{path}", f"Checkpoint {path!r} was not uploaded: {exc}")
                return
        deferred = [*self._deferred, (upload, snap)]
        best = max((i for i, (u, _) in enumerate(deferred) if u.best), default=-1)
        kept = []
        for index, (old, old_snap) in enumerate(deferred):
            user = [a for a in retention.protective(old.aliases) if a not in ("latest", "best")]
            if index >= len(deferred) - keep or index == best or user:
                kept.append((old, old_snap))
            else:
                old_snap.release()
        self._deferred = kept

    def _flush_deferred(self) -> None:
        deferred, self._deferred = self._deferred, []
        for upload, snap in deferred:
            self._upload(upload, snap)
            snap.release()

    def _prune_later(self, artifact: Any, keep: int) -> None:
        """Online ``keep_checkpoints``: once ``artifact`` is committed, delete old versions (a background thread).

        The worker does not wait for the upload; the thread waits for the commit
        (``artifact.wait()``), then deletes through the public ``wandb.Api``.
        """
        handle = self._handle
        assert handle is not None
        factory = self.public_api_factory or handle.public_api
        run_id = handle.id

        def prune() -> None:
            with self._prune_lock:
                try:
                    artifact.wait()
                    path = f"{artifact.entity}/{artifact.project}/{artifact.name.split(':')[0]}"
                    done = retention.prune(factory(), path, keep, run_id=run_id)
                except Exception as exc:
                    self._faults.warn(
                        "retention", f"Old checkpoint versions were not deleted ({type(exc).__name__}: {exc})."
                    )
                    return
                self.retention_log.append(done)
                if done.failed:
                    self._faults.warn("retention", f"Some old checkpoint versions could not be deleted: {done.failed}")

        threading.Thread(target=prune, name="wandb-bridge-retention", daemon=True).start()
