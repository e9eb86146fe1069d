"""Imported by lerobot's plugin discovery; registers memlens's policy type (and env types)."""

import memlens.plugin  # noqa: F401
