"""Tests for wandb_bridge.testing: the offline-run reader and the pytest plugin.

Every run here is a real wandb offline run written through ``wandb.init`` inside
the ``wandb_offline`` fixture (provided by the package's pytest11 entry point).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from wandb_bridge.testing import (
    ArtifactRecord,
    RunFileError,
    RunRecord,
    WandbOfflineRuns,
    count_history,
    find_run_files,
    read_run,
    read_runs,
)

pytest_plugins = ("pytester",)

BLOCK = 32 * 1024


def _write_simple_run(rows: int = 3, **init_kwargs: Any) -> Path:
    """Write a finished offline run with a few history rows; return its .wandb file."""
    import wandb

    run = wandb.init(**init_kwargs)
    for i in range(rows):
        run.log({"x": i, "trainer/global_step": i * 10})
    run.finish()
    # The service writes the file asynchronously; teardown waits for it.
    wandb.teardown()
    files = list(Path(run.dir).parent.glob("run-*.wandb"))
    assert len(files) == 1
    return files[0]


def test_history_config_summary_and_metrics(wandb_offline: WandbOfflineRuns) -> None:
    import wandb

    run = wandb.init(
        project="proj",
        entity="ent",
        name="display",
        group="grp",
        job_type="train",
        tags=["a", "b"],
        notes="some notes",
        config={"lr": 0.1, "optim": {"name": "adam", "betas": [0.9, 0.99]}, "drop": 1},
    )
    run.config.update({"batch_size": 32})
    run.config.update({"lr": 0.01}, allow_val_change=True)
    run.define_metric("trainer/global_step")
    run.define_metric("train/loss", step_metric="trainer/global_step", summary="min")
    run.define_metric("val/*", step_metric="trainer/global_step", summary="max,mean")
    run.define_metric("hidden_metric", hidden=True)
    losses = [0.9, 0.4, 0.1, 0.3]
    for step, loss in enumerate(losses):
        run.log(
            {
                "train/loss": loss,
                "val/acc": step / 10,
                "trainer/global_step": step * 100,
                "nested": {"depth": step},
            }
        )
    run.log({"hidden_metric": 7})
    run.summary["best_epoch"] = 2
    run.summary.update({"to_remove": 1})
    del run.summary["to_remove"]
    run.finish()

    rec = wandb_offline.run()
    assert isinstance(rec, RunRecord)
    assert rec.path.name == f"run-{run.id}.wandb"
    assert rec.folder == rec.path.parent
    assert rec.folder.name.startswith("offline-run-")
    assert (rec.run_id, rec.project, rec.entity) == (run.id, "proj", "ent")
    assert (rec.name, rec.group, rec.job_type, rec.notes) == (
        "display",
        "grp",
        "train",
        "some notes",
    )
    assert rec.tags == ("a", "b")
    assert rec.resumed is False
    assert rec.finished is True
    assert rec.exit_code == 0
    assert rec.truncated is False
    assert rec.preempting is False
    assert rec.wandb_version == wandb.__version__

    assert rec.config == {
        "lr": 0.01,
        "optim": {"name": "adam", "betas": [0.9, 0.99]},
        "drop": 1,
        "batch_size": 32,
    }

    assert len(rec.history) == len(losses) + 1
    first = rec.history[0]
    assert first["train/loss"] == 0.9
    assert first["nested.depth"] == 0
    assert first["_step"] == 0
    assert {"_runtime", "_timestamp"} <= first.keys()
    assert [row["_step"] for row in rec.history] == list(range(len(losses) + 1))
    assert rec.values("train/loss") == [(0, 0.9), (100, 0.4), (200, 0.1), (300, 0.3)]
    assert rec.values("hidden_metric") == [(None, 7)]
    assert rec.values("hidden_metric", step_key="_step") == [(4, 7)]
    assert [row["_step"] for row in rec.rows_with("val/acc")] == [0, 1, 2, 3]

    # define_metric(summary="min") -> wandb's {"min": ...} summary, not the last value.
    assert rec.summary["train/loss"] == {"min": 0.1}
    assert rec.summary["val/acc"]["max"] == pytest.approx(0.3)
    assert rec.summary["val/acc"]["mean"] == pytest.approx(0.15)
    assert rec.summary["trainer/global_step"] == 300
    assert rec.summary["nested"] == {"depth": 3}
    assert rec.summary["hidden_metric"] == 7
    assert rec.summary["best_epoch"] == 2
    assert "to_remove" not in rec.summary
    assert "_wandb" not in rec.summary
    assert "_wandb" not in rec.config

    assert rec.metrics["train/loss"] == {
        "step_metric": "trainer/global_step",
        "summary": ["min"],
        "step_sync": True,
        "hidden": False,
        "goal": None,
    }
    assert rec.metrics["val/*"]["summary"] == ["max", "mean"]
    assert rec.metrics["hidden_metric"]["hidden"] is True
    assert rec.metrics["trainer/global_step"]["step_metric"] is None


def test_artifacts_with_aliases_metadata_and_files(wandb_offline: WandbOfflineRuns, tmp_path: Path) -> None:
    import wandb

    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"\x00\x01" * 50)
    run = wandb.init(project="proj")
    art = wandb.Artifact("model", type="model", description="first", metadata={"epoch": 3, "dims": [1, 2]})
    art.add_file(str(weights))
    with art.new_file("sub/notes.txt") as handle:
        handle.write("hello")
    run.log_artifact(art, aliases=["best", "epoch-3"])
    art2 = wandb.Artifact("model", type="model")
    art2.add_file(str(weights), name="final.bin")
    run.log_artifact(art2)
    data = wandb.Artifact("data", type="dataset")
    data.add_file(str(weights))
    run.log_artifact(data)
    run.finish()

    rec = wandb_offline.run()
    assert [(a.name, a.type) for a in rec.artifacts] == [
        ("model", "model"),
        ("model", "model"),
        ("data", "dataset"),
    ]
    first = rec.artifacts[0]
    assert isinstance(first, ArtifactRecord)
    # wandb appends "latest" to the aliases it records.
    assert sorted(first.aliases) == ["best", "epoch-3", "latest"]
    assert first.metadata == {"epoch": 3, "dims": [1, 2]}
    assert first.description == "first"
    assert first.digest
    assert set(first.files) == {"weights.bin", "sub/notes.txt"}
    assert first.files["weights.bin"]["size"] == 100
    assert first.files["sub/notes.txt"]["size"] == 5
    assert first.files["weights.bin"]["digest"]
    staged = first.files["weights.bin"]["local_path"]
    assert staged is not None and Path(staged).is_relative_to(wandb_offline.data_dir)

    assert rec.artifact("model") is rec.artifacts[1]
    assert set(rec.artifact("model").files) == {"final.bin"}
    assert rec.artifact("model:best") is first
    with pytest.raises(KeyError, match=r"'data', 'model'"):
        rec.artifact("missing")
    # wandb refuses run.use_artifact in offline mode, so nothing is recorded.
    assert rec.used_artifacts == []


def test_exit_code_one_and_preempting(wandb_offline: WandbOfflineRuns) -> None:
    import wandb

    run = wandb.init(project="proj")
    run.log({"x": 1})
    run.mark_preempting()
    run.finish(exit_code=1)

    rec = wandb_offline.run()
    assert rec.exit_code == 1
    assert rec.finished is True
    assert rec.preempting is True


def test_fixture_isolates_environment(wandb_offline: WandbOfflineRuns) -> None:
    wandb_vars = {k: v for k, v in os.environ.items() if k.startswith("WANDB_")}
    assert wandb_vars == wandb_offline.env
    assert wandb_offline.env["WANDB_MODE"] == "offline"
    assert Path(wandb_offline.env["WANDB_DIR"]) == wandb_offline.wandb_dir
    for name in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_CONFIG_DIR"):
        assert Path(wandb_offline.env[name]).is_relative_to(wandb_offline.root)
    assert wandb_offline.runs() == []
    with pytest.raises(AssertionError, match="found 0"):
        wandb_offline.run()


def test_grep_finds_planted_string(wandb_offline: WandbOfflineRuns) -> None:
    secret = "planted-value-7f3a9c"
    _write_simple_run(config={"token": secret})
    hits = wandb_offline.grep(secret)
    rec = wandb_offline.run()
    assert rec.path in hits
    assert rec.config["token"] == secret
    assert wandb_offline.grep("never-logged-9b2e") == []
    files = wandb_offline.all_files()
    assert rec.path in files
    assert all(f.is_relative_to(wandb_offline.root) and not f.is_symlink() for f in files)


def test_read_run_path_forms_and_several_runs(wandb_offline: WandbOfflineRuns) -> None:
    first = _write_simple_run(rows=2, project="p1")
    wandb_root = wandb_offline.wandb_dir / "wandb"
    for form in (first, first.parent, wandb_root, wandb_offline.wandb_dir, str(first)):
        assert read_run(form).path == first
    assert read_run(wandb_root / "latest-run").run_id == read_run(first).run_id

    second = _write_simple_run(rows=1, project="p2")
    with pytest.raises(ValueError, match="read_runs") as excinfo:
        read_run(wandb_offline.wandb_dir)
    assert str(first) in str(excinfo.value) and str(second) in str(excinfo.value)

    # latest-run is a symlink and is not followed: each run is listed once.
    assert find_run_files(wandb_offline.wandb_dir) == [first, second]
    assert [r.project for r in read_runs(wandb_offline.wandb_dir)] == ["p1", "p2"]
    assert [r.project for r in wandb_offline.runs()] == ["p1", "p2"]
    with pytest.raises(AssertionError, match="found 2"):
        wandb_offline.run()
    with pytest.raises(FileNotFoundError):
        read_run(wandb_offline.root / "nope")
    with pytest.raises(FileNotFoundError, match="no run"):
        read_run(wandb_offline.cache_dir)


def _copy(src: Path, dest_dir: Path, data: bytes) -> Path:
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / src.name
    dest.write_bytes(data)
    return dest


def test_corrupt_truncated_and_bad_header(wandb_offline: WandbOfflineRuns, tmp_path: Path) -> None:
    import wandb

    run = wandb.init(project="proj")
    # ~120 KiB of history: several 32 KiB blocks and records split into fragments.
    for i in range(8):
        run.log({"i": i, "blob": chr(ord("a") + i) * 15_000})
    run.finish()
    original = wandb_offline.run()
    src = original.path
    data = src.read_bytes()
    assert len(data) > 3 * BLOCK
    assert [row["blob"][0] for row in original.history] == list("abcdefgh")
    assert original.values("blob", step_key="i")[7] == (7, "h" * 15_000)

    # One flipped bit in the middle of the file: CRC error naming file and offset.
    middle = len(data) // 2
    flipped = bytearray(data)
    flipped[middle] ^= 0x01
    bad = _copy(src, tmp_path / "flipped", bytes(flipped))
    with pytest.raises(RunFileError) as excinfo:
        read_run(bad)
    err = excinfo.value
    assert isinstance(err, ValueError)
    assert str(bad) in str(err)
    assert "offset" in str(err)
    assert err.path == bad
    assert 0 < err.offset <= middle

    # Cut the tail: tolerated, flagged, earlier rows intact.
    for cut in (3, 200, 20_000):
        cut_file = _copy(src, tmp_path / f"cut{cut}", data[:-cut])
        rec = read_run(cut_file)
        if not rec.truncated and rec.finished is False:
            # The cut fell exactly between two records (a complete, shorter log):
            # one byte more lands inside a record header, which must be flagged.
            cut_file = _copy(src, tmp_path / f"cut{cut}b", data[: -cut - 1])
            rec = read_run(cut_file)
        assert rec.truncated is True
        assert rec.finished is False and rec.exit_code is None
        assert rec.run_id == original.run_id
        assert rec.history == original.history[: len(rec.history)]
        assert len(rec.history) >= 6

    # Cut inside a fragmented record (just after a block boundary).
    rec = read_run(_copy(src, tmp_path / "cutblock", data[: 2 * BLOCK + 100]))
    assert rec.truncated is True
    assert rec.history == original.history[: len(rec.history)]

    # A file with only the header (a run killed before anything was flushed).
    rec = read_run(_copy(src, tmp_path / "header-only", data[:7]))
    assert (rec.truncated, rec.history, rec.run_id) == (False, [], original.run_id)

    # Bad magic, bad version, too short, not a wandb file at all.
    for name, payload in {
        "magic": b":W&X" + data[4:],
        "version": data[:6] + b"\x07" + data[7:],
        "short": data[:5],
        "text": b"hello world, this is not a run file\n",
    }.items():
        bad = _copy(src, tmp_path / f"bad-{name}", payload)
        with pytest.raises(RunFileError, match=r"header|version") as excinfo:
            read_run(bad)
        assert str(bad) in str(excinfo.value)

    # A damaged record length in the middle is an error, not a truncation.
    broken_len = bytearray(data)
    broken_len[7 + 4 : 7 + 6] = (60_000).to_bytes(2, "little")
    with pytest.raises(RunFileError, match="length"):
        read_run(_copy(src, tmp_path / "badlen", bytes(broken_len)))


def test_leaked_run_is_finished_and_live_marker(pytester: pytest.Pytester) -> None:
    marker_file = pytester.path / "wandb_dir.txt"
    pytester.makepyfile(
        test_inner=f"""
        import os
        import pytest

        def test_leaks(wandb_offline):
            import wandb
            assert "WANDB_API_KEY" not in os.environ
            assert "WANDB_PROJECT" not in os.environ
            run = wandb.init(project="leak")
            run.log({{"a": 1}})
            with open({str(marker_file)!r}, "w") as f:
                f.write(str(wandb_offline.wandb_dir))

        def test_after_leak():
            import wandb
            assert wandb.run is None

        @pytest.mark.live
        def test_live():
            pass
        """
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WANDB_PROJECT", "user-project-should-not-leak")
        mp.delenv("WANDB_API_KEY", raising=False)
        result = pytester.runpytest("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=2, skipped=1)
    leaked = read_run(marker_file.read_text())
    assert leaked.project == "leak"
    assert leaked.finished is True and leaked.exit_code == 0
    assert leaked.values("a") == [(None, 1)]


def test_importing_plugin_does_not_import_wandb() -> None:
    code = (
        "import sys, wandb_bridge.testing, wandb_bridge.testing.plugin; "
        "assert 'wandb' not in sys.modules, 'wandb imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_numbers_read_back_with_their_json_type(wandb_offline: WandbOfflineRuns) -> None:
    """Values parsed on the reader's number fast path equal what JSON gives (type and value); strings stay strings."""
    import json
    import math

    import wandb

    values: dict[str, Any] = {
        "int": 7,
        "neg_int": -12,
        "zero": 0,
        "big": 2**62,
        "float": 0.1,
        "neg_float": -2.5,
        "tiny": 1e-300,
        "huge": -3.5e200,
        "nan": float("nan"),
        "inf": float("inf"),
        "neg_inf": float("-inf"),
        "text": "12abc",
        "digits_text": "123",
    }
    run = wandb.init()
    run.log({f"v/{k}": v for k, v in values.items()})
    run.finish()
    record = wandb_offline.run()
    row = record.history[0]
    for key, value in values.items():
        got = row[f"v/{key}"]
        assert type(got) is type(value), (key, got)
        if isinstance(value, float) and math.isnan(value):
            assert math.isnan(got)
        else:
            assert got == value, (key, got)
        assert json.dumps(got) == json.dumps(value)
    assert record.summary["v/neg_int"] == -12 and record.summary["v/text"] == "12abc"


def test_count_history_counts_what_read_run_reads(wandb_offline: WandbOfflineRuns, tmp_path: Path) -> None:
    first = _write_simple_run(rows=7, project="p1")
    assert count_history(first) == len(read_run(first).history) == 7
    assert count_history(first.parent) == 7  # the same path forms as read_run
    # A corrupt file is refused as read_run refuses it, not counted short.
    data = bytearray(first.read_bytes())
    data[40] ^= 0xFF
    broken = _copy(first, tmp_path / "broken", bytes(data))
    with pytest.raises(RunFileError):
        count_history(broken)
    _write_simple_run(rows=1, project="p2")
    with pytest.raises(ValueError, match="read_runs"):
        count_history(wandb_offline.wandb_dir)
    with pytest.raises(FileNotFoundError):
        count_history(wandb_offline.root / "nope")
