"""The checkpoint part of :class:`~wandb_bridge.callbacks.transformers.WandbTrainerCallback`, translation only.

The ``checkpoint-N`` folders the Trainer saves and the final model, handed to the core: the monitor
(``metric_for_best_model`` offered to :meth:`~wandb_bridge.core.session.Session.adopt_monitor`), the ``best``
verdict (:func:`~wandb_bridge.core.follow.verdict`) and the end of training
(:func:`~wandb_bridge.core.training_end.end_training`) are its. The Keras and Lightning counterparts
are :mod:`~wandb_bridge.callbacks.keras_checkpoints` and :mod:`~wandb_bridge.callbacks.lightning_checkpoints`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from wandb_bridge.callbacks.transformers_support import checkpoint_dir, output_dir
from wandb_bridge.core import follow
from wandb_bridge.core.errors import OnceWarner
from wandb_bridge.core.steps import epochs_completed
from wandb_bridge.core.training_end import SavedCheckpoint, end_training

if TYPE_CHECKING:
    from transformers import TrainerState, TrainingArguments

    from wandb_bridge.core.session import Session
    from wandb_bridge.core.settings import LogModel

#: Files a ``checkpoint_files="weights"`` artifact keeps: model weights, adapters,
#: model/generation config and tokenizer/processor files (no optimizer,
#: scheduler, scaler, RNG or trainer state).
# fmt: off
WEIGHT_FILES: tuple[str, ...] = (
    "model.safetensors", "model-*.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
    "pytorch_model-*.bin", "pytorch_model.bin.index.json", "adapter_*", "config.json", "generation_config.json",
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "vocab.txt",
    "vocab.json", "merges.txt", "*.model", "chat_template.jinja", "chat_template.json", "preprocessor_config.json",
    "processor_config.json",
)
# fmt: on

CheckpointFiles = Literal["all", "weights"]

#: Files never uploaded: ``training_args.bin`` is a pickle of ``TrainingArguments``
#: holding ``hub_token`` in clear (nothing reads it back when training resumes).
NEVER_UPLOAD: tuple[str, ...] = ("training_args.bin",)

#: The folder (inside ``output_dir``) where the final model is saved when
#: ``log_model`` asks for a model and the Trainer saved no checkpoint.
FINAL_MODEL_DIR = "wandb-final-model"


class Checkpoints:
    """One callback's checkpoint reports.

    State: how the Trainer's best-checkpoint verdict counts (``role``) and the last evaluation
    (its values go with the checkpoint of its step).

    Args:
        files: ``checkpoint_files``: ``"all"`` or ``"weights"`` (:data:`WEIGHT_FILES`).

    Raises:
        ValueError: ``files`` is neither.
    """

    def __init__(self, files: CheckpointFiles) -> None:
        if files not in ("all", "weights"):
            raise ValueError(f"checkpoint_files={files!r} is not valid; use one of 'all', 'weights'")
        self.files: CheckpointFiles = files
        self._role: follow.Role | None = None
        self._last_eval: tuple[int, dict[str, Any]] | None = None

    def new_run(self) -> None:
        """A run starts: no evaluation of an earlier one goes with its checkpoints."""
        self._last_eval = None

    def adopt_monitor(self, session: Session, args: TrainingArguments, user_monitor: str | None) -> None:
        """Offer ``metric_for_best_model`` to the core as the monitor (unless the user named ``monitor=``).

        The Trainer's ``best_model_checkpoint`` decides ``best`` only while both watch one metric.
        """
        metric = args.metric_for_best_model
        if not metric:
            self._role = None
            return
        name = metric if metric.startswith("eval_") else f"eval_{metric}"
        trainer_best = follow.CallbackMonitor(name, "max" if args.greater_is_better else "min")
        session.adopt_monitor([trainer_best], current=user_monitor)
        self._role = follow.checkpoint_role(session.monitor, [session.map_key(name, "val")], 0)

    def evaluated(self, step: int, values: Mapping[str, Any]) -> None:
        """An evaluation at ``step`` (its values go with a checkpoint of the same step)."""
        self._last_eval = (step, dict(values))

    def saved(self, session: Session, args: TrainingArguments, state: TrainerState, warner: OnceWarner) -> None:
        """Report the ``checkpoint-<global_step>`` folder the Trainer just wrote (a warning when it is not there)."""
        path = checkpoint_dir(args, state)
        if path is None:
            step = state.global_step
            text = f"The checkpoint folder of step {step} was not found under {args.output_dir!r}; it is not uploaded."
            warner.warn(f"no-checkpoint-{step}", text)
            return
        self._folder(state, path).report(session, is_best=self._verdict(state, path))

    def end_train(
        self,
        session: Session,
        args: TrainingArguments,
        state: TrainerState,
        model: Any,
        processor: Any,
        log_model: LogModel,
    ) -> None:
        """``train()`` ended: the core's end of training, saving the model into :data:`FINAL_MODEL_DIR`."""

        def save() -> SavedCheckpoint:
            folder = os.path.join(output_dir(args), FINAL_MODEL_DIR)
            model.save_pretrained(folder)
            save_processor = getattr(processor, "save_pretrained", None)
            if callable(save_processor):
                save_processor(folder)
            return self._folder(state, folder, final_model=True)

        trained = bool(args.should_save) and model is not None
        end_training(session, log_model, trained=trained, checkpoint_exists=session.has_checkpoints, save=save)

    def _verdict(self, state: TrainerState, path: str) -> bool | None:
        best = state.best_model_checkpoint
        if self._role is None or not best:
            return None
        try:
            same = os.path.samefile(best, path)
        except OSError:
            same = os.path.normpath(os.path.abspath(best)) == os.path.normpath(os.path.abspath(path))
        return follow.verdict(self._role, None, same).is_best

    def _folder(self, state: TrainerState, path: str, **metadata: Any) -> SavedCheckpoint:
        last = self._last_eval
        return SavedCheckpoint(
            path,
            step=state.global_step,
            epoch=epochs_completed(state.epoch),
            metrics=last[1] if last is not None and last[0] == state.global_step else None,
            metadata={"checkpoint_files": self.files, **metadata},
            include=WEIGHT_FILES if self.files == "weights" else None,
            exclude=NEVER_UPLOAD,
        )


__all__ = ["FINAL_MODEL_DIR", "NEVER_UPLOAD", "WEIGHT_FILES", "CheckpointFiles", "Checkpoints"]
