"""Session fixtures: real engines on loopback ports, started once per test session.

Each fixture yields a :class:`mlctl.engines.Service` (``.url``, ``.host``, ``.port``, ``.pid``;
``.pid`` is None for an engine given by ``MLCTL_TEST_<NAME>_URL``) and stops what it started, by
PID, at the end of the session. A missing engine FAILS the tests that need it (``make test``
installs them); the message names the Debian package.

Adding an engine: register a recipe with ``@engine(...)`` in a module of ``mlctl.engines`` (imported by
the package), then::

    @pytest.fixture(scope="session")
    def kafka(tmp_path_factory):
        yield from _engine("kafka", tmp_path_factory)
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlctl.core.errors import ServiceUnavailable
from mlctl.engines import Service, external_or_start

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
        stopping = time.monotonic()
        svc.stop()
        _report(f"{name} stopped in {time.monotonic() - stopping:.1f}s")


def _report(text: str) -> None:
    """A line in the run's log even while pytest captures output (session teardown is otherwise silent)."""
    import sys

    sys.__stderr__.write(f"\n[engines] {text}\n")


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


@pytest.fixture(scope="session")
def kube_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeAPI]:  # noqa: F821 - imported below
    """The Kubernetes API test server (tests/support/kube_apiserver.py) in its own process.

    Yields a :class:`tests.support.kube_apiserver.KubeAPI`: ``.url``, ``.kubeconfig`` (a file whose
    current context ``kube-test`` points at the server, with a bearer token the server requires),
    ``.faults(...)`` to change its fault knobs for a block, ``.client()`` for the official client.
    """
    import secrets
    import sys

    from mlctl.core.probes import http_ready
    from mlctl.engines import LocalService, free_port
    from tests.support.kube_apiserver import KubeAPI, write_kubeconfig

    workdir = tmp_path_factory.mktemp("kube-apiserver")
    root = _HERE.parent.parent
    token = secrets.token_hex(16)
    server_flags = ["--pod-ready-delay", "0.2"]
    started = time.monotonic()
    failure = ""
    for _attempt in range(3):  # a free port can be taken before the server binds it: retry on a new one
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        svc = LocalService(
            name="kube-apiserver",
            argv=[sys.executable, "-m", "tests.support.kube_apiserver", "--port", str(port), *server_flags],
            workdir=workdir,
            cwd=root,
            env={"PYTHONPATH": str(root), "KUBE_TEST_TOKEN": token},
            ready=lambda url=url: http_ready(url + "/readyz"),
            url=url,
            port=port,
        )
        try:
            svc.start().wait_ready(timeout=30)
        except ServiceUnavailable as exc:
            svc.stop()
            failure = exc.message
            continue
        failure = ""
        break
    if failure:
        pytest.fail(f"the Kubernetes API test server did not start: {failure}", pytrace=False)
    kubeconfig = write_kubeconfig(workdir / "kubeconfig", url, token=token)
    print(f"\n[engines] kube-apiserver (test) ready at {url} (pid {svc.pid}) in {time.monotonic() - started:.2f}s")
    try:
        yield KubeAPI(url=url, kubeconfig=kubeconfig, token=token, pid=svc.pid)
    finally:
        stopping = time.monotonic()
        svc.stop()
        _report(f"kube-apiserver (test) stopped in {time.monotonic() - stopping:.1f}s")


# --------------------------------------------------------------------------- MLflow server on PostgreSQL


def create_database(postgres: Service, prefix: str) -> str:
    """A fresh, empty database on the ``postgres`` engine (made with psql); returns its URL."""
    import os
    import shutil
    import subprocess
    import urllib.parse
    import uuid

    from mlctl.engines import find_binary

    psql = shutil.which("psql") or find_binary("psql")
    if psql is None:
        pytest.fail("psql not found: apt-get install postgresql-client", pytrace=False)
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    result = subprocess.run([psql, postgres.url, "-X", "-v", "ON_ERROR_STOP=1", "-c", f'CREATE DATABASE "{name}"'],
                            capture_output=True, text=True, timeout=60, env={**os.environ, "PGCONNECT_TIMEOUT": "5"})
    if result.returncode != 0:
        pytest.fail(f"psql could not create database {name}: {result.stderr.strip()}", pytrace=False)
    parts = urllib.parse.urlsplit(postgres.url)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture(scope="session")
