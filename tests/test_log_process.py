"""The logging process: rows are logged into the run by a helper process (``log_process=True``, or "auto").

Everything here is real: the helper is a real child process attached to the
real offline run, faults are real signals, and the run is read back from its file.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import psutil
import pytest

from process_helpers import Child, rows_logged_here, wait_until_gone
from wandb_bridge import Session, WandbBridgeWarning
from wandb_bridge.adapters.row_process import HELPER_NAME
from wandb_bridge.core.settings import Settings
from wandb_bridge.testing import WandbOfflineRuns, read_run

SCRIPTS = Path(__file__).with_name("fault_scripts.py")


def _is_helper(proc: psutil.Process) -> bool:
    """The logging process: forked (named HELPER_NAME) or spawned (``-m ...row_process_child``)."""
    try:
        return proc.name() == HELPER_NAME or "row_process_child" in " ".join(proc.cmdline())
    except psutil.Error:
        return False


# Helpers alive when a test starts belong to runs of earlier tests in this worker process (a
# callback's run stays open, idle, until another callback starts one or the process exits).
_EARLIER: set[int] = set()


@pytest.fixture(autouse=True)
def _earlier_helpers() -> None:
    _EARLIER.clear()
    _EARLIER.update(proc.pid for proc in psutil.Process().children(recursive=True) if _is_helper(proc))


def _helpers() -> list[psutil.Process]:
    """The helpers started since this test began."""
    return [p for p in psutil.Process().children(recursive=True) if p.pid not in _EARLIER and _is_helper(p)]


def _ours(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, WandbBridgeWarning)]


def _child_env(wandb_offline: WandbOfflineRuns) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(wandb_offline.env)
    env["WANDB_BRIDGE_LOG_PROCESS"] = "1"  # the helper from the start (the default starts it once it pays)
    return env


def test_rows_are_logged_by_a_helper_process_in_order(
    wandb_offline: WandbOfflineRuns, monkeypatch: pytest.MonkeyPatch
) -> None:
    here = rows_logged_here(monkeypatch)
    with Session(project="proc", log_process=True) as session:
        for step in range(1, 301):
            session.log({"loss": 1.0 / step, "acc": step / 300}, step=step)
        assert session.flush()
        helpers = _helpers()
        assert len(helpers) == 1
        session.log_summary({"best": 1.0})
    assert here == []  # not one row was handed to wandb by the training process
    assert not helpers[0].is_running() or helpers[0].status() == psutil.STATUS_ZOMBIE
    run = wandb_offline.run()
    assert [s for s, _ in run.values("train/loss")] == list(range(1, 301))
    assert run.values("train/acc")[-1] == (300, 1.0)
    assert run.summary["train/best"] == 1.0 and run.exit_code == 0


def test_log_process_false_logs_from_the_training_process(
    wandb_offline: WandbOfflineRuns, monkeypatch: pytest.MonkeyPatch
) -> None:
    here = rows_logged_here(monkeypatch)
    with Session(project="proc", log_process=False) as session:
        session.log({"loss": 1.0}, step=1)
        session.flush()
        assert _helpers() == []
    assert [row["trainer/global_step"] for row in here] == [1]
    assert wandb_offline.run().values("train/loss") == [(1, 1.0)]


def test_env_variable_switches_the_helper_off_and_bad_values_are_errors() -> None:
    assert Settings.resolve(env={}).log_process == "auto"
    assert Settings.resolve(env={"WANDB_BRIDGE_LOG_PROCESS": "Auto"}).log_process == "auto"
    assert Settings.resolve(env={"WANDB_BRIDGE_LOG_PROCESS": "1"}).log_process is True
    assert Settings.resolve(env={}, log_process="auto").log_process == "auto"
    assert Settings.resolve(env={"WANDB_BRIDGE_LOG_PROCESS": "false"}).log_process is False
    assert Settings.resolve(env={"WANDB_BRIDGE_LOG_PROCESS": "false"}, log_process=True).log_process is True
    with pytest.raises(ValueError, match="WANDB_BRIDGE_LOG_PROCESS"):
        Settings.resolve(env={"WANDB_BRIDGE_LOG_PROCESS": "maybe"})
    with pytest.raises(ValueError, match="log_process"):
        Settings.resolve(env={}, log_process="yes")


def test_plain_rows_of_every_kind_go_to_the_helper(
    wandb_offline: WandbOfflineRuns, monkeypatch: pytest.MonkeyPatch
) -> None:
    here = rows_logged_here(monkeypatch)
    with Session(project="proc", log_process=True) as session:
        for step in (1, 2):
            session.log({"f": 0.5 * step, "i": step, "flag": True, "nested": {"a": {"b": 2.0}}}, step=step)
    assert here == []
    run = wandb_offline.run()
    assert run.values("train/f") == [(1, 0.5), (2, 1.0)]
    assert run.values("train/i") == [(1, 1), (2, 2)]
    assert run.values("nested/a/b") == [(1, 2.0), (2, 2.0)]


def test_media_rows_keep_their_place_between_plain_rows(
    wandb_offline: WandbOfflineRuns, monkeypatch: pytest.MonkeyPatch
) -> None:
    here = rows_logged_here(monkeypatch)
    with Session(project="proc", log_process=True) as session:
        for step in range(1, 11):
            values: dict[str, object] = {"loss": float(step)}
            if step in (4, 7):
                values["page"] = session.wandb_type("Html", f"<b>{step}</b>")
            session.log(values, step=step)
    run = wandb_offline.run()
    steps = [row["trainer/global_step"] for row in run.history if "train/loss" in row]
    assert steps == list(range(1, 11))
    assert [row["trainer/global_step"] for row in run.history if "train/page._type" in row] == [4, 7]
    assert [row["trainer/global_step"] for row in here] == [4, 7]  # only the media rows, from this process


def test_helper_killed_mid_run_loses_no_row(wandb_offline: WandbOfflineRuns) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Session(project="proc", log_process=True) as session:
            for step in range(1, 51):
                session.log({"loss": float(step)}, step=step)
            session.flush()
            (helper,) = _helpers()
            helper.kill()
            helper.wait(10)
            for step in range(51, 101):
                session.log({"loss": float(step)}, step=step)
    assert sum("logging process ended" in m for m in _ours(caught)) == 1
    steps = [s for s, _ in wandb_offline.run().values("train/loss")]
    assert sorted(set(steps)) == list(range(1, 101))  # every row; the last unconfirmed batch may repeat
    assert steps == sorted(steps)


def _signal_the_group(
    wandb_offline: WandbOfflineRuns, tmp_path: Path, scenario: str, sig: signal.Signals
) -> tuple[str, list[int], int | None, str]:
    """Run ``scenario`` in a session of its own, signal its whole process group once it says "ready".

    Returns:
        Its stderr, the steps of ``train/loss`` its run recorded, the run's exit code, and what to
        look at when rows are missing.
    """
    with Child(
        [sys.executable, str(SCRIPTS), scenario, str(tmp_path)],
        env=_child_env(wandb_offline),
        folder=tmp_path / "out",
        new_session=True,
    ) as child:
        child.wait_for_line("ready", timeout=120)
        core = child.wandb_core()
        os.killpg(child.pid, sig)
        assert child.wait(timeout=60) == -sig, child.stderr()[-3000:]
        printed = child.stderr()
    # (the run file is complete once wandb-core closed it: read before, it had rows 1-88 twice in
    # CI, about what the file's first 32 KiB block holds: cut there, a run of this script reads 86)
    wait_until_gone(core, timeout=60)
    run = read_run(next(tmp_path.glob("wandb/offline-run-*")))
    steps = [s for s, _ in run.values("train/loss")]
    why = _what_the_run_left(tmp_path, printed, run.exit_code)
    assert steps == list(range(1, len(steps) + 1)), why
    return printed, steps, run.exit_code, why


def _what_the_run_left(tmp_path: Path, printed: str, exit_code: int | None) -> str:
    """What to look at when rows are missing: the child's stderr, the run's exit code, the rows kept
    aside, the logging process's own log, wandb's debug.log and wandb-core's log."""
    parts = [f"stderr: {printed[-3000:]!r}", f"exit code recorded: {exit_code}"]
    for pattern in ("files/wandb-bridge-unsent.jsonl", "logs/wandb-bridge-helper.log", "logs/debug.log"):
        for path in tmp_path.glob(f"wandb/offline-run-*/{pattern}"):
            parts.append(f"{path.name}: {path.read_text(errors='replace')[-1500:]!r}")
    for path in tmp_path.glob("wandb/offline-run-*/logs/debug-internal.log"):
        lines = path.read_text(errors="replace").splitlines()
        parts.append("wandb-core: " + "\n".join(line for line in lines if "flowcontrol" not in line)[-2500:])
    return "\n".join(parts)


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "exit_code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_to_the_whole_process_group_loses_no_row(
    wandb_offline: WandbOfflineRuns, tmp_path: Path, sig: signal.Signals, exit_code: int
) -> None:
    # Slurm, Kubernetes and a terminal's Ctrl-C signal every process of the job at once:
    # the helper ignores the signal and logs every row the training process hands it.
    _, steps, code, why = _signal_the_group(wandb_offline, tmp_path, "until_signal", sig)
    assert len(steps) >= 100, why  # ("ready" came once step 100 was logged)
    assert code == exit_code, why


