"""The modules that touch the outside world (wandb, the OS, the file system)."""
