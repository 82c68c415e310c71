"""Curated, lazily imported package APIs.

A package's ``__init__`` names what a user of the library imports from it, without importing
the modules behind those names until one is used (``import mlctl.detect`` stays cheap, and a
missing optional extra is reported by name when the name that needs it is touched)::

    __getattr__, __dir__ = lazy_exports(__name__, {
        "score_frame": "mlctl.detect.scoring",
        "make_detector": "mlctl.detect.base",
    })

>>> getattr_, dir_ = lazy_exports("pkg", {"sqrt": "math"})
>>> getattr_("sqrt")(9.0)
3.0
>>> "sqrt" in dir_()
True
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str],
                 extras: Mapping[str, str] | None = None) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``: ``exports`` maps each public name to the
    module that defines it; ``extras`` maps a third-party top-level module to the pip extra that
    brings it (an ImportError of one becomes :class:`~mlctl.core.errors.MissingExtra`). A name
    is imported on first use and then kept in the package's namespace."""

    def __getattr__(name: str) -> Any:
        module_name = exports.get(name)
        if module_name is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            missing = (exc.name or "").split(".")[0]
            if extras and missing in extras:
                from mlctl.core.errors import MissingExtra

                raise MissingExtra(missing, extras[missing], feature=f"{package}.{name}") from exc
            raise
        value = getattr(module, name)
        namespace = sys.modules.get(package)
        if namespace is not None:
            setattr(namespace, name, value)
        return value

    def __dir__() -> list[str]:
        namespace = sys.modules.get(package)
        return sorted({*(vars(namespace) if namespace is not None else {}), *exports})

    return __getattr__, __dir__
