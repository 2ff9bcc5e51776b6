"""Issue 17: checkpoints at scale: by reference, sharded folders, retention.

Real wandb in offline mode, real frameworks on CPU, real gloo processes; the
recorded artifact manifests are read back from the run's transaction log. The
public ``wandb.Api`` (which needs a W&B server) is the only thing faked, in the
retention tests.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from process_helpers import staged_files
from wandb_bridge import Session
from wandb_bridge.adapters import files, retention
from wandb_bridge.core.settings import Settings
from wandb_bridge.testing import ArtifactRecord, RunRecord, WandbOfflineRuns

HERE = Path(__file__).resolve().parent


def _models(run: RunRecord) -> list[ArtifactRecord]:
    return [a for a in run.artifacts if a.type == "model"]


def _md5_b64(path: Path) -> str:
    return base64.b64encode(hashlib.md5(path.read_bytes(), usedforsecurity=False).digest()).decode()


def _uri(path: Path) -> str:
    return files.file_uri(str(path))


def _assert_references_only(run: RunRecord, data_dir: Path) -> None:
    """Every checkpoint entry is a reference: no staged copy, nothing in wandb's staging folder."""
    models = _models(run)
    assert models
    for artifact in models:
        assert artifact.files
        for entry in artifact.files.values():
            assert entry["ref"] and entry["local_path"] is None, artifact.files
        assert artifact.metadata["checkpoint_storage"] == "reference"
    assert staged_files(data_dir) == []


# ------------------------------------------------------------------ settings


@pytest.mark.parametrize(
    ("name", "value", "allowed"),
    [
        ("checkpoint_storage", "copy", "'upload', 'reference'"),
        ("reference_digest", "mtime", "'hash', 'size_mtime'"),
    ],
)
def test_unknown_values_raise_at_construction_with_the_allowed_ones(name: str, value: str, allowed: str) -> None:
    with pytest.raises(ValueError, match=allowed):
        Session(**{name: value})
    with pytest.raises(ValueError, match=allowed):
        Settings.resolve(**{name: value})


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "3"])
def test_keep_checkpoints_must_be_a_positive_int(value: object) -> None:
    with pytest.raises(ValueError, match="keep_checkpoints"):
        Session(keep_checkpoints=value)


def test_defaults() -> None:
    settings = Settings.resolve()
    assert (settings.checkpoint_storage, settings.keep_checkpoints, settings.reference_digest) == (
        "upload",
        None,
        "hash",
    )


# ------------------------------------------------------------------ references through Session


def test_session_file_and_folder_references_record_uris_and_no_bytes(
    wandb_offline: WandbOfflineRuns, tmp_path: Path
) -> None:
    big = tmp_path / "ckpt" / "model.pt"
    big.parent.mkdir()
    big.write_bytes(os.urandom(6 << 20))  # above the in-memory size: upload mode would hard-link it
    folder = tmp_path / "ckpt" / "checkpoint-2"
    folder.mkdir()
    (folder / "weights.bin").write_bytes(b"w" * 1000)
    (folder / "nested").mkdir()
    (folder / "nested" / "opt.bin").write_bytes(b"o" * 10)
    (folder / "training_args.bin").write_bytes(b"hub_token=secret")
    with Session(project="ref", log_model="all", checkpoint_storage="reference") as session:
        session.log_checkpoint(big, step=1)
        session.log_checkpoint(f"file://{folder}", step=2, exclude=["training_args.bin"])
        assert session.flush()
        assert not (tmp_path / "ckpt" / files.STAGING_DIR_NAME).exists()
    run = wandb_offline.run()
    _assert_references_only(run, wandb_offline.data_dir)
    first, second = _models(run)
    assert first.files == {"model.pt": {"digest": _md5_b64(big), "size": 6 << 20, "local_path": None, "ref": _uri(big)}}
    assert set(second.files) == {"weights.bin", "nested/opt.bin"}  # the exclude applies to references too
    assert second.files["nested/opt.bin"]["ref"] == _uri(folder / "nested" / "opt.bin")
    assert second.files["weights.bin"]["digest"] == _md5_b64(folder / "weights.bin")
    assert "step-2" in second.aliases and second.metadata["original_filename"] == "checkpoint-2"
    assert first.metadata["reference_digest"] == "hash"


