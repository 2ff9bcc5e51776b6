"""The background worker's half of a session: drain the queue, merge rows, upload checkpoints.

Finished rows go on through ``session_rows.py``.
"""

from __future__ import annotations

from typing import Any

from wandb_bridge.adapters import files
from wandb_bridge.core.checkpoints import Upload
from wandb_bridge.core.metrics import EPOCH_KEY, STEP_KEY, as_written, convert_rows, flatten_metrics
from wandb_bridge.core.pipeline import Op
from wandb_bridge.core.session_base import _CALL, _FAILED, _LOG
from wandb_bridge.core.session_rows import RowsMixin


class WorkerMixin(RowsMixin):
    """Runs on the worker thread only: everything the training thread handed over."""

    def _drain(self, ops: list[Op]) -> None:
        rows: list[dict[str, Any]] = []
        for op in ops:
            kind = op[0]
            if kind == _LOG:
                rows.extend(self._merge(op))
                continue
            self._emit(rows)
            rows = []
            if kind == _CALL:
                fn = op[1]
                if getattr(fn, "__self__", None) is self or isinstance(getattr(fn, "__self__", None), files.Snapshot):
                    try:
                        fn(*op[2:])  # our own bookkeeping: runs even when wandb is gone
                    except Exception as exc:  # a bug of ours must not cost the rows queued after it
                        self._warn(f"worker:{fn.__name__}", f"wandb-bridge failed in {fn.__name__} ({exc!r}).")
                else:
                    self._sync_rows_out()  # wandb calls from here come after the rows before them
                    self._guard_worker(fn.__name__, fn, *op[2:])
        self._emit(rows)

    def _merge(self, op: Op) -> list[dict[str, Any]]:
        _, step, epoch, stage, values, stamp, samples = op
        if stage is None:  # a direct call (wandb.log, experiment.log, log_image): keys as written
            return self._merger.add(step, as_written(values), None if epoch is None else float(epoch), keep_both=True)
        mapped: dict[str, Any] = {}
        keys = self._keys
        for key, value in flatten_metrics(values):
            if not key:
                self._warn("key:", "An empty metric key was skipped.")
                continue
            mapped[keys(key, stage)] = value
        row_epoch = mapped.pop(EPOCH_KEY, epoch)
        mapped.pop(STEP_KEY, None)
        self._time(step, stamp, samples, mapped)
        return self._merger.add(step, mapped, None if row_epoch is None else float(row_epoch))

    def _time(self, step: int, stamp: float, samples: int | None, mapped: dict[str, Any]) -> None:
        sampler = self._sampler
        if sampler is None:
            return
        previous = self._timing
        if previous is None or step <= previous[0]:
            if previous is None:
                self._timing = (step, stamp)
            return
        if sampler.due():
            last_step, last_stamp = previous
            per_step = (stamp - last_stamp) / (step - last_step)
            mapped["perf/step_time_s"] = per_step
            if samples:
                mapped["perf/samples_per_second"] = samples / per_step if per_step > 0 else 0.0
            mapped.update(sampler.sample())
        self._timing = (step, stamp)

    def _close_open_row(self) -> None:
        self._emit(self._merger.drain())
        self._sync_rows_out()

    def _summary(self, values: dict[str, Any]) -> None:
        convert_rows([values])
        handle = self._handle
        assert handle is not None
        self._guard_worker("update the summary", handle.update_summary, values)

    def _upload_checkpoint(self, upload: Upload, snap: files.Snapshot) -> Any:
        """Log one checkpoint version; returns the logged wandb artifact (None when nothing new was logged)."""
        handle = self._handle
        assert handle is not None
        try:
            refs = files.resolve_references(snap, self.settings.reference_digest)
            digest = files.digest(snap)
            duplicate = digest in self._digests
            moving = [a for a in upload.aliases if a in ("latest", "best")]
            if duplicate and all(self._alias_holder.get(a) == digest for a in moving):
                return None
            # Same content again but with aliases its version does not hold (e.g. "latest" on a
            # last.ckpt identical to the best checkpoint): log it again. wandb keeps one version
            # per content digest and only moves the aliases; no file is uploaded twice.
            name = self.settings.checkpoint_name or f"model-{handle.id}"
            meta = self.policy.metadata(
                upload.event, run_id=handle.id, framework=self.framework, framework_version=self.framework_version
            )
            if snap.reference is not None:
                meta["checkpoint_storage"] = "reference"
                meta["reference_digest"] = self.settings.reference_digest
            references = [(r.name, r.uri, r.digest, r.size) for r in refs]
            logged = self._guard_worker(
                "log a checkpoint",
                handle.log_artifact,
                *(name, "model", snap.files, upload.aliases, meta, None, references),
            )
            if logged is _FAILED:
                return None
            self._alias_holder.update(dict.fromkeys(upload.aliases, digest))
            if duplicate:
                return None
            self._digests.add(digest)
            self.checkpoints_uploaded += 1
            return logged
        except OSError as exc:
            self._warn(f"ckpt:{upload.event.path}", f"Checkpoint {upload.event.path!r} was not uploaded: {exc}")
            return None
        finally:
            if upload.event.sequence not in self._retained or self._finished:
                snap.release()

    def _upload_files(
        self, snap: files.Snapshot, name: str, kind: str, aliases: tuple[str, ...], meta: dict[str, Any]
    ) -> None:
        snap.materialize()
        handle = self._handle
        assert handle is not None
        try:
            handle.log_artifact(name, kind, snap.files, aliases, meta)
        finally:
            snap.release()
