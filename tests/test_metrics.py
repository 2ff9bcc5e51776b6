"""Key mapping, value conversion and row merging (pure functions of the core)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from wandb_bridge.core.metrics import RowMerger, convert_rows, normalize_key


@pytest.mark.parametrize(
    ("raw", "stage", "recorded"),
    [
        ("loss", "train", "train/loss"),
        ("train_loss", "train", "train/loss"),
        ("val_loss", "train", "val/loss"),
        ("valid_loss", "train", "val/loss"),
        ("validation_loss", "train", "val/loss"),
        ("eval_loss", "train", "val/loss"),
        ("val_acc", "train", "val/acc"),
        ("test_acc", "train", "test/acc"),
        ("loss", "test", "test/loss"),
        ("accuracy", "val", "val/accuracy"),
        ("my/custom", "train", "my/custom"),
        ("epoch", "train", "trainer/epoch"),
        ("learning_rate", "train", "train/learning_rate"),
        ("grad_norm", "train", "train/grad_norm"),
        ("train_runtime", "train", "perf/train_runtime"),
        ("eval_samples_per_second", "train", "perf/val_samples_per_second"),
        ("total_flos", "train", "perf/total_flos"),
        ("train_loss_step", "train", "train/loss_step"),
    ],
)
def test_key_table(raw: str, stage: str, recorded: str) -> None:
    assert normalize_key(raw, stage) == recorded  # type: ignore[arg-type]


def test_conversion_of_every_value_kind() -> None:
    rows = [
        {
            "f": 1.5,
            "i": 3,
            "b": True,
            "np": np.float32(0.25),
            "np_int": np.int64(7),
            "arr1": np.array([2.0]),
            "t0": torch.tensor(0.5),
            "t_int": torch.tensor(4),
            "t1": torch.tensor([1.5]),
            "nan": float("nan"),
            "inf": torch.tensor(float("inf")),
            "s": "text",
            "none": None,
            "multi": torch.ones(3),
            "arr": np.ones(2),
        }
    ]
    report = convert_rows(rows)
    row = rows[0]
    assert row["f"] == 1.5 and row["i"] == 3 and row["b"] == 1
    assert row["np"] == 0.25 and type(row["np"]) is float
    assert row["np_int"] == 7 and type(row["np_int"]) is int
    assert row["arr1"] == 2.0 and row["t0"] == 0.5 and row["t1"] == 1.5
    assert row["t_int"] == 4 and type(row["t_int"]) is int
    assert math.isnan(row["nan"]) and row["inf"] == math.inf
    assert report.non_finite == {"nan", "inf"}
    assert report.skipped == {"s": "str", "none": "none", "multi": "multi", "arr": "multi"}
    assert not {"s", "none", "multi", "arr"} & set(row)


def test_rows_of_plain_numbers_report_every_non_finite_value() -> None:
    # Rows of plain floats and ints take the one-pass check; whatever it lets through must be right.
    wide = {f"k{i}": float(i) for i in range(1000)}
    rows = [
        dict(wide),
        {**wide, "k500": float("nan")},
        {**wide, "k7": -math.inf, "k8": math.inf},  # (their sum is NaN)
        {"big": 1e308, "big2": 1e308},  # finite values whose sum overflows
        {"huge_int": 10**400, "f": 0.5},  # an int beyond float range beside a float
        {"ints": 10**400, "j": 2},
    ]
    report = convert_rows(rows)
    assert report.non_finite == {"k500", "k7", "k8"}
    assert report.skipped == {}
    assert rows[0] == wide and rows[3] == {"big": 1e308, "big2": 1e308}
    assert rows[4]["huge_int"] == 10**400 and rows[5] == {"ints": 10**400, "j": 2}


def test_merger_one_row_per_step_and_late_values_kept() -> None:
    merger = RowMerger()
    assert merger.add(1, {"train/loss": 1.0}, epoch=0.1) == []
    assert merger.add(1, {"val/loss": 2.0}) == []
    ready = merger.add(2, {"train/loss": 0.5})
    assert ready == [{"trainer/global_step": 1, "train/loss": 1.0, "val/loss": 2.0, "trainer/epoch": 0.1}]
    late = merger.add(1, {"val/acc": 0.9})
    assert late == [{"trainer/global_step": 1, "val/acc": 0.9}]
    assert merger.late_rows == 1
    assert merger.drain() == [{"trainer/global_step": 2, "train/loss": 0.5, "trainer/epoch": 0.1}]
    assert merger.drain() == []
