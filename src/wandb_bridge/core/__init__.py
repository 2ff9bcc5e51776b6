"""Framework-agnostic core: settings, run session, metrics, checkpoints, config, ranks.

Nothing in this package imports wandb or a training framework.
"""
