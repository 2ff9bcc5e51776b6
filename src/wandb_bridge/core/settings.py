"""One resolved, frozen settings object: constructor args > ``WANDB_*`` env > defaults.

The environment is only read, never written.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, cast

from wandb_bridge.core import health, hparams

LogModel = Literal[False, "end", "best", "all"]
Mode = Literal["online", "offline", "disabled"]
MonitorMode = Literal["min", "max"]
OnError = Literal["warn", "raise"]
CheckpointStorage = Literal["upload", "reference"]
ReferenceDigest = Literal["hash", "size_mtime"]

MODES: tuple[str, ...] = ("online", "offline", "disabled")
LOG_MODEL_VALUES: tuple[object, ...] = (False, True, "end", "best", "all")
MONITOR_MODES: tuple[str, ...] = ("min", "max")
ON_ERROR_VALUES: tuple[str, ...] = ("warn", "raise")
WATCH_VALUES: tuple[str, ...] = ("gradients", "parameters", "all", "false")
CHECKPOINT_STORAGE_VALUES: tuple[str, ...] = ("upload", "reference")
REFERENCE_DIGEST_VALUES: tuple[str, ...] = ("hash", "size_mtime")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off", "none"}
# Metric-name words that mean "higher is better" when monitor_mode is not given.
_MAX_WORDS = {
    "acc",
    "accuracy",
    "f1",
    "auc",
    "auroc",
    "precision",
    "recall",
    "bleu",
    "rouge",
    "iou",
    "miou",
    "map",
    "dice",
    "r2",
    "top1",
    "top5",
    "sacrebleu",
    "meteor",
    "exact",
}


@dataclass(frozen=True)
class Settings:
    """Everything a :class:`~wandb_bridge.Session` needs, resolved and validated once.

    Build it with :meth:`Settings.resolve`; the constructor does no validation.
    """

    project: str | None = None
    entity: str | None = None
    name: str | None = None
    group: str | None = None
    tags: tuple[str, ...] = ()
    job_type: str | None = None
    notes: str | None = None
    config: Mapping[str, Any] | None = None
    mode: Mode | None = None
    dir: str | None = None
    id: str | None = None
    resume: str | bool | None = None
    run: Any = None
    log_model: LogModel = False
    checkpoint_name: str | None = None
    monitor: str | None = None
    monitor_mode: MonitorMode = "min"
    system_stats: bool = True
    rank_zero_only: bool = True
    shared_run: bool = False  # every rank in one run (wandb's shared mode); docs/distributed.md
    on_error: OnError = "warn"
    watch: str | None = None
    queue_size: int = 10_000
    finish_timeout: float = 60.0
    handle_sigterm: bool = True
    log_process: bool | Literal["auto"] = "auto"
    resume_from_checkpoint: str | None = None
    log_health: bool = False
    health_every: int = 50
    health_groups: Mapping[str, str] | None = None
    health_histograms: int | None = None
    checkpoint_storage: CheckpointStorage = "upload"
    keep_checkpoints: int | None = None
    reference_digest: ReferenceDigest = "hash"
    init_kwargs: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def resolve(
        cls,
        *,
        env: Mapping[str, str] | None = None,
        default_log_model_true: LogModel = "end",
        **kwargs: Any,
    ) -> Settings:
        """Resolve constructor arguments against ``WANDB_*`` variables and defaults.

        Args:
            env: the environment to read (``os.environ`` when None). Never written.
            default_log_model_true: what ``log_model=True`` means for the caller.
            **kwargs: the shared keyword arguments (docs/settings.md); unknown
                names are kept in ``init_kwargs`` and passed on to ``wandb.init``.

        Returns:
            A frozen, validated :class:`Settings`.

        Raises:
            ValueError: a value is not one of the allowed ones (the message lists them).
        """
        environ = os.environ if env is None else env
        known = {f for f in cls.__dataclass_fields__ if f != "init_kwargs"}
        init_kwargs = dict(kwargs.pop("init_kwargs", None) or {})
        init_kwargs.update({k: v for k, v in kwargs.items() if k not in known})
        _check_init_kwargs(init_kwargs, known)
        args = {k: v for k, v in kwargs.items() if k in known}

        def pick(name: str, var: str) -> Any:
            value = args.get(name)
            if value is None:
                value = environ.get(var) or None
            return value

        mode = _resolve_mode(args.get("mode"), environ)
        log_model = _resolve_log_model(args.get("log_model"), environ.get("WANDB_LOG_MODEL"), default_log_model_true)
        monitor = args.get("monitor")
        monitor_mode = args.get("monitor_mode")
        if monitor_mode is None:
            monitor_mode = infer_monitor_mode(monitor)
        _check("monitor_mode", monitor_mode, MONITOR_MODES)
        on_error = args.get("on_error") or "warn"
        _check("on_error", on_error, ON_ERROR_VALUES)
        watch = pick("watch", "WANDB_WATCH")
        if watch is not None:
            watch = str(watch).lower()
            _check("watch", watch, WATCH_VALUES)
            if watch == "false":
                watch = None
        tags = args.get("tags")
        if tags is None:
            env_tags = environ.get("WANDB_TAGS", "")
            tags = [t.strip() for t in env_tags.split(",") if t.strip()]
        elif isinstance(tags, str):
            tags = [tags]
        queue_size = int(args.get("queue_size") or 10_000)
        if queue_size < 1:
            raise ValueError(f"queue_size must be a positive integer, got {queue_size!r}")
        finish_timeout = float(args.get("finish_timeout") or 60.0)
        if finish_timeout <= 0:
            raise ValueError(f"finish_timeout must be > 0 seconds, got {finish_timeout!r}")
        log_process = args.get("log_process")
        if log_process is None:
            raw = environ.get("WANDB_BRIDGE_LOG_PROCESS", "auto")
            auto = raw.strip().lower() == "auto"
            log_process = "auto" if auto else _env_flag(environ, "WANDB_BRIDGE_LOG_PROCESS", default=True)
        for flag in ("system_stats", "rank_zero_only", "log_process", "shared_run"):
            value = log_process if flag == "log_process" else args.get(flag)
            if value is not None and not isinstance(value, bool) and not (flag == "log_process" and value == "auto"):
                choices = "True, False or 'auto'" if flag == "log_process" else "True or False"
                raise ValueError(f"{flag} must be {choices}, got {value!r}")
        config = args.get("config")
        if config is not None and not isinstance(config, Mapping):
            config = hparams.config_of(config)
        directory = pick("dir", "WANDB_DIR")
        log_health, health_every, health_groups, health_histograms = health.validate(
            args.get("log_health"), args.get("health_every"), args.get("health_groups"), args.get("health_histograms")
        )
        checkpoint_storage = args.get("checkpoint_storage") or "upload"
        _check("checkpoint_storage", checkpoint_storage, CHECKPOINT_STORAGE_VALUES)
        reference_digest = args.get("reference_digest") or "hash"
        _check("reference_digest", reference_digest, REFERENCE_DIGEST_VALUES)
        keep_checkpoints = args.get("keep_checkpoints")
        if keep_checkpoints is not None and (
            isinstance(keep_checkpoints, bool) or not isinstance(keep_checkpoints, int) or keep_checkpoints < 1
        ):
            raise ValueError(f"keep_checkpoints must be None or an int >= 1, got {keep_checkpoints!r}")
        return cls(
            project=pick("project", "WANDB_PROJECT"),
            entity=pick("entity", "WANDB_ENTITY"),
            name=args.get("name"),
            group=pick("group", "WANDB_RUN_GROUP"),
            tags=tuple(str(t) for t in _iter_tags(tags)),
            job_type=pick("job_type", "WANDB_JOB_TYPE"),
            notes=args.get("notes"),
            config=config,
            mode=mode,
            dir=None if directory is None else os.fspath(directory),
            id=pick("id", "WANDB_RUN_ID"),
            resume=args.get("resume"),
            run=args.get("run"),
            log_model=log_model,
            checkpoint_name=args.get("checkpoint_name"),
            monitor=monitor,
            monitor_mode=monitor_mode,
            system_stats=args.get("system_stats", True) is not False,
            rank_zero_only=_rank_zero_only(args),
            shared_run=args.get("shared_run") is True,
            on_error=on_error,  # type: ignore[arg-type]  # validated by _check above
            watch=watch,
            queue_size=queue_size,
            finish_timeout=finish_timeout,
            handle_sigterm=args.get("handle_sigterm", True) is not False,
            log_process=cast("bool | Literal['auto']", log_process),  # validated above
            resume_from_checkpoint=_optional_path(args.get("resume_from_checkpoint")),
            log_health=log_health,
            health_every=health_every,
            health_groups=health_groups,
            health_histograms=health_histograms,
            checkpoint_storage=checkpoint_storage,  # type: ignore[arg-type]  # validated by _check above
            keep_checkpoints=keep_checkpoints,
            reference_digest=reference_digest,  # type: ignore[arg-type]  # validated by _check above
            init_kwargs=init_kwargs,
        )

    def with_changes(self, **changes: Any) -> Settings:
        """Return a copy with some fields replaced (no re-validation)."""
        return replace(self, **changes)

    @property
    def disabled(self) -> bool:
        """True when logging is switched off (``mode="disabled"`` or ``WANDB_DISABLED``)."""
        return self.mode == "disabled"


def _rank_zero_only(args: Mapping[str, Any]) -> bool:
    """``rank_zero_only``; ``shared_run=True`` (every rank in one run) implies False and contradicts True."""
    given = args.get("rank_zero_only")
    if args.get("shared_run") is True:
        if given is True:
            raise ValueError("shared_run=True puts every rank in one run; it needs rank_zero_only=False (or unset)")
        return False
    return given is not False


def _check_init_kwargs(init_kwargs: Mapping[str, Any], known: Iterable[str]) -> None:
    """A keyword that neither the library nor ``wandb.init`` takes is a typo: raise at construction."""
    from wandb_bridge.adapters import wandb_sdk

    unknown = [k for k in init_kwargs if k not in wandb_sdk.INIT_PARAMETERS]
    if not unknown:
        return
    accepted = wandb_sdk.init_parameters()  # this wandb may take more than the names we know
    unknown = [k for k in unknown if k not in accepted]
    if not unknown:
        return
    import difflib

    names = sorted({*known, *accepted})
    name = unknown[0]
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise TypeError(
        f"unexpected keyword argument {name!r}: it is neither a wandb-bridge setting nor a wandb.init argument{hint}"
    )


def infer_monitor_mode(monitor: str | None) -> MonitorMode:
    """Guess whether a monitored metric should be minimised or maximised.

    Accuracy-like names (``acc``, ``f1``, ``auc``, ``bleu``...) are maximised,
    everything else (losses, errors, perplexity) is minimised.
    """
    if not monitor:
        return "min"
    words = set(re.split(r"[/_\-.\s]+", monitor.lower()))
    return "max" if words & _MAX_WORDS else "min"


def _resolve_mode(value: Any, environ: Mapping[str, str]) -> Mode | None:
    if value is None:
        if environ.get("WANDB_DISABLED", "").strip().lower() in _TRUE:
            return "disabled"
        value = environ.get("WANDB_MODE") or None
        if value is None:
            return None
    value = str(value).lower()
    if value == "dryrun":
        value = "offline"
    elif value == "run":
        value = "online"
    _check("mode", value, MODES)
    return cast(Mode, value)


def _resolve_log_model(value: Any, env_value: str | None, true_means: LogModel) -> LogModel:
    if value is None and env_value is not None:
        text = env_value.strip().lower()
        if text in _FALSE:
            return False
        if text in _TRUE:
            return true_means
        if text == "checkpoint":
            return "all"
        value = text
    if value is None or value is False:
        return False
    if value is True:
        return true_means
    _check("log_model", value, LOG_MODEL_VALUES)
    return value  # type: ignore[no-any-return]


def _check(name: str, value: object, allowed: Iterable[object]) -> None:
    allowed = tuple(allowed)
    if value not in allowed:
        shown = ", ".join(repr(a) for a in allowed)
        raise ValueError(f"{name}={value!r} is not valid; use one of {shown}")


def _optional_path(value: Any) -> str | None:
    if value is None or value is False or value == "":
        return None
    if isinstance(value, (str, os.PathLike)):
        return os.fspath(value)
    raise ValueError(f"resume_from_checkpoint must be a path to a checkpoint, got {value!r}")


def _iter_tags(tags: Any) -> Iterable[Any]:
    if isinstance(tags, (list, tuple, set, frozenset)):
        return tags
    raise ValueError(f"tags must be a list of strings, got {type(tags).__name__}")


def _env_flag(environ: Mapping[str, str], name: str, *, default: bool) -> bool:
    """A boolean environment variable; a value that is not a boolean word is a ValueError."""
    raw = environ.get(name)
    if raw is None:
        return default
    text = raw.strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{name} must be one of {sorted(_TRUE | _FALSE)}, got {raw!r}")