@pytest.mark.slow
def test_a_signal_to_the_process_group_never_reaches_a_starting_helper(
    wandb_offline: WandbOfflineRuns, tmp_path: Path
) -> None:
    # A spawned helper imports wandb for about half a second before it can ignore signals:
    # it starts in a session of its own, so the job's SIGTERM reaches the training process only.
    # ("ready" came once step 20 was logged, the helper still starting.)
    printed, steps, code, why = _signal_the_group(wandb_offline, tmp_path, "helper_starting", signal.SIGTERM)
    assert "logging process ended" not in printed, why
    assert len(steps) >= 20
    assert code == 143


@pytest.mark.timeout(120)
def test_frozen_helper_never_hangs_and_keeps_its_rows(wandb_offline: WandbOfflineRuns) -> None:
    session = Session(project="proc", finish_timeout=2, log_process=True)
    for step in range(1, 21):
        session.log({"loss": float(step)}, step=step)
    assert session.flush(timeout=60)  # the helper's start may take longer than 2 s on a loaded machine
    (helper,) = _helpers()
    helper.suspend()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for step in range(21, 61):
                session.log({"loss": float(step)}, step=step)
            session.finish()  # a hang here is caught by the test's timeout
            # finish stopped the helper while the worker thread still waited on it: that wait
            # ends quietly too (no second warning, no row logged after the run was finished)
            for thread in threading.enumerate():
                if thread.name == f"wandb-bridge-{session.run_id}":  # (the session's worker thread)
                    thread.join(10)
    finally:
        if helper.is_running():
            helper.kill()
    # one warning for the whole fault, naming where the rows are and how to upload the run
    ours = _ours(caught)
    assert len(ours) == 1, ours
    (warning,) = ours
    unsent = Path(session.run_dir or "", "wandb-bridge-unsent.jsonl")
    assert str(unsent) in warning and "wandb sync" in warning
    kept = [json.loads(line)["trainer/global_step"] for line in unsent.read_text().splitlines()]
    assert kept == list(range(21, 61))
    assert [s for s, _ in wandb_offline.run().values("train/loss")] == list(range(1, 21))


