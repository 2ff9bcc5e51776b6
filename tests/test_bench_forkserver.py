"""The benchmark's fork server runs each variant in its own process, as a fresh process would.

Real workers of ``benchmarks.plain`` (tiny MLP, real wandb offline), forked from one
server that imported torch and wandb once: each gets its own environment and wandb
folder, its run is read back (every row recorded), its CPU is counted, a failing worker
is reported as failed, and one that hangs is killed at its timeout.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator

import pytest
from benchmarks._harness import CONFIGS, GroupJob, RunOutcome, Servers, count_rows, run_group, run_worker

pytestmark = pytest.mark.slow

STEPS, WARMUP = 40, 5


@pytest.fixture(scope="module")
def servers() -> Iterator[Servers]:
    """One server for the module's tests (its imports take seconds), ended after them."""
    with Servers() as pool:
        yield pool


def _plain(servers: Servers, variant: str) -> RunOutcome:
    args = ["--variant", variant, "--steps", str(STEPS), "--warmup", str(WARMUP), "--printing", "1"]
    return run_worker(
        "benchmarks.plain",
        args,
        inspect=None if variant == "none" else count_rows,
        env=CONFIGS["defaults"],
        servers=servers,
    )


def test_forked_workers_record_every_row_and_count_their_cpu(servers: Servers) -> None:
    outcomes = {variant: _plain(servers, variant) for variant in ("none", "native", "ours")}
    assert servers.get("benchmarks.plain").preload == ["torch", "wandb", "benchmarks.plain"]
    for variant, outcome in outcomes.items():
        assert outcome.ok, (variant, outcome.error)
        result = outcome.result
        assert result["window_s"] > 0 and outcome.cpu_total_s > 0, variant
    expected = WARMUP + STEPS + 1
    assert outcomes["native"].result["rows"] == expected
    assert outcomes["ours"].result["rows"] == expected
    # A run's wandb-core (and our helper) ran in the worker's process group and were waited for:
    # a logging worker costs more CPU than the one without a logger.
    assert outcomes["ours"].cpu_total_s > outcomes["none"].cpu_total_s


def test_a_failing_worker_is_reported_and_the_server_goes_on(servers: Servers) -> None:
    failed = _plain(servers, "no-such-variant")
    assert not failed.ok
    assert "unknown variant 'no-such-variant'" in failed.error
    after = _plain(servers, "none")
    assert after.ok, after.error


def test_a_hanging_worker_is_killed_at_its_timeout(servers: Servers) -> None:
    # 10 million steps cannot finish in 3 s: the server kills the worker's process group.
    args = ["--variant", "none", "--steps", "10000000", "--warmup", "5"]
    outcome = run_worker("benchmarks.plain", args, servers=servers, timeout=3)
    assert not outcome.ok
    assert "timed out after 3 s" in outcome.error
    assert json.dumps(outcome.result) == "{}"
    assert _plain(servers, "none").ok  # the server survived the kill


def _job(variant: str, steps: int = STEPS) -> GroupJob:
    args = ["--variant", variant, "--steps", str(steps), "--warmup", str(WARMUP), "--printing", "1"]
    return GroupJob(variant, args, CONFIGS["defaults"], None if variant in ("none", "no-such-variant") else count_rows)


def test_a_row_shares_its_window_in_turns_that_never_overlap(servers: Servers) -> None:
    # Three variants at once, 1,000 steps each in turns of 0.02 s: each worker gets several
    # turns, every timed stretch is its own (no two overlap), and every row is recorded.
    # ("none" runs a step in about 0.15 ms here: 1,000 steps span several 0.03 s turns.)
    jobs = [_job(variant, 1000) for variant in ("none", "native", "ours")]
    outcomes = run_group("benchmarks.plain", jobs, servers=servers, turn_s=0.02, lead_s=0.01)
    spans: list[tuple[float, float, str]] = []
    for job, outcome in zip(jobs, outcomes, strict=True):
        assert outcome.ok, (job.name, outcome.error)
        result = outcome.result
        assert result["turns"] >= 2, (job.name, result["turns"])
        assert len(result["turn_spans"]) == result["turns"]
        spans += [(start, end, job.name) for start, end in result["turn_spans"]]
        assert "turns_error" not in result
    assert outcomes[1].result["rows"] == outcomes[2].result["rows"] == WARMUP + 1000 + 1
    spans.sort()
    for (_, end, name), (start, _, following) in itertools.pairwise(spans):
        assert end <= start, f"{name}'s turn ran into {following}'s"
    # Only the steps after each turn's lead-in are timed; the window is them scaled to all steps.
    for outcome in outcomes:
        result = outcome.result
        assert 0 < result["timed_steps"] < 1000
        assert 0 < result["timed_s"] < sum(end - start for start, end in result["turn_spans"])
        assert result["window_s"] == pytest.approx(result["timed_s"] * 1000 / result["timed_steps"])


def test_a_worker_that_fails_before_its_window_does_not_hold_up_the_row(servers: Servers) -> None:
    jobs = [_job("none", 400), _job("no-such-variant")]
    # (no lead-in: on a fast machine 400 untimed steps of "none" can fit in one, leaving nothing timed)
    outcomes = run_group("benchmarks.plain", jobs, servers=servers, turn_s=0.05, lead_s=0.0, timeout=60)
    assert outcomes[0].ok, outcomes[0].error
    assert not outcomes[1].ok
    assert "unknown variant 'no-such-variant'" in outcomes[1].error
