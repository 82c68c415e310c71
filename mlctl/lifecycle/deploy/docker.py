"""The ``docker`` deploy target: one image per model version, one container per deployment.

:meth:`DockerTarget.apply` prepares a build context in a temporary folder::

    Dockerfile            rendered from templates/deploy/Dockerfile (non-root, HEALTHCHECK, CMD)
    model/artifact.json   the artifact's metadata, its path relative to model/
    model/<model file>    the serialized model, copied
    wheels/requirements.txt   what ``python -m mlctl.serving`` needs, pinned to this environment's versions
    wheels/deps/*.whl     their wheels (and their dependencies'), for CPython 3.11 on manylinux x86_64
    wheels/mlctl/*.whl    a wheel of the mlctl that runs this (source checkout or installed distribution)

and builds it through the Docker engine's API with the network off (``network_mode="none"``): the
image installs everything with ``pip install --no-index --find-links``, so a build needs neither a
registry nor a package index. The wheels are prepared on this machine by
:mod:`mlctl.lifecycle.deploy.docker_wheels`: rebuilt from the installed distributions where they
fit the image (no network), downloaded once otherwise, and kept in ``~/.cache/mlctl/``
(``$MLCTL_CACHE_DIR`` moves it); the engine's layer cache then makes a second model version's build
take seconds. The image is tagged ``mlctl/<model>:<version>`` (the same name the k8s target deploys)
and labelled with the model's sha256 and the deployment's config hash.

The container, ``mlctl-<deployment>``, runs with host networking (the server binds ``host:PORT``
on this machine, loopback by default), restart policy ``on-failure`` and ``PORT``/``HOST`` in its
environment. Replacing a deployment is stop-then-start, because two containers on the host network
cannot share a port: the new image is built while the old container still serves, then the old
container is stopped (SIGTERM: it drains in-flight requests) and renamed ``mlctl-<name>-previous``,
the new one is started and awaited. If the new one does not become ready, it is removed and the
previous one started again before the error is raised. The downtime is the new server's start-up,
a few seconds. Deploying the same image with the same configuration again changes nothing.

:meth:`DockerTarget.scale` takes 0 or 1: 0 stops the container gracefully and keeps it (its status
then reports 0 replicas desired), 1 starts it again. More replicas would need more servers on one
host port, which host networking does not allow: that is a :class:`UsageError` naming the local
and k8s targets, which run N servers behind one endpoint.

The ``docker`` package (``pip install 'mlctl[docker]'``) is imported only inside the methods that
talk to an engine; :meth:`DockerTarget.plan` and :func:`render_dockerfile` need none of it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from importlib import metadata, resources
from pathlib import Path
from typing import Any

from mlctl.core.errors import MissingExtra, NotFound, OperationFailed, ServiceUnavailable, UsageError
from mlctl.core.probes import http_ready
from mlctl.lifecycle.deploy.base import DeploymentStatus, DeployPlan, DeploySpec, DeployTarget, validate_replicas
from mlctl.lifecycle.deploy.docker_wheels import WHEEL_PLATFORMS, cache_dir, dependency_wheels, mlctl_wheel
from mlctl.lifecycle.deploy.k8s_manifests import default_image

__all__ = [
    "DEFAULT_BASE_IMAGE",
    "DEFAULT_DOCKER_URL",
    "WHEEL_PLATFORMS",
    "DockerTarget",
    "build_context",
    "cache_dir",
    "container_name",
    "dependency_wheels",
    "mlctl_wheel",
    "render_dockerfile",
    "runtime_requirements",
]

DEFAULT_BASE_IMAGE = "local/python:3.11-bookworm"
DEFAULT_DOCKER_URL = "unix:///var/run/docker.sock"
LABEL = "dev.mlctl"
#: what ``python -m mlctl.serving`` imports, beyond mlctl's own dependencies
SERVE_PACKAGES = ["fastapi", "uvicorn[standard]", "prometheus-client", "numpy", "scipy", "joblib", "threadpoolctl"]
FLAVOR_PACKAGES = {"sklearn": ["scikit-learn", "skops"], "torch": ["torch"]}
CORE_PACKAGES = ["pydantic", "typer", "rich", "PyYAML", "ruamel.yaml"]
_ENGINE_HINT = "is dockerd running? set services.docker in mlctl.yaml (or MLCTL_SERVICES__DOCKER / DOCKER_HOST)"
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


# --------------------------------------------------------------------------- rendering


def validate_name(name: str) -> str:
    """A deployment name is a DNS-1123 label (what :func:`~mlctl.lifecycle.releases.deployment_name` makes).

    >>> validate_name("fraud-model")
    'fraud-model'
    """
    if len(name) > 63 or not _NAME.match(name):
        raise UsageError(f"invalid deployment name {name!r}",
                         hint="use at most 63 lowercase letters, digits and '-' (e.g. fraud-model)")
    return name


def container_name(deployment: str) -> str:
    """``mlctl-<deployment>``.

    >>> container_name("fraud-model")
    'mlctl-fraud-model'
    """
    return f"mlctl-{validate_name(deployment)}"


def render_dockerfile(spec: DeploySpec, base_image: str = DEFAULT_BASE_IMAGE) -> str:
    """The Dockerfile for ``spec``: templates/deploy/Dockerfile with its ``{{names}}`` filled in."""
    text = resources.files("mlctl.templates").joinpath("deploy", "Dockerfile").read_text(encoding="utf-8")
    values = {
        "base_image": base_image,
        "port": str(int(spec.port)),
        "model_name": _label_text(spec.model.name),
        "model_version": _label_text(spec.model.version),
    }
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    return text


def _label_text(value: str) -> str:
    return "".join(ch for ch in str(value) if ch.isprintable() and ch not in '"\\$`')


def runtime_requirements(flavor: str = "sklearn") -> list[str]:
    """What the image installs, each pinned to the version installed here (unpinned when absent).

    The image then runs the same library versions the model was trained and tested with.
    """
    if flavor not in FLAVOR_PACKAGES:
        raise UsageError(f"the docker target cannot serve models of flavor {flavor!r}",
                         hint=f"flavors: {', '.join(FLAVOR_PACKAGES)}")
    out = []
    for requirement in [*CORE_PACKAGES, *SERVE_PACKAGES, *FLAVOR_PACKAGES[flavor]]:
        name = requirement.split("[", 1)[0]
        try:
            out.append(f"{requirement}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            out.append(requirement)
    return out


def base_image_hint(url: str, image: str) -> str:
    """What to run when the engine lacks the base image (no registry is ever contacted)."""
    made_here = "" if image == DEFAULT_BASE_IMAGE else f" --image {image}"
    return (f"make it once on this machine (debootstrap; root and a Debian mirror): `python -m "
            f"mlctl.lifecycle.deploy.docker_base_image --docker {url}{made_here}`; or `docker load` / "
            f"`docker tag` an image with Debian bookworm's python3 (3.11) and python3-venv as {image}")


# --------------------------------------------------------------------------- wheelhouse


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def build_context(spec: DeploySpec, ctx: Path, *, base_image: str = DEFAULT_BASE_IMAGE,
                  wheelhouse: Path | None = None, cache: Path | None = None) -> Path:
    """Fill ``ctx`` with everything the image build needs (see the module docstring); returns ``ctx``.

    ``wheelhouse``, when given, is a folder of ready wheels used instead of preparing them (an
    ``mlctl-*.whl`` in it is used instead of making one); else they come from
    :func:`~mlctl.lifecycle.deploy.docker_wheels.mlctl_wheel` and
    :func:`~mlctl.lifecycle.deploy.docker_wheels.dependency_wheels`, cached in ``cache``.
    """
    model_file = Path(spec.model.path)
    if not model_file.is_file():
        raise NotFound(f"model file of {spec.model.ref} not found: {model_file}",
                       hint="the artifact must be resolved to a local file before deploying")
    requirements = runtime_requirements(spec.model.flavor)
    ctx.mkdir(parents=True, exist_ok=True)
    (ctx / "Dockerfile").write_text(render_dockerfile(spec, base_image), encoding="utf-8")
    model_dir = ctx / "model"
    model_dir.mkdir(exist_ok=True)
    shutil.copy2(model_file, model_dir / model_file.name)
    from dataclasses import replace

    replace(spec.model, path=model_dir / model_file.name).to_json(model_dir / "artifact.json")

    wheels = ctx / "wheels"
    (wheels / "deps").mkdir(parents=True, exist_ok=True)
    (wheels / "mlctl").mkdir(parents=True, exist_ok=True)
    (wheels / "requirements.txt").write_text("\n".join(requirements) + "\n", encoding="utf-8")
    given = sorted(Path(wheelhouse).glob("mlctl-*.whl")) if wheelhouse is not None else []
    own = given[-1] if given else mlctl_wheel(cache)
    _link_or_copy(own, wheels / "mlctl" / own.name)
    deps = sorted(Path(wheelhouse).glob("*.whl")) if wheelhouse is not None else dependency_wheels(requirements, cache)
    for wheel in deps:
        if not wheel.name.startswith("mlctl-"):
            _link_or_copy(wheel, wheels / "deps" / wheel.name)
    return ctx


# --------------------------------------------------------------------------- resources


def _nano_cpus(cpu: str) -> int | None:
    """Kubernetes CPU quantity -> Docker nano CPUs: ``"500m"`` -> 500000000."""
    try:
        cores = float(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)
    except (TypeError, ValueError):
        return None
    return int(cores * 1e9) if cores > 0 else None


def _mem_bytes(memory: str) -> int | None:
    """Kubernetes memory quantity -> bytes: ``"512Mi"`` -> 536870912."""
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
    for suffix, factor in units.items():
        if memory.endswith(suffix):
            try:
                return int(float(memory[: -len(suffix)]) * factor)
            except ValueError:
                return None
    try:
        return int(memory)
    except ValueError:
        return None


# --------------------------------------------------------------------------- the target


class DockerTarget(DeployTarget):
    """Model servers as containers of images built with the model baked in.

    ``base_url`` is the engine's API (``unix:///PATH/docker.sock`` or ``tcp://HOST:PORT``; None:
    ``$DOCKER_HOST``, else ``unix:///var/run/docker.sock``); ``base_image`` must hold ``python3``
    with ``venv`` (no registry is contacted: the image must already be in the engine);
    ``wheelhouse`` a folder of ready wheels (None: made from this environment, or downloaded,
    once, into ``cache``: see :mod:`mlctl.lifecycle.deploy.docker_wheels`); ``host`` the
    address the server binds with host networking and where it is reached.
    """

    kind = "docker"

    def __init__(self, *, base_url: str | None = None, base_image: str = DEFAULT_BASE_IMAGE,
                 wheelhouse: Path | None = None, host: str = "127.0.0.1", timeout_s: float = 300.0,
                 cache: Path | None = None) -> None:
        self.base_url = base_url or os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_URL
        self.base_image = base_image
        self.wheelhouse = Path(wheelhouse) if wheelhouse is not None else None
        self.host = host
        self.timeout_s = timeout_s
        self.cache = cache
        self._docker: Any = None
        #: the output of the last image build (its steps show which layers came from the cache)
        self.last_build_log: list[str] = []

    def __repr__(self) -> str:
        return f"DockerTarget(base_url={self.base_url!r})"

    # -- engine --------------------------------------------------------------------------------
    def _client(self) -> Any:
        if self._docker is not None:
            return self._docker
        try:
            import docker
        except ImportError:
            raise MissingExtra("docker", "docker", feature="the docker deploy target") from None
        try:
            self._docker = docker.DockerClient(base_url=self.base_url, version="auto", timeout=int(self.timeout_s))
        except docker.errors.DockerException as exc:
            raise ServiceUnavailable(f"the Docker engine at {self.base_url} is unreachable: {_short(exc)}",
                                     hint=_ENGINE_HINT) from None
        return self._docker

    def close(self) -> None:
        if self._docker is not None:
            with contextlib.suppress(Exception):
                self._docker.close()
            self._docker = None

    @contextlib.contextmanager
    def _engine(self, what: str) -> Iterator[None]:
        """Map the SDK's failures: transport -> ServiceUnavailable, API errors -> OperationFailed."""
        import docker
        import requests

        try:
            yield
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
            raise ServiceUnavailable(f"the Docker engine at {self.base_url} stopped answering while trying to "
                                     f"{what}: {_short(exc)}", hint=_ENGINE_HINT) from None
        except docker.errors.APIError as exc:
            raise OperationFailed(f"the Docker engine refused to {what}: {exc.explanation or exc}",
                                  details={"status": exc.status_code}) from None

    def _container(self, name: str) -> Any:
        import docker

        client = self._client()
        with self._engine(f"inspect container {container_name(name)}"):
            try:
                return client.containers.get(container_name(name))
            except docker.errors.NotFound:
                return None

    # -- build ---------------------------------------------------------------------------------
    def image_for(self, spec: DeploySpec) -> str:
        """``mlctl/<model>:<version>``, as the k8s target names it."""
        return default_image(spec)

    def _labels(self, spec: DeploySpec) -> dict[str, str]:
        return {
            f"{LABEL}.managed-by": "mlctl",
            f"{LABEL}.model": spec.model.name,
            f"{LABEL}.version": str(spec.model.version),
            f"{LABEL}.model-sha256": spec.model.sha256,
            f"{LABEL}.config-hash": spec.config_hash(),
        }

    def build(self, spec: DeploySpec) -> Any:
        """Build (or find in the layer cache) the image for ``spec``; returns the SDK's Image."""
        import docker

        client = self._client()
        with self._engine(f"inspect the base image {self.base_image}"):
            try:
                client.images.get(self.base_image)
            except docker.errors.ImageNotFound:
                raise OperationFailed(
                    f"the base image {self.base_image} is not in the Docker engine at {self.base_url}",
                    hint=base_image_hint(self.base_url, self.base_image),
                ) from None
        with tempfile.TemporaryDirectory(prefix="mlctl-docker-ctx-") as tmp:
            ctx = build_context(spec, Path(tmp), base_image=self.base_image, wheelhouse=self.wheelhouse,
                                cache=self.cache)
            with self._engine(f"build {self.image_for(spec)}"):
                try:
                    image, log = client.images.build(
                        path=str(ctx), tag=self.image_for(spec), labels=self._labels(spec),
                        network_mode="none", rm=True, forcerm=True, pull=False,
                    )
                    self.last_build_log = [_log_line(chunk) for chunk in log]
                except docker.errors.BuildError as exc:
                    lines = [_log_line(chunk) for chunk in exc.build_log]
                    tail = [line for line in lines if line][-10:]
                    raise OperationFailed(f"building {self.image_for(spec)} failed: {exc.msg}\n" + "\n".join(tail),
                                          hint="the last lines of the build log are above",
                                          details={"build_log": tail}) from None
        return image

    # -- DeployTarget --------------------------------------------------------------------------
    def plan(self, spec: DeploySpec) -> DeployPlan:
        """The steps and the rendered Dockerfile; talks to no engine."""
        self._check(spec)
        name, image = container_name(spec.name), self.image_for(spec)
        endpoint = f"http://{self.host}:{spec.port}"
        actions = [
            f"prepare a build context: {spec.model.ref} ({Path(spec.model.path).name}), artifact.json, "
            f"a wheelhouse for {spec.model.flavor} serving (cached in {self.cache or cache_dir()})",
            f"build image {image} FROM {self.base_image} with the network off, on {self.base_url}",
            f"stop container {name} if it runs another image or configuration (brief downtime: one port)",
            f"run container {name} ({image}, host network, restart on-failure, PORT={spec.port}) on {endpoint}",
            f"wait up to {spec.ready_timeout_s:g}s for {endpoint}/ready",
        ]
        manifests = [{"kind": "Dockerfile", "name": image, "text": render_dockerfile(spec, self.base_image)}]
        return DeployPlan(target=self.kind, actions=actions, manifests=manifests)

    def _check(self, spec: DeploySpec) -> None:
        validate_name(spec.name)
        if spec.replicas != 1:
            raise UsageError(f"the docker target runs one container per deployment, not {spec.replicas}",
                             hint="use --replicas 1, or the k8s target for several replicas")
        runtime_requirements(spec.model.flavor)

    def apply(self, spec: DeploySpec) -> DeploymentStatus:
        """Build the image, replace the container (stop-then-start) and wait until it is ready."""
        import docker

        self._check(spec)
        client = self._client()
        image = self.build(spec)
        name = container_name(spec.name)
        labels = {**self._labels(spec), f"{LABEL}.deployment": spec.name, f"{LABEL}.port": str(spec.port),
                  f"{LABEL}.host": self.host, f"{LABEL}.alias": spec.model.alias or ""}
        current = self._container(spec.name)
        if current is not None and current.image.id == image.id and current.status == "running" \
                and current.labels.get(f"{LABEL}.config-hash") == labels[f"{LABEL}.config-hash"]:
            self._wait_ready(current, spec)  # the same image and configuration: nothing to change
            status = self.status(spec.name)
            assert status is not None
            return status
        from mlctl.core.ports import ensure_port_free

        if current is None or current.labels.get(f"{LABEL}.port") != str(spec.port):  # a new port: free?
            ensure_port_free(self.host, spec.port, hint="pass --port with a free port, or --port 0 to pick one")
        previous = None
        with self._engine(f"replace container {name}"):
            stale = self._by_name(name + "-previous")
            if stale is not None:
                stale.remove(force=True)
            if current is not None:
                current.stop(timeout=10)
                current.rename(name + "-previous")
                previous = current
            kwargs: dict[str, Any] = {}
            if _nano_cpus(spec.cpu):
                kwargs["nano_cpus"] = _nano_cpus(spec.cpu)
            if _mem_bytes(spec.memory):
                kwargs["mem_limit"] = _mem_bytes(spec.memory)
            try:
                container = client.containers.run(
                    image.id, name=name, detach=True, network_mode="host", labels=labels,
                    environment={**spec.env, "PORT": str(spec.port), "HOST": self.host},
                    restart_policy={"Name": "on-failure", "MaximumRetryCount": 3}, **kwargs)
            except docker.errors.APIError:
                self._restore(previous, name)
                raise
        try:
            self._wait_ready(container, spec)
        except BaseException:
            with self._engine(f"remove the failed container {name}"):
                container.remove(force=True)
                self._restore(previous, name)
            raise
        if previous is not None:
            with self._engine(f"remove the previous container of {spec.name}"):
                previous.remove(force=True)
        status = self.status(spec.name)
        assert status is not None
        return status

    def _by_name(self, full_name: str) -> Any:
        import docker

        try:
            return self._client().containers.get(full_name)
        except docker.errors.NotFound:
            return None

    def _restore(self, previous: Any, name: str) -> None:
        """Put the previous container back under its name and start it again."""
        if previous is None:
            return
        previous.rename(name)
        previous.start()

    def _wait_ready(self, container: Any, spec: DeploySpec) -> None:
        self._await_ready(container, spec.name, self.host, spec.port, spec.ready_timeout_s)

    def _await_ready(self, container: Any, deployment: str, host: str, port: int | str, timeout_s: float) -> None:
        url = f"http://{host}:{port}/ready"
        deadline = time.monotonic() + timeout_s
        while True:
            with self._engine(f"inspect container {container.name}"):
                container.reload()
            state = container.attrs.get("State", {})
            if http_ready(url) or (state.get("Health") or {}).get("Status") == "healthy":
                return
            if state.get("Status") in ("exited", "dead") or state.get("Restarting"):
                raise OperationFailed(
                    f"container {container.name} stopped while starting (exit code {state.get('ExitCode')}): "
                    + self._tail(container, 5),
                    hint=f"see `mlctl deploy logs {deployment}`")
            if time.monotonic() >= deadline:
                raise OperationFailed(
                    f"container {container.name} not ready after {timeout_s:.0f}s: "
                    + self._tail(container, 5),
                    hint=f"see `mlctl deploy logs {deployment}`; raise --timeout for slow models")
            time.sleep(0.2)

    def _tail(self, container: Any, n: int) -> str:
        with contextlib.suppress(Exception):
            text = container.logs(tail=n).decode("utf-8", errors="replace")
            return " | ".join(text.strip().splitlines()[-n:]) or "(no output)"
        return "(no logs)"

    def status(self, name: str) -> DeploymentStatus | None:
        container = self._container(name)
        if container is None:
            return None
        labels = container.labels
        state = container.attrs.get("State", {})
        running = state.get("Status") == "running"
        port = labels.get(f"{LABEL}.port")
        host = labels.get(f"{LABEL}.host", self.host)
        ready = running and port is not None and http_ready(f"http://{host}:{port}/ready")
        health_status = (state.get("Health") or {}).get("Status")
        health = "healthy" if ready else "down" if not running or health_status == "unhealthy" else "unknown"
        # scaled to 0: stopped on purpose (a graceful stop exits 0), not crashed
        scaled_down = not running and state.get("Status") == "exited" and state.get("ExitCode") == 0
        return DeploymentStatus(
            name=name,
            target=self.kind,
            model=labels.get(f"{LABEL}.model", name),
            version=labels.get(f"{LABEL}.version", "?"),
            alias=labels.get(f"{LABEL}.alias") or None,
            replicas_desired=0 if scaled_down else 1,
            replicas_ready=1 if ready else 0,
            endpoint=f"http://{host}:{port}" if running and port else None,
            health=health,
            digest=container.image.id,
            details={
                "container": container.name,
                "container_id": container.id,
                "image": (container.image.tags or [None])[0],
                "state": state.get("Status"),
                "docker_health": health_status,
                "restart_count": container.attrs.get("RestartCount", 0),
                "model_sha256": labels.get(f"{LABEL}.model-sha256"),
                "config_hash": labels.get(f"{LABEL}.config-hash"),
            },
        )

    def stop(self, name: str) -> bool:
        """Stop and remove the container (SIGTERM, 10 s, then SIGKILL); False when there was none."""
        container = self._container(name)
        if container is None:
            return False
        import docker

        with self._engine(f"remove container {container.name}"):
            try:
                container.stop(timeout=10)
                container.remove(force=True)
            except docker.errors.NotFound:
                return False
        return True

    def scale(self, name: str, replicas: int, *, timeout_s: float = 60.0) -> DeploymentStatus:
        """0 or 1 replica: stop the container (kept, so it can start again) or start it and wait until ready.

        More is a :class:`UsageError`: the container serves on the host network, and two servers
        cannot bind one port (the local target shares one socket among N processes; the k8s target
        runs N pods behind a Service). Stopping is graceful (SIGTERM: in-flight requests finish).
        """
        validate_replicas(replicas)
        if replicas > 1:
            raise UsageError(
                f"the docker target runs one container per deployment on the host network, so {replicas} "
                "replicas cannot share its port",
                hint="use 0 or 1 here; the local target (N processes on one socket) or the k8s target "
                "(N pods behind a Service) run several")
        container = self._container(name)
        if container is None:
            raise NotFound(f"no container for deployment {name!r} on {self.base_url}",
                           hint="it was stopped (stopping removes the container) or never deployed here")
        labels = container.labels
        running = container.attrs.get("State", {}).get("Status") in ("running", "restarting")
        if replicas == 0 and running:
            with self._engine(f"stop container {container.name}"):
                container.stop(timeout=10)
        elif replicas == 1 and not running:
            from mlctl.core.ports import ensure_port_free

            port = labels.get(f"{LABEL}.port", "")
            host = labels.get(f"{LABEL}.host", self.host)
            ensure_port_free(host, int(port), hint=f"free port {port}, or deploy {name} again with another --port")
            with self._engine(f"start container {container.name}"):
                container.start()
            self._await_ready(container, name, host, port, timeout_s)
        status = self.status(name)
        assert status is not None
        return status

    def logs(self, name: str, tail: int = 100) -> str:
        container = self._container(name)
        if container is None:
            raise NotFound(f"no container for deployment {name!r} on {self.base_url}",
                           hint="it was stopped (stopping removes the container) or never deployed here")
        with self._engine(f"read the logs of {container.name}"):
            text: str = container.logs(tail=tail, stdout=True, stderr=True).decode("utf-8", errors="replace")
        return text

    def list(self) -> list[str]:
        """Names of the deployments with a container on this engine."""
        with self._engine("list containers"):
            found = self._client().containers.list(all=True, filters={"label": f"{LABEL}.managed-by=mlctl"})
        return sorted({c.labels.get(f"{LABEL}.deployment") for c in found if c.labels.get(f"{LABEL}.deployment")})


def _log_line(chunk: Any) -> str:
    if isinstance(chunk, dict):
        return str(chunk.get("stream") or chunk.get("error") or chunk.get("status") or "").rstrip("\n")
    return str(chunk).rstrip("\n")


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text[-300:]
