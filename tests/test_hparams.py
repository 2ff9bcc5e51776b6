"""Config capture: flatten, JSON-safe, redaction, size caps."""

from __future__ import annotations

import dataclasses
import enum
import json
from pathlib import Path

import numpy as np

from wandb_bridge.core.hparams import REDACTED, clean_tags, prepare_config, to_json_safe


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