def test_a_process_forked_during_training_does_not_hold_up_finish(wandb_offline: WandbOfflineRuns) -> None:
    # A fork (a DataLoader worker, say) inherits a copy of the helper's input pipe, so the
    # helper would never see end of input while the fork lives: finish() ends it explicitly.
    session = Session(project="proc", finish_timeout=30, log_process=True)
    session.log({"loss": 1.0}, step=1)
    assert session.flush(timeout=60)
    forked = multiprocessing.get_context("fork").Process(target=time.sleep, args=(60,), daemon=True)
    forked.start()
    try:
        session.log({"loss": 0.5}, step=2)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            session.finish()  # waiting out finish_timeout would warn that the helper took no row
    finally:
        forked.kill()
        forked.join()
    assert _ours(caught) == []
    assert wandb_offline.run().values("train/loss") == [(1, 1.0), (2, 0.5)]


@pytest.mark.slow
def test_helper_ends_quietly_when_the_training_process_is_killed(
    wandb_offline: WandbOfflineRuns, tmp_path: Path
) -> None:
    with Child(
        [sys.executable, str(SCRIPTS), "until_signal", str(tmp_path)],
        env=_child_env(wandb_offline),
        folder=tmp_path / "out",
    ) as child:
        child.wait_for_line("ready", timeout=120)
        helpers = [p for p in psutil.Process(child.pid).children() if _is_helper(p)]
        assert len(helpers) == 1
        child.process.kill()  # SIGKILL: no finish(), no exit hook
        assert child.wait(timeout=30) == -signal.SIGKILL
        helpers[0].wait(timeout=30)  # the helper sees its input end and exits by itself
    # wandb-core ends with the training process, so the helper's wandb reports errors: they go to
    # the run's logs folder, not to the user's terminal.
    assert "Traceback" not in child.stderr()
    logs = list(tmp_path.glob("wandb/offline-run-*/logs/wandb-bridge-helper.log"))
    assert len(logs) == 1


