"""What a Trainer run holds, read for the core: its config and parameter counts, and the inputs,
targets and predictions of its first evaluation samples, for a prediction table.

Framework reading only. The config's flattening, redaction and the user-wins rule are
:mod:`wandb_bridge.core.hparams`'s. For the table, the samples are collated from the
evaluation dataset (no distributed iteration), the model runs once on them and token ids
are decoded by the Trainer's processor; the table itself (columns, cells, key) is the
core's :class:`~wandb_bridge.core.predictions.PredictionTable`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from wandb_bridge.callbacks._require import require
from wandb_bridge.core import hparams

if TYPE_CHECKING:
    from transformers import TrainerState, TrainingArguments

# The label value transformers' losses ignore (padding of token-level labels).
_IGNORE_INDEX = -100

SHARDED_WARNING = (
    "log_predictions is skipped: with DeepSpeed or FSDP the parameters are sharded "
    "and a forward pass on one process would hang."
)


def trainer_config(args: TrainingArguments, state: TrainerState | None, model: Any) -> dict[str, Any]:
    """A Trainer run's config: ``TrainingArguments`` at the top level, ``model/``, ``peft/``, counts, ``trial/``."""
    config = hparams.config_of(args)  # to_dict() masks every *_token field; the core redacts secrets again
    if model is not None:
        model_config = getattr(model, "config", None)
        if model_config is not None:
            config["model"] = hparams.config_of(model_config)
        peft = getattr(model, "peft_config", None)
        if peft:
            config["peft"] = peft
        counts = parameter_counts(model)
        if counts is not None:
            config["model/num_parameters"] = counts.total
            config["model/num_trainable_parameters"] = counts.trainable
    trial = getattr(state, "trial_params", None) if state is not None else None
    if trial:
        config["trial"] = dict(trial)
    return config


def parameter_counts(model: Any) -> hparams.ParameterCounts | None:
    """The model's own counts (``num_parameters``), else its parameters' sizes; None without parameters."""
    counter = getattr(model, "num_parameters", None)
    if callable(counter):
        try:
            return hparams.ParameterCounts(int(counter()), int(counter(only_trainable=True)))
        except Exception:  # a model's own counter may not take only_trainable
            pass
    parameters = getattr(model, "parameters", None)
    if not callable(parameters):
        return None
    return hparams.count_parameters((int(p.numel()), bool(getattr(p, "requires_grad", False))) for p in parameters())


def prediction_columns(model: Any, loader: Any, processor: Any, count: int) -> tuple[list[Any], Any, list[Any]] | None:
    """Inputs, targets and predictions of the first ``count`` evaluation samples, for a prediction table.

    Token ids are decoded by the processor (inputs always; targets and
    predictions when the model predicts tokens); other inputs are handed over as
    arrays. Returns None when the loader or the model's output has nothing to show.
    """
    torch = require("torch", "transformers", "WandbTrainerCallback(log_predictions=...)")
    batch = _first_samples(loader, count)
    if batch is None:
        return None
    device = getattr(model, "device", None)
    inputs = {k: (v.to(device) if device is not None and hasattr(v, "to") else v) for k, v in batch.items()}
    labels = inputs.get("labels", inputs.get("label"))
    was_training = bool(model.training)
    model.eval()
    try:
        with torch.no_grad():
            output = model(**inputs)
    finally:
        model.train(was_training)
    logits = output.get("logits") if isinstance(output, Mapping) else getattr(output, "logits", None)
    if logits is None and isinstance(output, (tuple, list)):
        logits = output[1] if labels is not None and len(output) > 1 else output[0]
    if logits is None:
        return None
    vocab = getattr(getattr(model, "config", None), "vocab_size", None)
    tokens = vocab is not None and int(logits.shape[-1]) == int(vocab)
    ids = batch.get("input_ids")
    if ids is not None:
        shown = [[_decode(processor, row.tolist()) for row in ids]]
    else:
        shown = [v.cpu() if hasattr(v, "cpu") else v for k, v in batch.items() if k not in ("labels", "label")]
    targets = None if labels is None else [_values(labels.cpu(), processor, tokens)]
    return shown, targets, [_values(logits.argmax(-1).detach().cpu(), processor, tokens)]


def _first_samples(loader: Any, count: int) -> dict[str, Any] | None:
    """Collate the first ``count`` samples of the evaluation dataset (no distributed iteration)."""
    dataset = getattr(loader, "dataset", None)
    collate = getattr(loader, "collate_fn", None)
    if dataset is None or not callable(collate):
        return None
    items: list[Any] = []
    if hasattr(dataset, "__len__") and hasattr(dataset, "__getitem__"):
        items = [dataset[i] for i in range(min(count, len(dataset)))]
    else:
        for item in dataset:
            items.append(item)
            if len(items) >= count:
                break
    if not items:
        return None
    batch = collate(items)
    return dict(batch) if isinstance(batch, Mapping) else None


def _values(batch: Any, processor: Any, tokens: bool) -> list[Any]:
    """One value per sample: a class id, token ids without the ignored label, or text for predicted tokens."""
    out: list[Any] = []
    for value in batch.tolist():
        if not isinstance(value, list):
            out.append(value)
        elif tokens:
            out.append(_decode(processor, [v for v in value if isinstance(v, int) and v >= 0]))
        else:
            out.append([v for v in value if v != _IGNORE_INDEX])
    return out


def _decode(processor: Any, ids: list[Any]) -> Any:
    """Token ids as text, by the processor; the ids themselves when it cannot decode them."""
    decode = getattr(processor, "decode", None)
    if callable(decode):
        try:
            return str(decode(ids, skip_special_tokens=True))
        except Exception:  # a processor without text decoding
            pass
    return ids
