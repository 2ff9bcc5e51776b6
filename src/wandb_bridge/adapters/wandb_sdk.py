"""The only module that imports ``wandb``.

Everything the core asks of wandb goes through the small set of functions and
the :class:`RunHandle` here, so version differences and failure modes of the
SDK are dealt with in one place.
"""

from __future__ import annotations

import importlib
import weakref
from collections.abc import Iterable, Mapping, Sequence
from types import ModuleType
from typing import Any

INSTALL_HINT = 'pip install "wandb-bridge"  (or: pip install wandb)'


def load() -> ModuleType:
    """Import wandb, or raise an ImportError that says how to install it."""
    try:
        return importlib.import_module("wandb")
    except ImportError as exc:  # pragma: no cover - wandb is a required dependency
        raise ImportError(f"wandb-bridge needs the wandb package: {INSTALL_HINT}") from exc


# What wandb imports when a run starts or attaches and not at ``import wandb`` (wandb 0.31: every
# ``wandb.init`` and every attach import its launch-inputs module, about 0.25 s of CPU), in an
# order that costs least: the launch package imports the public API halfway through its own
# import, and pydantic then extracts the API models' field docstrings the slow way. With torch
# and Lightning loaded (3,500 modules) that took 1.6 to 1.9 s of CPU against 0.9 s with the
# public API imported first (``wandb.init`` in-process gets that order from ``_prewarm``).
_RUN_START_MODULES = ("wandb.apis.public", "wandb.sdk.launch.inputs.internal")


def load_run_start() -> None:
    """Import now what wandb imports when a run starts or attaches (:data:`_RUN_START_MODULES`).

    The process would import it in ``wandb.init`` anyway; imported before a helper is
    forked, the helper has it too, and attaching there costs milliseconds instead of
    a second import. A module this wandb does not have is skipped.
    """
    load()
    for name in _RUN_START_MODULES:
        try:
            importlib.import_module(name)
        except Exception:  # another wandb version: it imports something else, or nothing
            pass


# Runs whose wandb-core connection was lost: wandb keeps such a run as ``wandb.run``
# (its finish fails), but it can record nothing, so no session takes it over.
_DEAD: weakref.WeakSet[Any] = weakref.WeakSet()


def mark_dead(run: Any) -> None:
    """Record that ``run`` can record nothing any more (its wandb-core is gone); see :func:`active_run`."""
    try:
        _DEAD.add(run)
    except TypeError:  # not weak-referenceable: not a wandb run
        pass


def active_run() -> Any:
    """The run wandb considers active in this process (``wandb.run``), or None (also for a dead run)."""
    import sys

    module = sys.modules.get("wandb")
    run = None if module is None else module.run
    return None if run is None or run in _DEAD else run


def init(
    kwargs: Mapping[str, Any],
    *,
    system_stats: bool,
    gpu_index: int | None,
    shared_label: str | None = None,
    primary: bool = True,
) -> Any:
    """Start a run with ``wandb.init``.

    Args:
        kwargs: keyword arguments for ``wandb.init``; a ``settings`` entry (dict or
            ``wandb.Settings``) is merged with the monitor settings below.
        system_stats: False switches wandb's system monitor off.
        gpu_index: the GPU this process should monitor (one GPU per rank).
        shared_label: join the run ``kwargs["id"]`` in wandb's shared mode
            (``mode="shared"``) with this label on this process's system
            statistics and console output (see :func:`shared_mode_missing`).
        primary: in shared mode, True for the one process that writes the run's
            metadata and files and sets its final state (``x_primary``,
            ``x_update_finish_state``); the others only add to the run.
    """
    wandb = load()
    _prewarm()
    extra: dict[str, Any] = {}
    if not system_stats:
        extra["x_disable_stats"] = True
    elif gpu_index is not None:
        extra["x_stats_gpu_device_ids"] = [gpu_index]
    call = dict(kwargs)
    if call.get("reinit") == "create_new" and not _knows_create_new(wandb):
        call["reinit"] = True  # wandb < 0.19.10: a bool; True starts a new run in this process too
    user_settings = call.pop("settings", None)
    if extra or user_settings is not None or shared_label is not None:
        call["settings"] = _merge_settings(wandb, user_settings, extra)
    if shared_label is not None:
        call["mode"] = "shared"
        shared = {"x_label": shared_label, "x_primary": primary, "x_update_finish_state": primary}
        for key, value in shared.items():  # set whatever the user's settings held: these decide who owns the run
            setattr(call["settings"], key, value)
    return wandb.init(**call)