def test_auto_a_short_run_starts_no_helper(wandb_offline: WandbOfflineRuns, monkeypatch: pytest.MonkeyPatch) -> None:
    # log_process="auto" (the default): fewer rows than one look of the sink choice are logged
    # here, and the helper's start-up (a second import of wandb) is never paid.
    here = rows_logged_here(monkeypatch)
    with Session(project="proc") as session:
        for step in range(1, 21):
            session.log({"loss": 1.0 / step}, step=step)
        assert session.flush()
        assert _helpers() == []
    assert [row["trainer/global_step"] for row in here] == list(range(1, 21))
    assert [s for s, _ in wandb_offline.run().values("train/loss")] == list(range(1, 21))


def test_auto_a_burst_of_rows_stays_in_this_process(
    wandb_offline: WandbOfflineRuns, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A loop that does nothing but log: rows come faster than wandb takes them, so the helper
    # would only add its start-up (both sinks are one thread calling run.log).
    here = rows_logged_here(monkeypatch)
    with Session(project="proc") as session:
        for step in range(1, 201):
            session.log({f"k{i}": float(i) for i in range(200)}, step=step)
        assert session.flush()
        assert _helpers() == []
    assert len(here) == 200


def test_auto_rows_with_training_between_them_move_to_the_helper_in_order(
    wandb_offline: WandbOfflineRuns, monkeypatch: pytest.MonkeyPatch
) -> None:
    here = rows_logged_here(monkeypatch)
    with Session(project="proc") as session:
        for step in range(1, 401):
            time.sleep(0.002)  # the training step (the GIL is free meanwhile, as in a torch step)
            session.log({"loss": 1.0 / step}, step=step)
        assert session.flush()
        assert len(_helpers()) == 1
    logged_here = [row["trainer/global_step"] for row in here]
    assert 0 < len(logged_here) < 400 and logged_here == list(range(1, len(logged_here) + 1))
    assert [s for s, _ in wandb_offline.run().values("train/loss")] == list(range(1, 401))


def _script(wandb_offline: WandbOfflineRuns, tmp_path: Path, scenario: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(wandb_offline.env)
    done = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("log_process_scripts.py")), scenario, str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.slow
def test_a_single_threaded_process_forks_its_helper(wandb_offline: WandbOfflineRuns, tmp_path: Path) -> None:
    # log_process=True in a plain script: the helper is forked before wandb.init (no second
    # interpreter, no second import of wandb): its command line is the training script's own.
    out = _script(wandb_offline, tmp_path, "always")
    assert len(out["started"]) == 1
    helper = out["started"][0]
    assert helper["name"] == out["helper_name"]
    assert helper["cmdline"] == out["self"]
    assert out["here"] == []  # every row went through the helper
    assert out["after"] == []  # and it is gone once the run is finished
    assert [s for s, _ in wandb_offline.run().values("train/loss")] == list(range(1, 51))
    # While the forked helper lives, the objects older than it are out of the collector's reach (a
    # collection would copy every page they are on); a cycle among them is freed after the run.
    assert out["frozen"]["during"] > 0 and out["frozen"]["after"] == 0
    assert out["cycle_freed"] == {"during": False, "after": True}


@pytest.mark.slow
def test_objects_the_script_froze_itself_stay_frozen(wandb_offline: WandbOfflineRuns, tmp_path: Path) -> None:
    out = _script(wandb_offline, tmp_path, "user_froze")
    assert out["started"][0]["name"] == out["helper_name"]  # forked all the same
    assert out["frozen"]["during"] > 0 and out["frozen"]["after"] == out["frozen"]["during"]
    # the session froze nothing itself: a cycle made after the script's freeze is collected as usual
    assert out["cycle_freed"] == {"during": True, "after": True}
    assert [s for s, _ in wandb_offline.run().values("train/loss")] == list(range(1, 51))


@pytest.mark.slow
def test_auto_forks_a_waiting_helper_that_a_short_run_never_uses(
    wandb_offline: WandbOfflineRuns, tmp_path: Path
) -> None:
    out = _script(wandb_offline, tmp_path, "auto_short_training")  # (torch imported: a training process)
    assert [h["name"] for h in out["started"]] == [out["helper_name"]]  # forked, waiting
    assert out["here"] == list(range(1, 21))  # unused: every row was logged here
    assert out["after"] == []
    assert [s for s, _ in wandb_offline.run().values("train/loss")] == list(range(1, 21))


@pytest.mark.slow
def test_auto_a_script_that_does_not_train_forks_no_helper(wandb_offline: WandbOfflineRuns, tmp_path: Path) -> None:
    # No training framework imported and no plan: a helper would never be used (the fork and its
    # copied pages cost a short script ~5% of its CPU); one is spawned if the rows ever say it pays.
    out = _script(wandb_offline, tmp_path, "auto_short")
    assert out["started"] == [] and out["during"] == []
    assert out["here"] == list(range(1, 21))
    assert [s for s, _ in wandb_offline.run().values("train/loss")] == list(range(1, 21))


@pytest.mark.slow
def test_auto_a_loop_that_only_logs_keeps_its_rows_here_before_its_queue_is_full(
    wandb_offline: WandbOfflineRuns, tmp_path: Path
) -> None:
    # 20,000 rows as fast as the loop can hand them over, into a queue of 1,000,000: it never waits
    # for room, but the worker falls far behind (its CPU per row is several times the loop's time
    # per row, and the rows it looks at are old): not the helper, by either rule.
    out = _script(wandb_offline, tmp_path, "auto_tight")
    assert out["waits"] == 0
    assert out["started"] == [] and out["during"] == []  # (a script that does not train: no helper waits)
    assert out["here"] == list(range(1, 20_001))
    assert len(wandb_offline.run().history) == 20_000


@pytest.mark.slow
def test_auto_hands_rows_to_the_forked_helper_once_it_pays(wandb_offline: WandbOfflineRuns, tmp_path: Path) -> None:
    out = _script(wandb_offline, tmp_path, "auto_training")
    assert [h["pid"] for h in out["during"]] == [h["pid"] for h in out["started"]]  # the forked one, no other
    here = out["here"]
    assert 0 < len(here) < 400 and here == list(range(1, len(here) + 1))
    assert out["after"] == []
    assert [s for s, _ in wandb_offline.run().values("train/loss")] == list(range(1, 401))


def test_auto_a_first_batch_of_training_rows_goes_to_the_helper_after_the_probe(
    wandb_offline: WandbOfflineRuns, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The worker wakes every 0.05 s wherever that falls, so its first batch can hold hundreds of rows
    # handed over with training between them: only the probe's 16 are logged here, the look is taken
    # before the others are, and the helper logs them. (The router as the worker drives it, on a real
    # run; the rows' hand-over clock is given: 300 rows in 0.15 s of training.)
    import wandb

    from wandb_bridge.adapters.wandb_sdk import RunHandle
    from wandb_bridge.core.faults import FaultBoundary
    from wandb_bridge.core.row_sinks import RowRouter, SinkChoice

    here = rows_logged_here(monkeypatch)
    run = wandb.init(project="proc")
    began = time.perf_counter()
    router = RowRouter(
        Settings.resolve(),
        FaultBoundary("warn"),
        stamp=lambda: began + 0.15,
        first=lambda: began,
        busy=lambda: (0, time.perf_counter()),  # (the training thread never waited, and hands rows over now)
    )
    router.spawn()
    router.start(RunHandle(run, owned=True))
    router.send([{"trainer/global_step": s, "train/loss": 1.0 / s} for s in range(1, 301)])
    router.sync()
    router.close(60.0)
    run.finish()
    assert router.choice is None  # (the look was taken, and said: the helper)
    assert [row["trainer/global_step"] for row in here] == list(range(1, SinkChoice.PROBE_ROWS + 1))
    assert router.logged == 300
    assert [s for s, _ in wandb_offline.run().values("train/loss")] == list(range(1, 301))


@pytest.mark.slow
def test_auto_looks_before_it_logs_a_batch_here(wandb_offline: WandbOfflineRuns, tmp_path: Path) -> None:
    # Rows logged here beside a training loop wait for the GIL, so a batch of a hundred rows logged
    # here before the look would cost training more than the helper saves: only the probe's 16 rows
    # (what a row costs) are logged here, then a look decides on the rows not logged yet.
    out = _script(wandb_offline, tmp_path, "auto_fast_training")
    here = out["here"]
    assert 16 <= len(here) <= 16 + 50 and here == list(range(1, len(here) + 1))  # the probe (+ at most one look)
    assert out["looks"] is None  # (the look said: the helper; it logged the rest)
    assert [s for s, _ in wandb_offline.run().values("train/loss")] == list(range(1, 2001))


def test_a_process_with_other_threads_spawns_its_helper(
    wandb_offline: WandbOfflineRuns, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A second Python thread could hold a lock the forked child would need: the helper is a
    # fresh interpreter then (``python -m wandb_bridge.adapters.row_process_child``).
    stop = threading.Event()
    other = threading.Thread(target=stop.wait, daemon=True)
    other.start()
    try:
        with Session(project="proc", log_process=True) as session:
            session.log({"loss": 1.0}, step=1)
            assert session.flush()
            helpers = _helpers()
            assert len(helpers) == 1
            assert "wandb_bridge.adapters.row_process_child" in helpers[0].cmdline()
    finally:
        stop.set()
    assert wandb_offline.run().values("train/loss") == [(1, 1.0)]


@pytest.mark.slow
def test_auto_a_planned_training_gets_the_helper_from_the_start(
    wandb_offline: WandbOfflineRuns, tmp_path: Path
) -> None:
    # Session.plan_rows(1000) before the run starts (what the framework callbacks do): no look
    # at the logging rate, every row goes through the forked helper.
    out = _script(wandb_offline, tmp_path, "auto_planned")
    assert [h["name"] for h in out["started"]] == [out["helper_name"]]
    assert out["here"] == []
    assert [s for s, _ in wandb_offline.run().values("train/loss")] == list(range(1, 31))


def test_auto_a_loop_that_fills_the_queue_stays_in_this_process(
    wandb_offline: WandbOfflineRuns, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Rows come faster than wandb takes them for longer than one look: the training thread waits
    # for room, and the rows the worker drains afterwards are old. Both say: not the helper.
    here = rows_logged_here(monkeypatch)
    with Session(project="proc", queue_size=64) as session:
        for step in range(1, 3001):
            session.log({"loss": 1.0 / step}, step=step)
        assert session.flush()
        assert _helpers() == []
    assert len(here) == 3000


@pytest.mark.slow
@pytest.mark.parametrize("framework", ["trainer", "lightning"])
def test_the_framework_callbacks_plan_their_rows(
    wandb_offline: WandbOfflineRuns, tmp_path: Path, framework: str
) -> None:
    # max_steps=600 and a log interval of 1 (the Trainer's logging_steps; Lightning's log_every_n_steps,
    # its run started before the Trainer through logger.experiment): 600 rows planned when training
    # starts, every one logged by the forked helper.
    out = _script(wandb_offline, tmp_path, framework)
    assert [h["name"] for h in out["during"]] == [out["helper_name"]]
    assert out["here"] == []
    assert [s for s, _ in wandb_offline.run().values("train/loss")] == list(range(1, 601))


@pytest.mark.slow
def test_a_process_holding_much_memory_spawns_its_helper(wandb_offline: WandbOfflineRuns, tmp_path: Path) -> None:
    # Above FORK_MAX_RSS a fork's copy-on-write pages could cost more than a fresh interpreter.
    out = _script(wandb_offline, tmp_path, "big")
    assert len(out["started"]) == 1
    assert "wandb_bridge.adapters.row_process_child" in out["started"][0]["cmdline"]
    assert out["here"] == []
    assert [s for s, _ in wandb_offline.run().values("train/loss")] == list(range(1, 51))


_ATTACH_CHILD = r"""
import json, sys
from wandb_bridge.adapters import wandb_sdk
wandb_sdk.load_run_start()  # what a forked helper has from its parent
before = set(sys.modules)
handle = wandb_sdk.attach(sys.stdin.buffer.read())
print(json.dumps({"id": handle.id, "imported": sorted(set(sys.modules) - before)}))
"""


def test_a_helper_attaches_without_importing_anything(wandb_offline: WandbOfflineRuns) -> None:
    # Attaching to a run imports wandb's launch-inputs module (about 0.25 s of CPU); the parent
    # imports it before forking the helper (it would in wandb.init anyway), so the helper has it.
    import pickle

    import wandb

    run = wandb.init(project="proc")
    try:
        child = subprocess.run(
            [sys.executable, "-c", _ATTACH_CHILD],
            input=pickle.dumps(run),
            capture_output=True,
            env={**os.environ, **wandb_offline.env},
            timeout=120,
            check=False,
        )
        assert child.returncode == 0, child.stderr.decode()[-2000:]
        out = json.loads(child.stdout.decode().strip().splitlines()[-1])
        assert out["id"] == run.id
        assert [name for name in out["imported"] if name.startswith("wandb")] == []
    finally:
        run.finish()


_IMPORT_COST = r"""
import inspect, json, sys
import wandb
calls = 0
original = inspect.getmodule
def counting(*args, **kwargs):
    global calls
    calls += 1
    return original(*args, **kwargs)
inspect.getmodule = counting
if sys.argv[1] == "ours":
    from wandb_bridge.adapters import wandb_sdk
    wandb_sdk.load_run_start()
else:
    import wandb.sdk.launch.inputs.internal
print(json.dumps({"getmodule": calls}))
"""


def test_what_attaching_needs_is_imported_the_cheap_way() -> None:
    # Imported first, wandb's launch package imports its public API halfway through its own
    # import, and pydantic extracts the API models' field docstrings the slow way: each
    # extraction scans every loaded module (inspect.getmodule). With torch and Lightning loaded
    # that cost the training process 1.6 to 1.9 s of CPU before each helper was forked, against
    # 0.9 s with the public API imported first. Counted, not timed.
    def getmodule_calls(how: str) -> int:
        out = subprocess.run(
            [sys.executable, "-c", _IMPORT_COST, how], capture_output=True, timeout=120, check=True
        ).stdout.decode()
        return int(json.loads(out.strip().splitlines()[-1])["getmodule"])

    ours, launch_first = getmodule_calls("ours"), getmodule_calls("launch-first")
    assert 0 < ours < launch_first, (ours, launch_first)
