"""Workflow definitions: one module per lifecycle, deterministic, no I/O."""