#: The ``wandb.Settings`` fields shared mode needs (wandb >= 0.19.9).
SHARED_MODE_FIELDS = ("x_label", "x_primary", "x_update_finish_state")


def shared_mode_missing(mode: str | None) -> str | None:
    """Why this process cannot join a run in wandb's shared mode, or None when it can.

    Shared mode needs wandb >= 0.19.9 (``mode="shared"``, ``x_label``, ``x_primary``,
    ``x_update_finish_state``), an online run (offline, each process writes a
    transaction log of its own; nothing merges them), and a wandb service of this
    process's own: a ``WANDB_SERVICE`` inherited from a parent process that started
    wandb would carry every rank's stream through one service. wandb reads that
    variable only from ``os.environ`` (no setting overrides it), so launch the ranks
    without it; this library never writes ``os.environ``.
    """
    import os

    if mode in ("offline", "disabled", "dryrun"):
        return f"mode={mode!r}: shared mode writes every rank to the W&B server (online only)"
    wandb = load()
    fields = set(getattr(wandb.Settings, "model_fields", {}) or {})
    mode_field = getattr(wandb.Settings, "model_fields", {}).get("mode")
    modes = str(getattr(mode_field, "annotation", ""))
    if not fields or not set(SHARED_MODE_FIELDS) <= fields or "shared" not in modes:
        return f"wandb {wandb.__version__} has no shared mode (it needs wandb 0.19.9 or later)"
    token = os.environ.get("WANDB_SERVICE", "")
    parts = token.split("-")
    if len(parts) > 1 and parts[1].isdigit() and int(parts[1]) != os.getpid():
        return (
            f"WANDB_SERVICE was inherited from process {parts[1]} (its wandb service would carry every rank); "
            "start the ranks without it"
        )
    return None


def supports_rewind() -> bool:
    """True when the installed ``wandb.init`` takes ``resume_from`` (run rewind, wandb >= 0.17.1)."""
    return "resume_from" in init_parameters()


def new_run_id() -> str:
    """A fresh run id in wandb's format (8 lowercase letters and digits)."""
    import secrets
    import string

    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(8))


def discard_failed_run(kwargs: Mapping[str, Any]) -> list[str]:
    """Remove the folder a failed online ``wandb.init`` left for run ``kwargs["id"]``.

    An online start that cannot reach W&B still writes ``run-<time>-<id>`` with an
    empty transaction log; ``wandb sync`` would upload it as an empty run beside the
    offline one that holds the data. Only folders of that exact id are removed.

    Returns:
        The folders removed.
    """
    import glob
    import os
    import shutil

    run_id = kwargs.get("id")
    if not run_id:
        return []
    root = kwargs.get("dir") or os.environ.get("WANDB_DIR") or os.getcwd()
    removed = []
    for folder in glob.glob(os.path.join(os.fspath(root), "wandb", f"run-*-{glob.escape(str(run_id))}")):
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def _prewarm() -> None:
    """Import ``wandb.apis.public`` on a daemon thread while ``wandb.init`` waits for wandb-core.

    ``wandb.init`` imports that module tree (about 0.2 s of CPU) after it has waited
    (sleeping, GIL released) for its service to start; importing it during that
    wait makes the start-up shorter. Python's import lock makes the later import
    in ``wandb.init`` wait for this one rather than run twice.
    """
    import sys
    import threading

    if "wandb.apis.public" in sys.modules:
        return

    def run() -> None:
        try:
            importlib.import_module("wandb.apis.public")
        except Exception:
            pass  # only a head start: wandb.init imports what it needs itself

    threading.Thread(target=run, name="wandb-bridge-prewarm", daemon=True).start()


