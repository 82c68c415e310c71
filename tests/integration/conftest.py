"""Session fixtures: real engines on loopback ports, started once per test session.

Each fixture yields a :class:`mlctl.core.services.Service` (``.url``, ``.host``, ``.port``, ``.pid``;
``.pid`` is None for an engine given by ``MLCTL_TEST_<NAME>_URL``) and stops what it started, by
PID, at the end of the session. A missing engine FAILS the tests that need it (``make test``
installs them); the message names the Debian package.

Adding an engine: register a recipe with ``@engine(...)`` in ``mlctl.core.services`` (or in the
issue's own module imported here), then::

    @pytest.fixture(scope="session")
    def kafka(tmp_path_factory):
        yield from _engine("kafka", tmp_path_factory)
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlctl.core.errors import ServiceUnavailable
from mlctl.core.services import Service, external_or_start

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test under tests/integration as ``integration``."""
    for item in items:
        if _HERE in Path(item.path).parents:
            item.add_marker(pytest.mark.integration)


def _engine(name: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """Start (or reuse) engine ``name`` for the session; fail, never skip, when it cannot run."""
    started = time.monotonic()
    try:
        svc = external_or_start(name, tmp_path_factory.mktemp(name))
    except ServiceUnavailable as exc:
        failure = exc.message + (f"\nhint: {exc.hint}" if exc.hint else "")
    else:
        failure = ""
    if failure:  # failed outside the except block, so the report is not a chained traceback
        pytest.fail(failure, pytrace=False)
    svc_info = "external" if svc.pid is None else f"pid {svc.pid}"
    print(f"\n[engines] {name} ready at {svc.url} ({svc_info}) in {time.monotonic() - started:.2f}s")
    try:
        yield svc
    finally:
        svc.stop()


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """PostgreSQL: ``postgresql://postgres@127.0.0.1:PORT/postgres`` (trust auth)."""
    yield from _engine("postgres", tmp_path_factory)


@pytest.fixture(scope="session")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """Redis: ``redis://127.0.0.1:PORT/0``, no persistence."""
    yield from _engine("redis", tmp_path_factory)


@pytest.fixture(scope="session")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """Prometheus: ``http://127.0.0.1:PORT``, scraping itself every second, lifecycle API on."""
    yield from _engine("prometheus", tmp_path_factory)


@pytest.fixture(scope="session")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """Alertmanager: ``http://127.0.0.1:PORT``, one ``null`` receiver, no clustering."""
    yield from _engine("alertmanager", tmp_path_factory)


@pytest.fixture(scope="session")
def pushgateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """Pushgateway: ``http://127.0.0.1:PORT``, metrics kept in memory."""
    yield from _engine("pushgateway", tmp_path_factory)
