"""The docker deploy target against a real Docker engine (a private dockerd from the harness).

The whole path: build an image with the model baked in (hermetic: wheels prepared on the host,
network off during the build) -> run it on the host network -> POST /v1/predict answers with the
model's version -> deploy a second version (the container is replaced and the new version
answers) -> the logs hold the server's start line -> stop is idempotent. Also: the same deploy
twice changes nothing, a failing build reports the build log's last lines, and `mlctl deploy
--target docker` works from a regular (not editable) install of mlctl, as a user's `pip install`
gives it: no source checkout, no wheelhouse handed over.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier

from mlctl.core.errors import NotFound, OperationFailed
from mlctl.core.proc import free_port
from mlctl.engines import Service
from mlctl.lifecycle.artifact import ModelArtifact
from mlctl.lifecycle.deploy.base import DeploySpec
from mlctl.lifecycle.deploy.docker import (
    DockerTarget,
    cache_dir,
    dependency_wheels,
    mlctl_wheel,
    runtime_requirements,
)
from mlctl.lifecycle.serialize import save_model
from tests.integration.test_packaging import install_in_fresh_venv

FEATURES = [f"f{i}" for i in range(4)]
SIGNATURE = {"inputs": [{"name": f, "type": "double"} for f in FEATURES],
             "outputs": [{"name": "label", "type": "long"}]}
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture(scope="module")
def wheel_cache() -> Path:
    """The real cache (~/.cache/mlctl), resolved before the per-test HOME is swapped in."""
    return cache_dir()


@pytest.fixture(scope="module")
def wheelhouse(wheel_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """mlctl's wheel and its dependencies' frozen for this module (the checkout may change meanwhile:
    other edits would give a new mlctl wheel, hence a new image, between two deploys)."""
    folder = tmp_path_factory.mktemp("docker-wheelhouse")
    for wheel in [mlctl_wheel(wheel_cache), *dependency_wheels(runtime_requirements("sklearn"), wheel_cache)]:
        (folder / wheel.name).hardlink_to(wheel)
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ModelArtifact]:
    folder = tmp_path_factory.mktemp("docker-models")
    rng = np.random.default_rng(7)
    x = rng.normal(size=(300, 4))
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int)
    out = {}
    for version, trees in (("1", 5), ("2", 9)):
        estimator = RandomForestClassifier(n_estimators=trees, max_depth=4, random_state=int(version)).fit(x, y)
        path = folder / f"iris-v{version}.skops"
        sha = save_model(estimator, path)
        out[version] = ModelArtifact("iris", version, "champion", path, sha, "sklearn", SIGNATURE)
    return out


@pytest.fixture
def target(docker_engine: Service, docker_base_image: str, wheelhouse: Path) -> Iterator[DockerTarget]:
    t = DockerTarget(base_url=docker_engine.url, base_image=docker_base_image, wheelhouse=wheelhouse)
    try:
        yield t
    finally:
        for name in t.list():
            t.stop(name)
        t.close()


def _predict(endpoint: str, rows: list[list[float]]) -> dict:
    body = json.dumps({"records": [dict(zip(FEATURES, row, strict=True)) for row in rows]}).encode()
    request = urllib.request.Request(endpoint + "/v1/predict", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    with _NO_PROXY.open(request, timeout=10) as resp:
        assert resp.status == 200
        return json.loads(resp.read())


def test_build_run_predict_replace_logs_stop(target: DockerTarget, models: dict[str, ModelArtifact]) -> None:
    import docker

    port = free_port()
    spec1 = DeploySpec("iris-api", models["1"], port=port, ready_timeout_s=120)
    first = target.apply(spec1)
    assert first.target == "docker" and first.health == "healthy" and first.replicas_ready == 1
    assert first.endpoint == f"http://127.0.0.1:{port}"
    assert first.version == "1" and first.alias == "champion" and first.digest and first.digest.startswith("sha256:")
    answer = _predict(first.endpoint, [[1.0, 1.0, 0.0, 0.0], [-2.0, -1.0, 0.0, 0.0]])
    assert answer["model"] == "iris" and answer["version"] == "1" and answer["predictions"] == [1, 0]

    client = docker.DockerClient(base_url=target.base_url)
    try:
        image = client.images.get("mlctl/iris:1")
        assert image.id == first.digest
        assert image.labels["dev.mlctl.model-sha256"] == models["1"].sha256
        assert image.labels["dev.mlctl.config-hash"] == spec1.config_hash()
        assert image.attrs["Config"]["User"] == "10001:10001"
        assert image.attrs["Config"]["Healthcheck"]["Test"][0] == "CMD"
        container = client.containers.get("mlctl-iris-api")
        assert container.attrs["HostConfig"]["NetworkMode"] == "host"
        assert container.attrs["HostConfig"]["RestartPolicy"]["Name"] == "on-failure"
        first_id = container.id

        # the same deploy again changes nothing
        again = target.apply(spec1)
        assert again.digest == first.digest and again.details["container_id"] == first_id

        # a second version replaces the container on the same port
        second = target.apply(DeploySpec("iris-api", models["2"], port=port, ready_timeout_s=120))
        assert second.version == "2" and second.health == "healthy" and second.digest != first.digest
        assert second.details["container_id"] != first_id
        assert _predict(second.endpoint, [[1.0, 1.0, 0.0, 0.0]])["version"] == "2"
        names = sorted(c.name for c in client.containers.list(all=True, filters={"label": "dev.mlctl.managed-by"}))
        assert names == ["mlctl-iris-api"]
    finally:
        client.close()

    status = target.status("iris-api")
    assert status is not None and status.version == "2" and status.details["model_sha256"] == models["2"].sha256
    logs = target.logs("iris-api", tail=200)
    assert "serving iris version 2 at" in logs

    assert target.stop("iris-api") is True
    assert target.stop("iris-api") is False
    assert target.status("iris-api") is None
    with pytest.raises(NotFound):
        target.logs("iris-api")


def test_scale_to_zero_and_back(target: DockerTarget, models: dict[str, ModelArtifact]) -> None:
    """0 stops the container gracefully and keeps it; 1 starts it again on its port; more is refused."""
    from mlctl.core.errors import UsageError

    port = free_port()
    first = target.apply(DeploySpec("iris-scale", models["1"], port=port, ready_timeout_s=120))
    assert first.replicas_ready == 1
    with pytest.raises(UsageError, match="cannot share its port"):
        target.scale("iris-scale", 2)
    down = target.scale("iris-scale", 0)
    assert (down.replicas_desired, down.replicas_ready, down.health, down.endpoint) == (0, 0, "down", None)
    assert down.details["container_id"] == first.details["container_id"]  # kept, not removed
    up = target.scale("iris-scale", 1, timeout_s=120)
    assert (up.replicas_desired, up.replicas_ready, up.health) == (1, 1, "healthy")
    assert _predict(up.endpoint, [[1.0, 1.0, 0.0, 0.0]])["version"] == "1"
    with pytest.raises(NotFound):
        target.scale("no-such-deployment", 1)


def test_failed_build_reports_the_last_log_lines(docker_engine: Service, docker_base_image: str,
                                                 wheel_cache: Path, models: dict[str, ModelArtifact],
                                                 tmp_path: Path) -> None:
    # a wheelhouse with mlctl's wheel but none of its dependencies: pip in the image cannot install
    wheelhouse = tmp_path / "wheels"
    wheelhouse.mkdir()
    own = mlctl_wheel(wheel_cache)
    (wheelhouse / own.name).write_bytes(own.read_bytes())
    target = DockerTarget(base_url=docker_engine.url, base_image=docker_base_image, wheelhouse=wheelhouse)
    spec = DeploySpec("broken-api", models["1"], port=free_port(), ready_timeout_s=30)
    with pytest.raises(OperationFailed) as caught:
        target.apply(spec)
    assert "building mlctl/iris:1 failed" in caught.value.message
    assert "No matching distribution" in caught.value.message or "Could not find a version" in caught.value.message
    assert target.status("broken-api") is None


def test_missing_base_image_is_reported_without_a_pull(docker_engine: Service, models: dict[str, ModelArtifact],
                                                       tmp_path: Path) -> None:
    target = DockerTarget(base_url=docker_engine.url, base_image="local/never-built:1", wheelhouse=tmp_path)
    with pytest.raises(OperationFailed, match="local/never-built:1 is not in the Docker engine") as caught:
        target.apply(DeploySpec("no-base", models["1"], port=free_port()))
    # a command to run, not a Python function to call
    assert (f"`python -m mlctl.lifecycle.deploy.docker_base_image --docker {docker_engine.url} "
            "--image local/never-built:1`") in (caught.value.hint or "")


# --------------------------------------------------------------------------- from a regular install


@pytest.fixture(scope="module")
def installed_bin(wheel_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin folder of a fresh venv with mlctl installed (not editable) from a wheel of this checkout."""
    return install_in_fresh_venv(mlctl_wheel(wheel_cache), tmp_path_factory.mktemp("installed") / "venv")