def _knows_create_new(wandb: ModuleType) -> bool:
    """True when ``wandb.init(reinit="create_new")`` is accepted (wandb >= 0.19.10)."""
    try:
        parts = tuple(int(p) for p in str(wandb.__version__).split(".")[:3])
    except ValueError:
        return True  # a dev build: assume a current one
    return parts >= (0, 19, 10)


def _merge_settings(wandb: ModuleType, user: Any, extra: Mapping[str, Any]) -> Any:
    fields = set(getattr(wandb.Settings, "model_fields", {}) or {})
    usable = {k: v for k, v in extra.items() if not fields or k in fields}
    if user is None:
        return wandb.Settings(**usable)
    if isinstance(user, Mapping):
        return wandb.Settings(**{**usable, **user})
    for key, value in usable.items():
        if getattr(user, key, None) in (None, False, [], ()):
            try:
                setattr(user, key, value)
            except (AttributeError, TypeError, ValueError):
                pass
    return user


def make(kind: str, *args: Any, **kwargs: Any) -> Any:
    """Build a wandb data type by name (``Table``, ``Image``, ``Audio``, ``Video``, ``Html``...)."""
    return getattr(load(), kind)(*args, **kwargs)


def download_artifact(name: str, root: str | None, kind: str | None, use: bool) -> str:
    """Download an artifact and return its local folder.

    Through the active run (recorded as an input of it) when there is one and
    ``use`` is true, otherwise through the public API (needs a W&B server).
    """
    wandb = load()
    run = wandb.run
    if run is not None and use:
        artifact = run.use_artifact(name) if kind is None else run.use_artifact(name, type=kind)
    else:
        artifact = wandb.Api().artifact(name, type=kind)
    return str(artifact.download(root=root))


def attach(shared: bytes) -> RunHandle:
    """The run :meth:`RunHandle.share` packed in another process, attached in this one."""
    import pickle

    load()
    handle = RunHandle(pickle.loads(shared), owned=False)
    handle.id  # noqa: B018 - reading a property of a pickled run attaches it; fail here, not at the first row
    return handle


# ``wandb.init``'s keyword arguments (0.19 - 0.31); a name not here is looked up in the
# installed wandb's signature before it is called a typo (see :func:`init_parameters`).
INIT_PARAMETERS = frozenset(
    {
        "entity",
        "project",
        "dir",
        "id",
        "name",
        "notes",
        "tags",
        "config",
        "config_exclude_keys",
        "config_include_keys",
        "allow_val_change",
        "group",
        "job_type",
        "mode",
        "force",
        "reinit",
        "resume",
        "resume_from",
        "fork_from",
        "save_code",
        "tensorboard",
        "sync_tensorboard",
        "monitor_gym",
        "settings",
        "anonymous",
    }
)


def init_parameters() -> frozenset[str]:
    """The keyword arguments the installed ``wandb.init`` takes (imports wandb)."""
    import inspect

    params = inspect.signature(load().init).parameters.values()
    return frozenset(p.name for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD))


def make_global(run: Any) -> None:
    """Point ``wandb.log`` at ``run.log`` again after :meth:`RunHandle.intercept` replaced it.

    ``wandb.init`` binds the module-level ``wandb.log`` to the run's ``log`` when it
    makes the run ``wandb.run``; this repeats that binding for the wrapped method.
    """
    wandb: Any = load()
    if wandb.run is run:
        wandb.log = run.log
        wandb.watch = run.watch


