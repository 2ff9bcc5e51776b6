"""core/follow.py on real files: new and rewritten checkpoints, old files, templates, roles, the final-model rule."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from wandb_bridge.core.follow import (
    CallbackMonitor,
    CheckpointFollower,
    Verdict,
    adopted_monitor,
    checkpoint_role,
    final_model_due,
    matching_files,
    signature,
    template_glob,
    verdict,
)

_S = 1_000_000_000


def _write(path: Path, content: bytes, mtime_ns: int) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    os.utime(path, ns=(mtime_ns, mtime_ns))
    return str(path)


def test_new_files_are_reported_once_oldest_first_with_their_values(tmp_path: Path) -> None:
    now = time.time_ns()
    follower = CheckpointFollower(since_ns=now)
    best = _write(tmp_path / "best.ckpt", b"best", now + 2 * _S)
    last = _write(tmp_path / "last.ckpt", b"last", now + 1 * _S)
    missing = str(tmp_path / "never-written.ckpt")

    assert follower.written({best: 0.4, last: 0.5, missing: 0.9}) == [(last, 0.5), (best, 0.4)]
    assert follower.written({best: 0.4, last: 0.5}) == []  # nothing changed since


def test_a_rewritten_file_is_reported_again(tmp_path: Path) -> None:
    now = time.time_ns()
    follower = CheckpointFollower(since_ns=now)
    last = _write(tmp_path / "last.ckpt", b"epoch 0", now)
    assert follower.written({last: 1}) == [(last, 1)]

    _write(tmp_path / "last.ckpt", b"epoch 1!", now)  # same mtime, other size
    assert follower.written({last: 2}) == [(last, 2)]
    _write(tmp_path / "last.ckpt", b"epoch 2!", now + _S)  # same size, later mtime
    assert follower.written({last: 3}) == [(last, 3)]
    assert follower.written({last: 4}) == []


def test_files_older_than_following_are_ignored_until_rewritten(tmp_path: Path) -> None:
    now = time.time_ns()
    follower = CheckpointFollower(since_ns=now)
    old = _write(tmp_path / "old.ckpt", b"from the run resumed", now - 5 * _S)
    recent = _write(tmp_path / "recent.ckpt", b"written just before", now - _S // 2)  # inside the 1 s grace

    assert follower.written({old: None, recent: None}) == [(recent, None)]
    assert follower.written({old: None}) == []
    _write(tmp_path / "old.ckpt", b"written again now", now + _S)
    assert follower.written({old: None}) == [(old, None)]


def test_a_checkpoint_folder_is_followed_like_a_file(tmp_path: Path) -> None:
    follower = CheckpointFollower(since_ns=time.time_ns() - 10 * _S)
    folder = tmp_path / "step-10.ckpt"
    folder.mkdir()
    (folder / "shard-0.pt").write_bytes(b"0")
    assert follower.written({str(folder): 7}) == [(str(folder), 7)]
    assert signature(str(folder)) is not None
    assert signature(str(tmp_path / "absent")) is None


def test_template_glob_matches_what_the_template_produces(tmp_path: Path) -> None:
    assert template_glob("ckpt/model-{epoch:02d}-{val_loss:.2f}.keras") == "ckpt/model-*-*.keras"
    assert template_glob("ckpt/best.keras") == "ckpt/best.keras"
    assert template_glob("run[1]/{{literal}}-{epoch}.h5") == "run[[]1]/{literal}-*.h5"
    assert template_glob("ckpt/open-{epoch") == "ckpt/open-{epoch"

    template = str(tmp_path / "run[1]" / "m-{epoch:02d}.weights.h5")
    written = tmp_path / "run[1]" / "m-03.weights.h5"
    _write(written, b"w", time.time_ns())
    (tmp_path / "run[1]" / "m-dir.weights.h5").mkdir()  # a folder never matches
    assert list(matching_files(template_glob(template))) == [str(written)]


def test_following_a_template_skips_the_files_there_at_the_start(tmp_path: Path) -> None:
    now = time.time_ns()
    pattern = template_glob(str(tmp_path / "model-{epoch:02d}.keras"))
    before = _write(tmp_path / "model-01.keras", b"earlier fit", now)
    follower = CheckpointFollower(since_ns=now)
    follower.ignore_existing(pattern)
    assert follower.written_matching(pattern) == []

    second = _write(tmp_path / "model-02.keras", b"this fit, epoch 2", now + 2 * _S)
    first = _write(tmp_path / "model-01.keras", b"this fit, epoch 1 again", now + _S)
    _write(tmp_path / "other.keras", b"not the template's", now + _S)
    assert follower.written_matching(pattern) == [first, second]
    assert before == first
    assert follower.written_matching(pattern) == []


def test_checkpoint_role_names_the_callback_that_decides_best() -> None:
    # The run monitors val/loss: the first callback monitoring it is primary, a later one is other.
    monitors = ["val/acc", "val/loss", "val/loss", None]
    assert [checkpoint_role("val/loss", monitors, i) for i in range(4)] == ["other", "primary", "other", "other"]
    # No callback monitors the run's key: the core judges every one.
    assert [checkpoint_role("train/loss", monitors, i) for i in range(4)] == ["judge"] * 4
    # No run monitor: a callback monitoring nothing keeps its own verdict, one that monitors is judged.
    assert checkpoint_role(None, [None, "val/loss"], 0) == "primary"
    assert checkpoint_role(None, [None, "val/loss"], 1) == "judge"
    assert checkpoint_role("val/loss", ["", "val/loss"], 0) == "other"


def test_verdict_of_each_role() -> None:
    assert verdict("primary", 0.25, True) == Verdict(score=0.25, is_best=True, with_metrics=False)
    assert verdict("primary", 0.5, False) == Verdict(score=0.5, is_best=False, with_metrics=False)
    assert verdict("other", 0.25, True) == Verdict(score=None, is_best=False, with_metrics=False)
    assert verdict("judge", 0.25, True) == Verdict(score=None, is_best=None, with_metrics=True)


def test_adopted_monitor_prefers_a_preferred_callback_and_never_overrides_the_run() -> None:
    plain = CallbackMonitor("val_acc", "max")
    best_only = CallbackMonitor("val_loss", "min", preferred=True)
    nothing = CallbackMonitor(None)
    assert adopted_monitor(None, [nothing, plain, best_only]) == best_only
    assert adopted_monitor(None, [nothing, plain]) == plain
    assert adopted_monitor(None, [nothing, CallbackMonitor("")]) is None
    assert adopted_monitor(None, []) is None
    assert adopted_monitor("val/loss", [plain, best_only]) is None
    # a mode the callback does not state (Keras mode="auto" before its first epoch) is guessed from the name
    assert adopted_monitor(None, [CallbackMonitor("val_acc")]) == CallbackMonitor("val_acc", "max")
    assert adopted_monitor(None, [CallbackMonitor("val_loss")]) == CallbackMonitor("val_loss", "min")


@pytest.mark.parametrize(
    ("log_model", "trained", "exists", "due"),
    [
        ("end", True, False, True),
        ("best", True, False, True),
        ("all", True, False, True),
        (False, True, False, False),
        ("end", False, False, False),
        ("end", True, True, False),
    ],
)
def test_final_model_rule(log_model: object, trained: bool, exists: bool, due: bool) -> None:
    assert final_model_due(log_model, trained=trained, checkpoint_exists=exists) is due  # type: ignore[arg-type]
