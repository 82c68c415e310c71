"""The composition root of the configuration: every capability's section, registered in one place.

:mod:`mlctl.core.config` defines the sections core shares (``project``, ``tracking``, ``deploy``,
``services``) and knows no capability. It imports this module by name
(:data:`mlctl.core.config.COMPOSITION_ROOT`) the first time the whole model is needed, so every
caller of :func:`~mlctl.core.config.load_config` sees every section; nothing in core imports it
statically. A new command group with settings adds its section here: one import, one
``register_section`` line (and one field of the typed view below).

Spec modules stay light (pydantic and the standard library only): this module is imported by
every command that loads the configuration, ``mlctl config show`` and ``mlctl status`` included.

>>> from mlctl.core.config import config_model
>>> list(config_model().model_fields)
['project', 'tracking', 'deploy', 'services', 'train', 'detect', 'logs', 'serve']
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mlctl.core.config import CoreConfig, config_model, register_section
from mlctl.detect.spec import DetectSpec
from mlctl.lifecycle.spec import TrainSpec
from mlctl.logs.spec import LogsSpec
from mlctl.serving.spec import ServeSpec

register_section("train", TrainSpec)
register_section("detect", DetectSpec)
register_section("logs", LogsSpec)
register_section("serve", ServeSpec)

__all__ = ["MlctlConfig"]

if TYPE_CHECKING:

    class MlctlConfig(CoreConfig):
        """The whole configuration as type checkers see it; at run time, :func:`config_model`."""

        train: TrainSpec = TrainSpec()
        detect: DetectSpec = DetectSpec()
        logs: LogsSpec = LogsSpec()
        serve: ServeSpec = ServeSpec()

else:

    def __getattr__(name: str) -> Any:
        """``MlctlConfig``: the composed model (rebuilt by core when the registry changes)."""
        if name == "MlctlConfig":
            return config_model()
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
