"""Config capture: extraction from config objects, parameter counts, the user-wins rule, flatten, JSON-safe,
redaction, size caps."""

from __future__ import annotations

import dataclasses
import enum
import json
from pathlib import Path

import numpy as np
import pytest

from wandb_bridge import Session
from wandb_bridge.core.hparams import (
    REDACTED,
    ParameterCounts,
    clean_tags,
    config_of,
    count_parameters,
    extracted_config,
    prepare_config,
    to_json_safe,
)
from wandb_bridge.testing import WandbOfflineRuns


class Color(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Opt:
    lr: float = 0.1
    path: Path = Path("/tmp/x")


def test_flatten_json_safe_and_redact() -> None:
    cyclic: dict[str, object] = {"a": 1}
    cyclic["self"] = cyclic
    flat, notes = prepare_config(
        {
            "model": {"layers": 2, "dtype": np.dtype("float16")},
            "opt": Opt(),
            "color": Color.RED,
            "tags": {"b", "a"},
            "fn": len,
            "hub_token": "hf_secret_value",
            "db_password": "pw",
            "my_api_key": "k",
            "client_secret": "s",
            "pad_token_id": 0,
            "tokenizer_name": "bert",
            "url": "https://user:pass@example.com/path",
            "cyc": cyclic,
        },
        secrets=["ENVSECRET123"],
    )
    assert notes == []
    json.dumps(flat)
    assert flat["model/layers"] == 2
    assert flat["model/dtype"] == "float16"
    assert flat["opt/lr"] == 0.1 and flat["opt/path"] == "/tmp/x"
    assert flat["color"] == "red"
    assert flat["tags"] == ["a", "b"]
    assert flat["fn"] == "len"
    for key in ("hub_token", "db_password", "my_api_key", "client_secret"):
        assert flat[key] == REDACTED
    assert flat["pad_token_id"] == 0
    assert flat["tokenizer_name"] == "bert"
    assert flat["url"] == f"https://user:{REDACTED}@example.com/path"
    assert flat["cyc/self"] == "<cycle>"


def test_known_secret_values_are_scrubbed_anywhere() -> None:
    flat, _ = prepare_config({"cmd": "train --key ENVSECRET123 --x"}, secrets=["ENVSECRET123"])
    assert "ENVSECRET123" not in json.dumps(flat)


def test_huge_config_is_capped_not_failed() -> None:
    big = {"blob": "x" * 20_000_000, "small": 1, **{f"k{i}": "y" * 5000 for i in range(400)}}
    flat, notes = prepare_config(big, secrets=[])
    assert flat["small"] == 1
    assert flat["blob"].startswith("<truncated")
    assert len(json.dumps(flat)) <= 1_100_000
    assert "blob" in notes


def test_tags_capped() -> None:
    tags, notes = clean_tags(["x" * 100, "a", "a"] + [f"t{i}" for i in range(1000)])
    assert len(tags) == 100 and all(len(t) <= 64 for t in tags)
    assert len(notes) == 2


def test_numpy_scalar_config_value() -> None:
    assert to_json_safe({"v": np.float64(0.5)}) == {"v": 0.5}


# ------------------------------------------------------------ config extraction (config_of, counts, user wins)


class _WithToDict:
    def __init__(self) -> None:
        self.hidden = "not read: to_dict() says what the config is"

    def to_dict(self) -> dict[str, object]:
        return {"lr": 0.5, "token": "masked-by-its-owner"}


@dataclasses.dataclass(slots=True)
class _Slotted:
    lr: float = 0.25
    layers: int = 3


def test_config_of_reads_every_kind_of_config_object() -> None:
    import argparse

    import jsonargparse

    assert config_of({"a": 1}) == {"a": 1}
    assert config_of(argparse.Namespace(lr=0.1, name="x")) == {"lr": 0.1, "name": "x"}
    nested = jsonargparse.Namespace(model=jsonargparse.Namespace(width=8), lr=0.2)
    assert config_of(nested) == {"model": {"width": 8}, "lr": 0.2}  # as_dict(): nested namespaces become dicts
    assert config_of(_WithToDict()) == {"lr": 0.5, "token": "masked-by-its-owner"}
    assert config_of(_Slotted()) == {"lr": 0.25, "layers": 3}  # fields, also without __dict__
    assert config_of(Opt()) == {"lr": 0.1, "path": Path("/tmp/x")}
    source = {"a": {"b": 1}}
    copied = config_of(source)
    assert copied == source and copied is not source


def test_config_of_a_value_without_attributes() -> None:
    assert config_of(3, fallback_key="hparams") == {"hparams": 3}
    with pytest.raises(ValueError, match="mapping or an object with attributes"):
        config_of(3)


def test_count_parameters_from_sizes_or_shapes() -> None:
    counts = count_parameters([(10, True), ((4, 5), False), ([2, 3], True), ((), True)])
    assert counts == ParameterCounts(total=10 + 20 + 6 + 1, trainable=10 + 6 + 1)
    assert counts.non_trainable == 20
    assert count_parameters([]) == (0, 0)


def test_extracted_config_leaves_out_every_key_the_user_set() -> None:
    extracted = {"learning_rate": 0.001, "model": {"hidden_size": 16, "layers": 2}, "seed": 0}
    user = {"learning_rate": 0.5, "model/hidden_size": 8, "dataset": "toy"}
    assert extracted_config(extracted, user) == {"model/layers": 2, "seed": 0}
    assert extracted_config(extracted, None) == {
        "learning_rate": 0.001,
        "model/hidden_size": 16,
        "model/layers": 2,
        "seed": 0,
    }
    nested_user = {"model": {"layers": 4}}
    assert "model/layers" not in extracted_config(extracted, nested_user)


def test_user_config_wins_in_the_recorded_run(wandb_offline: WandbOfflineRuns) -> None:
    user = {"learning_rate": 0.5, "dataset": "toy"}
    with Session(project="p", config=user) as session:
        session.log_config(extracted_config({"learning_rate": 0.001, "epochs": 3}, session.settings.config))
    config = wandb_offline.run().config
    assert config["learning_rate"] == 0.5  # the user's value, not the extracted one
    assert config["epochs"] == 3 and config["dataset"] == "toy"
