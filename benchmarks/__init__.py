"""Side-by-side benchmarks: wandb-bridge vs the native W&B integrations.

``python -m benchmarks`` (or ``nox -s bench``) runs everything and prints the
tables; ``--quick`` is a smoke run. See docs/performance.md for the method and
the latest results, and ``benchmarks/gpu_syncs.py`` for the GPU part.
"""
