"""The typed error tree and the one map from error to exit code.

Every failure the library raises on purpose is an :class:`MlctlError` with a one-line
``message`` and an optional ``hint``. The CLI maps them to exit codes in one place
(:func:`exit_code_for`), so scripts can rely on them:

====  ==========================================================
code  meaning
====  ==========================================================
0     ok
1     the operation failed
2     usage or configuration error
3     a check or gate failed (validation, drift, SLO, evaluation)
4     an external service is unreachable
130   interrupted
====  ==========================================================

>>> exit_code_for(ConfigError("bad key"))
2
>>> exit_code_for(ServiceUnavailable("prometheus down"))
4
"""

from __future__ import annotations

from typing import Any

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_CHECK_FAILED = 3
EXIT_UNAVAILABLE = 4
EXIT_INTERRUPTED = 130


class MlctlError(Exception):
    """Root of every error mlctl raises on purpose."""

    exit_code: int = EXIT_FAILED
    #: stable name used in JSON error output
    type_name: str = "MlctlError"

    def __init__(self, message: str, *, hint: str | None = None, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.details = details or {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.type_name = cls.__name__

    def to_dict(self) -> dict[str, Any]:
        """The ``{"type", "message", "hint"}`` payload printed under ``-o json``."""
        out: dict[str, Any] = {"type": self.type_name, "message": self.message, "hint": self.hint}
        if self.details:
            out["details"] = self.details
        return out


class UsageError(MlctlError):
    """The command was called wrongly (bad argument, bad combination)."""

    exit_code = EXIT_USAGE


class ConfigError(MlctlError):
    """A configuration file or value is invalid."""

    exit_code = EXIT_USAGE


class NotAProject(ConfigError):
    """No ``mlctl.yaml`` was found walking up from the working directory."""


class NotFound(MlctlError):
    """A named thing (template, model, run, release) does not exist."""

    exit_code = EXIT_USAGE


class StateError(MlctlError):
    """The project's state store is corrupt, from a newer mlctl, or not writable."""

    exit_code = EXIT_FAILED


class OperationFailed(MlctlError):
    """The operation was attempted and failed."""

    exit_code = EXIT_FAILED


class CheckFailed(MlctlError):
    """A check or gate failed: validation, drift, SLO, evaluation below its bar."""

    exit_code = EXIT_CHECK_FAILED


class ServiceUnavailable(MlctlError):
    """An external service (MLflow, Prometheus, Kafka...) could not be reached."""

    exit_code = EXIT_UNAVAILABLE


class MissingExtra(MlctlError):
    """An optional dependency is not installed; the hint names the extra."""

    exit_code = EXIT_USAGE

    def __init__(self, package: str, extra: str, *, feature: str | None = None):
        what = f" (needed for {feature})" if feature else ""
        super().__init__(
            f"the optional package '{package}' is not installed{what}",
            hint=f"pip install 'mlctl[{extra}]'",
        )


def exit_code_for(exc: BaseException) -> int:
    """The process exit code for an exception reaching the top of the CLI."""
    if isinstance(exc, MlctlError):
        return exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    return EXIT_FAILED


def require(module: str, extra: str, *, feature: str | None = None, package: str | None = None) -> Any:
    """Import an optional heavy module, or raise :class:`MissingExtra` naming the extra.

    >>> require("json", "core").dumps(1)
    '1'
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtra(package or module.split(".")[0], extra, feature=feature) from exc
