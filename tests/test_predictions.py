"""core/predictions.py: one prediction-table schema for every framework, read back from real offline runs."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "torch")  # before keras is imported; tests only

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from wandb_bridge import Session
from wandb_bridge.core.predictions import (
    COLUMNS,
    PredictionTable,
    input_cell,
    predictions_key,
    table_rows,
    value_cell,
)
from wandb_bridge.testing import RunRecord, WandbOfflineRuns


def _tables(run: RunRecord, key: str) -> list[dict[str, Any]]:
    rows = run.rows_with(f"{key}._type")
    return [json.loads((Path(run.folder) / "files" / r[f"{key}.path"]).read_text()) for r in rows]


# ------------------------------------------------------------------ the cells


def test_the_key_is_decided_by_the_stage() -> None:
    assert predictions_key() == "val/predictions"
    assert predictions_key("test") == "test/predictions"
    assert COLUMNS == ("sample", "input", "target", "prediction")


def test_input_cell_lists_few_values_and_summarizes_many() -> None:
    assert json.loads(input_cell([np.array([0.25, 1.0, 2.123456789], dtype=np.float64)])) == [0.25, 1.0, 2.12346]
    assert input_cell(["a decoded sentence"]) == "a decoded sentence"  # text is kept as written
    big = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert input_cell([big]) == "shape=(3, 4) mean=5.5 min=0 max=11"
    assert input_cell([[[1, 2, 3], [4, 5, 6], [7, 8, 9]]]) == "shape=(3, 3) mean=5 min=1 max=9"  # nested lists too
    assert input_cell([np.array([True] * 8)]) == "shape=(8,) dtype=bool"
    assert input_cell([np.array([1, 2]), "text"]) == "[1, 2] | text"  # several inputs


def test_value_cell_is_a_number_text_or_a_json_list() -> None:
    assert value_cell([np.float32(0.5)]) == 0.5
    assert value_cell([np.array([[3]])]) == 3  # one value in any shape
    assert value_cell([7]) == 7
    assert value_cell(["positive"]) == "positive"
    assert json.loads(value_cell([np.array([0.1234567, 2.0])])) == [0.12346, 2.0]
    assert json.loads(value_cell([np.array([1.0]), np.array([2, 3])])) == [[1.0], [2, 3]]  # several outputs


def test_table_rows_count_the_shortest_and_allow_no_targets() -> None:
    x = np.arange(6, dtype=np.float32).reshape(3, 2)
    rows = table_rows([x], [np.array([0, 1, 1])], [np.array([[0.1], [0.9]])])
    assert rows == [[0, "[0.0, 1.0]", 0, 0.1], [1, "[2.0, 3.0]", 1, 0.9]]
    assert table_rows([["a", "b"]], None, [[1, 0]]) == [[0, "a", None, 1], [1, "b", None, 0]]
    assert table_rows([], None, [[1]]) == []


# ------------------------------------------------------------- the part, in a run


def test_prediction_table_logs_tables_and_the_samples_once(wandb_offline: WandbOfflineRuns, tmp_path: Path) -> None:
    samples = tmp_path / "samples.npz"
    np.savez(samples, x=np.zeros((2, 2)))
    with Session(project="predictions") as session:
        table = PredictionTable(session, stage="test")
        for step in (1, 2):
            table.log_samples(samples, 2)
            table.log([np.eye(2)], [np.array([1, 0])], [np.array([0.75, 0.25])], step=step, epoch=float(step))
            session.log({"test_loss": 1.0 / step}, step=step)
    run = wandb_offline.run()
    assert [r["trainer/global_step"] for r in run.rows_with("test/predictions._type")] == [1, 2]
    assert [r["test/loss"] for r in run.rows_with("test/predictions._type")] == [1.0, 0.5]  # in the step's row
    (content, _) = _tables(run, "test/predictions")
    assert content["columns"] == list(COLUMNS)
    assert content["data"] == [[0, "[1.0, 0.0]", 1, 0.75], [1, "[0.0, 1.0]", 0, 0.25]]
    (artifact,) = [a for a in run.artifacts if a.type == "dataset"]
    assert artifact.name == f"test-samples-{run.run_id}" == run.config["predictions/artifact"]
    assert run.config["predictions/key"] == "test/predictions"
    assert run.config["predictions/samples"] == 2


# ------------------------------------------------------------- every framework alike


def test_keras_table_has_the_core_columns(wandb_offline: WandbOfflineRuns) -> None:
    import keras

    from keras_helpers import make_data, make_model
    from wandb_bridge import WandbKerasCallback

    x, y = make_data(32, seed=0)
    xv, yv = make_data(8, seed=1)
    callback = WandbKerasCallback(project="predictions", log_predictions=3)
    model = make_model()
    model.fit(x, y, epochs=1, batch_size=16, verbose=0, validation_data=(xv, yv), callbacks=[callback])
    callback.finish()
    (content,) = _tables(wandb_offline.run(), predictions_key())
    assert content["columns"] == list(COLUMNS)
    predicted = keras.ops.convert_to_numpy(model.predict_on_batch(xv[:3]))
    assert [row[0] for row in content["data"]] == [0, 1, 2]
    assert [row[2] for row in content["data"]] == [float(v) for v in yv[:3, 0]]
    assert [row[3] for row in content["data"]] == pytest.approx([float(v) for v in predicted[:, 0]], rel=1e-5)


def test_keras_and_transformers_tables_have_the_same_columns(wandb_offline: WandbOfflineRuns, tmp_path: Path) -> None:
    from keras_helpers import make_data
    from keras_helpers import make_model as make_keras_model
    from transformers_helpers import make_args, make_trainer
    from wandb_bridge import WandbKerasCallback, WandbTrainerCallback

    x, y = make_data(32, seed=0)
    keras_callback = WandbKerasCallback(project="predictions", name="keras", log_predictions=2)
    validation = make_data(8, seed=1)
    make_keras_model().fit(
        x, y, epochs=1, batch_size=16, verbose=0, validation_data=validation, callbacks=[keras_callback]
    )
    keras_callback.finish()
    hf_callback = WandbTrainerCallback(project="predictions", name="transformers", log_predictions=2)
    args = make_args(tmp_path / "out", max_steps=2, eval_strategy="steps", eval_steps=2)
    make_trainer(args, [hf_callback], tokenizer=True).train()
    hf_callback.finish()

    runs = {run.name: run for run in wandb_offline.runs()}
    (keras_table,) = _tables(runs["keras"], predictions_key())
    (hf_table,) = _tables(runs["transformers"], predictions_key())
    assert keras_table["columns"] == hf_table["columns"] == list(COLUMNS)  # one schema, one key
    assert [row[0] for row in keras_table["data"]] == [row[0] for row in hf_table["data"]] == [0, 1]
    assert all(isinstance(row[1], str) for row in keras_table["data"] + hf_table["data"])  # input: text