def _cli(bin_dir: Path, *args: str, cwd: Path, env: dict[str, str], timeout: float = 300) -> dict:
    result = subprocess.run([str(bin_dir / "mlctl"), *args, "-o", "json"], cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=timeout)
    assert result.returncode == 0, f"mlctl {' '.join(args)} failed ({result.returncode}): {result.stderr[-2000:]}"
    return json.loads(result.stdout)


@pytest.mark.slow
def test_cli_deploys_to_docker_from_a_regular_install(installed_bin: Path, docker_engine: Service,
                                                      docker_base_image: str, wheel_cache: Path,
                                                      tmp_path: Path) -> None:
    started = time.monotonic()
    project = tmp_path / "churn-project"
    (project / "data").mkdir(parents=True)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 4)).round(4)
    rows = [",".join(map(str, [*r, int(r[0] + 0.5 * r[1] > 0)])) for r in x]
    (project / "data" / "churn.csv").write_text("f0,f1,f2,f3,label\n" + "\n".join(rows) + "\n")
    (project / "mlctl.yaml").write_text(
        "project:\n  name: churn-project\n"
        "train:\n  data: data/churn.csv\n  target: label\n  task: classification\n  model: random_forest\n"
        "  params: {n_estimators: 5, max_depth: 3}\n  registered_model: churn\n")
    # the installed CLI, as a user runs it: no PYTHONPATH, the cwd outside the checkout; the real
    # cache (so the wheels made once are reused by later sessions) and the harness's engine
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(MLCTL_SERVICES__DOCKER=docker_engine.url, MLCTL_CACHE_DIR=str(wheel_cache))
    probe = subprocess.run(
        [str(installed_bin / "python"), "-c", "import json, mlctl; from mlctl.lifecycle.deploy import docker_wheels "
         "as w; print(json.dumps([mlctl.__file__, w.source_root() is None, w.installed_mlctl() is not None]))"],
        cwd=project, env=env, capture_output=True, text=True, check=True)
    where, no_checkout, installed = json.loads(probe.stdout)
    assert where.startswith(str(installed_bin.parent)) and no_checkout and installed

    trained = _cli(installed_bin, "train", cwd=project, env=env)
    assert trained["registered"]["name"] == "churn" and trained["registered"]["version"] == "1"
    port = free_port()
    try:
        deployed = _cli(installed_bin, "deploy", "churn:1", "--target", "docker", "--port", str(port),
                        "--timeout", "120", cwd=project, env=env)
        status = deployed["status"]
        assert deployed["target"] == "docker" and status["health"] == "healthy" and status["version"] == "1"
        assert status["endpoint"] == f"http://127.0.0.1:{port}" and status["digest"].startswith("sha256:")
        answer = _predict(status["endpoint"], [[1.0, 1.0, 0.0, 0.0], [-2.0, -1.0, 0.0, 0.0]])
        assert answer["model"] == "churn" and answer["version"] == "1" and answer["predictions"] == [1, 0]
        stopped = _cli(installed_bin, "deploy", "stop", "churn", cwd=project, env=env)
        assert stopped["stopped"] is True
    finally:
        leftover = DockerTarget(base_url=docker_engine.url)
        leftover.stop("churn")
        leftover.close()
    print(f"\n[docker] train + deploy + predict + stop from a regular install: {time.monotonic() - started:.1f}s")