def test_size_mtime_reads_no_byte_and_a_rewrite_is_a_new_version(
    wandb_offline: WandbOfflineRuns, tmp_path: Path
) -> None:
    path = tmp_path / "last.ckpt"
    with Session(project="ref", log_model="all", checkpoint_storage="reference", reference_digest="size_mtime") as s:
        path.write_bytes(b"a" * 100)
        s.log_checkpoint(path, step=1)
        assert s.flush()
        first_stat = path.stat()
        path.write_bytes(b"b" * 100)  # same size, new content and modification time
        os.utime(path, ns=(first_stat.st_mtime_ns + 10**9,) * 2)
        s.log_checkpoint(path, step=2)
        assert s.flush()
        s.log_checkpoint(path, step=2)  # unchanged: not a new version
    first, second = _models(wandb_offline.run())
    _assert_references_only(wandb_offline.run(), wandb_offline.data_dir)
    for artifact in (first, second):
        entry = artifact.files["last.ckpt"]
        assert entry["ref"] == _uri(path) and entry["size"] == 100
        assert entry["digest"] not in (_md5_b64(path), "")  # a fingerprint of size + mtime, not of the bytes
        assert artifact.metadata["reference_digest"] == "size_mtime"
    assert first.files["last.ckpt"]["digest"] != second.files["last.ckpt"]["digest"]


def test_a_file_url_is_uploaded_like_its_path(wandb_offline: WandbOfflineRuns, tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    path.write_bytes(b"weights")
    with Session(project="ref", log_model="all") as session:
        session.log_checkpoint(f"file://{path}", step=1)
    (artifact,) = _models(wandb_offline.run())
    assert Path(artifact.files["model.pt"]["local_path"]).read_bytes() == b"weights"
    assert artifact.files["model.pt"]["ref"] is None and "checkpoint_storage" not in artifact.metadata


def test_remote_urls_are_referenced_automatically(wandb_offline: WandbOfflineRuns, tmp_path: Path) -> None:
    fsspec = pytest.importorskip("fsspec")
    memory = fsspec.filesystem("memory")
    with memory.open("/bucket/run/step-1.ckpt", "wb") as handle:  # a checkpoint written through fsspec
        handle.write(b"x" * 321)
    # default checkpoint_storage="upload": a URL is referenced anyway
    with Session(project="ref", log_model="all") as session:
        session.log_checkpoint("memory://bucket/run/step-1.ckpt", step=1)
        session.log_checkpoint("hdfs://namenode/ckpts/step-2", step=2)  # no client here: the URI alone
    run = wandb_offline.run()
    _assert_references_only(run, wandb_offline.data_dir)
    first, second = _models(run)
    assert first.files["step-1.ckpt"]["ref"] == "memory://bucket/run/step-1.ckpt"
    assert first.files["step-1.ckpt"]["size"] == 321  # read through fsspec, in the worker
    assert second.files["step-2"]["ref"] == "hdfs://namenode/ckpts/step-2"
    assert "step-2" in second.aliases and second.metadata["step"] == 2
    memory.rm("/bucket", recursive=True)


def test_a_reference_is_logged_by_the_worker_not_the_training_thread(
    wandb_offline: WandbOfflineRuns, tmp_path: Path
) -> None:
    path = tmp_path / "big.ckpt"
    path.write_bytes(b"z" * (8 << 20))
    calls: list[str] = []
    original = files._md5_b64

    def spy(name: str) -> str:  # our own function, not wandb's: records which thread hashes
        calls.append(threading.current_thread().name)
        return original(name)

    files._md5_b64 = spy  # type: ignore[assignment]
    try:
        with Session(project="ref", log_model="all", checkpoint_storage="reference") as session:
            session.log_checkpoint(path, step=1)
    finally:
        files._md5_b64 = original  # type: ignore[assignment]
    assert calls and threading.main_thread().name not in calls
    assert _models(wandb_offline.run())[0].files["big.ckpt"]["ref"] == _uri(path)


# ------------------------------------------------------------------ references in each framework


def test_lightning_checkpoints_by_reference(wandb_offline: WandbOfflineRuns, tmp_path: Path) -> None:
    L = pytest.importorskip("lightning.pytorch")
    from lightning.pytorch.callbacks import ModelCheckpoint

    from lightning_helpers import TinyModule, loaders, trainer_kwargs
    from wandb_bridge import WandbLogger

    logger = WandbLogger(log_model="all", checkpoint_storage="reference")
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_top_k=-1)
    trainer = L.Trainer(**trainer_kwargs(str(tmp_path)), logger=logger, callbacks=[checkpoint])
    trainer.fit(TinyModule(), *loaders())
    logger.finish()
    run = wandb_offline.run()
    _assert_references_only(run, wandb_offline.data_dir)
    refs = [entry["ref"] for a in _models(run) for entry in a.files.values()]
    assert refs == [_uri(tmp_path / "ckpt" / "epoch=0-step=8.ckpt"), _uri(tmp_path / "ckpt" / "epoch=1-step=16.ckpt")]
    for artifact in _models(run):
        (entry,) = artifact.files.values()
        assert entry["digest"] == _md5_b64(Path(files.local_path(entry["ref"])))


