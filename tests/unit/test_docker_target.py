"""The docker deploy target without an engine: Dockerfile, plan, build context, requirements, errors."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from mlctl.core.errors import NotFound, ServiceUnavailable, UsageError, exit_code_for
from mlctl.lifecycle.artifact import ModelArtifact
from mlctl.lifecycle.deploy.base import DeploySpec
from mlctl.lifecycle.deploy.docker import (
    DEFAULT_BASE_IMAGE,
    DockerTarget,
    _mem_bytes,
    _nano_cpus,
    build_context,
    cache_dir,
    container_name,
    mlctl_wheel,
    render_dockerfile,
    runtime_requirements,
)

SHA = "0123456789abcdef" * 4


def _spec(tmp_path: Path, version: str = "3", **kwargs: object) -> DeploySpec:
    model_file = tmp_path / "models" / "fraud.skops"
    model_file.parent.mkdir(parents=True, exist_ok=True)
    model_file.write_bytes(b"model bytes")
    signature = {"inputs": [{"name": f"f{i}", "type": "double"} for i in range(4)],
                 "outputs": [{"name": "label", "type": "long"}]}
    model = ModelArtifact("Fraud Model", version, "champion", model_file, SHA, "sklearn", signature)
    return DeploySpec("fraud-api", model, **kwargs)  # type: ignore[arg-type]


def _instructions(text: str) -> list[str]:
    """Dockerfile instructions with continuation lines joined, comments dropped."""
    out: list[str] = []
    pending = ""
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line.rstrip("\\").strip() + " "
        if not line.rstrip().endswith("\\"):
            out.append(pending.strip())
            pending = ""
    return out


def test_dockerfile_runs_the_server_as_non_root_with_a_healthcheck(tmp_path: Path) -> None:
    text = render_dockerfile(_spec(tmp_path, port=8123), "local/python:3.11-bookworm")
    lines = _instructions(text)
    assert "{{" not in text
    froms = [line for line in lines if line.startswith("FROM ")]
    assert froms == ["FROM local/python:3.11-bookworm AS build", "FROM local/python:3.11-bookworm"]
    runtime = lines[lines.index(froms[1]):]
    user = [line for line in runtime if line.startswith("USER ")]
    assert user == ["USER 10001:10001"]
    # the server command comes after USER, so it never runs as root
    cmd = [line for line in runtime if line.startswith("CMD ")]
    assert runtime.index(user[0]) < runtime.index(cmd[0])
    assert cmd[0] == ('CMD exec python -m mlctl.serving --artifact /srv/model/artifact.json '
                      '--host "${HOST}" --port "${PORT}"')
    health = [line for line in runtime if line.startswith("HEALTHCHECK ")]
    assert len(health) == 1 and "urllib.request.urlopen" in health[0] and "/health" in health[0]
    assert any(line.startswith("ENV ") and "PORT=8123" in line and "HOST=0.0.0.0" in line for line in runtime)
    assert "EXPOSE 8123" in runtime
    # hermetic: packages only from the wheelhouse
    installs = [line for line in lines if "pip install" in line]
    assert installs and all("--no-index" in line for line in installs)
    assert 'dev.mlctl.model="Fraud Model"' in text and 'dev.mlctl.version="3"' in text


def test_dockerfile_label_text_cannot_break_out_of_its_quotes(tmp_path: Path) -> None:
    spec = _spec(tmp_path, version='1"\nRUN rm -rf /')
    text = render_dockerfile(spec)
    assert "\nRUN rm -rf /" not in text
    assert 'dev.mlctl.version="1RUN rm -rf /"' in text


def test_plan_lists_the_steps_and_the_dockerfile_without_an_engine(tmp_path: Path) -> None:
    target = DockerTarget(base_url="unix:///nonexistent/docker.sock", cache=tmp_path / "cache")
    plan = target.plan(_spec(tmp_path, port=8123))
    assert plan.target == "docker"
    assert any("build image mlctl/fraud-model:3" in action for action in plan.actions)
    assert any("mlctl-fraud-api" in action and "http://127.0.0.1:8123" in action for action in plan.actions)
    assert plan.manifests[0]["kind"] == "Dockerfile"
    assert plan.manifests[0]["name"] == "mlctl/fraud-model:3"
    assert plan.manifests[0]["text"] == render_dockerfile(_spec(tmp_path, port=8123), DEFAULT_BASE_IMAGE)
    json.dumps(plan.manifests)  # -o json prints it


def test_plan_refuses_replicas_and_bad_names(tmp_path: Path) -> None:
    target = DockerTarget(base_url="unix:///nonexistent/docker.sock")
    with pytest.raises(UsageError, match="one container"):
        target.plan(_spec(tmp_path, replicas=2))
    spec = _spec(tmp_path)
    with pytest.raises(UsageError, match="invalid deployment name"):
        target.plan(DeploySpec("Bad_Name", spec.model))


def test_container_names_and_resource_conversion() -> None:
    assert container_name("fraud-api") == "mlctl-fraud-api"
    assert _nano_cpus("500m") == 500_000_000 and _nano_cpus("2") == 2_000_000_000 and _nano_cpus("x") is None
    assert _mem_bytes("512Mi") == 512 * 2**20 and _mem_bytes("1G") == 10**9 and _mem_bytes("1000") == 1000
    assert _mem_bytes("lots") is None


def test_runtime_requirements_are_pinned_to_this_environment() -> None:
    from importlib import metadata

    reqs = runtime_requirements("sklearn")
    names = [r.split("==")[0] for r in reqs]
    for needed in ("pydantic", "typer", "fastapi", "uvicorn[standard]", "scikit-learn", "skops", "numpy"):
        assert needed in names
    assert f"scikit-learn=={metadata.version('scikit-learn')}" in reqs
    assert "torch" not in names
    with pytest.raises(UsageError, match="flavor"):
        runtime_requirements("tensorflow")


def test_cache_dir_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MLCTL_CACHE_DIR", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("MLCTL_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "mlctl"


def test_build_context_holds_model_artifact_dockerfile_and_wheelhouse(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    wheelhouse = tmp_path / "wheelhouse"
    wheelhouse.mkdir()
    for name in ("mlctl-0.1.0-py3-none-any.whl", "numpy-2.0.0-cp311-cp311-manylinux_2_28_x86_64.whl"):
        with zipfile.ZipFile(wheelhouse / name, "w") as zf:
            zf.writestr("placeholder.txt", name)
    ctx = build_context(spec, tmp_path / "ctx", wheelhouse=wheelhouse)
    assert (ctx / "Dockerfile").read_text() == render_dockerfile(spec)
    assert (ctx / "model" / "fraud.skops").read_bytes() == b"model bytes"
    artifact = json.loads((ctx / "model" / "artifact.json").read_text())
    assert artifact["path"] == "fraud.skops"  # relative: the folder is copied into the image
    assert artifact["sha256"] == SHA and artifact["version"] == "3" and artifact["signature"]["inputs"]
    assert ModelArtifact.from_json(ctx / "model" / "artifact.json").path == (ctx / "model" / "fraud.skops").resolve()
    assert sorted(p.name for p in (ctx / "wheels" / "mlctl").iterdir()) == ["mlctl-0.1.0-py3-none-any.whl"]
    assert sorted(p.name for p in (ctx / "wheels" / "deps").iterdir()) == [
        "numpy-2.0.0-cp311-cp311-manylinux_2_28_x86_64.whl"]
    assert (ctx / "wheels" / "requirements.txt").read_text().splitlines() == runtime_requirements("sklearn")


def test_build_context_refuses_a_missing_model_file(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    spec.model.path.unlink()
    with pytest.raises(NotFound, match="model file"):
        build_context(spec, tmp_path / "ctx", wheelhouse=tmp_path)


@pytest.mark.slow
def test_mlctl_wheel_is_built_from_the_checkout_and_cached(tmp_path: Path) -> None:
    wheel = mlctl_wheel(tmp_path / "cache")
    assert wheel.name.startswith("mlctl-") and wheel.suffix == ".whl"
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    assert {"mlctl/serving/__main__.py", "mlctl/lifecycle/deploy/docker.py", "mlctl/templates/deploy/Dockerfile",
            "mlctl/commands/__init__.py"} <= names
    assert mlctl_wheel(tmp_path / "cache") == wheel  # the second call reuses it


@pytest.mark.parametrize("url", ["unix:///nonexistent/mlctl/docker.sock", "tcp://127.0.0.1:9"])
def test_unreachable_engine_is_service_unavailable_with_a_hint(tmp_path: Path, url: str) -> None:
    target = DockerTarget(base_url=url, cache=tmp_path / "cache")
    for call in (lambda: target.apply(_spec(tmp_path)), lambda: target.status("fraud-api"),
                 lambda: target.stop("fraud-api"), lambda: target.logs("fraud-api")):
        with pytest.raises(ServiceUnavailable) as caught:
            call()
        assert url in caught.value.message
        assert "dockerd" in (caught.value.hint or "") and "services.docker" in (caught.value.hint or "")
        assert exit_code_for(caught.value) == 4


def test_base_url_defaults_to_docker_host_then_the_standard_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///tmp/x.sock")
    assert DockerTarget().base_url == "unix:///tmp/x.sock"
    assert DockerTarget(base_url="tcp://127.0.0.1:2375").base_url == "tcp://127.0.0.1:2375"
    monkeypatch.delenv("DOCKER_HOST")
    assert DockerTarget().base_url == "unix:///var/run/docker.sock"


def test_get_target_builds_a_docker_target_from_services_docker(project: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from mlctl.core.config import load_config
    from mlctl.lifecycle import releases

    monkeypatch.chdir(project)
    monkeypatch.setenv("MLCTL_SERVICES__DOCKER", "unix:///run/elsewhere/docker.sock")
    monkeypatch.setenv("MLCTL_CACHE_DIR", str(project / "cache"))
    target = releases.get_target("docker", load_config())
    assert isinstance(target, DockerTarget) and target.kind == "docker"
    assert target.base_url == "unix:///run/elsewhere/docker.sock"
    # no wheelhouse to hand over: the image's wheels are made in mlctl's cache (tested in test_docker_wheels)
    assert target.wheelhouse is None and target.cache == project / "cache"


def test_a_missing_base_image_hint_names_a_command_to_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from mlctl.lifecycle.deploy.docker import base_image_hint
    from mlctl.lifecycle.deploy.docker_base_image import main

    hint = base_image_hint("unix:///run/d.sock", DEFAULT_BASE_IMAGE)
    assert "`python -m mlctl.lifecycle.deploy.docker_base_image --docker unix:///run/d.sock`" in hint
    assert "--image local/py:1`" in base_image_hint("unix:///run/d.sock", "local/py:1")
    # that command, against an engine that is not there, fails as the CLI does: message, hint, exit 4
    assert main(["--docker", f"unix://{tmp_path}/missing.sock"]) == 4
    err = capsys.readouterr().err
    assert err.startswith(f"error: the Docker engine at unix://{tmp_path}/missing.sock is unreachable")
    assert "\nhint: " in err


def test_engine_probe_and_base_image_helpers_without_an_engine(tmp_path: Path) -> None:
    from mlctl.core.probes import docker_ready
    from mlctl.engines import get_recipe, registered_engines
    from mlctl.lifecycle.deploy.docker_base_image import ensure_base_image

    assert "docker" in registered_engines()
    assert get_recipe("docker").env_var == "MLCTL_TEST_DOCKER_URL"
    assert docker_ready(f"unix://{tmp_path}/missing.sock") is False
    with pytest.raises(ServiceUnavailable, match="unreachable"):
        ensure_base_image(f"unix://{tmp_path}/missing.sock", cache=tmp_path)


def test_docker_recipe_uses_private_dirs_and_no_default_socket(tmp_path: Path) -> None:
    import shutil

    from mlctl.engines import EngineNotInstalled, get_recipe

    try:
        spec = get_recipe("docker").build(tmp_path, 0)
    except EngineNotInstalled:
        pytest.fail("dockerd is not installed: apt-get install docker.io", pytrace=False)
    try:
        argv = " ".join(spec.argv)
        run_dir = spec.info["run_dir"]
        assert spec.url == f"unix://{run_dir}/docker.sock" and "/var/run/docker.sock" not in argv
        assert f"--data-root {tmp_path}/data" in argv and f"--exec-root {run_dir}/exec" in argv
        assert f"--pidfile {run_dir}/docker.pid" in argv
        assert "--bridge=none" in spec.argv and "--iptables=false" in spec.argv
        assert len(spec.url) < 100  # unix socket paths are limited to 108 bytes
    finally:
        shutil.rmtree(spec.info["run_dir"], ignore_errors=True)


def test_scale_takes_0_or_1_and_says_why_not_more_before_asking_an_engine(tmp_path: Path) -> None:
    target = DockerTarget(base_url="unix:///nonexistent/mlctl/docker.sock", cache=tmp_path / "cache")
    with pytest.raises(UsageError, match="cannot share its port") as caught:
        target.scale("fraud-api", 2)
    assert "local target" in (caught.value.hint or "") and exit_code_for(caught.value) == 2
    for bad in (-1, 65, True):
        with pytest.raises(UsageError, match="replicas"):
            target.scale("fraud-api", bad)  # type: ignore[arg-type]
    with pytest.raises(ServiceUnavailable):  # a valid count goes to the engine
        target.scale("fraud-api", 1)
