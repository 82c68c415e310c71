"""Where mlctl keeps files outside a project: its cache folder (wheelhouses, base images)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_root"]


def cache_root() -> Path:
    """mlctl's cache: ``$MLCTL_CACHE_DIR``, else ``$XDG_CACHE_HOME/mlctl``, else ``~/.cache/mlctl``."""
    explicit = os.environ.get("MLCTL_CACHE_DIR")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mlctl"
