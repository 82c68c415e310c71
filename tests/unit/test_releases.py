"""Release bookkeeping, rollback choice and target dispatch, with an in-memory target and registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlctl.core.config import load_config
from mlctl.core.errors import NotFound, UsageError
from mlctl.lifecycle import registry, releases
from mlctl.lifecycle.artifact import ModelArtifact
from mlctl.lifecycle.deploy.base import DeploymentStatus, DeployPlan, DeploySpec, DeployTarget, validate_replicas


class FakeTarget(DeployTarget):
    kind = "local"

    def __init__(self) -> None:
        self.running: dict[str, DeploySpec] = {}
        self.applied: list[str] = []

    def plan(self, spec: DeploySpec) -> DeployPlan:
        return DeployPlan("local", [f"run {spec.model.ref}"])

    def apply(self, spec: DeploySpec) -> DeploymentStatus:
        self.running[spec.name] = spec
        self.applied.append(spec.model.version)
        return self.status(spec.name)  # type: ignore[return-value]

    def status(self, name: str) -> DeploymentStatus | None:
        spec = self.running.get(name)
        if spec is None:
            return None
        return DeploymentStatus(name, "local", spec.model.name, spec.model.version, spec.model.alias,
                                spec.replicas, spec.replicas, f"http://127.0.0.1:{spec.port}", "healthy",
                                spec.model.sha256, {"updated_at": "2026-01-01T00:00:00+00:00"})

    def stop(self, name: str) -> bool:
        return self.running.pop(name, None) is not None

    def logs(self, name: str, tail: int = 100) -> str:
        return f"logs of {name}\n"

    def scale(self, name: str, replicas: int) -> DeploymentStatus:
        from dataclasses import replace

        if name not in self.running:
            raise NotFound(f"no deployment {name}")
        self.running[name] = replace(self.running[name], replicas=validate_replicas(replicas))
        return self.status(name)  # type: ignore[return-value]


@pytest.fixture
def env(project: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[FakeTarget, dict[str, str]]:
    monkeypatch.chdir(project)
    target = FakeTarget()
    aliases = {"champion": "1"}

    def resolve(ref: str, loaded: object, *, dest: Path | None = None) -> ModelArtifact:
        name, alias, version = registry.parse_ref(ref) if "@" in ref or ":" in ref else (ref, "champion", None)
        version = version or aliases[alias or "champion"]
        return ModelArtifact(name, version, alias, project / f"m{version}.skops", f"sha{version}")

    def set_alias(name: str, alias: str, version: str, loaded: object) -> str | None:
        before = aliases.get(alias)
        aliases[alias] = version
        return before

    monkeypatch.setattr(registry, "resolve_model", resolve)
    monkeypatch.setattr(registry, "set_alias", set_alias)
    monkeypatch.setattr(releases, "get_target", lambda t, loaded: target)
    return target, aliases


def test_deploy_records_numbered_releases(env: tuple[FakeTarget, dict[str, str]]) -> None:
    target, aliases = env
    loaded = load_config()
    first = releases.deploy("Churn@champion", loaded, port=9000)
    assert first.deployment == "churn" and first.release is not None and first.release.revision == 1
    aliases["champion"] = "2"
    second = releases.deploy("Churn@champion", loaded, port=9000)
    assert second.release is not None and second.release.revision == 2
    history = releases.list_releases("churn", loaded)
    assert [(r.revision, r.version, r.status) for r in history] == [(1, "1", "superseded"), (2, "2", "active")]
    assert history[1].digest == "sha2" and history[1].config_hash


def test_dry_run_records_nothing(env: tuple[FakeTarget, dict[str, str]]) -> None:
    target, _ = env
    result = releases.deploy("churn@champion", load_config(), dry_run=True)
    assert result.dry_run and result.plan is not None and result.plan.actions == ["run churn:1"]
    assert target.applied == []
    with pytest.raises(NotFound):
        releases.list_releases("churn", load_config())


def test_rollback_returns_version_and_alias(env: tuple[FakeTarget, dict[str, str]]) -> None:
    target, aliases = env
    loaded = load_config()
    releases.deploy("churn@champion", loaded)
    aliases["champion"] = "2"
    releases.deploy("churn@champion", loaded)
    plan = releases.rollback("churn", loaded, dry_run=True)
    assert plan.to_release.version == "1" and plan.release is None and target.applied == ["1", "2"]
    result = releases.rollback("churn", loaded)
    assert target.applied == ["1", "2", "1"]
    assert aliases["champion"] == "1"
    assert result.alias_moved == {"model": "churn", "alias": "champion", "from": "2", "to": "1"}
    assert result.release is not None and result.release.revision == 3 and result.release.rollback_of == 2
    assert any("version 2 (revision 2) -> version 1 (revision 1)" in c for c in result.changes)


def test_rollback_to_a_given_revision_and_bad_revisions(env: tuple[FakeTarget, dict[str, str]]) -> None:
    _, aliases = env
    loaded = load_config()
    for version in ("1", "2", "3"):
        aliases["champion"] = version
        releases.deploy("churn@champion", loaded)
    assert releases.rollback("churn", loaded, to=1).to_release.version == "1"
    with pytest.raises(NotFound, match="no revision 9"):
        releases.rollback("churn", loaded, to=9)
    with pytest.raises(UsageError, match="already the active release"):
        releases.rollback("churn", loaded, to=4)


def test_rollback_needs_an_earlier_version(env: tuple[FakeTarget, dict[str, str]]) -> None:
    releases.deploy("churn@champion", load_config())
    with pytest.raises(NotFound, match="no earlier release"):
        releases.rollback("churn", load_config())


def test_stop_logs_and_statuses(env: tuple[FakeTarget, dict[str, str]]) -> None:
    target, _ = env
    loaded = load_config()
    assert releases.deployment_statuses(loaded) == []
    releases.deploy("churn@champion", loaded)
    assert releases.logs("churn", loaded) == "logs of churn\n"
    (row,) = releases.deployment_statuses(loaded)
    assert row.name == "churn" and row.version == "1"
    assert releases.stop("churn", loaded) is True
    assert releases.stop("churn", loaded) is False
    with pytest.raises(NotFound, match="no deployment named 'other'"):
        releases.stop("other", loaded)


def test_deployment_name() -> None:
    assert releases.deployment_name("My_Model.v2") == "my-model-v2"
    with pytest.raises(UsageError):
        releases.deployment_name("___")


def test_get_target_dispatch(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project)
    loaded = load_config()
    assert releases.get_target("local", loaded).kind == "local"
    assert releases.get_target("k8s://dev/ml", loaded).kind == "k8s"
    docker = releases.get_target("docker", loaded)
    assert docker.kind == "docker" and docker.base_url == loaded.config.services.docker
    with pytest.raises(UsageError, match="unknown deploy target"):
        releases.get_target("moon", loaded)


def test_remote_statuses_probe_the_endpoint_or_ask_the_target(env: tuple[FakeTarget, dict[str, str]],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    import http.server
    import threading

    from mlctl.core.errors import ServiceUnavailable
    from mlctl.core.proc import free_port

    target, _ = env
    loaded = load_config()
    port = free_port()
    releases.deploy("churn@champion", loaded, target="docker", port=port)
    target.running.clear()  # the target no longer reports it: only the recorded row and the endpoint remain
    (row,) = releases.deployment_statuses(loaded)
    assert row.target == "docker" and row.health == "down" and row.replicas_ready == 0  # nothing listens

    class Ready(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(200 if self.path == "/ready" else 404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", port), Ready)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        (row,) = releases.deployment_statuses(loaded)
        assert row.health == "healthy" and row.replicas_ready == row.replicas_desired == 1
    finally:
        server.shutdown()
        server.server_close()

    releases.deploy("churn@champion", loaded, target="docker", port=port)
    (row,) = releases.deployment_statuses(loaded, live=True)  # asks the target itself
    assert row.health == "healthy" and "error" not in row.details

    def unreachable(t: str, loaded: object) -> FakeTarget:
        raise ServiceUnavailable("cannot reach the Docker engine")

    monkeypatch.setattr(releases, "get_target", unreachable)
    (row,) = releases.deployment_statuses(loaded, live=True)
    assert row.health == "down" and row.details["error"] == "cannot reach the Docker engine"


def test_rollback_keeps_the_current_port(env: tuple[FakeTarget, dict[str, str]]) -> None:
    """Issue 8: v1 on 9000, v2 on 9001, rollback: v1 on 9001, where the clients are."""
    target, aliases = env
    loaded = load_config()
    releases.deploy("churn@champion", loaded, port=9000)
    aliases["champion"] = "2"
    releases.deploy("churn@champion", loaded, port=9001)
    plan = releases.rollback("churn", loaded, dry_run=True)
    assert any("staying on port 9001" in c for c in plan.changes)
    result = releases.rollback("churn", loaded)
    assert target.running["churn"].port == 9001 and target.running["churn"].model.version == "1"
    assert result.status is not None and result.status.endpoint == "http://127.0.0.1:9001"
    (row,) = releases.deployment_statuses(loaded)
    assert row.endpoint == "http://127.0.0.1:9001" and row.version == "1"


def test_a_failed_rollback_records_nothing_and_moves_no_alias(env: tuple[FakeTarget, dict[str, str]],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from mlctl.core.errors import OperationFailed

    target, aliases = env
    loaded = load_config()
    releases.deploy("churn@champion", loaded)
    aliases["champion"] = "2"
    releases.deploy("churn@champion", loaded)
    applied = target.apply

    def refuse_version_1(spec: DeploySpec) -> DeploymentStatus:
        if spec.model.version == "1":
            raise OperationFailed("revision 3 failed: tampered; revision 2 (churn:2) keeps serving", hint="logs")
        return applied(spec)

    monkeypatch.setattr(target, "apply", refuse_version_1)
    with pytest.raises(OperationFailed, match=r"^rollback of churn to version 1 \(release 1\) failed: revision 3 "
                                              r"failed: tampered; revision 2 \(churn:2\) keeps serving$"):
        releases.rollback("churn", loaded)
    history = releases.list_releases("churn", loaded)
    assert [(r.revision, r.version, r.status) for r in history] == [(1, "1", "superseded"), (2, "2", "active")]
    assert aliases["champion"] == "2" and target.running["churn"].model.version == "2"


def test_a_deploy_while_another_holds_the_deployment_is_refused(env: tuple[FakeTarget, dict[str, str]]) -> None:
    import threading

    from mlctl.lifecycle.deploy.lock import DeploymentBusy, deployment_lock, lock_folder

    target, _ = env
    loaded = load_config()
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with deployment_lock(lock_folder(loaded.state_dir, "churn"), "churn", "deploy"):
            held.set()
            release.wait(30)

    t = threading.Thread(target=hold)
    t.start()
    try:
        assert held.wait(30)
        for attempt in (lambda: releases.deploy("churn@champion", loaded),
                        lambda: releases.deploy("churn@champion", loaded, port=9100)):
            with pytest.raises(DeploymentBusy, match="deployment churn is busy: pid "):
                attempt()
        assert target.applied == []
    finally:
        release.set()
        t.join()
    with pytest.raises(NotFound):  # nothing was recorded
        releases.list_releases("churn", loaded)
    assert releases.deploy("churn@champion", loaded).release is not None


def test_scale_records_the_count_for_status(env: tuple[FakeTarget, dict[str, str]]) -> None:
    target, _ = env
    loaded = load_config()
    releases.deploy("churn@champion", loaded, port=9100)
    result = releases.scale("churn", loaded, 4)
    assert (result.replicas, result.ready, result.previous, result.dry_run) == (4, 4, 1, False)
    assert target.running["churn"].replicas == 4
    assert [r.revision for r in releases.list_releases("churn", loaded)] == [1]  # scaling is not a release
    (status,) = [s for s in releases.deployment_statuses(loaded) if s.name == "churn"]
    assert status.replicas_desired == 4
    with pytest.raises(UsageError):
        releases.scale("churn", loaded, -1)
    with pytest.raises(NotFound):
        releases.scale("ghost", loaded, 1)