def mlflow_server(postgres: Service, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """MLflow tracking server ``http://127.0.0.1:PORT``: one worker, job execution off, backend store in a
    fresh PostgreSQL database on the ``postgres`` engine (``postgresql+psycopg://``), artifacts proxied
    by the server into a temporary folder. ``info['backend_store_uri']`` names the database."""
    from mlctl.engines import engine, get_recipe, http_probe, mlflow_recipe

    backend = create_database(postgres, "mlflow").replace("postgresql://", "postgresql+psycopg://", 1)
    default = get_recipe("mlflow")
    engine("mlflow", package=default.package, probe=http_probe("/health"), start_timeout=default.start_timeout)(
        mlflow_recipe(backend))
    try:
        yield from _engine("mlflow", tmp_path_factory)
    finally:
        engine("mlflow", package=default.package, probe=default.probe, start_timeout=default.start_timeout)(
            default.build)


# --------------------------------------------------------------------------- Docker engine


@pytest.fixture(scope="session")
def docker_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """A private dockerd: ``unix:///tmp/mlctl-dockerd-XXXX/docker.sock``, its own data-root, exec-root and
    pidfile, no bridge, no iptables (containers use the host network). ``MLCTL_TEST_DOCKER_URL`` names an
    engine that already runs instead. At the end its folders (images and containers) are removed."""
    from mlctl.engines import release_docker_dirs

    engine = _engine("docker", tmp_path_factory)
    svc = next(engine)
    try:
        yield svc
    finally:
        next(engine, None)  # stops dockerd (its containers stop with it)
        if svc.pid is not None:
            releasing = time.monotonic()
            release_docker_dirs(getattr(svc, "info", {}))
            _report(f"docker folders removed in {time.monotonic() - releasing:.1f}s")


@pytest.fixture(scope="session")
def docker_base_image(docker_engine: Service) -> str:
    """``local/python:3.11-bookworm`` in the engine, never pulled: imported from the tarball cached in
    ``~/.cache/mlctl/base-images/`` (made with debootstrap on the first session, about 40 s to 2 min)."""
    from mlctl.lifecycle.deploy.docker_base_image import BASE_IMAGE, ensure_base_image

    started = time.monotonic()
    try:
        image = ensure_base_image(docker_engine.url, BASE_IMAGE)
    except ServiceUnavailable as exc:
        failure = exc.message + (f"\nhint: {exc.hint}" if exc.hint else "")
    else:
        failure = ""
    if failure:
        pytest.fail(f"the base image {BASE_IMAGE} could not be made: {failure}", pytrace=False)
    print(f"\n[engines] docker base image {image} ready in {time.monotonic() - started:.2f}s")
    return image


@pytest.fixture(scope="module")
def api(kube_api: Any) -> Iterator[Any]:
    """An official-client ApiClient for the Kubernetes API test server."""
    api_client = kube_api.client()
    yield api_client
    api_client.close()


@pytest.fixture
def ns(api: Any) -> Iterator[str]:
    """A fresh namespace on the Kubernetes API test server, deleted afterwards."""
    import uuid

    from kubernetes import client

    name = f"ns-{uuid.uuid4().hex[:8]}"
    client.CoreV1Api(api).create_namespace({"metadata": {"name": name}})
    yield name
    client.CoreV1Api(api).delete_namespace(name)


# --------------------------------------------------------------------------- Kafka protocol and OpenSearch API


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """A Kafka-protocol broker (tansu, in-memory storage): ``kafka://127.0.0.1:PORT``. Consumers need
    ``session.timeout.ms=6000`` and ``heartbeat.interval.ms=1000``; CreatePartitions and DescribeGroups
    are not implemented by it."""
    yield from _engine("kafka", tmp_path_factory)


@pytest.fixture(scope="session")
def opensearch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """An OpenSearch-API engine (osmem-server, in memory): ``http://127.0.0.1:PORT``; opensearch-py works as is."""
    yield from _engine("opensearch", tmp_path_factory)