def test_transformers_checkpoint_folders_by_reference(wandb_offline: WandbOfflineRuns, tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    from transformers_helpers import make_args, make_trainer
    from wandb_bridge import WandbTrainerCallback

    callback = WandbTrainerCallback(log_model="all", checkpoint_storage="reference")
    trainer = make_trainer(make_args(tmp_path / "out", save_strategy="steps", save_steps=3), [callback])
    trainer.train()
    callback.finish()
    run = wandb_offline.run()
    _assert_references_only(run, wandb_offline.data_dir)
    models = _models(run)
    assert [a.metadata["original_filename"] for a in models] == ["checkpoint-3", "checkpoint-6"]
    for artifact, step in zip(models, (3, 6), strict=True):
        assert "model.safetensors" in artifact.files and "training_args.bin" not in artifact.files
        for name, entry in artifact.files.items():
            assert entry["ref"] == _uri(tmp_path / "out" / f"checkpoint-{step}" / name)


def test_keras_checkpoints_by_reference(wandb_offline: WandbOfflineRuns, tmp_path: Path) -> None:
    pytest.importorskip("keras_helpers")  # sets KERAS_BACKEND=torch (unless set) before keras is imported
    import keras

    from keras_helpers import make_data, make_model
    from wandb_bridge import WandbKerasCallback

    x, y = make_data()
    checkpoint = keras.callbacks.ModelCheckpoint(str(tmp_path / "ckpt" / "model-{epoch:02d}.keras"))
    callback = WandbKerasCallback(project="keras-ref", log_model="all", checkpoint_storage="reference")
    make_model().fit(x, y, epochs=2, batch_size=16, verbose=0, validation_split=0.25, callbacks=[checkpoint, callback])
    callback.finish()
    run = wandb_offline.run()
    _assert_references_only(run, wandb_offline.data_dir)
    assert [entry["ref"] for a in _models(run) for entry in a.files.values()] == [
        _uri(tmp_path / "ckpt" / "model-01.keras"),
        _uri(tmp_path / "ckpt" / "model-02.keras"),
    ]


def test_accelerate_save_state_folders_by_reference(wandb_offline: WandbOfflineRuns, tmp_path: Path) -> None:
    pytest.importorskip("accelerate")
    from accelerate_scripts import train_accelerate
    from wandb_bridge import WandbTracker

    train_accelerate([WandbTracker(name="ref", log_model="all", checkpoint_storage="reference")], tmp_path)
    run = wandb_offline.run()
    _assert_references_only(run, wandb_offline.data_dir)
    models = _models(run)
    assert len(models) == 2
    for epoch, artifact in enumerate(models):
        folder = tmp_path / "checkpoints" / f"checkpoint_{epoch}"
        assert any(name.startswith("model") for name in artifact.files)
        for name, entry in artifact.files.items():
            assert entry["ref"] == _uri(folder / name)


# ------------------------------------------------------------------ sharded folders


def _tiny_causal_lm() -> Any:
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=64, n_positions=16)
    return transformers.GPT2LMHeadModel(config)


