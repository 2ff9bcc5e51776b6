"""The benchmark's fork server runs each variant in its own process, as a fresh process would.

Real workers of ``benchmarks.plain`` (tiny MLP, real wandb offline), forked from one
server that imported torch and wandb once: each gets its own environment and wandb
folder, its run is read back (every row recorded), its CPU is counted, a failing worker
is reported as failed, and one that hangs is killed at its timeout.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from benchmarks._harness import CONFIGS, RunOutcome, Servers, count_rows, run_worker

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
