"""Issue 12 details not tied to one framework: GPU monitoring per rank mode, extras, the run being ``wandb.run``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from wandb_bridge import Session
from wandb_bridge.testing import WandbOfflineRuns

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(("rank_zero_only", "expected"), [(True, None), (False, [1])])
def test_gpu_statistics_cover_the_node_in_rank_zero_mode(
    rank_zero_only: bool, expected: list[int] | None, wandb_offline: WandbOfflineRuns, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Global rank 0 on local GPU 1 of a 2-process job (what torchrun sets).
    for name, value in {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}.items():
        monkeypatch.setenv(name, value)
    with Session(project="gpus", rank_zero_only=rank_zero_only) as session:
        session.log({"loss": 1.0}, step=1)
        ids = session.run.settings.x_stats_gpu_device_ids
        assert (list(ids) if ids else None) == expected


def test_the_run_is_wandb_run_and_a_user_finish_hands_over(wandb_offline: WandbOfflineRuns) -> None:
    import wandb

    session = Session(project="global")
    for step in range(1, 201):
        session.log({"loss": 1.0 / step}, step=step)
    assert wandb.run is session.run
    wandb.finish()  # the user's finish: everything queued is handed over first
    assert wandb.run is None and session.finished and session.ended_by_user
    run = wandb_offline.run()
    assert run.exit_code == 0
    assert [s for s, _ in run.values("train/loss")] == list(range(1, 201))
    assert not list(Path(run.path).parent.glob("files/wandb-bridge-unsent.jsonl"))


def test_all_extra_holds_every_user_facing_extra() -> None:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        tomllib = pytest.importorskip("tomli")
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    (all_spec,) = extras["all"]
    included = set(all_spec.split("[", 1)[1].rstrip("]").split(","))
    assert {"lightning", "transformers", "keras", "plot"} <= included