def test_sharded_safetensors_become_one_complete_version(wandb_offline: WandbOfflineRuns, tmp_path: Path) -> None:
    model = _tiny_causal_lm()
    folder = tmp_path / "sharded"
    model.save_pretrained(folder, max_shard_size="20KB")
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    shards = sorted(set(index["weight_map"].values()))
    assert len(shards) > 2  # really sharded
    # A writer that is not done yet: one shard is still missing when the folder is reported.
    late = folder / shards[-1]
    held = tmp_path / "held-back"
    late.rename(held)

    def finish_writing() -> None:
        time.sleep(0.6)
        held.rename(late)

    writer = threading.Thread(target=finish_writing)
    with Session(project="shards", log_model="all") as session:
        writer.start()
        session.log_checkpoint(folder, step=5)
        writer.join()
    run = wandb_offline.run()
    (artifact,) = _models(run)
    assert set(artifact.files) == {*shards, "model.safetensors.index.json", "config.json", "generation_config.json"}
    for name in shards:
        assert artifact.files[name]["size"] == (folder / name).stat().st_size
        assert Path(artifact.files[name]["local_path"]).read_bytes() == (folder / name).read_bytes()
    assert "step-5" in artifact.aliases and artifact.metadata["original_filename"] == "sharded"


def test_an_incomplete_folder_is_reported_with_the_missing_shard(tmp_path: Path) -> None:
    model = _tiny_causal_lm()
    folder = tmp_path / "sharded"
    model.save_pretrained(folder, max_shard_size="20KB")
    assert files.is_sharded(str(folder)) and files.incomplete(str(folder)) is None
    shard = sorted(p for p in folder.iterdir() if p.name.startswith("model-"))[0]
    shard.unlink()
    assert shard.name in (files.incomplete(str(folder)) or "")
    model.save_pretrained(folder, max_shard_size="20KB")  # whole again ...
    assert files.incomplete(str(folder)) is None
    (folder / "model.safetensors.index.json").unlink()  # ... but shards without their index are not done either
    assert "index" in (files.incomplete(str(folder)) or "")
    assert files.wait_complete(str(folder), timeout=0.3, settle=0.05) is not None


def test_deepspeed_and_dcp_layouts_wait_for_what_their_index_names(tmp_path: Path) -> None:
    # DeepSpeed's layout (as Lightning's DeepSpeedStrategy writes it): "latest" names the tag folder.
    folder = tmp_path / "epoch=0-step=8.ckpt"
    folder.mkdir()
    (folder / "zero_to_fp32.py").write_text("# converter\n")
    (folder / "latest").write_text("checkpoint")
    (folder / "other").mkdir()
    assert files.is_sharded(str(folder))
    assert "checkpoint/" in (files.incomplete(str(folder)) or "")
    (folder / "checkpoint").mkdir()
    (folder / "checkpoint" / "mp_rank_00_model_states.pt").write_bytes(b"m")
    assert files.incomplete(str(folder)) is None
    # shards of a torch.distributed.checkpoint folder before dcp.save wrote its .metadata
    dcp = tmp_path / "dcp"
    dcp.mkdir()
    (dcp / "__0_0.distcp").write_bytes(b"a")
    assert files.is_sharded(str(dcp)) and ".metadata" in (files.incomplete(str(dcp)) or "")
    (dcp / ".metadata").write_bytes(b"\x80\x04...__0_0.distcp...__1_0.distcp...")  # names rank 1's shard too
    assert "__1_0.distcp" in (files.incomplete(str(dcp)) or "")
    (dcp / "__1_0.distcp").write_bytes(b"b")
    (dcp / "__1_0.distcp.tmp").write_bytes(b"")
    assert "being written" in (files.incomplete(str(dcp)) or "")
    (dcp / "__1_0.distcp.tmp").unlink()
    assert files.incomplete(str(dcp)) is None
    assert files.wait_complete(str(dcp), timeout=5, settle=0.05) is None
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "model.safetensors").write_bytes(b"w")
    assert not files.is_sharded(str(plain))


def test_sharded_folder_by_reference(wandb_offline: WandbOfflineRuns, tmp_path: Path) -> None:
    model = _tiny_causal_lm()
    folder = tmp_path / "sharded"
    model.save_pretrained(folder, max_shard_size="20KB")
    with Session(project="shards", log_model="all", checkpoint_storage="reference") as session:
        session.log_checkpoint(folder, step=1)
    run = wandb_offline.run()
    _assert_references_only(run, wandb_offline.data_dir)
    (artifact,) = _models(run)
    expected = {p.name for p in folder.iterdir() if not p.name.startswith("_wandb-bridge")}
    assert set(artifact.files) == expected


