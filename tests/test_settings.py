"""Settings: constructor args > WANDB_* env > defaults; bad values are ValueErrors that list the choices."""

from __future__ import annotations

import os

import pytest

from wandb_bridge.core.settings import Settings, infer_monitor_mode


def test_constructor_beats_environment() -> None:
    env = {"WANDB_PROJECT": "from-env", "WANDB_ENTITY": "team", "WANDB_RUN_GROUP": "g"}
    s = Settings.resolve(env=env, project="from-arg")
    assert s.project == "from-arg"
    assert s.entity == "team"
    assert s.group == "g"


def test_defaults_without_environment() -> None:
    s = Settings.resolve(env={})
    assert (s.project, s.mode, s.log_model, s.on_error) == (None, None, False, "warn")
    assert s.rank_zero_only is True and s.system_stats is True
    assert s.monitor_mode == "min"


@pytest.mark.parametrize(
    ("env_value", "expected"),
    [("false", False), ("end", "end"), ("best", "best"), ("all", "all"), ("checkpoint", "all"), ("true", "end")],
)
def test_wandb_log_model_env(env_value: str, expected: object) -> None:
    assert Settings.resolve(env={"WANDB_LOG_MODEL": env_value}).log_model == expected


def test_log_model_true_means_what_the_caller_says() -> None:
    assert Settings.resolve(env={}, log_model=True).log_model == "end"
    assert Settings.resolve(env={}, log_model=True, default_log_model_true="all").log_model == "all"


def test_disabled_and_mode_env() -> None:
    assert Settings.resolve(env={"WANDB_DISABLED": "true"}).disabled
    assert Settings.resolve(env={"WANDB_MODE": "dryrun"}).mode == "offline"
    assert Settings.resolve(env={"WANDB_MODE": "disabled"}, mode="offline").mode == "offline"


def test_tags_and_watch_from_env() -> None:
    s = Settings.resolve(env={"WANDB_TAGS": "a, b,,c", "WANDB_WATCH": "all", "WANDB_JOB_TYPE": "train"})
    assert s.tags == ("a", "b", "c")
    assert s.watch == "all"
    assert s.job_type == "train"
    assert Settings.resolve(env={"WANDB_WATCH": "false"}).watch is None


@pytest.mark.parametrize(
    ("kwargs", "listed"),
    [
        ({"mode": "sometimes"}, "'online', 'offline', 'disabled'"),
        ({"log_model": "often"}, "'end', 'best', 'all'"),
        ({"monitor_mode": "biggest"}, "'min', 'max'"),
        ({"on_error": "ignore"}, "'warn', 'raise'"),
        ({"queue_size": -1}, "positive"),
        ({"rank_zero_only": "yes"}, "True or False"),
    ],
)
def test_bad_values_list_the_allowed_ones(kwargs: dict[str, object], listed: str) -> None:
    with pytest.raises(ValueError) as info:
        Settings.resolve(env={}, **kwargs)
    assert listed in str(info.value)


def test_bad_env_value_is_reported_with_choices() -> None:
    with pytest.raises(ValueError, match="log_model='sometimes'"):
        Settings.resolve(env={"WANDB_LOG_MODEL": "sometimes"})


def test_unknown_arguments_go_to_wandb_init() -> None:
    s = Settings.resolve(env={}, save_code=False, settings={"x": 1})
    assert dict(s.init_kwargs) == {"save_code": False, "settings": {"x": 1}}


def test_environment_is_never_written() -> None:
    before = dict(os.environ)
    Settings.resolve(project="p", mode="offline", log_model="all")
    assert dict(os.environ) == before


@pytest.mark.parametrize(
    ("name", "mode"),
    [
        ("val/loss", "min"),
        ("val_acc", "max"),
        ("eval_f1", "max"),
        ("val/mape", "min"),
        ("val/perplexity", "min"),
        (None, "min"),
    ],
)
def test_monitor_mode_inference(name: str | None, mode: str) -> None:
    assert infer_monitor_mode(name) == mode
