"""Compatibility tests: the native integrations' documented usage, run unchanged against wandb-bridge.

A package (this file) so that pytest puts ``tests/`` on ``sys.path`` for these
modules too, and they import the shared ``*_helpers`` modules as the tests in
``tests/`` do.
"""
