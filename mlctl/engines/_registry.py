"""The engine registry: recipes by name, and starting one (or finding one already running).

A recipe turns ``(workdir, port)`` into an :class:`EngineSpec` (argv, env, readiness check, URL,
user to run as, setup hook); :func:`engine` registers it under a name. :func:`start_engine` starts
a registered engine and waits until it answers; :func:`external_or_start` first honours
``MLCTL_TEST_<NAME>_URL`` (an engine that is already running) and starts one only when that is
unset or unreachable.
"""

from __future__ import annotations

import os
import re
import signal
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mlctl.core.errors import ServiceUnavailable
from mlctl.core.probes import http_ready, tcp_ready
from mlctl.core.proc import LOOPBACK, ExternalService, LocalService, free_port, wait_until
from mlctl.engines._base import EngineNotInstalled, split_url

__all__ = [
    "EngineRecipe",
    "EngineSpec",
    "Recipe",
    "engine",
    "env_var_for",
    "external_or_start",
    "get_recipe",
    "http_probe",
    "registered_engines",
    "start_engine",
    "tcp_probe",
    "unregister_engine",
]


@dataclass
class EngineSpec:
    """What a recipe returns: how to run one engine on one port.

    ``setup`` runs before the process starts (write a config, ``initdb``); ``user`` is the account
    to run as when we are root (PostgreSQL refuses root); ``info`` carries paths worth knowing
    (config file, data dir) onto the :class:`LocalService`.
    """

    argv: list[str]
    url: str
    ready: Callable[[], bool]
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    user: str | None = None
    setup: Callable[[], object] | None = None
    stop_signal: int = signal.SIGTERM
    cleanup: list[Path] = field(default_factory=list)
    info: dict[str, str] = field(default_factory=dict)
    host: str = LOOPBACK


Recipe = Callable[[Path, int], EngineSpec]


@dataclass(frozen=True)
class EngineRecipe:
    """A registered engine: its recipe, the package it comes from and how to probe a URL of it."""

    name: str
    build: Recipe
    package: str
    env_var: str
    probe: Callable[[str], bool]
    start_timeout: float = 30.0


_REGISTRY: dict[str, EngineRecipe] = {}


def env_var_for(name: str) -> str:
    """The environment variable naming an already-running engine: ``MLCTL_TEST_<NAME>_URL``.

    >>> env_var_for("redis")
    'MLCTL_TEST_REDIS_URL'
    """
    return "MLCTL_TEST_" + re.sub(r"[^A-Za-z0-9]+", "_", name).upper() + "_URL"



def tcp_probe(url: str) -> bool:
    """Probe for an engine given by URL: a TCP connection to its host and port succeeds."""
    host, port = split_url(url)
    return port is not None and tcp_ready(host, port)


def http_probe(path: str) -> Callable[[str], bool]:
    """A probe that GETs ``path`` below the engine's base URL and wants 200."""
    return lambda url: http_ready(url.rstrip("/") + path)


def engine(
    name: str,
    *,
    package: str,
    env_var: str | None = None,
    probe: Callable[[str], bool] = tcp_probe,
    start_timeout: float = 30.0,
) -> Callable[[Recipe], Recipe]:
    """Register a recipe ``(workdir, port) -> EngineSpec`` under ``name``.

    ``package`` is the Debian package (or pip requirement) to name when the binary is missing;
    ``probe(url)`` checks an already-running engine given by ``env_var`` (default
    :func:`env_var_for`). Registering a name again replaces the recipe.
    """

    def register(fn: Recipe) -> Recipe:
        _REGISTRY[name] = EngineRecipe(
            name=name,
            build=fn,
            package=package,
            env_var=env_var or env_var_for(name),
            probe=probe,
            start_timeout=start_timeout,
        )
        return fn

    return register


def registered_engines() -> dict[str, EngineRecipe]:
    """A copy of the registry: engine name -> :class:`EngineRecipe`."""
    return dict(_REGISTRY)


def get_recipe(name: str) -> EngineRecipe:
    """The recipe registered as ``name``; :class:`KeyError`-free: raises ServiceUnavailable."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ServiceUnavailable(
            f"no engine recipe named {name!r}", hint=f"known engines: {', '.join(sorted(_REGISTRY))}"
        ) from None


def unregister_engine(name: str) -> EngineRecipe | None:
    """Remove the recipe registered as ``name`` (a test's throwaway engine); returns it, or None."""
    return _REGISTRY.pop(name, None)


def start_engine(
    name: str,
    workdir: Path | str,
    port: int | None = None,
    *,
    timeout: float | None = None,
    attempts: int = 3,
) -> LocalService:
    """Start the registered engine ``name`` in ``workdir`` and return it once it answers.

    With ``port=None`` a free port is chosen, and if the engine dies at once (another process took
    the port first) it is tried again on a new port, up to ``attempts`` times. On failure nothing
    is left running and :class:`ServiceUnavailable` (or :class:`EngineNotInstalled`) is raised.
    """
    recipe = get_recipe(name)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    tries = 1 if port is not None else max(1, attempts)
    for attempt in range(1, tries + 1):
        chosen = port if port is not None else free_port()
        try:
            spec = recipe.build(workdir, chosen)
        except EngineNotInstalled as exc:
            raise EngineNotInstalled(
                f"{name}: {exc.message}",
                hint=exc.hint or f"install it with: apt-get install {recipe.package}",
            ) from None
        svc = LocalService(
            name=name,
            argv=spec.argv,
            workdir=workdir,
            env=spec.env,
            cwd=spec.cwd,
            ready=spec.ready,
            url=spec.url,
            host=spec.host,
            port=chosen,
            user=spec.user,
            stop_signal=spec.stop_signal,
            cleanup=list(spec.cleanup),
            info=dict(spec.info),
        )
        try:
            if spec.setup is not None:
                spec.setup()
            svc.start()
            svc.wait_ready(timeout=timeout if timeout is not None else recipe.start_timeout)
            return svc
        except ServiceUnavailable as exc:
            died = svc.returncode is not None
            svc.stop()
            if not died or attempt == tries:
                raise
            warnings.warn(f"{name} died on port {chosen}, retrying on another port: {exc.message}", stacklevel=2)
        except BaseException:
            svc.stop()
            raise
    raise AssertionError("unreachable")  # pragma: no cover


def external_or_start(
    name: str,
    workdir: Path | str,
    *,
    env_var: str | None = None,
    port: int | None = None,
    timeout: float | None = None,
    environ: Mapping[str, str] | None = None,
    probe_timeout: float = 3.0,
) -> LocalService | ExternalService:
    """The engine named by ``$MLCTL_TEST_<NAME>_URL`` when set and reachable, else a fresh one.

    A URL that is set but does not answer within ``probe_timeout`` seconds is reported with a
    warning and a local engine is started instead. Call ``.stop()`` on the result either way.
    """
    recipe = get_recipe(name)
    var = env_var or recipe.env_var
    url = (environ if environ is not None else os.environ).get(var, "").strip()
    if url:
        try:
            wait_until(lambda: recipe.probe(url), timeout=probe_timeout, interval=0.2, what=f"{var}={url}")
        except ServiceUnavailable:
            warnings.warn(f"{var}={url} does not answer; starting a local {name} instead", stacklevel=2)
        else:
            host, ext_port = split_url(url)
            return ExternalService(name=name, url=url, host=host, port=ext_port)
    return start_engine(name, workdir, port, timeout=timeout)

