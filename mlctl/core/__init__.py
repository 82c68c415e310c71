"""What every capability of mlctl stands on: errors and exit codes, configuration, output,
embedded state, local processes, HTTP, locks and graceful stops.

The names below are the library's core API, imported on first use (``import mlctl.core`` loads
nothing else). Modules not listed here (``probes``, ``ports``, ``doctor``, ``paths``) are used by
mlctl itself and importable by path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlctl.core.lazy import lazy_exports

if TYPE_CHECKING:
    from mlctl.core.config import LoadedConfig, Section, config_model, load_config, register_section
    from mlctl.core.durations import format_age, format_duration, parse_duration
    from mlctl.core.errors import (
        EXIT_CHECK_FAILED,
        EXIT_FAILED,
        EXIT_INTERRUPTED,
        EXIT_OK,
        EXIT_UNAVAILABLE,
        EXIT_USAGE,
        CheckFailed,
        ConfigError,
        MissingExtra,
        MlctlError,
        NotAProject,
        NotFound,
        OperationFailed,
        ServiceUnavailable,
        StateError,
        UsageError,
        exit_code_for,
        require,
    )
    from mlctl.core.graceful import GracefulStop, exit_code_for_stop
    from mlctl.core.http import Response, get_json, post_json, request
    from mlctl.core.locks import FileLock, LockTimeout
    from mlctl.core.output import OutputFormat, Result, message, progress, render
    from mlctl.core.proc import ExternalService, LocalService, Service, free_port, wait_until
    from mlctl.core.state import StateStore

_MODULES = {
    "mlctl.core.errors": ["MlctlError", "UsageError", "ConfigError", "NotAProject", "NotFound", "StateError",
                          "OperationFailed", "CheckFailed", "ServiceUnavailable", "MissingExtra", "exit_code_for",
                          "require", "EXIT_OK", "EXIT_FAILED", "EXIT_USAGE", "EXIT_CHECK_FAILED",
                          "EXIT_UNAVAILABLE", "EXIT_INTERRUPTED"],
    "mlctl.core.config": ["LoadedConfig", "Section", "load_config", "register_section", "config_model"],
    "mlctl.core.output": ["OutputFormat", "Result", "render", "message", "progress"],
    "mlctl.core.state": ["StateStore"],
    "mlctl.core.proc": ["Service", "LocalService", "ExternalService", "free_port", "wait_until"],
    "mlctl.core.http": ["request", "get_json", "post_json", "Response"],
    "mlctl.core.graceful": ["GracefulStop", "exit_code_for_stop"],
    "mlctl.core.locks": ["FileLock", "LockTimeout"],
    "mlctl.core.durations": ["parse_duration", "format_duration", "format_age"],
}
_EXPORTS = {name: module for module, names in _MODULES.items() for name in names}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
