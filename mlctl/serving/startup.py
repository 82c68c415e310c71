"""A faster start for the model server: what it imports, and when the garbage collector runs.

Two costs dominate the start of a server for a scikit-learn model, besides scikit-learn itself:

* ``import skops.io`` computes skops' default trusted types with scikit-learn's
  ``all_estimators()``, which walks every package under ``sklearn`` with ``pkgutil`` -- and
  walking a package imports it. ``sklearn.externals.array_api_compat`` holds one adapter package
  per array library (``torch``, ``cupy``, ``dask``); importing the ``torch`` one imports torch
  (1.5 s) when it is installed. ``all_estimators()`` skips everything under ``externals``, so
  those adapters never contribute a type: :func:`import_skops` hides the adapters that are not
  imported yet behind empty placeholder modules while skops is imported, then removes the
  placeholders (a later ``import`` gets the real module). The trusted types are the same (a test
  compares them with a plain import's).
* the cyclic garbage collector runs hundreds of times while the long-lived objects of the
  libraries and the model are created (about 15% of the start): :func:`starting` turns it off
  while the server starts, and :func:`settle` (called by :func:`mlctl.serving.run_server` before
  it serves) freezes what the start created and turns it on again.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import pkgutil
import sys
import types
from collections.abc import Iterator

#: the array-API adapters' package, and the adapters needed whatever the arrays (never hidden)
ADAPTERS = "sklearn.externals.array_api_compat"
KEPT_ADAPTERS = frozenset({"common", "numpy"})


def import_skops() -> None:
    """Import ``skops.io`` without importing the array libraries scikit-learn's adapters name."""
    if "skops.io" in sys.modules:
        return
    placeholders: dict[str, types.ModuleType] = {}
    try:
        adapters = importlib.import_module(ADAPTERS)
        for info in pkgutil.iter_modules(getattr(adapters, "__path__", []), f"{ADAPTERS}."):
            short = info.name.rsplit(".", 1)[1]
            if info.ispkg and short not in KEPT_ADAPTERS and info.name not in sys.modules:
                placeholder = types.ModuleType(info.name, "placeholder while skops.io is imported (mlctl.serving)")
                placeholders[info.name] = sys.modules[info.name] = placeholder
    except ImportError:  # another scikit-learn layout: a plain import
        pass
    try:
        importlib.import_module("skops.io")
    finally:
        for name, placeholder in placeholders.items():
            if sys.modules.get(name) is placeholder:
                del sys.modules[name]


class _Pause:
    depth = 0  # nested starting() blocks
    resume = False  # turn the collector on when the pause ends (it was on before)


@contextlib.contextmanager
def starting() -> Iterator[None]:
    """A server's start: no cyclic garbage collection inside the block until :func:`settle`
    (which :func:`mlctl.serving.run_server` calls right before serving). Blocks nest; on leaving
    the outermost one the collector is on again if it was on before."""
    if _Pause.depth == 0:
        _Pause.resume = gc.isenabled()
        gc.disable()
    _Pause.depth += 1
    try:
        yield
    finally:
        _Pause.depth -= 1
        if _Pause.depth == 0 and _Pause.resume:
            _Pause.resume = False
            gc.enable()


def settle() -> None:
    """Freeze what the start created (the libraries, the model, the app live as long as the
    process: out of the collector's generations, full collections stay short -- they otherwise
    cost tens of ms of p99), and end a start's pause.

    Without a pause, the garbage is collected first. After a paused start it is frozen with the
    rest: a few thousand unreachable objects (about 0.6 MB for a scikit-learn model) stay
    allocated, where a full collection would cost 0.1-0.3 s of the start.
    """
    paused = _Pause.depth > 0 and not gc.isenabled()
    if not paused:
        gc.collect()
    gc.freeze()
    if _Pause.resume:
        _Pause.resume = False
        gc.enable()
