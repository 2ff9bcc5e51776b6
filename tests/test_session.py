"""Session against the real wandb package in offline mode, read back from the run's transaction log."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from process_helpers import staged_files
from wandb_bridge import Session, WandbBridgeWarning
from wandb_bridge.core.follow import CallbackMonitor
from wandb_bridge.testing import WandbOfflineRuns


def _write(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


def test_rows_merge_per_step_with_step_axis(wandb_offline: WandbOfflineRuns) -> None:
    with Session(project="demo") as session:
        for step in range(1, 4):
            session.log({"loss": torch.tensor(1.0 / step)}, step=step, epoch=step / 4)
            session.log({"val_loss": 2.0 / step}, step=step)
    run = wandb_offline.run()
    rows = [r for r in run.history if "train/loss" in r or "val/loss" in r]
    assert [r["trainer/global_step"] for r in rows] == [1, 2, 3]
    assert [r["val/loss"] for r in rows] == [2.0, 1.0, pytest.approx(2 / 3)]
    assert [r["train/loss"] for r in rows] == [1.0, 0.5, pytest.approx(1 / 3)]
    assert rows[0]["trainer/epoch"] == 0.25
    assert run.metrics["*"]["step_metric"] == "trainer/global_step"
    assert run.exit_code == 0


def test_late_value_for_an_earlier_step_is_recorded(wandb_offline: WandbOfflineRuns) -> None:
    with Session(project="demo") as session:
        session.log({"loss": 1.0}, step=1)
        session.log({"loss": 0.5}, step=2)
        session.log({"val_loss": 3.0}, step=1)
    run = wandb_offline.run()
    assert run.values("val/loss") == [(1, 3.0)]
    assert run.values("train/loss") == [(1, 1.0), (2, 0.5)]


def test_step_none_counts_up_from_one(wandb_offline: WandbOfflineRuns) -> None:
    with Session(project="demo") as session:
        for value in (3.0, 2.0, 1.0):
            session.log({"loss": value})
    assert wandb_offline.run().values("train/loss") == [(1, 3.0), (2, 2.0), (3, 1.0)]


def test_bad_values_warn_once_per_key_and_never_crash(wandb_offline: WandbOfflineRuns) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Session(project="demo") as session:
            for step in (1, 2):
                session.log(
                    {
                        "nan": float("nan"),
                        "text": "hello",
                        "none": None,
                        "vec": torch.ones(3),
                        "np": np.float16(0.5),
                        "ok": 1,
                    },
                    step=step,
                )
    ours = [str(w.message) for w in caught if issubclass(w.category, WandbBridgeWarning)]
    assert sum("train/nan" in m for m in ours) == 1
    assert sum("train/text" in m for m in ours) == 1
    assert sum("train/none" in m for m in ours) == 1
    assert sum("train/vec" in m for m in ours) == 1
    run = wandb_offline.run()
    assert len(run.values("train/ok")) == 2
    assert all(math.isnan(v) for _, v in run.values("train/nan"))
    assert run.values("train/np") == [(1, 0.5), (2, 0.5)]
    assert not run.rows_with("train/text")


def test_config_flattened_json_safe_and_redacted(wandb_offline: WandbOfflineRuns) -> None:
    secret = "hf_plantedsecret_123456"
    with Session(project="demo", config={"opt": {"lr": 0.1}, "out": Path("/tmp/o"), "hub_token": secret}) as session:
        session.log_config({"extra": {"dtype": torch.float32}, "db_password": "pw12345678"})
        session.log({"loss": 1.0}, step=1)
    run = wandb_offline.run()
    assert run.config["opt/lr"] == 0.1
    assert run.config["out"] == "/tmp/o"
    assert run.config["hub_token"] == "<redacted>"
    assert run.config["db_password"] == "<redacted>"
    assert run.config["extra/dtype"] == "torch.float32"
    assert wandb_offline.grep(secret) == []


def test_framework_config_never_overwrites_the_users(wandb_offline: WandbOfflineRuns) -> None:
    with Session(project="demo", config={"opt": {"lr": 0.1}, "seed": 3}) as session:
        session.log_framework_config({"opt": {"lr": 0.5, "momentum": 0.9}, "seed": 7, "api_token": "tok-123456789"})
        session.log_config({"seed": 11})  # the user's own later call still wins over both
        session.log({"loss": 1.0}, step=1)
    config = wandb_offline.run().config
    assert (config["opt/lr"], config["opt/momentum"], config["seed"]) == (0.1, 0.9, 11)
    assert config["api_token"] == "<redacted>"


def test_exception_in_block_records_nonzero_exit(wandb_offline: WandbOfflineRuns) -> None:
    with pytest.raises(RuntimeError), Session(project="demo") as session:
        session.log({"loss": 1.0}, step=1)
        raise RuntimeError("training blew up")
    run = wandb_offline.run()
    assert run.exit_code == 1
    assert run.values("train/loss") == [(1, 1.0)]


def test_finish_is_idempotent(wandb_offline: WandbOfflineRuns) -> None:
    session = Session(project="demo")
    session.log({"loss": 1.0}, step=1)
    session.finish()
    session.finish(exit_code=3)
    session.log({"loss": 2.0}, step=2)
    assert session.finished
    run = wandb_offline.run()
    assert run.exit_code == 0
    assert run.values("train/loss") == [(1, 1.0)]


def test_active_run_is_used_and_left_open(wandb_offline: WandbOfflineRuns) -> None:
    import wandb

    user_run = wandb.init(project="mine")
    with Session(project="ignored", config={"a": 1}) as session:
        session.log({"loss": 1.0}, step=1)
        assert session.run is user_run
        assert not session.owns_run
    assert wandb.run is user_run
    user_run.log({"after": 1})
    user_run.finish()
    run = wandb_offline.run()
    assert run.config["a"] == 1
    assert run.values("train/loss") == [(1, 1.0)]


def test_disabled_is_a_cheap_no_op(
    wandb_offline: WandbOfflineRuns, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("WANDB_MODE", "disabled")
    with Session(project="demo", log_model="all") as session:
        session.log({"loss": 1.0}, step=1)
        session.log_checkpoint(_write(tmp_path / "m.bin", b"w"), step=1)
        assert session.run is None and not session.enabled
    assert wandb_offline.runs() == []


def test_monitored_metric_keeps_best_in_summary(wandb_offline: WandbOfflineRuns) -> None:
    with Session(project="demo", monitor="val_loss") as session:
        for step, value in enumerate([3.0, 1.0, 2.0], start=1):
            session.log({"val_loss": value}, step=step)
    run = wandb_offline.run()
    assert run.metrics["val/loss"]["summary"] == ["min"]
    assert run.summary["val/loss"] == {"min": 1.0}


def test_adopted_monitor_is_the_first_callback_s_unless_one_is_set(wandb_offline: WandbOfflineRuns) -> None:
    callbacks = [CallbackMonitor(None), CallbackMonitor("val_acc", None), CallbackMonitor("val_loss", "min")]
    with Session(project="demo") as session:
        chosen = session.adopt_monitor(callbacks, current=None)
        assert chosen == CallbackMonitor("val_acc", "max")  # the mode guessed from the name
        assert session.adopt_monitor(callbacks, current=session.monitor) is None  # the run has one now
        for step, value in enumerate([0.5, 0.9, 0.7], start=1):
            session.log({"val_acc": value, "val_loss": 1 - value}, step=step)
    run = wandb_offline.run()
    assert run.metrics["val/acc"]["summary"] == ["max"]
    assert run.summary["val/acc"] == {"max": 0.9}
    assert "summary" not in run.metrics.get("val/loss", {})


def test_checkpoints_all_aliases_metadata_and_no_duplicates(wandb_offline: WandbOfflineRuns, tmp_path: Path) -> None:
    with Session(project="demo", log_model="all", monitor="val_loss", framework="plain") as session:
        for step, loss in [(1, 2.0), (2, 1.0), (3, 1.5)]:
            session.log({"val_loss": loss}, step=step)
            ckpt = _write(tmp_path / "last.ckpt", f"weights-{step}".encode())
            session.log_checkpoint(ckpt, step=step, epoch=step - 1, metrics={"val_loss": loss})
        session.log_checkpoint(ckpt, step=3, epoch=2, metrics={"val_loss": 1.5})  # same content again
        run_id = session.run_id
    run = wandb_offline.run()
    arts = [a for a in run.artifacts if a.type == "model"]
    assert len(arts) == 3
    assert {a.name.split(":")[0] for a in arts} == {f"model-{run_id}"}
    assert "best" in arts[1].aliases and "step-2" in arts[1].aliases and "epoch-1" in arts[1].aliases
    assert "latest" in arts[2].aliases and "best" not in arts[2].aliases
    meta = arts[1].metadata
    assert meta["framework"] == "plain" and meta["step"] == 2 and meta["epoch"] == 1
    assert meta["monitor"] == "val/loss" and meta["monitor_mode"] == "min" and meta["score"] == 1.0
    assert meta["original_filename"] == "last.ckpt" and meta["run_id"] == run_id
    assert "wandb_bridge_version" in meta
    assert not (tmp_path / ".wandb-bridge-staging").exists()


def test_checkpoints_end_uploads_latest_and_best_once(wandb_offline: WandbOfflineRuns, tmp_path: Path) -> None:
    with Session(project="demo", log_model="end", monitor="val/loss") as session:
        for step, loss in [(1, 2.0), (2, 1.0), (3, 1.5)]:
            folder = tmp_path / f"checkpoint-{step}"
            folder.mkdir()
            _write(folder / "model.bin", f"w{step}".encode())
            _write(folder / "training_args.bin", b"hub_token=secret")
            session.log_checkpoint(folder, step=step, score=loss, exclude=["training_args.bin"])
        assert session.flush()  # the worker handled every report: still nothing logged as an artifact
        assert staged_files(wandb_offline.data_dir) == []
    run = wandb_offline.run()
    arts = [a for a in run.artifacts if a.type == "model"]
    # wandb adds "latest" to every version it logs; the server moves it to the newest.
    assert [set(a.aliases) - {"latest"} for a in arts] == [{"best", "step-2"}, {"step-3"}]
    assert all(set(a.files) == {"model.bin"} for a in arts)
    assert [Path(a.files["model.bin"]["local_path"]).read_bytes() for a in arts] == [b"w2", b"w3"]


def test_checkpoints_best_only_uploads_improvements(wandb_offline: WandbOfflineRuns, tmp_path: Path) -> None:
    with Session(project="demo", log_model="best", monitor="val_acc") as session:
        for step, acc in [(1, 0.5), (2, 0.4), (3, 0.7)]:
            ckpt = _write(tmp_path / f"e{step}.pt", f"w{step}".encode())
            session.log_checkpoint(ckpt, step=step, metrics={"val_acc": acc})
    arts = [a for a in wandb_offline.run().artifacts if a.type == "model"]
    assert [a.metadata["step"] for a in arts] == [1, 3]
    assert all("best" in a.aliases for a in arts)


@pytest.mark.parametrize("storage", ["upload", "reference"])
def test_a_checkpoint_with_every_file_excluded_logs_no_empty_version(
    wandb_offline: WandbOfflineRuns, tmp_path: Path, storage: str
) -> None:
    small = _write(tmp_path / "training_args.bin", b"hub_token=secret")
    folder = tmp_path / "checkpoint-3"
    folder.mkdir()
    _write(folder / "training_args.bin", b"hub_token=secret")
    with (
        pytest.warns(WandbBridgeWarning, match="no file of it is left to upload") as caught,
        Session(project="demo", log_model="best", monitor="val_loss", checkpoint_storage=storage) as session,
    ):
        first = _write(tmp_path / "a.pt", b"weights-1")
        session.log_checkpoint(first, step=1, metrics={"val_loss": 2.0})
        # Better scores, but nothing to upload: a single file whose own name is excluded, a folder
        # where nothing matches. Neither may become "best" (a later improvement would then be skipped).
        session.log_checkpoint(small, step=2, metrics={"val_loss": 1.0}, exclude=["training_args.bin"])
        session.log_checkpoint(folder, step=3, metrics={"val_loss": 0.5}, include=["*.safetensors"])
        kept = _write(tmp_path / "b.pt", b"weights-4")
        session.log_checkpoint(kept, step=4, metrics={"val_loss": 1.5}, exclude=["training_args.bin"])
        session.log({"loss": 1.0}, step=4)
    empty = [w for w in caught if "no file of it is left" in str(w.message)]
    assert {str(small), str(folder)} == {str(w.message).split("'")[1] for w in empty}
    run = wandb_offline.run()
    arts = [a for a in run.artifacts if a.type == "model"]
    assert [(a.metadata["step"], set(a.files)) for a in arts] == [(1, {"a.pt"}), (4, {"b.pt"})]  # no empty version
    assert all("best" in a.aliases for a in arts)
    assert run.values("train/loss") == [(4, 1.0)]


def test_missing_checkpoint_warns_and_training_goes_on(wandb_offline: WandbOfflineRuns, tmp_path: Path) -> None:
    with pytest.warns(WandbBridgeWarning, match="skipped"), Session(project="demo", log_model="all") as session:
        session.log_checkpoint(tmp_path / "nope.ckpt", step=1)
        session.log({"loss": 1.0}, step=1)
    assert wandb_offline.run().values("train/loss") == [(1, 1.0)]


def test_on_error_raise_surfaces_checkpoint_problems(wandb_offline: WandbOfflineRuns, tmp_path: Path) -> None:
    with (
        pytest.raises(RuntimeError, match="nope"),
        Session(project="demo", log_model="all", on_error="raise") as session,
    ):
        session.log_checkpoint(tmp_path / "nope.ckpt", step=1)


def test_dataset_artifact_and_flush(wandb_offline: WandbOfflineRuns, tmp_path: Path) -> None:
    data = _write(tmp_path / "data.csv", b"a,b\n1,2\n")
    with Session(project="demo") as session:
        session.log_artifact(data, name="tiny-data", kind="dataset", aliases=["v1"])
        assert session.flush()
    arts = wandb_offline.run().artifacts
    assert [(a.type, set(a.files)) for a in arts] == [("dataset", {"data.csv"})]
    assert "v1" in arts[0].aliases


def test_sweep_values_reach_the_caller(
    wandb_offline: WandbOfflineRuns, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    params = tmp_path / "sweep.yaml"
    params.write_text("lr:\n  value: 0.05\nlayers:\n  value: 3\n")
    monkeypatch.setenv("WANDB_SWEEP_ID", "abc123")
    monkeypatch.setenv("WANDB_SWEEP_PARAM_PATH", str(params))
    with Session(project="demo", config={"lr": 0.1, "batch": 8}) as session:
        session.start()
        assert session.config["lr"] == 0.05
        assert session.config["layers"] == 3
        assert session.config["batch"] == 8
        session.log({"loss": 1.0}, step=1)
    assert wandb_offline.run().config["lr"] == 0.05


def test_perf_statistics_are_sampled_by_the_worker(wandb_offline: WandbOfflineRuns) -> None:
    with Session(project="demo") as session:
        for step in range(1, 6):
            session.log({"loss": 1.0}, step=step, samples=32)
    run = wandb_offline.run()
    sampled = run.rows_with("perf/step_time_s")
    assert len(sampled) == 1  # at most one sample per interval (5 s), from the second step on
    row = sampled[0]
    assert row["trainer/global_step"] == 2
    assert row["perf/step_time_s"] > 0
    assert row["perf/samples_per_second"] == pytest.approx(32 / row["perf/step_time_s"])
    assert row["perf/process_rss_mb"] > 10
    assert not any(k.startswith("perf/cuda") for k in row)  # no GPU: silently absent


def test_system_stats_off_records_no_perf_keys(wandb_offline: WandbOfflineRuns) -> None:
    with Session(project="demo", system_stats=False) as session:
        for step in range(1, 4):
            session.log({"loss": 1.0}, step=step, samples=8)
    run = wandb_offline.run()
    assert [s for s, _ in run.values("train/loss")] == [1, 2, 3]  # the rows are there ...
    assert not any(k.startswith("perf/") for row in run.history for k in row)  # ... without perf/


def test_wide_rows_keep_their_names_when_a_value_changes_kind(wandb_offline: WandbOfflineRuns) -> None:
    # Rows of many keys map their names in one go once the same keys came before; a value that
    # turns into a nested dict, a tensor or a string at a known key still takes the long way.
    names = [f"m{i}" for i in range(20)]
    with Session(project="wide", log_process=False) as session:
        for step in range(1, 4):
            session.log({n: float(step) for n in names}, step=step)
        session.log({**{n: 4.0 for n in names}, "m3": {"a": 1.0, "b": 2.0}}, step=4)
        session.log({**{n: 5.0 for n in names}, "m4": torch.tensor(7.0)}, step=5)
        session.log({**{n: 6.0 for n in names}, "m5": "text"}, step=6)
        session.log({"extra": 0.5, **{n: 7.0 for n in names}}, step=7, stage="val")
    run = wandb_offline.run()
    assert run.values("train/m0") == [(s, float(s)) for s in range(1, 7)]
    assert run.values("m3/a") == [(4, 1.0)] and run.values("m3/b") == [(4, 2.0)]  # (a slash keeps its namespace)
    assert run.values("train/m4")[-3:] == [(4, 4.0), (5, 7.0), (6, 6.0)]
    assert [s for s, _ in run.values("train/m5")] == [1, 2, 3, 4, 5]  # the string was not a metric
    assert run.values("val/extra") == [(7, 0.5)]
    assert run.values("val/m1") == [(7, 7.0)]
