"""Training health (issue 16): recorded norms against torch's own on the same gradients, in every framework."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch import nn

from wandb_bridge import Session
from wandb_bridge.core.health import HealthPolicy
from wandb_bridge.core.settings import Settings
from wandb_bridge.testing import WandbOfflineRuns

TOL = 1e-5


class TwoPart(nn.Module):
    """A tiny model with two top-level modules: the default groups are ``encoder`` and ``head``."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.encoder = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 8))
        self.head = nn.Linear(8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


def _batches(n: int, seed: int = 1) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    for _ in range(n):
        x = torch.randn(16, 4, generator=gen)
        yield x, x.sum(dim=1, keepdim=True)


def _norm(tensors: list[torch.Tensor]) -> float:
    return float(torch.nn.utils.get_total_norm(tensors))


def expected_before(model: nn.Module, groups: dict[str, list[str]]) -> dict[str, Any]:
    """What the health keys of the gradients must hold, computed by torch on the same gradients."""
    params = dict(model.named_parameters())
    grads = [p.grad for p in params.values() if p.grad is not None]
    out: dict[str, Any] = {"health/grad_norm": _norm(grads)}
    for group, names in groups.items():
        out[f"health/grad_norm/{group}"] = _norm([params[n].grad for n in names])
    out["health/nonfinite_grads"] = int(sum((~torch.isfinite(g)).sum() for g in grads))
    out["_before"] = {n: p.detach().clone() for n, p in params.items()}
    return out


def expected_after(model: nn.Module, groups: dict[str, list[str]], before: dict[str, Any]) -> dict[str, Any]:
    """The weight norms and update ratios after the step."""
    params = dict(model.named_parameters())
    old = before.pop("_before")
    out = dict(before)
    out["health/weight_norm"] = _norm([p.detach() for p in params.values()])
    out["health/update_ratio"] = _norm([params[n].detach() - old[n] for n in params]) / _norm(list(old.values()))
    for group, names in groups.items():
        out[f"health/weight_norm/{group}"] = _norm([params[n].detach() for n in names])
        out[f"health/update_ratio/{group}"] = _norm([params[n].detach() - old[n] for n in names]) / _norm(
            [old[n] for n in names]
        )
    return out


def default_groups(model: nn.Module) -> dict[str, list[str]]:
    """The default grouping: the first name component after those all names share."""
    groups: dict[str, list[str]] = {}
    for name, _ in model.named_parameters():
        groups.setdefault(name.split(".")[0], []).append(name)
    return groups


def assert_health(row: dict[str, Any], expected: dict[str, Any]) -> None:
    """Every expected key recorded in ``row``, equal to 1e-5 (relative), counts exactly."""
    for key, value in expected.items():
        assert key in row, f"{key} missing from {sorted(k for k in row if k.startswith('health'))}"
        if key == "health/nonfinite_grads":
            assert row[key] == value
        elif math.isinf(value):
            assert math.isinf(row[key])
        else:
            assert row[key] == pytest.approx(value, rel=TOL, abs=1e-9), key


def health_rows(history: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """Rows holding health keys, by ``trainer/global_step`` (merged when a step has several rows)."""
    rows: dict[int, dict[str, Any]] = {}
    for row in history:
        if any(k.startswith("health/") for k in row):
            rows.setdefault(int(row["trainer/global_step"]), {}).update(row)
    return rows


# ------------------------------------------------------------------- policy


def test_policy_steps_groups_and_names() -> None:
    policy = HealthPolicy(every=3, histograms=4)
    assert [s for s in range(13) if policy.due(s)] == [3, 4, 6, 8, 9, 12]
    assert [s for s in range(13) if policy.histogram_due(s)] == [4, 8, 12]
    names = ["_orig_mod.model.encoder.0.weight", "_orig_mod.model.encoder.0.bias", "_orig_mod.model.head.weight"]
    assert policy.group_names(names) == ["encoder", "encoder", "head"]
    assert HealthPolicy().group_names(["dense/kernel", "dense_1/kernel"]) == ["dense", "dense_1"]
    assert HealthPolicy().group_names(["weight", "bias"]) == ["weight", "bias"]
    mapped = HealthPolicy(groups=(("*.bias", "biases"), ("encoder.*", "enc ode/r")))
    assert mapped.group_names(["encoder.0.weight", "encoder.0.bias", "head.weight"]) == ["enc_ode_r", "biases", None]


def test_settings_are_validated_with_clear_errors() -> None:
    settings = Settings.resolve(log_health=True, health_every=5, health_groups={"enc*": "enc"}, health_histograms=10)
    assert (settings.log_health, settings.health_every, settings.health_histograms) == (True, 5, 10)
    assert dict(settings.health_groups or {}) == {"enc*": "enc"}
    assert Settings.resolve().log_health is False
    assert Settings.resolve().health_every == 50
    with pytest.raises(ValueError, match="health_every must be an int >= 1"):
        Settings.resolve(health_every=0)
    with pytest.raises(ValueError, match="log_health must be True or False"):
        Settings.resolve(log_health="yes")
    with pytest.raises(ValueError, match="health_groups must be a non-empty mapping"):
        Settings.resolve(health_groups=["encoder"])
    with pytest.raises(ValueError, match="health_histograms must be None or an int"):
        Settings.resolve(health_histograms=True)


def test_monitor_is_none_when_off(wandb_offline: WandbOfflineRuns) -> None:
    with Session(project="demo") as session:
        assert session.health_monitor() is None


# ------------------------------------------------------------------ session


def _train_session(
    session: Session,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    steps: int,
    groups: dict[str, list[str]],
    *,
    accumulate: int = 1,
    plant_inf_at: int | None = None,
) -> dict[int, dict[str, Any]]:
    """A hand-written loop with the health monitor; returns what torch computed at the health steps."""
    monitor = session.health_monitor()
    assert monitor is not None
    expected: dict[int, dict[str, Any]] = {}
    batches = _batches(steps * accumulate)
    for step in range(1, steps + 1):
        optimizer.zero_grad()
        for _ in range(accumulate):
            x, y = next(batches)
            loss = nn.functional.mse_loss(model(x), y) / accumulate
            loss.backward()
        if step == plant_inf_at:
            grad = model.head.weight.grad  # type: ignore[union-attr]
            assert grad is not None
            grad[0, 0] = math.inf
        before = expected_before(model, groups) if monitor.due(step) else None
        monitor.before_step(step, model)
        if step != plant_inf_at:
            optimizer.step()
        monitor.after_step()
        if before is not None:
            expected[step] = expected_after(model, groups, before)
        session.log({"loss": loss.detach()}, step=step)
    return expected


def test_session_norms_equal_torch_at_health_steps(wandb_offline: WandbOfflineRuns) -> None:
    model = TwoPart()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    with Session(project="demo", log_health=True, health_every=3) as session:
        expected = _train_session(session, model, optimizer, 7, default_groups(model))
    run = wandb_offline.run()
    rows = health_rows(run.history)
    assert sorted(rows) == [3, 6] == sorted(expected)
    for step, values in expected.items():
        assert_health(rows[step], values)
        assert "train/loss" in rows[step]  # the health figures share the row of their step
    assert {k for k in rows[3] if k.startswith("health/")} == set(expected[3])
    assert run.exit_code == 0


def test_session_gradient_accumulation_and_two_optimizer_groups(wandb_offline: WandbOfflineRuns) -> None:
    model = TwoPart()
    optimizer = torch.optim.SGD(
        [{"params": model.encoder.parameters(), "lr": 0.05}, {"params": model.head.parameters(), "lr": 0.2}],
        momentum=0.9,
    )
    with Session(project="demo", log_health=True, health_every=2) as session:
        expected = _train_session(session, model, optimizer, 4, default_groups(model), accumulate=3)
    rows = health_rows(wandb_offline.run().history)
    assert sorted(rows) == [2, 4]
    for step, values in expected.items():
        assert_health(rows[step], values)


def test_user_groups_by_pattern(wandb_offline: WandbOfflineRuns) -> None:
    model = TwoPart()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    groups = {"biases": [n for n, _ in model.named_parameters() if n.endswith("bias")]}
    groups["weights"] = [n for n, _ in model.named_parameters() if n.endswith("weight")]
    with Session(
        project="demo", log_health=True, health_every=1, health_groups={"*.bias": "biases", "*": "weights"}
    ) as session:
        expected = _train_session(session, model, optimizer, 2, groups)
    rows = health_rows(wandb_offline.run().history)
    assert sorted(rows) == [1, 2]
    for step, values in expected.items():
        assert_health(rows[step], values)
    assert "health/grad_norm/encoder" not in rows[1]


def test_planted_inf_is_counted(wandb_offline: WandbOfflineRuns) -> None:
    model = TwoPart()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the NaN/inf values warn once per key
        with Session(project="demo", log_health=True, health_every=2) as session:
            expected = _train_session(session, model, optimizer, 4, default_groups(model), plant_inf_at=4)
    rows = health_rows(wandb_offline.run().history)
    assert rows[2]["health/nonfinite_grads"] == 0
    assert rows[4]["health/nonfinite_grads"] == 1 == expected[4]["health/nonfinite_grads"]
    assert math.isinf(rows[4]["health/grad_norm"])
    assert math.isinf(rows[4]["health/grad_norm/head"])
    assert rows[4]["health/grad_norm/encoder"] == pytest.approx(expected[4]["health/grad_norm/encoder"], rel=TOL)
    assert rows[4]["health/update_ratio"] == 0.0  # the step was skipped: the weights did not move


def test_histograms_and_loss_scale(wandb_offline: WandbOfflineRuns) -> None:
    model = TwoPart()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with Session(project="demo", log_health=True, health_every=2, health_histograms=4) as session:
        monitor = session.health_monitor()
        assert monitor is not None
        for step, (x, y) in enumerate(_batches(4), start=1):
            optimizer.zero_grad()
            nn.functional.mse_loss(model(x), y).backward()
            monitor.before_step(step, model, scaler=torch.tensor(1024.0))
            optimizer.step()
            monitor.after_step()
    rows = health_rows(wandb_offline.run().history)
    assert sorted(rows) == [2, 4]
    assert rows[2]["health/loss_scale"] == 1024.0
    hist_keys = {k.split(".")[0] for k in rows[4] if k.startswith("health/hist/")}
    assert hist_keys == {
        "health/hist/grad/encoder",
        "health/hist/grad/head",
        "health/hist/weight/encoder",
        "health/hist/weight/head",
    }
    assert not any(k.startswith("health/hist/") for k in rows[2])


# ---------------------------------------------------------------- lightning


class _Recorder:
    """Computes what the health keys must hold, with torch, on the Trainer's own gradients."""

    def __init__(self, every: int) -> None:
        self.every = every
        self.expected: dict[int, dict[str, Any]] = {}
        self._open: tuple[int, dict[str, Any]] | None = None

    def before(self, step: int, model: nn.Module) -> None:
        if step % self.every == 0:
            self._open = (step, expected_before(model, default_groups(model)))

    def after(self, model: nn.Module) -> None:
        if self._open is not None:
            step, before = self._open
            self.expected[step] = expected_after(model, default_groups(model), before)
            self._open = None


def test_lightning_norms_with_accumulation(wandb_offline: WandbOfflineRuns, tmp_path: Any) -> None:
    pl = pytest.importorskip("lightning.pytorch")
    from wandb_bridge import WandbLogger

    class Module(pl.LightningModule):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.encoder = nn.Sequential(nn.Linear(4, 8), nn.Tanh())
            self.head = nn.Linear(8, 1)

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            x, y = batch
            loss = nn.functional.mse_loss(self.head(self.encoder(x)), y)
            self.log("loss", loss)
            return loss

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(
                [{"params": self.encoder.parameters(), "lr": 0.05}, {"params": self.head.parameters(), "lr": 0.1}],
                momentum=0.9,
            )

    recorder = _Recorder(every=2)

    class Record(pl.Callback):  # type: ignore[misc, name-defined]
        def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
            recorder.before(int(trainer.global_step) + 1, pl_module)

        def on_train_batch_end(self, trainer: Any, pl_module: Any, *args: Any) -> None:
            recorder.after(pl_module)

    data = torch.utils.data.TensorDataset(*[torch.cat(t) for t in zip(*_batches(12), strict=True)])
    loader = torch.utils.data.DataLoader(data, batch_size=16)
    logger = WandbLogger(project="demo", log_health=True, health_every=2)
    trainer = pl.Trainer(
        max_epochs=1,
        accumulate_grad_batches=2,
        logger=logger,
        callbacks=[Record()],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
        default_root_dir=tmp_path,
    )
    trainer.fit(Module(), loader)
    logger.finish()
    rows = health_rows(wandb_offline.run().history)
    assert sorted(rows) == [2, 4, 6] == sorted(recorder.expected)  # 12 batches, 2 per optimizer step
    for step, values in recorder.expected.items():
        assert_health(rows[step], values)
    assert "train/loss" in rows[2]


# -------------------------------------------------------------- transformers


def test_transformers_norms_with_accumulation(wandb_offline: WandbOfflineRuns, tmp_path: Any) -> None:
    transformers = pytest.importorskip("transformers")
    from wandb_bridge import WandbTrainerCallback

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.encoder = nn.Sequential(nn.Linear(4, 8), nn.Tanh())
            self.head = nn.Linear(8, 1)

        def forward(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"loss": nn.functional.mse_loss(self.head(self.encoder(x)), labels)}

    recorder = _Recorder(every=2)

    class Record(transformers.TrainerCallback):  # type: ignore[misc]
        def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            recorder.before(state.global_step + 1, kwargs["model"])

        def on_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            recorder.after(kwargs["model"])

    rows = [{"x": x[i], "labels": y[i]} for x, y in _batches(6) for i in range(16)]
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"),
        report_to="none",
        use_cpu=True,
        disable_tqdm=True,
        num_train_epochs=1,
        per_device_train_batch_size=8,
        gradient_accumulation_steps=2,
        learning_rate=0.05,
        optim="adamw_torch",
        lr_scheduler_type="constant",
        logging_steps=2,
        save_strategy="no",
        seed=0,
        dataloader_num_workers=0,
    )
    callback = WandbTrainerCallback(project="demo", log_health=True, health_every=2)
    trainer = transformers.Trainer(model=Model(), args=args, train_dataset=rows, callbacks=[Record(), callback])
    trainer.remove_callback(transformers.PrinterCallback)
    trainer.train()
    callback.finish()
    history = wandb_offline.run().history
    found = health_rows(history)
    assert trainer.state.global_step == 6  # 96 samples / (8 x 2)
    assert sorted(found) == [2, 4, 6] == sorted(recorder.expected)
    for step, values in recorder.expected.items():
        assert_health(found[step], values)
    assert "train/loss" in found[2] and "train/grad_norm" in found[2]  # the Trainer's own values share the row


# -------------------------------------------------------------------- keras


def _keras_expected(
    groups: dict[str, list[int]], grads: list[torch.Tensor], before: list[torch.Tensor], after: list[torch.Tensor]
) -> dict[str, Any]:
    everything = list(range(len(grads)))
    out: dict[str, Any] = {
        "health/grad_norm": _norm(grads),
        "health/weight_norm": _norm(after),
        "health/update_ratio": _norm([a - b for a, b in zip(after, before, strict=True)]) / _norm(before),
        "health/nonfinite_grads": int(sum((~torch.isfinite(g)).sum() for g in grads)),
    }
    for group, rows in {**groups, "": everything}.items():
        if not group:
            continue
        out[f"health/grad_norm/{group}"] = _norm([grads[i] for i in rows])
        out[f"health/weight_norm/{group}"] = _norm([after[i] for i in rows])
        out[f"health/update_ratio/{group}"] = _norm([after[i] - before[i] for i in rows]) / _norm(
            [before[i] for i in rows]
        )
    return out


@pytest.mark.parametrize("accumulation", [1, 2])
def test_keras_torch_backend_norms(wandb_offline: WandbOfflineRuns, accumulation: int) -> None:
    import os

    os.environ.setdefault("KERAS_BACKEND", "torch")  # before keras is imported; tests only
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "torch":
        pytest.skip("the torch backend exposes the gradients")
    from wandb_bridge import WandbKerasCallback

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((4,)),
            keras.layers.Dense(8, activation="tanh", name="encoder"),
            keras.layers.Dense(1, name="head"),
        ]
    )
    optimizer = keras.optimizers.Adam(0.01, gradient_accumulation_steps=accumulation if accumulation > 1 else None)
    model.compile(optimizer=optimizer, loss="mse")
    every = 2
    expected: dict[int, dict[str, Any]] = {}

    class Record(keras.callbacks.Callback):  # type: ignore[misc]
        """By hand: the micro-batch gradients summed over the accumulation window, divided by its length."""

        def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
            if batch % accumulation == 0:
                self.before = [v.value.detach().clone() for v in model.trainable_weights]
                self.sum = [torch.zeros_like(v.value) for v in model.trainable_weights]

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            self.sum = [s + v.value.grad for s, v in zip(self.sum, model.trainable_weights, strict=True)]
            step, done = divmod(batch + 1, accumulation)
            if done == 0 and step % every == 0:
                paths = [v.path for v in model.trainable_weights]
                groups = {g: [i for i, p in enumerate(paths) if f"/{g}/" in p] for g in ("encoder", "head")}
                grads = [s / accumulation for s in self.sum]
                after = [v.value.detach().clone() for v in model.trainable_weights]
                expected[step] = _keras_expected(groups, grads, self.before, after)

    x, y = (torch.cat(t).numpy() for t in zip(*_batches(8), strict=True))
    callback = WandbKerasCallback(project="demo", log_health=True, health_every=every)
    model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0, callbacks=[Record(), callback])
    callback.finish()
    found = health_rows(wandb_offline.run().history)
    steps = 8 // accumulation
    assert sorted(found) == list(range(every, steps + 1, every)) == sorted(expected)
    for step, values in expected.items():
        assert_health(found[step], values)


