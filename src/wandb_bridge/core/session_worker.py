"""The background worker's half of a session: merge rows, read values, call wandb, upload checkpoints."""

from __future__ import annotations

import json
import os
from typing import Any

from wandb_bridge.adapters import files
from wandb_bridge.core.checkpoints import Upload
from wandb_bridge.core.metrics import EPOCH_KEY, SKIP_REASONS, STEP_KEY, convert_rows, flatten_metrics
from wandb_bridge.core.pipeline import Op
from wandb_bridge.core.session_base import _CALL, _CHECKPOINT, _FAILED, _LOG, SessionBase


class WorkerMixin(SessionBase):
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
                    fn(*op[2:])  # our own bookkeeping: runs even when wandb is gone
                else:
                    self._guard_worker(fn.__name__, fn, *op[2:])
            elif kind == _CHECKPOINT:
                self._upload_checkpoint(op[1], op[2])
        self._emit(rows)

    def _merge(self, op: Op) -> list[dict[str, Any]]:
        _, step, epoch, stage, values, stamp, samples = op
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

    def _emit(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        report = convert_rows(rows)
        for key, reason in report.skipped.items():
            self._warn(f"skip:{key}", f"Metric {key!r} was not recorded: {SKIP_REASONS[reason]}.")
        for key in report.non_finite:
            self._warn(f"nan:{key}", f"Metric {key!r} is NaN or infinite; it is recorded as such.")
        handle = self._handle
        assert handle is not None
        for row in rows:
            if self._broken is None:
                try:
                    handle.log(row)
                    self.rows_logged += 1
                    self._recent.append(row)
                    continue
                except Exception as exc:
                    if self.settings.on_error == "raise" and self._error is None:
                        self._error = exc
                    if isinstance(exc, OSError):  # the connection to wandb-core is gone
                        self._broken = f"{type(exc).__name__}: {exc}"
                    else:
                        self._warn(
                            f"fault:log:{type(exc).__name__}", f"wandb rejected a row ({type(exc).__name__}: {exc})."
                        )
            self._keep_unsent(row)

    def _keep_unsent(self, row: dict[str, Any]) -> None:
        """Append a row wandb could not take to a JSON-lines file in the run folder."""

        rows = [row]
        if self._unsent_path is None:
            folder = self.run_dir or self.settings.dir or "."
            self._unsent_path = os.path.join(folder, "wandb-bridge-unsent.jsonl")
            self._warn(
                "broken",
                f"wandb did not take a row ({self._broken or 'rejected'}); training goes on, and such rows "
                f"are kept in {self._unsent_path}.",
            )
            if self._broken is not None:
                rows = [*self._recent, row]
                self._recent.clear()
        try:
            with open(self._unsent_path, "a", encoding="utf-8") as handle:
                handle.writelines(json.dumps(r, default=str) + "\n" for r in rows)
        except OSError:
            pass

    def _summary(self, values: dict[str, Any]) -> None:
        convert_rows([values])
        handle = self._handle
        assert handle is not None
        handle.update_summary(values)

    def _upload_checkpoint(self, upload: Upload, snap: files.Snapshot) -> None:
        handle = self._handle
        assert handle is not None
        try:
            digest = files.digest(snap)
            duplicate = digest in self._digests
            moving = [a for a in upload.aliases if a in ("latest", "best")]
            if duplicate and all(self._alias_holder.get(a) == digest for a in moving):
                return
            # Same content again but with aliases its version does not hold (e.g. "latest" on a
            # last.ckpt identical to the best checkpoint): log it again. wandb keeps one version
            # per content digest and only moves the aliases; no file is uploaded twice.
            name = self.settings.checkpoint_name or f"model-{handle.id}"
            meta = self.policy.metadata(
                upload.event, run_id=handle.id, framework=self.framework, framework_version=self.framework_version
            )
            if (
                self._guard_worker(
                    "log a checkpoint", handle.log_artifact, name, "model", snap.files, upload.aliases, meta
                )
                is _FAILED
            ):
                return
            self._alias_holder.update(dict.fromkeys(upload.aliases, digest))
            if duplicate:
                return
            self._digests.add(digest)
            self.checkpoints_uploaded += 1
        except OSError as exc:
            self._warn(f"ckpt:{upload.event.path}", f"Checkpoint {upload.event.path!r} was not uploaded: {exc}")
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
