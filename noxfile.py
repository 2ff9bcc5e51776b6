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
        "pytest",
        "-n",
        "2",
        "tests/test_settings.py",
        "tests/test_hparams.py",
        "tests/test_reader.py",
        "tests/test_core_alone.py",
        *session.posargs,
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


@nox.session
def accelerate(session: nox.Session) -> None:
    """Hugging Face accelerate."""
    session.install(TORCH)
    session.install("-e", ".[accelerate,test]")
    session.run("pytest", "-n", "2", "tests/test_accelerate.py", *session.posargs)


@nox.session
def fabric(session: nox.Session) -> None:
    """Lightning Fabric."""
    session.install(TORCH)
    session.install("-e", ".[fabric,test]")
    session.run("pytest", "-n", "2", "tests/test_fabric.py", *session.posargs)


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
        "plain_loop.py",
        "lightning_example.py",
        "transformers_example.py",
        "keras_example.py",
        "ddp_example.py",
        "resume_after_preemption.py",
        "dataset_artifact.py",
        "sweep/train.py",
    ):
        name = script.replace("/", "-").removesuffix(".py")
        session.run("python", f"examples/{script}", "--dir", f"{tmp}/{name}", env=env)
    with open(f"{tmp}/params.yaml", "w") as params:  # one sweep run, the way the agent starts it
        params.write("learning_rate: {value: 0.05}\nper_device_train_batch_size: {value: 8}\n")
    session.run(
        "python",
        "examples/sweep/train.py",
        "--dir",
        f"{tmp}/sweep-agent",
        env={**env, "WANDB_SWEEP_ID": "local", "WANDB_SWEEP_PARAM_PATH": f"{tmp}/params.yaml"},
    )
    session.run("python", "-m", "wandb_bridge", "demo", "--dir", f"{tmp}/demo", env=env)


# --- Version matrix: the supported versions, proven (docs/versions.md) -----------------------------------------
# `nox -t matrix` runs all of it (about 10 minutes on 2 cores); `nox -s "matrix_wandb(0.19.0)"` one cell.
# Each cell pins one package at the oldest or newest version we support and runs the tests that
# exercise it; everything else resolves to what pip picks for that pin.
WANDB_VERSIONS = ["0.19.0", "0.31.0"]  # oldest supported, newest release
LIGHTNING_VERSIONS = ["2.2.5", "2.6.6"]  # oldest and newest supported minor (latest patch of each)
TRANSFORMERS_VERSIONS = ["4.46.3", "4.57.6", "5.24.0"]  # an old 4.x, the last 4.x, 5.x
KERAS_VERSIONS = ["3.7.0", "3.15.1"]  # oldest supported, newest; on the torch backend
ACCELERATE_VERSIONS = ["0.26.1", "1.15.0"]  # oldest supported, newest
FABRIC_VERSIONS = LIGHTNING_VERSIONS  # Fabric ships inside the lightning package
WANDB_TESTS = (
    "tests/test_session.py",
    "tests/test_core_alone.py",
    "tests/test_reader.py",
    "tests/test_log_process.py",
)


@nox.session(tags=["matrix"])
@nox.parametrize("version", WANDB_VERSIONS, ids=WANDB_VERSIONS)
def matrix_wandb(session: nox.Session, version: str) -> None:
    """The core, the SDK adapter and the offline-run reader against one wandb release."""
    session.install(TORCH)
    session.install("-e", ".[test]", f"wandb=={version}")
    session.run("pytest", "-n", "2", *WANDB_TESTS, *session.posargs)


@nox.session(tags=["matrix"])
@nox.parametrize("version", LIGHTNING_VERSIONS, ids=LIGHTNING_VERSIONS)
def matrix_lightning(session: nox.Session, version: str) -> None:
    """WandbLogger against one Lightning release (both namespaces, same version)."""
    session.install(TORCH)
    # Lightning < 2.4 declares namespace packages through pkg_resources, gone from setuptools 81.
    old = ["setuptools<81"] if tuple(int(p) for p in version.split(".")[:2]) < (2, 4) else []
    session.install("-e", ".[lightning,test]", f"lightning=={version}", f"pytorch-lightning=={version}", "pillow", *old)
    session.run("pytest", "-n", "2", "tests/test_lightning.py", *session.posargs)


@nox.session(tags=["matrix"])
@nox.parametrize("version", TRANSFORMERS_VERSIONS, ids=TRANSFORMERS_VERSIONS)
def matrix_transformers(session: nox.Session, version: str) -> None:
    """WandbTrainerCallback against one transformers release (optuna for the hyper-parameter search test)."""
    session.install(TORCH)
    session.install("-e", ".[transformers,test]", f"transformers=={version}", "optuna")
    session.run("pytest", "-n", "2", "tests/test_transformers.py", *session.posargs)


@nox.session(tags=["matrix"])
@nox.parametrize("version", KERAS_VERSIONS, ids=KERAS_VERSIONS)
def matrix_keras(session: nox.Session, version: str) -> None:
    """WandbKerasCallback against one Keras 3 release on the torch backend."""
    session.install(TORCH)
    session.install("-e", ".[keras,test]", f"keras=={version}")
    session.run("pytest", "-n", "2", "tests/test_keras.py", *session.posargs, env={"KERAS_BACKEND": "torch"})


@nox.session(tags=["matrix"])
@nox.parametrize("version", ACCELERATE_VERSIONS, ids=ACCELERATE_VERSIONS)
def matrix_accelerate(session: nox.Session, version: str) -> None:
    """WandbTracker against one accelerate release (one process and two gloo processes)."""
    session.install(TORCH)
    session.install("-e", ".[accelerate,test]", f"accelerate=={version}")
    session.run("pytest", "-n", "2", "tests/test_accelerate.py", *session.posargs)


@nox.session(tags=["matrix"])
@nox.parametrize("version", FABRIC_VERSIONS, ids=FABRIC_VERSIONS)
def matrix_fabric(session: nox.Session, version: str) -> None:
    """WandbLogger under Lightning Fabric, against one lightning release."""
    session.install(TORCH)
    old = ["setuptools<81"] if tuple(int(p) for p in version.split(".")[:2]) < (2, 4) else []
    session.install("-e", ".[fabric,test]", f"lightning=={version}", *old)
    session.run("pytest", "-n", "2", "tests/test_fabric.py", *session.posargs)


@nox.session(name="matrix_keras_jax", tags=["matrix"])
def matrix_keras_jax(session: nox.Session) -> None:
    """The newest Keras 3 on the JAX backend (CPU jax, no torch, no TensorFlow)."""
    session.install("-e", ".[keras,test]", f"keras=={KERAS_VERSIONS[-1]}", "jax[cpu]")
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
