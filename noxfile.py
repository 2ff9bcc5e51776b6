"""Nox sessions: tests, the core alone, one per framework, lint, typing, benchmarks."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "core", "lint", "typing"]
nox.options.default_venv_backend = "venv"
TORCH = "torch==2.13.0"  # the CPU build on this machine's disk; install it before anything pulls torch


@nox.session
def tests(session: nox.Session) -> None:
    """Everything, as CI runs it."""
    session.install(TORCH)
    session.install("-e", ".[dev]")
    session.run("pytest", "-n", "2", *session.posargs)


@nox.session
def core(session: nox.Session) -> None:
    """No framework installed: the core, the reader and the lazy imports work alone."""
    session.install("-e", ".[test]")
    session.run(
        "pytest", "-n", "2",
        "tests/test_settings.py", "tests/test_hparams.py", "tests/test_reader.py",
        "tests/test_core_alone.py", *session.posargs,
    )


@nox.session
def lightning(session: nox.Session) -> None:
    """Lightning (both namespaces)."""
    session.install(TORCH)
    session.install("-e", ".[lightning,test]", "pytorch-lightning")
    session.run("pytest", "-n", "2", "tests/test_lightning.py", *session.posargs)


@nox.session
def transformers(session: nox.Session) -> None:
    """Hugging Face transformers."""
    session.install(TORCH)
    session.install("-e", ".[transformers,test]")
    session.run("pytest", "-n", "2", "tests/test_transformers.py", *session.posargs)


@nox.session
def keras(session: nox.Session) -> None:
    """Keras 3 on the torch backend."""
    session.install(TORCH)
    session.install("-e", ".[keras,test]")
    session.run("pytest", "-n", "2", "tests/test_keras.py", *session.posargs, env={"KERAS_BACKEND": "torch"})


@nox.session(name="keras-jax")
def keras_jax(session: nox.Session) -> None:
    """Keras 3 on the JAX backend (no torch, no TensorFlow)."""
    session.install("-e", ".[keras,test]", "jax[cpu]")
    session.run("pytest", "-n", "2", "tests/test_keras.py", *session.posargs, env={"KERAS_BACKEND": "jax"})


@nox.session
def examples(session: nox.Session) -> None:
    """Every script in examples/ and the demo, offline on CPU, as a user runs them (each under a minute)."""
    session.install(TORCH)
    session.install("-e", ".[all,test]")
    tmp = session.create_tmp()
    env = {"WANDB_MODE": "offline", "WANDB_DIR": f"{tmp}/wandb-dir", "WANDB_SILENT": "true", "KERAS_BACKEND": "torch"}
    for script in (
        "plain_loop.py", "lightning_example.py", "transformers_example.py", "keras_example.py",
        "ddp_example.py", "resume_after_preemption.py", "dataset_artifact.py", "sweep/train.py",
    ):
        name = script.replace("/", "-").removesuffix(".py")
        session.run("python", f"examples/{script}", "--dir", f"{tmp}/{name}", env=env)
    with open(f"{tmp}/params.yaml", "w") as params:  # one sweep run, the way the agent starts it
        params.write("learning_rate: {value: 0.05}\nper_device_train_batch_size: {value: 8}\n")
    session.run("python", "examples/sweep/train.py", "--dir", f"{tmp}/sweep-agent",
                env={**env, "WANDB_SWEEP_ID": "local", "WANDB_SWEEP_PARAM_PATH": f"{tmp}/params.yaml"})
    session.run("python", "-m", "wandb_bridge", "demo", "--dir", f"{tmp}/demo", env=env)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff."""
    session.install("ruff")
    session.run("ruff", "check", "src", "tests", "benchmarks", "examples", "noxfile.py")


@nox.session
def typing(session: nox.Session) -> None:
    """mypy --strict on src."""
    session.install(TORCH)
    session.install("-e", ".[dev]")
    session.run("mypy", "--strict", "src/wandb_bridge")


@nox.session
def bench(session: nox.Session) -> None:
    """The side-by-side benchmark (ours vs the native integrations)."""
    session.install(TORCH)
    session.install("-e", ".[dev]")
    session.run("python", "-m", "benchmarks", *session.posargs)
