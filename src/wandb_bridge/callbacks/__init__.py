"""Thin per-framework callbacks that translate framework events into core calls."""
