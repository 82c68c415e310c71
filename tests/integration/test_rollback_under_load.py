"""Rollback never takes the service down (issue 8): real supervisor and servers, a constant load.

The releases library runs for real (state store, local target, supervisor, model servers); only
the registry is an in-memory stand-in, since the rollback reads the artifact recorded with the
release and the registry is asked only to resolve ``churn:N`` and to move the alias.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from mlctl.core.config import load_config
from mlctl.core.errors import OperationFailed
from mlctl.core.proc import free_port
from mlctl.lifecycle import registry, releases
from mlctl.lifecycle.artifact import ModelArtifact
from mlctl.lifecycle.deploy.local import LocalTarget
from mlctl.status import project_status
from tests.integration.test_local_deploy import FEATURES, get_json, make_artifact

RATE = 200.0  # requests per second, spread over the load's threads
THREADS = 4
NAME = "dpx"


class Load:
    """A paced, bounded client load on ``url``: about ``rate`` requests a second until stopped."""

    def __init__(self, url: str, rate: float = RATE, threads: int = THREADS) -> None:
        self.url = url
        self.interval = threads / rate
        self.done = threading.Event()
        self.lock = threading.Lock()
        self.ok = 0
        self.failures: list[str] = []
        self.versions: list[str] = []  # in the order answers came
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]
        self.started = self.stopped = 0.0
        body = {"records": [dict(zip(FEATURES, [0.5, -0.2, 0.1, 0.0], strict=True))]}
        self.body = json.dumps(body).encode()
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def __enter__(self) -> Load:
        self.started = time.monotonic()
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if not self.done.is_set():
            self.done.set()
            for t in self.threads:
                t.join(timeout=60)
            self.stopped = time.monotonic()

    def _run(self, index: int) -> None:
        due = time.monotonic() + index * self.interval / THREADS
        while not self.done.is_set():
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            due = max(due + self.interval, time.monotonic() - self.interval)  # no catch-up bursts
            req = urllib.request.Request(self.url, data=self.body, headers={"Content-Type": "application/json"})
            try:
                with self.opener.open(req, timeout=30) as resp:
                    version = json.loads(resp.read())["version"]
                with self.lock:
                    self.ok += 1
                    self.versions.append(version)
            except (urllib.error.URLError, OSError, ValueError, KeyError) as exc:
                with self.lock:
                    self.failures.append(repr(exc))

    @property
    def rate(self) -> float:
        return (self.ok + len(self.failures)) / max(1e-9, (self.stopped or time.monotonic()) - self.started)


@pytest.fixture
def env(project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """A project whose registry knows churn 1 and 2 (real skops files); every deployment stopped after."""
    monkeypatch.chdir(project)
    models = tmp_path / "models"
    artifacts = {"1": make_artifact(models, "1", 10), "2": make_artifact(models, "2", 20)}
    aliases = {"champion": "1"}

    def resolve(ref: str, loaded: object, *, dest: Path | None = None) -> ModelArtifact:
        name, alias, version = registry.parse_ref(ref)
        return artifacts[version or aliases[alias or "champion"]]

    def set_alias(name: str, alias: str, version: str, loaded: object) -> str | None:
        before = aliases.get(alias)
        aliases[alias] = version
        return before

    monkeypatch.setattr(registry, "resolve_model", resolve)
    monkeypatch.setattr(registry, "set_alias", set_alias)
    loaded = load_config()
    target = LocalTarget(loaded.state_dir)
    try:
        yield {"loaded": loaded, "artifacts": artifacts, "aliases": aliases, "target": target}
    finally:
        for name in target.list():
            target.stop(name)


def deploy_v1_on_a_then_v2_on_b(env: dict[str, Any]) -> tuple[int, int]:
    """The issue's set-up: v1 on port A, then v2 of the same deployment on port B."""
    loaded = env["loaded"]
    port_a, port_b = free_port(), free_port()
    first = releases.deploy("churn:1", loaded, name=NAME, port=port_a, replicas=2)
    assert first.status is not None and first.status.health == "healthy"
    env["aliases"]["champion"] = "2"
    second = releases.deploy("churn:2", loaded, name=NAME, port=port_b, replicas=2)
    assert second.status is not None and second.status.endpoint == f"http://127.0.0.1:{port_b}"
    return port_a, port_b


def serving(loaded: Any) -> dict[str, Any]:
    (row,) = [d for d in project_status(loaded).deployments if d["name"] == NAME]
    return row


def test_a_failed_rollback_under_load_keeps_the_newer_version_serving(env: dict[str, Any]) -> None:
    loaded = env["loaded"]
    _, port_b = deploy_v1_on_a_then_v2_on_b(env)
    endpoint = f"http://127.0.0.1:{port_b}"
    older = Path(env["artifacts"]["1"].path)
    data = bytearray(older.read_bytes())
    data[100] ^= 0xFF  # tamper with the older version's artifact, as in the issue
    older.write_bytes(bytes(data))

    with Load(f"{endpoint}/v1/predict") as load:
        time.sleep(1.0)
        with pytest.raises(OperationFailed, match=r"rollback of dpx to version 1 .*: refusing to load it; revision 2 "
                                                  r"\(churn:2\) keeps serving on port \d+") as exc:
            releases.rollback(NAME, loaded)
        time.sleep(1.0)
    assert load.failures == [], f"{len(load.failures)} failed requests (of {load.ok + len(load.failures)}), " \
                                f"first: {load.failures[:3]}"
    assert load.ok > 0 and set(load.versions) == {"2"}
    assert exc.value.details["to_release"] == 1

    assert get_json(f"{endpoint}/metadata")["version"] == "2"
    row = serving(loaded)  # what `mlctl status` shows: what serves, not what was asked
    assert (row["version"], row["endpoint"], row["health"]) == ("2", endpoint, "healthy")
    history = releases.list_releases(NAME, loaded)  # nothing recorded for the failed rollback
    assert [(r.revision, r.version, r.status) for r in history] == [(1, "1", "superseded"), (2, "2", "active")]
    assert env["aliases"]["champion"] == "2"
    print(f"\n[load] {load.ok} requests at {load.rate:.0f}/s, 0 failed")


def test_a_rollback_under_load_stays_on_the_current_endpoint(env: dict[str, Any]) -> None:
    loaded = env["loaded"]
    port_a, port_b = deploy_v1_on_a_then_v2_on_b(env)
    endpoint = f"http://127.0.0.1:{port_b}"

    with Load(f"{endpoint}/v1/predict") as load:
        time.sleep(1.0)
        result = releases.rollback(NAME, loaded)
        time.sleep(1.0)
    assert load.failures == [], f"{len(load.failures)} failed requests (of {load.ok + len(load.failures)}), " \
                                f"first: {load.failures[:3]}"
    assert load.ok > 0 and set(load.versions) <= {"1", "2"} and load.versions[-1] == "1"

    assert result.status is not None and result.status.endpoint == endpoint
    assert result.release is not None and result.release.version == "1" and result.release.rollback_of == 2
    assert urlsplit(result.status.endpoint).port == port_b != port_a
    assert get_json(f"{endpoint}/metadata")["version"] == "1"
    row = serving(loaded)
    assert (row["version"], row["endpoint"], row["health"]) == ("1", endpoint, "healthy")
    assert env["aliases"]["champion"] == "1"
    print(f"\n[load] {load.ok} requests at {load.rate:.0f}/s, 0 failed")
