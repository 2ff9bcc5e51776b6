"""README / run contract claims about ``Session`` that had no test: resume "who wins", one fault one warning, stats.

Everything runs against real wandb offline; what the run recorded is read back.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pytest

from process_helpers import kill_wandb_core, wandb_core_processes
from wandb_bridge import Session, WandbBridgeWarning
from wandb_bridge.testing import RunRecord, WandbOfflineRuns


def _ours(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, UserWarning)]


def _first_attempt(tmp_path: Path, group: str | None = None) -> tuple[str, Path]:
    """A finished run that logged steps 1..5 and reported a checkpoint at step 3."""
    checkpoint = tmp_path / "ckpt" / "ckpt.pt"
    checkpoint.parent.mkdir()
    with Session(project="resume", group=group) as first:
        for step in range(1, 6):
            first.log({"loss": float(step)}, step=step)
            if step == 3:
                checkpoint.write_bytes(b"weights at 3")
                first.log_checkpoint(checkpoint, step=3)
        run_id = first.run_id
    assert run_id is not None
    return run_id, checkpoint


def _by_id(wandb_offline: WandbOfflineRuns) -> dict[str, list[RunRecord]]:
    out: dict[str, list[RunRecord]] = {}
    for run in wandb_offline.runs():
        out.setdefault(run.run_id, []).append(run)
    return out


def _losses(runs: list[RunRecord]) -> list[tuple[int, float]]:
    return sorted((int(s), v) for run in runs for s, v in run.values("train/loss"))


def test_wandb_run_id_wins_over_the_marker(
    wandb_offline: WandbOfflineRuns, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id, checkpoint = _first_attempt(tmp_path)
    monkeypatch.setenv("WANDB_RUN_ID", "fromenv1")
    with pytest.warns(UserWarning, match="chosen explicitly"), Session(resume_from_checkpoint=checkpoint) as session:
        session.log({"loss": 0.5}, step=1)  # nothing skipped in the other run
        assert session.run_id == "fromenv1"
    runs = _by_id(wandb_offline)
    assert _losses(runs["fromenv1"]) == [(1, 0.5)]
    assert _losses(runs[run_id]) == [(s, float(s)) for s in range(1, 6)]


def test_run_argument_wins_over_the_marker_and_is_left_open(wandb_offline: WandbOfflineRuns, tmp_path: Path) -> None:
    import wandb

    _run_id, checkpoint = _first_attempt(tmp_path)
    mine = wandb.init(project="mine", id="userrun1")
    with Session(run=mine, resume_from_checkpoint=checkpoint) as session:
        session.log({"loss": 0.25}, step=2)
        assert session.run is mine and not session.owns_run
    assert wandb.run is mine  # left open
    mine.log({"after": 1.0})
    mine.finish()
    runs = _by_id(wandb_offline)
    (user_run,) = runs["userrun1"]
    assert _losses([user_run]) == [(2, 0.25)]
    assert user_run.values("after", step_key="_step")[-1][1] == 1.0


def test_an_active_wandb_run_wins_over_the_marker(wandb_offline: WandbOfflineRuns, tmp_path: Path) -> None:
    import wandb

    _run_id, checkpoint = _first_attempt(tmp_path)
    agent_run = wandb.init(project="agent", id="agentrun")
    with Session(resume_from_checkpoint=checkpoint) as session:
        session.log({"loss": 0.75}, step=1)
        assert session.run_id == "agentrun"
    assert wandb.run is agent_run
    agent_run.finish()
    assert _losses(_by_id(wandb_offline)["agentrun"]) == [(1, 0.75)]


@pytest.mark.parametrize("resume", [False, "never"])
def test_resume_false_or_never_starts_a_new_run(
    wandb_offline: WandbOfflineRuns, tmp_path: Path, resume: bool | str
) -> None:
    run_id, checkpoint = _first_attempt(tmp_path)
    with Session(project="resume", resume=resume, resume_from_checkpoint=checkpoint) as session:
        session.log({"loss": 9.0}, step=2)  # a step the old run recorded: kept in the new run
        fresh = session.run_id
    assert fresh not in (None, run_id)
    assert _losses(_by_id(wandb_offline)[str(fresh)]) == [(2, 9.0)]


def test_same_id_given_explicitly_applies_the_skip_rule(wandb_offline: WandbOfflineRuns, tmp_path: Path) -> None:
    run_id, checkpoint = _first_attempt(tmp_path)
    with (
        pytest.warns(UserWarning, match="already recorded"),
        Session(project="resume", id=run_id, resume="allow", resume_from_checkpoint=checkpoint) as session,
    ):
        for step in range(4, 8):
            session.log({"loss": step + 0.5}, step=step)
    expected = [(s, float(s)) for s in range(1, 6)] + [(6, 6.5), (7, 7.5)]
    assert _losses(_by_id(wandb_offline)[run_id]) == expected


def test_project_comes_from_the_marker_only_when_none_is_set(wandb_offline: WandbOfflineRuns, tmp_path: Path) -> None:
    run_id, checkpoint = _first_attempt(tmp_path)
    with Session(resume_from_checkpoint=checkpoint) as session:  # no project: the marker's
        session.log({"loss": 6.0}, step=6)
    with Session(project="elsewhere", resume_from_checkpoint=checkpoint) as session:  # set: it wins
        session.log({"loss": 7.0}, step=7)
    attempts = _by_id(wandb_offline)[run_id]
    assert sorted(r.project or "" for r in attempts) == ["elsewhere", "resume", "resume"]
    assert _losses(attempts) == [(s, float(s)) for s in range(1, 8)]


def test_a_checkpoint_copied_without_its_marker_starts_a_new_run(
    wandb_offline: WandbOfflineRuns, tmp_path: Path
) -> None:
    run_id, checkpoint = _first_attempt(tmp_path)
    copy = tmp_path / "copied" / "ckpt.pt"
    copy.parent.mkdir()
    shutil.copy(checkpoint, copy)  # the folder's _wandb-bridge-runs.json stays behind
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Session(project="resume", resume_from_checkpoint=copy) as session:
            session.log({"loss": 1.5}, step=4)
            fresh = session.run_id
    assert fresh not in (None, run_id)
    assert sum("No run marker beside" in m for m in _ours(caught)) == 1, _ours(caught)
    assert _losses(_by_id(wandb_offline)[str(fresh)]) == [(4, 1.5)]


def test_an_unmarked_checkpoint_belongs_to_the_newest_marked_run_before_it(
    wandb_offline: WandbOfflineRuns, tmp_path: Path
) -> None:
    run_id, checkpoint = _first_attempt(tmp_path)
    jit = checkpoint.parent / "checkpoint-9"  # saved without a marker (e.g. a framework's SIGTERM save)
    jit.mkdir()
    with Session(project="resume") as session:
        session.resume_from_checkpoint(jit, step=9)
        session.log({"loss": 10.0}, step=10)
        assert session.run_id == run_id
    assert _losses(_by_id(wandb_offline)[run_id])[-1] == (10, 10.0)


def test_a_replaced_checkpoint_file_has_no_marker(wandb_offline: WandbOfflineRuns, tmp_path: Path) -> None:
    run_id, checkpoint = _first_attempt(tmp_path)
    checkpoint.write_bytes(b"other weights, another size")  # the index does not describe this file
    with (
        pytest.warns(UserWarning, match="No run marker beside"),
        Session(project="resume", resume_from_checkpoint=checkpoint) as session,
    ):
        session.log({"loss": 2.0}, step=2)
        fresh = session.run_id
    assert fresh != run_id
    assert _losses(_by_id(wandb_offline)[str(fresh)]) == [(2, 2.0)]


@pytest.mark.timeout(120)
def test_a_stuck_wandb_at_finish_warns_once(wandb_offline: WandbOfflineRuns) -> None:
    session = Session(project="faults", finish_timeout=2)
    session.log({"loss": 1.0}, step=1)
    assert session.flush()
    stuck = wandb_core_processes()
    assert stuck
    for proc in stuck:
        proc.suspend()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for step in range(2, 10):
                session.log({"loss": 1.0}, step=step)
            session.finish()
    finally:
        for proc in stuck:
            proc.kill()
    assert len([w for w in caught if issubclass(w.category, WandbBridgeWarning)]) == 1


def test_wandb_core_killed_mid_run_warns_once(wandb_offline: WandbOfflineRuns) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        session = Session(project="faults", config={"a": 1})
        for step in range(1, 11):
            session.log({"loss": float(step)}, step=step)
        assert session.flush()
        kill_wandb_core()
        for step in range(11, 21):
            session.log({"loss": float(step)}, step=step)
        session.log_config({"b": 2})
        session.finish()
    assert len([w for w in caught if issubclass(w.category, WandbBridgeWarning)]) == 1


def test_bad_config_input_warns_once(wandb_offline: WandbOfflineRuns) -> None:
    config = {"huge": "x" * (20 << 20), "ok": 1}
    tags = ["t" * 100] + [f"tag{i}" for i in range(1000)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Session(project="faults", config=config, tags=tags) as session:
            session.log({"loss": 1.0}, step=1)
    assert len([w for w in caught if issubclass(w.category, WandbBridgeWarning)]) == 1


@pytest.mark.parametrize("system_stats", [True, False])
def test_system_stats_switches_wandbs_monitor(
    wandb_offline: WandbOfflineRuns, monkeypatch: pytest.MonkeyPatch, system_stats: bool
) -> None:
    monkeypatch.delenv("WANDB__DISABLE_STATS")  # the fixture turns wandb's monitor off; let the argument decide
    with Session(project="stats", system_stats=system_stats) as session:
        session.log({"loss": 1.0}, step=1)
        settings = session.run.settings
        assert bool(settings.x_disable_stats) is (not system_stats)
    assert wandb_offline.run().values("train/loss") == [(1, 1.0)]


def test_a_checkpoint_uploads_what_the_file_held_at_the_call(wandb_offline: WandbOfflineRuns, tmp_path: Path) -> None:
    """Rewritten in place (same inode), replaced or deleted right after the call: the version has the old bytes."""
    import base64
    import hashlib
    import os

    folder = tmp_path / "ckpt"
    folder.mkdir()
    written: dict[str, bytes] = {}
    with Session(project="snapshot", log_model="all") as session:
        for step, how in enumerate(("in_place", "replaced", "deleted"), start=1):
            path = folder / f"{how}.ckpt"
            written[how] = f"weights of step {step} ".encode() * 100
            path.write_bytes(written[how])
            session.log({"loss": float(step)}, step=step)
            session.log_checkpoint(path, step=step)
            if how == "in_place":
                with open(path, "r+b") as handle:  # same inode, new content
                    handle.write(b"overwritten!" * 200)
            elif how == "replaced":
                (folder / "new.tmp").write_bytes(b"a newer checkpoint")
                os.replace(folder / "new.tmp", path)
            else:
                path.unlink()
    models = [a for a in wandb_offline.run().artifacts if a.type == "model"]
    assert len(models) == 3
    for artifact in models:
        how = Path(artifact.metadata["original_filename"]).stem
        (entry,) = artifact.files.values()
        assert entry["digest"] == base64.b64encode(hashlib.md5(written[how]).digest()).decode(), how
        assert entry["size"] == len(written[how])