class RunHandle:
    """The operations the core performs on one wandb run.

    The handle keeps the run's own ``log`` and ``finish``, so the library's calls
    reach wandb directly even while :meth:`intercept` routes the user's calls
    (``wandb.log``, ``run.log``, ``wandb.finish()``) through the session first.
    """

    def __init__(self, run: Any, owned: bool) -> None:
        self.run = run
        self.owned = owned
        self._log = run.log
        self._finish = run.finish
        self._watch = run.watch
        self._intercepted = False
        self._id: str | None = None

    def intercept(self, on_log: Any, on_finish: Any, before_watch: Any) -> None:
        """Route the user's ``run.log``/``wandb.log`` and ``run.finish``/``wandb.finish`` through the session.

        Args:
            on_log: called as ``on_log(data, step, commit)`` instead of ``run.log``.
            on_finish: called as ``on_finish(exit_code)`` instead of ``run.finish``; it
                must end by calling :meth:`finish_now`.
            before_watch: called before the user's ``run.watch``/``wandb.watch`` runs.
        """
        run = self.run
        if self._intercepted or self.disabled or not type(run).__module__.startswith("wandb."):
            return

        def log(data: Mapping[str, Any], step: int | None = None, commit: bool | None = None, **_: Any) -> None:
            on_log(data, step, commit)

        def finish(exit_code: int | None = None, quiet: bool | None = None) -> None:
            del quiet  # deprecated in wandb; accepted for old callers
            on_finish(exit_code)

        own_watch = run.watch

        def watch(*args: Any, **kwargs: Any) -> Any:
            before_watch()
            return own_watch(*args, **kwargs)

        run.log = log
        run.finish = finish
        run.watch = watch
        self._intercepted = True
        make_global(run)

    def release(self) -> None:
        """Undo :meth:`intercept`: the run's own ``log`` and ``finish`` are used again."""
        if not self._intercepted:
            return
        self._intercepted = False
        run = self.run
        for name in ("log", "finish", "watch"):
            try:
                delattr(run, name)
            except AttributeError:
                pass
        try:
            make_global(run)
        except Exception:
            pass

    def finish_now(self, exit_code: int | None) -> None:
        """Finish the run through wandb's own ``finish`` (not the intercepted one)."""
        self.release()
        try:
            self._finish(exit_code=exit_code)
        except OSError:
            self.mark_dead()
            raise

    def mark_dead(self) -> None:
        """Record that wandb-core is gone for this run (see :func:`active_run`)."""
        mark_dead(self.run)

    @property
    def id(self) -> str:
        """The run id (read once: a run keeps its id, and Lightning's progress bar asks for it every step)."""
        if self._id is None:
            self._id = str(self.run.id)
        return self._id

    @property
    def dir(self) -> str | None:
        """The run's files folder."""
        return getattr(self.run, "dir", None)

    @property
    def starting_step(self) -> int:
        """wandb's ``_step`` of the run's next history row at start (after a resume or a rewind, not 0)."""
        return int(getattr(self.run, "starting_step", 0) or 0)

    @property
    def offline(self) -> bool:
        """True for an offline run."""
        return bool(getattr(self.run, "offline", False))

    @property
    def disabled(self) -> bool:
        """True for a disabled (no-op) wandb run."""
        return bool(getattr(self.run, "disabled", False))

    def identity(self) -> dict[str, str | None]:
        """``project``, ``entity`` and ``group`` of the run (None where wandb has none)."""
        out: dict[str, str | None] = {}
        for key in ("project", "entity", "group"):
            try:
                value = getattr(self.run, key, None)
            except Exception:  # a run in teardown
                value = None
            out[key] = str(value) if value else None
        return out

    def sync_command(self) -> str:
        """The command that uploads this run later (offline runs)."""
        settings = getattr(self.run, "settings", None)
        sync_dir = getattr(settings, "sync_dir", None) or getattr(self.run, "sync_dir", None)
        if sync_dir is None and self.dir:
            import os

            sync_dir = os.path.dirname(str(self.dir))
        return f"wandb sync {sync_dir}"

    def config(self) -> dict[str, Any]:
        """The run's config as a plain dict (swept values included)."""
        config = self.run.config
        as_dict = getattr(config, "as_dict", None)
        data = as_dict() if callable(as_dict) else dict(config)
        return {k: v for k, v in data.items() if k != "_wandb"}

    def define_step_axis(self, step_key: str, epoch_key: str) -> None:
        """Make ``step_key`` the x-axis of every metric."""
        self.run.define_metric(step_key, hidden=False)
        self.run.define_metric(epoch_key, step_metric=step_key)
        self.run.define_metric("*", step_metric=step_key, step_sync=True)

    def define_summary(self, key: str, mode: str) -> None:
        """Keep the ``mode`` ("min"/"max") value of ``key`` in the summary."""
        self.run.define_metric(key, summary=mode)

    def share(self) -> bytes | None:
        """The run packed for another process (wandb attaches it there), or None when wandb cannot share it.

        wandb runs pickle to the id of their wandb-core connection (service mode,
        every wandb >= 0.18); a disabled run, or a run object that is not wandb's,
        cannot be shared.
        """
        import pickle

        run = self.run
        if self.disabled or not type(run).__module__.startswith("wandb."):
            return None
        try:
            if not run.__getstate__():
                return None
            return pickle.dumps(run)
        except Exception:
            return None

    def wait_recorded(self) -> None:
        """Return once wandb-core has handled everything this process sent (a summary round trip)."""
        self.run.summary.keys()

    def log(self, row: Mapping[str, Any]) -> None:
        """Record one history row (the step column is part of the row)."""
        self._log(row, commit=True)

    def update_config(self, values: Mapping[str, Any]) -> None:
        """Add values to the run config (changing a value is allowed)."""
        self.run.config.update(dict(values), allow_val_change=True)

    def update_summary(self, values: Mapping[str, Any]) -> None:
        """Set summary values."""
        self.run.summary.update(dict(values))

    def log_artifact(
        self,
        name: str,
        kind: str,
        files: Iterable[tuple[str, str]],
        aliases: Sequence[str],
        metadata: Mapping[str, Any],
        description: str | None = None,
        references: Sequence[tuple[str, str, str | None, int | None]] = (),
    ) -> Any:
        """Log an artifact made of ``(name inside the artifact, local path)`` files.

        ``references`` are ``(name inside the artifact, URI, digest, size)`` entries
        recorded without copying a byte (``artifact.add_reference``). A None digest
        lets wandb ask the object store for its checksum (``checksum=True``); a given
        one (wandb's base64 MD5 of the content, or a size + mtime fingerprint) is
        recorded as the entry's digest, with ``checksum=False`` so wandb reads nothing.

        Returns:
            The logged ``wandb.Artifact`` (``.wait()`` returns once it is committed).
        """
        wandb = load()
        artifact = wandb.Artifact(name=name, type=kind, metadata=dict(metadata), description=description)
        for inner, local in files:
            artifact.add_file(local, name=inner)
        for inner, uri, digest, size in references:
            entries = artifact.add_reference(uri, name=inner, checksum=digest is None)
            if digest is not None:
                for entry in entries:
                    entry.digest = digest
                    if size is not None:
                        entry.size = size
        self.run.log_artifact(artifact, aliases=list(aliases))
        return artifact

    def public_api(self) -> Any:
        """The public ``wandb.Api()`` (needs a W&B server: online runs only)."""
        return load().Api()

    def use_artifact(self, name: str, kind: str | None = None, aliases: Sequence[str] | None = None) -> Any:
        """Declare an artifact as an input of this run."""
        if kind is None:
            return self.run.use_artifact(name, aliases=aliases)
        return self.run.use_artifact(name, type=kind, aliases=aliases)

    def mark_preempting(self) -> None:
        """Tell W&B the run is being pre-empted (it may be resumed)."""
        self.run.mark_preempting()

    def watch(self, model: Any, log: str | None, log_freq: int) -> None:
        """Log gradients / parameters of a torch model."""
        self._watch(model, log=log, log_freq=log_freq)

    def finish(self, exit_code: int | None) -> None:
        """Finish the run with an exit code."""
        self.finish_now(exit_code)