def test_dcp_folders_from_two_gloo_processes_become_one_complete_version_each(
    wandb_offline: WandbOfflineRuns, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        **wandb_offline.env,
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }
    env["OMP_NUM_THREADS"] = "1"
    result = subprocess.run(
        [sys.executable, str(HERE / "ckpt_scale_scripts.py"), str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    ranks = [json.loads((tmp_path / f"rank-{r}.json").read_text()) for r in (0, 1)]
    assert [r["enabled"] for r in ranks] == [True, False]
    runs = {r.run_id: r for r in wandb_offline.runs()}
    assert set(runs) == {ranks[0]["run"], ranks[0]["per_rank_run"], ranks[1]["per_rank_run"]}
    assert ranks[1]["run"] is None  # the default: one run, from rank 0
    # one run per rank: the shared folder is one version, in global rank 0's run
    assert _models(runs[ranks[1]["per_rank_run"]]) == []
    (shared,) = _models(runs[ranks[0]["per_rank_run"]])
    assert set(shared.files) == {".metadata", "__0_0.distcp", "__1_0.distcp"}
    models = _models(runs[ranks[0]["run"]])
    assert len(models) == 2  # one version per save, logged once
    for step, artifact in zip((1, 2), models, strict=True):
        folder = tmp_path / f"dcp-step-{step}"
        assert set(artifact.files) == {".metadata", "__0_0.distcp", "__1_0.distcp"}
        for name, entry in artifact.files.items():
            assert entry["size"] == (folder / name).stat().st_size > 0
        assert f"step-{step}" in artifact.aliases
    import torch.distributed.checkpoint as dcp

    state = {"layer0.weight": torch.zeros(16), "layer1.weight": torch.zeros(16)}
    dcp.load(state, checkpoint_id=str(tmp_path / "dcp-step-2"), no_dist=True)
    assert state["layer1.weight"].tolist() == [21.0] * 16  # rank 1's shard is in the folder logged


# ------------------------------------------------------------------ retention


class FakeRun:
    """A run as the public API returns it (only ``id`` is read)."""

    def __init__(self, run_id: str) -> None:
        self.id = run_id


class FakeVersion:
    """An artifact version as the public ``wandb.Api`` returns it."""

    def __init__(self, api: FakeApi, version: int, aliases: list[str], used_by: list[str]) -> None:
        self.api, self.version, self.aliases, self._used = api, f"v{version}", aliases, used_by

    def used_by(self) -> list[FakeRun]:
        return [FakeRun(r) for r in self._used]

    def delete(self, delete_aliases: bool = False) -> None:
        if self.aliases and not delete_aliases:
            raise RuntimeError("the server refuses: the version has aliases")  # what the real server does
        self.api.deleted.append(self.version)
        self.api.versions.remove(self)


class FakeApi:
    """The public ``wandb.Api`` surface retention uses: ``artifacts(type_name, name)``."""

    def __init__(self) -> None:
        self.versions: list[FakeVersion] = []
        self.deleted: list[str] = []
        self.queries: list[tuple[str, str]] = []

    def add(self, aliases: list[str], used_by: list[str] = ()) -> None:  # type: ignore[assignment]
        self.versions.append(FakeVersion(self, len(self.versions), list(aliases), list(used_by)))

    def artifacts(self, type_name: str, name: str, per_page: int = 50) -> list[FakeVersion]:
        self.queries.append((type_name, name))
        return list(reversed(self.versions))  # newest first, as the server lists them


def test_retention_deletes_exactly_the_unaliased_versions_beyond_the_newest_n() -> None:
    api = FakeApi()
    api.add(["step-1", "epoch-0"])  # v0: deleted
    api.add(["best", "step-2"])  # v1: best: kept
    api.add(["step-3"], used_by=["run1", "other"])  # v2: another run used it: kept
    api.add(["step-4", "my-release"])  # v3: the user's alias: kept
    api.add(["step-5"], used_by=["run1"])  # v4: only this run used it: deleted
    api.add(["step-6"])  # v5: newest 2
    api.add(["latest", "step-7"])  # v6: newest 2
    done = retention.prune(api, "ent/proj/model-run1", 2, run_id="run1")
    assert api.queries == [("model", "ent/proj/model-run1")]
    assert sorted(api.deleted) == ["v0", "v4"]
    assert done.deleted == ["ent/proj/model-run1:v4", "ent/proj/model-run1:v0"]
    assert done.kept_aliased == ["ent/proj/model-run1:v3", "ent/proj/model-run1:v1"]
    assert done.kept_used == ["ent/proj/model-run1:v2"]
    assert done.failed == []
    assert [v.version for v in api.versions] == ["v1", "v2", "v3", "v5", "v6"]
    # a second pass deletes nothing more
    assert retention.prune(api, "ent/proj/model-run1", 2, run_id="run1").deleted == []


def test_retention_counts_versions_still_uploading_and_never_deletes_an_aliased_one() -> None:
    api = FakeApi()
    for step in range(1, 5):
        api.add([f"step-{step}"])
    api.add(["best", "latest", "step-5"])
    done = retention.prune(api, "e/p/m", 1, run_id="r", pending=1)  # this run's newest is not listed yet
    assert sorted(api.deleted) == ["v0", "v1", "v2", "v3"]
    assert done.kept_aliased == ["e/p/m:v4"]
    assert retention.protective(["step-3", "epoch-1", "v7", "latest", "best", "mine"]) == ["latest", "best", "mine"]


def test_offline_retention_logs_only_the_versions_it_would_keep(
    wandb_offline: WandbOfflineRuns, tmp_path: Path
) -> None:
    # val/loss: best at step 2; keep_checkpoints=2 keeps steps 4 and 5, and 2 for its "best"
    losses = {1: 3.0, 2: 1.0, 3: 2.0, 4: 2.5, 5: 2.2}
    with Session(project="keep", log_model="all", monitor="val_loss", keep_checkpoints=2) as session:
        for step, loss in losses.items():
            path = tmp_path / f"step-{step}.ckpt"
            path.write_bytes(f"weights {step}".encode() * 1000)
            session.log({"val_loss": loss}, step=step)
            session.log_checkpoint(path, step=step, metrics={"val_loss": loss}, aliases=["pinned"] if step == 1 else ())
            assert session.flush()
            assert _models_so_far(wandb_offline) == 0  # nothing logged before the end
            path.unlink()  # the framework's rotation: our hard link keeps what will be logged
    models = _models(wandb_offline.run())
    assert [a.metadata["step"] for a in models] == [1, 2, 4, 5]  # 1: the user's alias; 2: best
    assert "pinned" in models[0].aliases and "best" in models[1].aliases
    for artifact, step in zip(models, (1, 2, 4, 5), strict=True):
        staged = Path(artifact.files[f"step-{step}.ckpt"]["local_path"])
        assert staged.read_bytes() == f"weights {step}".encode() * 1000
    assert not (tmp_path / files.STAGING_DIR_NAME).exists()


def _models_so_far(wandb_offline: WandbOfflineRuns) -> int:
    return len(staged_files(wandb_offline.data_dir))


@pytest.mark.live
def test_live_retention_deletes_old_unaliased_versions_online(tmp_path: Path) -> None:
    """Online, against the real W&B server (skipped without WANDB_API_KEY): v1 goes, best v0 and the newest 2 stay."""
    import wandb

    project = os.environ.get("WANDB_PROJECT", "wandb-bridge-live")
    with Session(project=project, mode="online", log_model="all", monitor="val_loss", keep_checkpoints=2) as session:
        for step, loss in enumerate([1.0, 2.0, 3.0, 4.0], start=1):
            path = tmp_path / f"step-{step}.ckpt"
            path.write_bytes(os.urandom(1000))
            session.log({"val_loss": loss}, step=step)
            session.log_checkpoint(path, step=step, metrics={"val_loss": loss})
        run_path = f"{session.run.entity}/{session.run.project}/model-{session.run_id}"
    deadline = time.monotonic() + 300
    while len(getattr(session, "retention_log", [])) < 4 and time.monotonic() < deadline:
        time.sleep(1)
    assert len(session.retention_log) == 4
    versions = {a.version: a.aliases for a in wandb.Api().artifacts("model", run_path)}
    assert set(versions) == {"v0", "v2", "v3"}
    assert "best" in versions["v0"] and "latest" in versions["v3"]
