"""Checkpoint reports, run markers beside checkpoints, and resuming a run from a checkpoint."""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from wandb_bridge._version import __version__
from wandb_bridge.adapters import files, markers, retention, wandb_sdk
from wandb_bridge.adapters.markers import RunMarker
from wandb_bridge.core.checkpoints import CheckpointEvent, Upload, score_from
from wandb_bridge.core.metrics import STEP_KEY, flatten_metrics
from wandb_bridge.core.session_base import _CALL, SessionBase


class CheckpointsMixin(SessionBase):
    """The checkpoint half of the public API (the policy itself is in ``checkpoints.py``)."""

    # Set on first use (the session's state is reset in session_base.py): offline
    # ``keep_checkpoints`` holds back versions until the end; online it prunes in the background.
    _ckpt_deferred: list[tuple[Upload, files.Snapshot]]
    _ckpt_prune_lock: threading.Lock
    # A seam for tests: a callable returning the public ``wandb.Api`` (default: the real one).
    public_api_factory: Any = None
    retention_log: list[retention.Pruned]

    def upload_end_checkpoints(self) -> None:
        """Upload now what ``log_model="end"`` would upload at :meth:`finish`; the run stays open.

        For frameworks whose training ends before the run does (transformers keeps
        the run open for a later ``evaluate()``/``predict()``). :meth:`finish` does
        not upload them again unless a checkpoint was reported in between.
        """
        if self._noop or self._finished or self._handle is None:
            return
        self._put((_CALL, self._upload_end))

    def _upload_end(self, only_if_new: bool = False) -> None:
        """Upload the end-of-run checkpoints (in the worker, after every checkpoint reported before)."""
        self._flush_deferred()
        if only_if_new and self._end_uploaded == self._end_key():
            return
        for upload in self.policy.at_end():
            self._queue_upload(upload)
        self._end_uploaded = self._end_key()

    def _end_key(self) -> tuple[int, int]:
        latest, best = self.policy.latest, self.policy.best
        return (-1 if latest is None else latest.sequence, -1 if best is None else best.sequence)

    def log_checkpoint(
        self,
        path: str | os.PathLike[str],
        step: int | None = None,
        epoch: int | None = None,
        metrics: Mapping[str, Any] | None = None,
        *,
        score: float | None = None,
        is_best: bool | None = None,
        aliases: Sequence[str] = (),
        metadata: Mapping[str, Any] | None = None,
        include: Sequence[str] | None = None,
        exclude: Sequence[str] = (),
        payload_name: str | None = None,
    ) -> None:
        """Report a checkpoint file or folder the framework wrote.

        The checkpoint policy (``log_model``) decides whether it is uploaded now,
        at the end, or not at all; aliases and metadata follow the run
        contract (docs/run-contract.md); the same content is never uploaded twice. The training thread
        only keeps the files' content (small files read into memory, large ones
        hard-linked); the policy, the run marker, hashing and the upload run in
        the worker, in order with everything logged before.

        With ``checkpoint_storage="reference"``, or for a remote URL (``s3://``,
        ``gs://``, any ``scheme://``), the version records references (URI, size,
        digest per ``reference_digest``) and the training thread touches no file. A
        sharded folder (an ``*.index.json`` with its shards, a
        ``torch.distributed.checkpoint`` folder, a DeepSpeed folder) is one version,
        logged once the worker finds it complete. ``keep_checkpoints`` limits how
        many versions stay (see docs/checkpoints-at-scale.md).

        Args:
            path: the checkpoint file or folder, a ``file://`` URL, or a remote URL.
            step: the global step it was saved at (default: the last logged).
            epoch: the epoch, when known.
            metrics: metrics at save time; the monitored one gives the score.
            score: the monitored value, when the caller knows it directly.
            is_best: the framework's own verdict (e.g. Lightning ``best_model_path``).
            aliases: extra aliases.
            metadata: extra metadata.
            include: glob patterns of files to upload from a folder (None: all).
            exclude: glob patterns of files never to upload.
            payload_name: for a single-file checkpoint, the file's name inside the
                artifact (e.g. ``"model.ckpt"``, where the framework's own
                integration uses a fixed name); its own name is kept in the
                ``original_filename`` metadata. Same content under the same
                name is never uploaded twice.
        """
        if not self._ensure_started():
            return
        path_text = os.fspath(path)
        remote = files.is_remote(path_text)
        if not remote:
            path_text = files.local_path(path_text)
        at = self._last_step if step is None else int(step)
        snap = None
        sharded = False
        if self.policy.enabled:
            # The training thread only keeps the content (the framework may overwrite or delete
            # the files next), or nothing at all for a reference; the policy, the marker, the
            # completeness check of a sharded folder and the upload run in the worker.
            sharded = not remote and files.is_sharded(path_text)
            if remote or self.settings.checkpoint_storage == "reference":
                snap = files.Snapshot.by_reference(path_text, include, exclude, payload_name)
            elif not sharded:
                try:
                    snap = files.snapshot(path_text, include, exclude, payload_name)
                except OSError as exc:
                    self._put((_CALL, self._write_marker, path_text, at, epoch))
                    self._fault("checkpoint", f"checkpoint {path_text!r} skipped: {exc}")
                    return
        self._reported += 1
        saved = (path_text, at, epoch, metrics and dict(metrics), score, is_best, tuple(aliases), metadata)
        if sharded:
            self._put((_CALL, self._sharded_saved, saved, snap, (include, tuple(exclude), payload_name)))
        else:
            self._put((_CALL, self._checkpoint_saved, saved, snap))

    def _sharded_saved(
        self,
        saved: tuple[Any, ...],
        snap: files.Snapshot | None,
        spec: tuple[Sequence[str] | None, Sequence[str], str | None],
    ) -> None:
        """A sharded folder (in the worker): wait until it is complete, then handle it as one checkpoint."""
        path = saved[0]
        if not self.settings.rank_zero_only and self.rank.rank != 0:
            # One run per rank: the folder is shared by all ranks; global rank 0 logs it, once.
            self._write_marker(path, saved[1], saved[2])
            return
        reason = files.wait_complete(path)
        if reason is not None:
            self._write_marker(path, saved[1], saved[2])
            self._warn(
                f"ckpt:{path}",
                f"Sharded checkpoint {path!r} was not logged: still incomplete after "
                f"{files.SHARD_WAIT_S:.0f} s ({reason}).",
            )
            return
        if snap is None:
            try:
                snap = files.snapshot(path, *spec)
            except OSError as exc:
                self._write_marker(path, saved[1], saved[2])
                self._warn(f"ckpt:{path}", f"Checkpoint {path!r} was not uploaded: {exc}")
                return
        self._checkpoint_saved(saved, snap)

    def _checkpoint_saved(self, saved: tuple[Any, ...], snap: files.Snapshot | None) -> None:
        """The worker's half of :meth:`log_checkpoint`: marker, policy, uploads."""
        path, step, epoch, metrics, score, is_best, aliases, metadata = saved
        self._write_marker(path, step, epoch)
        if snap is None:
            return
        try:
            if score is None and metrics:
                mapped = {self._keys(str(k)): v for k, v in flatten_metrics(metrics)}
                score = score_from(mapped, self.policy.monitor)
            event = CheckpointEvent(
                path=path,
                step=step,
                epoch=None if epoch is None else int(epoch),
                score=None if score is None else float(score),
                is_best=is_best,
                aliases=aliases,
                metadata=dict(metadata or {}),
                sequence=self.policy.seen + 1,
            )
        except (TypeError, ValueError) as exc:
            snap.release()
            self._warn(f"ckpt:{path}", f"Checkpoint {path!r} was not uploaded: {exc}")
            return
        uploads, released = self.policy.on_saved(event)
        latest = self.policy.latest
        if uploads or (self.policy.log_model == "end" and latest is not None):
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

    @property
    def resumed_from(self) -> RunMarker | None:
        """The marker of the checkpoint this training resumes from (see :meth:`resume_from_checkpoint`)."""
        return self._resumed

    def resume_from_checkpoint(self, path: str | os.PathLike[str], step: int | None = None) -> RunMarker | None:
        """Declare that this training resumes from the checkpoint at ``path``: continue its run.

        Every checkpoint reported with :meth:`log_checkpoint` is marked with the
        run that wrote it (``_wandb-bridge-runs.json`` beside it). Called before
        the run starts, the session then continues that run (its id with
        ``resume="allow"``) unless an id, a run or ``resume`` was given
        explicitly, a run is already active, or ``rank_zero_only=False`` (one
        run per rank): those win. The ``resume_from_checkpoint=`` argument does
        the same at start.

        When the run recorded steps after the checkpoint's, it is rewound to the
        checkpoint's row (``wandb.init(resume_from="<id>?_step=<n>")``, with the
        ``_step`` the run markers map the checkpoint's step to) and those steps are
        recorded again. Where no rewind is possible (``resume=`` given, a marker
        without that map, a wandb without ``resume_from``, a run already started),
        the steps the previous attempts recorded are not recorded again:
        :meth:`log` drops rows for them, with one warning that says why, so the
        history has each step once (docs/distributed.md).

        Args:
            path: the checkpoint file or folder training resumes from.
            step: its global step, when known (finds the run of a checkpoint
                saved without a marker, from the others in its folder).

        Returns:
            The marker found, or None (no marker: nothing changes).
        """
        try:
            marker = markers.find(os.fspath(path), step)
        except OSError:
            marker = None
        if marker is None:
            return None
        with self._lock:
            settings = self.settings
            if self._started:
                target = self.run_id
            elif (
                settings.id is None
                and settings.run is None
                and settings.resume not in (False, "never")
                and settings.rank_zero_only
                and self._guard("find the active run", wandb_sdk.active_run) is None
            ):
                changes: dict[str, Any] = {"id": marker.run_id, "resume": settings.resume or "allow"}
                rewind = self._rewind_point(marker)
                if rewind is not None:
                    # Run rewind: the run's history continues from the checkpoint's row.
                    moment = f"{marker.run_id}?_step={rewind}"
                    changes["init_kwargs"] = {**settings.init_kwargs, "resume_from": moment}
                    changes["resume"] = None
                if settings.project is None and marker.project:
                    changes["project"] = marker.project
                if settings.entity is None and marker.entity:
                    changes["entity"] = marker.entity
                self.settings = settings.with_changes(**changes)
                target = marker.run_id
            else:
                target = settings.id if settings.run is None else None
            if target != marker.run_id:
                # Another run (explicit id or resume="never", an active run, or one that
                # started before the checkpoint was known): nothing is skipped there.
                if target is not None:
                    why = "it started before the checkpoint was known" if self._started else "chosen explicitly"
                    self._warn(
                        f"resume:{marker.run_id}",
                        f"{marker.checkpoint!r} was written by run {marker.run_id}, but this training logs to run "
                        f"{target} ({why}).",
                    )
                return marker
            self._resumed = marker
            rewound = "resume_from" in self.settings.init_kwargs and not self._started
            self._skip_through = None if rewound else marker.recorded_through
            if self._started and (marker.recorded_through or 0) > (marker.step or 0):
                self._skip_reason = "the run had started before the checkpoint was known"
            if marker.step is not None and (self._last_step is None or marker.step > self._last_step):
                self._last_step = marker.step
        return marker

    # Why a resume from an earlier checkpoint skips steps instead of rewinding the run (None: not known yet).
    _skip_reason: str | None = None

    def _rewind_point(self, marker: RunMarker) -> int | None:
        """wandb's ``_step`` to rewind ``marker``'s run to, or None (no rewind: the skip rule applies).

        A rewind is needed when the run recorded steps after the checkpoint's; it is
        possible when wandb knows ``resume_from`` (0.17.1 and later), the marker holds
        the ``_step`` of the checkpoint's row, and no ``resume=`` was chosen explicitly.
        """
        if marker.step is None or (marker.recorded_through or 0) <= marker.step:
            return None  # nothing recorded after the checkpoint: a plain resume continues it
        settings = self.settings
        reason = None
        if settings.resume is not None:
            reason = f"resume={settings.resume!r} was chosen explicitly (wandb takes resume or resume_from, not both)"
        elif "fork_from" in settings.init_kwargs or "resume_from" in settings.init_kwargs:
            reason = "fork_from/resume_from was chosen explicitly"
        elif marker.wandb_step is None:
            reason = (
                "the run marker holds no wandb _step for the checkpoint's step (written by an older "
                "wandb-bridge, or the process ended before that step's row reached wandb)"
            )
        elif not self._guard("check wandb's run rewind", wandb_sdk.supports_rewind):
            reason = "the installed wandb has no run rewind (wandb.init(resume_from=...) needs wandb 0.17.1 or later)"
        if reason is not None:
            self._skip_reason = reason
            return None
        return marker.wandb_step

    def _skip_recorded(self) -> None:
        marker = self._resumed
        at = "?" if marker is None or marker.step is None else str(marker.step)
        why = f" The run is not rewound to the checkpoint because {self._skip_reason}." if self._skip_reason else ""
        self._warn(
            "resume:skip",
            f"This training resumes run {self.run_id} from its checkpoint at step {at}; steps up to "
            f"{self._skip_through} were already recorded by the run's previous attempt, so this attempt's "
            f"values for them are not recorded again (each step is recorded once).{why}",
        )

    # The map trainer/global_step -> wandb _step (worker thread): the run it counts for,
    # wandb's _step of the next row, the recent rows, and checkpoint steps whose row is
    # still to come (-> the marker indexes that wait for it).
    _steps_run: str | None = None
    _wandb_next = 0
    _recent_steps: dict[int, int]
    _pending_steps: dict[int, set[str]]

    def _emit(self, rows: list[dict[str, Any]]) -> None:
        handle = self._handle
        if rows and handle is not None:
            self._count_wandb_steps(handle, rows)
        super()._emit(rows)  # type: ignore[misc]  # RowsMixin's, next in the session's MRO

    def _count_wandb_steps(self, handle: wandb_sdk.RunHandle, rows: list[dict[str, Any]]) -> None:
        """Note which wandb ``_step`` each row gets (one per committed row, from the run's starting step)."""
        if self._steps_run != handle.id:
            self._steps_run = handle.id
            self._wandb_next = self._guard("read the run's starting step", lambda: handle.starting_step) or 0
            self._recent_steps = {}
            self._pending_steps = {}
            self._last_row: tuple[int, int] | None = None
        resolved: dict[str, dict[int, int]] = {}
        for row in rows:
            step = row.get(STEP_KEY)
            number = self._wandb_next
            self._wandb_next += 1
            if not isinstance(step, int) or isinstance(step, bool):
                continue
            for waiting in [p for p in self._pending_steps if p < step]:
                # A later step's row: the last row at or before the checkpoint's step is final now.
                indexes = self._pending_steps.pop(waiting)
                if self._last_row is not None and self._last_row[0] <= waiting:
                    for index in indexes:
                        resolved.setdefault(index, {})[waiting] = self._last_row[1]
            for index in self._pending_steps.get(step, ()):
                resolved.setdefault(index, {})[step] = number
            self._recent_steps[step] = number
            self._last_row = (step, number)
        if len(self._recent_steps) > 512:
            for old in sorted(self._recent_steps)[:-256]:
                del self._recent_steps[old]
        for index, steps in resolved.items():
            try:
                markers.record_wandb_steps(index, handle.id, steps)
            except OSError:
                pass

    def _map_wandb_step(self, index: str, step: int | None) -> None:
        """Record in ``index`` the ``_step`` of the last row at or before checkpoint step ``step``.

        Recorded now from the rows handed to wandb so far, and again once a row of a
        later step shows that row is final (the checkpoint's own row may still be open).
        """
        handle = self._handle
        if step is None or handle is None:
            return
        if self._steps_run != handle.id:
            self._count_wandb_steps(handle, [])
        before = [s for s in self._recent_steps if s <= step]
        if before:
            markers.record_wandb_steps(index, handle.id, {step: self._recent_steps[max(before)]})
        if not any(s > step for s in self._recent_steps):
            self._pending_steps.setdefault(step, set()).add(index)

    def _write_marker(self, path: str, step: int | None, epoch: int | None) -> None:
        """Note beside the checkpoint which run wrote it (a tiny JSON write, in the worker)."""
        handle = self._handle
        if handle is None or not os.path.exists(path):
            return
        if self._identity is None:
            self._identity = self._guard("read the run's project", handle.identity) or {}
        info = {
            "run_id": handle.id,
            **self._identity,
            "step": step,
            "epoch": None if epoch is None else int(epoch),
            "framework": self.framework,
            "wandb_bridge_version": __version__,
        }
        try:
            index = markers.write(path, info, self._last_step)
            self._marker_indexes.add(index)
            self._map_wandb_step(index, step)
        except OSError as exc:
            self._warn(
                "marker",
                f"The run marker beside {path!r} could not be written ({exc}); resuming from it "
                "needs the run id (id=...).",
            )

    def _record_progress(self) -> None:
        """Note the last step this run recorded in the markers of its checkpoints (at SIGTERM and finish)."""
        handle = self._handle
        if handle is None or self._last_step is None:
            return
        for index in sorted(self._marker_indexes):
            try:
                markers.record_progress(index, handle.id, self._last_step)
            except OSError:
                pass

    def _queue_upload(self, upload: Upload) -> None:
        snap = self._retained.get(upload.event.sequence)
        if snap is None:
            return
        if self.policy.log_model != "end" or self._finished:
            self._retained.pop(upload.event.sequence, None)
        keep = self.settings.keep_checkpoints
        handle = self._handle
        if keep is not None and handle is not None and handle.offline and self.policy.log_model != "end":
            self._defer(upload, snap, keep)
            return
        logged = self._upload_checkpoint(upload, snap)
        if logged is not None and keep is not None and handle is not None and not handle.offline:
            self._prune_later(logged, keep)

    # ------------------------------------------------------------ retention

    def _defer(self, upload: Upload, snap: files.Snapshot, keep: int) -> None:
        """Offline ``keep_checkpoints``: hold the version back; drop those that would not be kept.

        Nothing can be deleted from an offline run before it is synced, so the
        versions that retention would delete are never logged: the newest ``keep``,
        the one holding ``best`` and those with the user's own aliases are logged at
        the end of training (:meth:`upload_end_checkpoints` or :meth:`finish`).
        """
        deferred = self.__dict__.setdefault("_ckpt_deferred", [])
        if self._retained.get(upload.event.sequence) is snap:
            self._retained.pop(upload.event.sequence, None)  # the deferral owns the snapshot now
        if snap.reference is not None:
            try:  # fingerprint now: the framework may delete or rewrite the files before the end
                files.resolve_references(snap, self.settings.reference_digest)
            except OSError as exc:
                self._warn(f"ckpt:{upload.event.path}", f"Checkpoint {upload.event.path!r} was not uploaded: {exc}")
                return
        deferred.append((upload, snap))
        best = max((i for i, (u, _) in enumerate(deferred) if u.best), default=-1)
        kept = []
        for index, (old, old_snap) in enumerate(deferred):
            user = [a for a in retention.protective(old.aliases) if a not in ("latest", "best")]
            if index >= len(deferred) - keep or index == best or user:
                kept.append((old, old_snap))
            else:
                old_snap.release()
        self._ckpt_deferred = kept

    def _flush_deferred(self) -> None:
        deferred = self.__dict__.get("_ckpt_deferred") or []
        self._ckpt_deferred = []
        for upload, snap in deferred:
            self._upload_checkpoint(upload, snap)
            snap.release()

    def _prune_later(self, artifact: Any, keep: int) -> None:
        """Online ``keep_checkpoints``: once ``artifact`` is committed, delete old versions (a background thread).

        The worker does not wait for the upload; the thread waits for the commit
        (``artifact.wait()``), then deletes through the public ``wandb.Api``.
        """
        handle = self._handle
        assert handle is not None
        lock = self.__dict__.setdefault("_ckpt_prune_lock", threading.Lock())
        factory = self.public_api_factory or handle.public_api
        run_id = handle.id

        def prune() -> None:
            with lock:
                try:
                    artifact.wait()
                    path = f"{artifact.entity}/{artifact.project}/{artifact.name.split(':')[0]}"
                    done = retention.prune(factory(), path, keep, run_id=run_id)
                except Exception as exc:
                    self._warn("retention", f"Old checkpoint versions were not deleted ({type(exc).__name__}: {exc}).")
                    return
                self.__dict__.setdefault("retention_log", []).append(done)
                if done.failed:
                    self._warn("retention", f"Some old checkpoint versions could not be deleted: {done.failed}")

        threading.Thread(target=prune, name="wandb-bridge-retention", daemon=True).start()
