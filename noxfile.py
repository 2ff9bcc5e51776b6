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