# --------------------------------------------------------------- FSDP (gloo)


def _two_ranks(wandb_offline: WandbOfflineRuns, tmp_path: Any, mode: str) -> tuple[dict[int, Any], str]:
    """Run tests/health_dist_script.py in 2 gloo processes; what torch computed, and the workers' stderr."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).with_name("health_dist_script.py")
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(wandb_offline.env)
    out = tmp_path / "expected.json"
    result = subprocess.run(
        [sys.executable, str(script), mode, str(tmp_path / "rendezvous"), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return {int(k): v for k, v in json.loads(out.read_text()).items()}, result.stderr


@pytest.mark.slow
def test_fsdp2_two_gloo_ranks_record_the_global_norms(wandb_offline: WandbOfflineRuns, tmp_path: Any) -> None:
    expected, _ = _two_ranks(wandb_offline, tmp_path, "fsdp2")
    runs = wandb_offline.runs()
    assert len(runs) == 1  # rank 0 records; rank 1 only takes part in the reduction
    found = health_rows(runs[0].history)
    assert sorted(found) == [1, 2, 3] == sorted(expected)
    for step, values in expected.items():
        assert_health(found[step], values)
        assert not any(k.startswith("health/rank-") for k in found[step])


# ------------------------------------------------------- no sync, no cost


class _TorchCalls(torch.overrides.TorchFunctionMode):
    """Every torch function and tensor method the code inside the mode calls (torch's own dispatch hook)."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.names.append(getattr(func, "__name__", str(func)))
        return func(*args, **(kwargs or {}))


#: Calls that make the host wait for the device (a read of a value, a data-dependent shape).
_SYNCING = {"item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__", "nonzero", "masked_select"}


def test_training_thread_reads_nothing_and_idle_steps_cost_nothing(wandb_offline: WandbOfflineRuns) -> None:
    model = TwoPart()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with Session(project="demo", log_health=True, health_every=2, health_histograms=2) as session:
        monitor = session.health_monitor()
        assert monitor is not None
        calls: dict[int, list[str]] = {}
        for step, (x, y) in enumerate(_batches(4), start=1):
            optimizer.zero_grad()
            nn.functional.mse_loss(model(x), y).backward()
            with _TorchCalls() as mode:
                monitor.before_step(step, model)
            optimizer.step()
            with _TorchCalls() as after:
                monitor.after_step()
            calls[step] = mode.names + after.names
    assert calls[1] == [] and calls[3] == []  # between health steps: not one torch call
    for step in (2, 4):
        assert "_foreach_norm" in calls[step]
        assert not _SYNCING & set(calls[step]), sorted(_SYNCING & set(calls[step]))
    # Index tensors are built from host data once (pinned, non-blocking on CUDA), then reused.
    assert "tensor" in calls[2]
    assert "tensor" not in calls[4]
    assert sorted(health_rows(wandb_offline.run().history)) == [2, 4]


def test_keras_backend_without_gradients_warns_once_and_adds_no_hook(wandb_offline: WandbOfflineRuns) -> None:
    import os

    os.environ.setdefault("KERAS_BACKEND", "torch")
    pytest.importorskip("keras")
    from wandb_bridge import WandbBridgeWarning, WandbKerasCallback
    from wandb_bridge.callbacks import keras_health

    callback = WandbKerasCallback(project="demo", log_health=True)
    begin, end = callback.on_train_batch_begin, callback.on_train_batch_end
    with pytest.warns(WandbBridgeWarning, match="jax backend computes gradients inside its compiled train step"):
        assert keras_health.install(callback, "jax") is None  # what the callback does on KERAS_BACKEND=jax
    assert (callback.on_train_batch_begin, callback.on_train_batch_end) == (begin, end)
    callback.finish()


def test_compiled_model_keeps_its_groups(wandb_offline: WandbOfflineRuns) -> None:
    model = TwoPart()
    compiled = torch.compile(model, backend="eager")  # the hooks run outside the compiled region
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with Session(project="demo", log_health=True, health_every=1) as session:
        monitor = session.health_monitor()
        assert monitor is not None
        x, y = next(_batches(1))
        nn.functional.mse_loss(compiled(x), y).backward()
        before = expected_before(model, default_groups(model))
        monitor.before_step(1, compiled)  # names start with _orig_mod.: skipped by the default groups
        optimizer.step()
        monitor.after_step()
        expected = expected_after(model, default_groups(model), before)
    row = health_rows(wandb_offline.run().history)[1]
    assert_health(row, expected)
    assert {"health/grad_norm/encoder", "health/grad_norm/head"} <= set(row)


@pytest.mark.slow
def test_fsdp1_flat_shards_are_recorded_per_rank(wandb_offline: WandbOfflineRuns, tmp_path: Any) -> None:
    expected, stderr = _two_ranks(wandb_offline, tmp_path, "fsdp1")
    assert "health figures are per rank, under health/rank-<r>/" in stderr
    found = health_rows(wandb_offline.run().history)
    assert sorted(found) == [1, 2, 3] == sorted(expected)
    for step, values in expected.items():
        assert_health(found[step], values)
        assert "health/grad_norm" not in found[step]  # no figure claims to be global
        assert not any(math.isnan(v) for k, v in found[step].items() if k.startswith("health/"))


@pytest.mark.parametrize("unscaled_first", [True, False])
def test_grad_scaler_gradients_are_reported_unscaled(wandb_offline: WandbOfflineRuns, unscaled_first: bool) -> None:
    model = TwoPart()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    with Session(project="demo", log_health=True, health_every=1) as session:
        monitor = session.health_monitor()
        assert monitor is not None
        x, y = next(_batches(1))
        scaler.scale(nn.functional.mse_loss(model(x), y)).backward()
        scaled = _norm([p.grad for p in model.parameters() if p.grad is not None])
        if unscaled_first:
            scaler.unscale_(optimizer)
        before = expected_before(model, default_groups(model))
        monitor.before_step(1, model, scaler=scaler, optimizer=optimizer)
        scaler.step(optimizer)
        scaler.update()
        monitor.after_step()
        expected = expected_after(model, default_groups(model), before)
    row = health_rows(wandb_offline.run().history)[1]
    assert row["health/loss_scale"] == 1024.0
    assert row["health/grad_norm"] == pytest.approx(scaled / 1024.0, rel=TOL)  # the true gradients, either way
    if unscaled_first:
        assert_health(row, expected)
    else:
        for key in ("health/grad_norm/encoder", "health/grad_norm/head"):
            assert row[key] == pytest.approx(expected[key] / 1024.0, rel=TOL)
        assert row["health/update_ratio"] == pytest.approx(expected["health/update_ratio"], rel=TOL)
