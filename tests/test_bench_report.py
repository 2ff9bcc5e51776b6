"""The benchmark's figures for the loops that only log (ratios paired per repetition) and its run order."""

from __future__ import annotations

import itertools

import pytest
from benchmarks import report


def _run(rep: int, seconds: float, rows_per_s: float, cpu: float) -> dict[str, float]:
    return {
        "rep": rep,
        "end_to_end_s": seconds,
        "init_s": 0.5,
        "loop_s": 0.1,
        "finish_s": 0.1,
        "rows_per_s": rows_per_s,
        "cpu_total_s": cpu,
        "history_rows": 100,
    }


def test_e2e_ratios_pair_the_variants_of_one_repetition() -> None:
    # The machine ran at a different speed in each repetition; ours failed in repetition 1.
    section = {
        "scenarios": [["wide", 100, 1000]],
        "runs": {
            "wide/native": [_run(0, 1.0, 200.0, 2.0), _run(1, 5.0, 40.0, 10.0), _run(2, 2.0, 100.0, 4.0)],
            "wide/ours": [_run(0, 0.9, 220.0, 1.8), _run(2, 1.8, 110.0, 3.6)],
        },
    }
    summary = report.summarize_e2e(section)
    paired = summary["wide/ours"]["paired"]
    assert paired["end_to_end"]["median"] == pytest.approx(0.9)
    assert paired["rows_per_s"]["median"] == pytest.approx(1.1)
    assert paired["cpu"]["n"] == 2 and paired["cpu"]["max"] == pytest.approx(0.9)
    assert "paired" not in summary["wide/native"]
    # Medians across repetitions would have compared ours' 1.35 s with native's 2.0 s (0.68).
    assert summary["wide/ours"]["end_to_end_s"]["median"] / summary["wide/native"]["end_to_end_s"]["median"] < 0.7
    # The table and the verdicts give the paired figures.
    results = {"e2e": {**section, "summary": summary}}
    assert "end to end 0.90 [0.90..0.90] (ok), rows/s 1.10 [1.10..1.10] (ok)" in report.e2e_table(results)
    # (with how many pairs: the repetition ours failed in has none)
    assert any(
        "default (auto) (2 pairs): end to end 0.90, rows/s 1.10, CPU 0.90" in line for line in report._verdicts(results)
    )


def test_the_noise_floor_line_only_where_the_default_ran_the_in_process_path_in_every_repetition() -> None:
    def runs(helper: bool) -> dict[str, list[dict[str, object]]]:
        auto = [
            {**_run(r, s, t, 1.0), "helper_used": helper and r == 1} for r, s, t in ((0, 2.0, 4000.0), (1, 1.0, 9000.0))
        ]
        return {
            "narrow/native": [_run(0, 1.5, 6000.0, 1.0), _run(1, 1.5, 6000.0, 1.0)],
            "narrow/ours": auto,
            "narrow/ours_inproc": [_run(0, 1.0, 8000.0, 1.0), _run(1, 1.0, 6000.0, 1.0)],
        }

    for helper, expected in ((False, 1), (True, 0)):
        section = {"scenarios": [["narrow", 8000, 10]], "runs": runs(helper)}
        results = {"e2e": {**section, "summary": report.summarize_e2e(section)}}
        lines = [line for line in report._verdicts(results) if line.startswith("Same code path twice")]
        assert len(lines) == expected
    # rows/s 4000/8000 and 9000/6000; end to end 2.0/1.0 and 1.0/1.0
    section = {"scenarios": [["narrow", 8000, 10]], "runs": runs(False)}
    (line,) = report._same_path_lines({"e2e": section})
    assert "rows/s 1.00 [0.50..1.50], end to end 1.50 [1.00..2.00]" in line


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
def test_rotation_varies_what_runs_first_and_what_runs_before_each_variant(n: int) -> None:
    from benchmarks._harness import rotation

    variants = [f"v{i}" for i in range(n)]
    orders = rotation(variants, n)
    assert all(sorted(order) == variants for order in orders)
    assert sorted(order[0] for order in orders) == variants  # each variant first once
    pairs = [pair for order in orders for pair in itertools.pairwise(order)]
    if n % 2 == 0:  # a Williams square: each ordered pair adjacent exactly once
        assert sorted(pairs) == sorted((a, b) for a in variants for b in variants if a != b)
    if n % 2 == 0 and n > 2:  # so no variant always follows the same one (a plain rotation runs v1 after v0)
        for b in variants:
            assert len({a for a, c in pairs if c == b}) == n - 1
