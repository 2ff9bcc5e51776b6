"""Hugging Face accelerate: :class:`WandbTracker`, an accelerate ``GeneralTracker`` on wandb-bridge's core.

Used the way accelerate documents its trackers::

    accelerator = Accelerator(log_with=[WandbTracker(project="demo", log_model="all")])
    accelerator.init_trackers("demo", config=cfg)       # starts the run, records the config
    accelerator.log({"loss": loss}, step=completed_steps)  # -> train/loss at trainer/global_step
    tracker = accelerator.get_tracker("wandb")           # this object; unwrap=True: the wandb run
    tracker.log_checkpoint(accelerator.save_state(), metrics={"val_loss": v})
    accelerator.end_training()                           # finishes the run (exit code 0)

The tracker only hands accelerate's calls to a :class:`~wandb_bridge.Session`: keys,
steps, aliases, metadata, ownership and ranks are the core's. See docs/accelerate.md.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from wandb_bridge.callbacks._require import require
from wandb_bridge.callbacks.base import SessionHolder, calling_frames, guarded, resolve_settings, session_method
from wandb_bridge.core.session import Session
from wandb_bridge.core.settings import Settings

accelerate = require("accelerate", "accelerate", "wandb_bridge.WandbTracker")
_GeneralTracker: Any = require("accelerate.tracking", "accelerate", "wandb_bridge.WandbTracker").GeneralTracker

__all__ = ["WandbTracker"]


class WandbTracker(_GeneralTracker):  # type: ignore[misc]
    """Record an accelerate training in W&B through wandb-bridge's run contract.

    ``step=`` of ``accelerator.log`` is taken as ``trainer/global_step``: pass the
    optimizer steps completed (``completed_steps`` in accelerate's examples; the
    first training row is then 1). Without ``step`` a call gets the step after
    the last one logged. Values logged for one step from several calls land in
    one row; ``val_loss``/``eval_loss`` become ``val/loss``, ``loss`` becomes
    ``train/loss``, ``epoch`` becomes ``trainer/epoch``.

    Args:
        project: W&B project; when neither it nor ``WANDB_PROJECT`` is set, the
            ``project_name`` given to ``accelerator.init_trackers`` is used.
        **kwargs: the shared arguments (``entity``, ``name``, ``log_model``,
            ``monitor``, ``rank_zero_only``, ``resume_from_checkpoint``,
            ``on_error``, ...); other names go to ``wandb.init``.
    """

    name = "wandb"  # what accelerator.get_tracker("wandb") looks for, as with accelerate's WandBTracker
    requires_logging_directory = False
    main_process_only = False  # which ranks log is the core's decision (rank_zero_only)

    def __init__(self, project: str | None = None, **kwargs: Any) -> None:
        super().__init__()
        self._holder = SessionHolder(
            resolve_settings({"project": project, **kwargs}),
            owner="WandbTracker",
            framework="accelerate",
            framework_version=accelerate.__version__,
            renew="keep",  # end_training ends the tracker's run; calls after it do nothing
        )

    @property
    def settings(self) -> Settings:
        """The resolved :class:`~wandb_bridge.Settings` of this tracker."""
        return self._holder.settings

    @property
    def session(self) -> Session:
        """The :class:`~wandb_bridge.Session` behind this tracker (reading it starts nothing)."""
        return self._holder.current or self._session_now()

    def _session_now(self) -> Session:
        """The session to use now; the first one takes ``init_trackers``' project when none is set."""
        holder = self._holder
        if holder.current is None and holder.settings.project is None:
            project = _init_trackers_project()
            if project is not None:
                holder.settings = holder.settings.with_changes(project=project)
        return holder.session

    @property
    def tracker(self) -> Any:
        """The wandb run (what ``get_tracker("wandb", unwrap=True)`` returns); None on a process that does not log."""
        return self.session.run

    @property
    def run(self) -> Any:
        """Same as :attr:`tracker` (accelerate's ``WandBTracker.run``)."""
        return self.session.run

    @guarded
    def start(self) -> None:
        """Start the run (``accelerator.init_trackers`` calls this)."""
        self._session_now()
        self._holder.start()

    @guarded
    def store_init_configuration(self, values: Mapping[str, Any]) -> None:
        """Add ``init_trackers(config=...)`` to the run config (flattened, JSON-safe, secrets redacted)."""
        self._session_now().log_config(dict(values))

    @guarded
    def log(self, values: Mapping[str, Any], step: int | None = None, **kwargs: Any) -> None:
        """Record ``values`` at ``step`` (optimizer steps completed); ``kwargs`` of ``wandb.log`` are not used."""
        del kwargs  # commit=/sync=: rows are merged per step by the core
        self._session_now().log(values, None if step is None else int(step))

    @guarded
    def log_images(self, values: Mapping[str, Sequence[Any]], step: int | None = None, **kwargs: Any) -> None:
        """Record lists of images (arrays or PIL images) as ``wandb.Image`` lists."""
        del kwargs
        session = self._session_now()
        images = {k: [session.wandb_type("Image", image) for image in v] for k, v in values.items()}
        session.log(images, None if step is None else int(step), keep_keys=True)

    @guarded
    def log_table(
        self,
        table_name: str,
        columns: list[str] | None = None,
        data: list[list[Any]] | None = None,
        dataframe: Any = None,
        step: int | None = None,
        **kwargs: Any,
    ) -> None:
        """Record a ``wandb.Table`` (from ``columns`` and ``data``, or a ``dataframe``)."""
        del kwargs
        session = self._session_now()
        table = session.wandb_type("Table", columns=columns, data=data, dataframe=dataframe)
        session.log({table_name: table}, None if step is None else int(step), keep_keys=True)

    log_checkpoint = guarded(
        session_method(
            Session.log_checkpoint,
            lambda tracker: tracker._session_now(),
            """Report a checkpoint folder (what ``accelerator.save_state()`` returns) or file.

        The arguments are :meth:`Session.log_checkpoint <wandb_bridge.Session.log_checkpoint>`'s:
        ``log_model`` decides what is uploaded; aliases and metadata come from the core; ``step``
        defaults to the last step logged; ``metrics`` with the monitored value picks ``best``. Call it
        on every process after ``accelerator.wait_for_everyone()``: only the process that logs reports it.
        """,
        )
    )

    def resume_from_checkpoint(self, path: str | os.PathLike[str]) -> None:
        """Continue the run that wrote the checkpoint at ``path``; call it before ``init_trackers``.

        (accelerate's ``load_state`` runs after ``init_trackers``, once the run started.)
        """
        self._session_now().resume_from_checkpoint(path)

    @guarded
    def finish(self) -> None:
        """Flush and finish the run if this tracker started it (``accelerator.end_training`` calls this)."""
        self._holder.finish(0)


def _init_trackers_project() -> str | None:
    """The ``project_name`` of a running ``Accelerator.init_trackers`` call, read up the call stack.

    accelerate 1.15 hands its ``project_name`` only to the tracker classes it builds
    itself (its own, and those of ``register_tracker_class``, as the first argument,
    which :class:`WandbTracker` takes as ``project``), not to a tracker object given in
    ``log_with``: for that, no public route exists. Nothing found (another accelerate
    version, a direct call): None.
    """
    for function, local in calling_frames(depth=8):
        if function == "init_trackers":
            name = local.get("project_name")
            return name if isinstance(name, str) and name else None
    return None
