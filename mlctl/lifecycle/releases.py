"""Deploy, roll back and list releases: the steps behind ``mlctl deploy``, ``rollback``, ``releases``.

Every deploy records a release in the state store: deployment name, revision (1, 2, ...), model
version, target, artifact digest, config hash, time, and the release it replaced. A rollback is a
deploy of an earlier release's artifact, recorded as a new revision, which also moves the
registry alias back to that release's version. A rollback keeps the current endpoint (port): the
target starts the older version beside the running one and switches only once it is ready, so a
failed rollback leaves the running version serving (and nothing recorded).

Deploy, rollback and stop hold the deployment's lock (:mod:`mlctl.lifecycle.deploy.lock`,
``.mlctl/deploy/NAME/deploy.lock``) from the target's change to the release record, whatever the
target: a second one at the same time fails with
:class:`~mlctl.lifecycle.deploy.lock.DeploymentBusy` naming the holder.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mlctl.core.config import LoadedConfig
from mlctl.core.errors import NotFound, UsageError
from mlctl.core.output import Result, Table, to_data
from mlctl.core.state import STATE_FILE, StateStore, utcnow
from mlctl.lifecycle.artifact import ModelArtifact
from mlctl.lifecycle.deploy.base import DeploymentStatus, DeployPlan, DeploySpec, DeployTarget
from mlctl.lifecycle.deploy.lock import deployment_lock, lock_folder


@dataclass
class Release:
    """One row of ``mlctl releases NAME``."""

    deployment: str
    revision: int
    model: str
    version: str
    alias: str | None
    target: str
    status: str  # active | superseded | failed
    created_at: str
    digest: str | None
    config_hash: str | None
    rollback_of: int | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Release:
        d = row.get("details") or {}
        return cls(row["deployment"], int(row["revision"]), row["model"], row["version"], d.get("alias"),
                   row["target"], row["status"], row["created_at"], d.get("digest"), d.get("config_hash"),
                   d.get("rollback_of"))


class ReleaseList(list[Release], Result):
    """``mlctl releases NAME``: a deployment's releases, oldest first; the table shows a short digest
    and each release's age (``--wide``: creation time, what it rolled back, the whole SHA-256)."""

    columns = ("rev", "model", "target", "status", "age", "digest")
    wide_columns = ("created", "rollback of", "sha256")
    fit = True

    def document(self) -> list[dict[str, Any]]:
        return [to_data(r) for r in self]

    def tables(self) -> list[Table]:
        from mlctl.core.durations import age

        rows = [{"rev": r.revision, "model": f"{r.model}:{r.version}" + (f"@{r.alias}" if r.alias else ""),
                 "target": r.target, "status": r.status, "age": age(r.created_at), "digest": (r.digest or "")[:7],
                 "created": r.created_at[:19].replace("T", " "), "rollback of": r.rollback_of,
                 "sha256": r.digest} for r in self]
        name = self[0].deployment if self else ""
        return [Table(rows, f"releases of {name}", self.columns, self.wide_columns, self.fit)]


@dataclass
class DeployResult(Result):
    """Stable keys of ``mlctl deploy -o json``."""

    deployment: str
    target: str
    dry_run: bool
    plan: DeployPlan | None = None
    status: DeploymentStatus | None = None
    release: Release | None = None

    def document(self) -> dict[str, Any]:
        return to_data(self)

    def tables(self) -> list[Table]:
        if self.plan is not None:
            return [Table([{"step": i + 1, "action": a} for i, a in enumerate(self.plan.actions)],
                          title=f"plan for {self.deployment} on {self.target} (dry run)"),
                    *(Table(m, fmt="yaml") for m in self.plan.manifests)]
        s, rel = self.status, self.release
        if s is None or rel is None:
            return [Table(self.document())]
        return [Table({"deployment": s.name, "model": f"{s.model}:{s.version}" + (f" (@{s.alias})" if s.alias else ""),
                       "target": s.target, "revision": rel.revision,
                       "replicas": f"{s.replicas_ready}/{s.replicas_desired} ready", "endpoint": s.endpoint,
                       "health": s.health}, title="deployed")]


@dataclass
class RollbackResult(Result):
    """Stable keys of ``mlctl rollback -o json``."""

    deployment: str
    dry_run: bool
    from_release: Release
    to_release: Release
    alias_moved: dict[str, Any] | None = None
    status: DeploymentStatus | None = None
    release: Release | None = None
    changes: list[str] = field(default_factory=list)

    def document(self) -> dict[str, Any]:
        return to_data(self)

    def tables(self) -> list[Table]:
        verb = "would change" if self.dry_run else "changed"
        return [Table([{"change": c} for c in self.changes], title=f"rollback of {self.deployment}: {verb}")]

    def notes(self) -> list[str]:
        if self.release is None:
            return []
        return [f"{self.deployment} is now revision {self.release.revision} (version {self.to_release.version})"]


@dataclass
class StopResult(Result):
    """``mlctl deploy stop NAME``: whether servers were stopped (a dry run stops nothing)."""

    deployment: str
    stopped: bool
    dry_run: bool

    def document(self) -> dict[str, Any]:
        return {"deployment": self.deployment, "stopped": self.stopped, "dry_run": self.dry_run}

    def tables(self) -> list[Table]:
        return [Table(self.document())] if self.dry_run else []

    def notes(self) -> list[str]:
        if self.dry_run:
            return []
        return [f"{self.deployment}: {'stopped' if self.stopped else 'was not running'}"]


@dataclass
class ScaleResult(Result):
    """Stable keys of ``mlctl deploy scale NAME --replicas N -o json``: ``name``, ``target``, ``replicas``
    (asked for), ``ready`` (ready now; None in a dry run), ``from`` (the count before; None when unknown),
    ``dry_run``."""

    name: str
    target: str
    replicas: int
    ready: int | None
    previous: int | None
    dry_run: bool

    def document(self) -> dict[str, Any]:
        return {"name": self.name, "target": self.target, "replicas": self.replicas, "ready": self.ready,
                "from": self.previous, "dry_run": self.dry_run}

    def tables(self) -> list[Table]:
        return [Table(self.document())] if self.dry_run else []

    def notes(self) -> list[str]:
        if self.dry_run:
            return []
        return [f"{self.name}: {self.ready}/{self.replicas} replica(s) ready on {self.target}"]


@dataclass
class DeploymentLogs(Result):
    """``mlctl deploy logs NAME``: the last lines of its server logs (the table view is the text itself)."""

    deployment: str
    logs: str

    def document(self) -> dict[str, Any]:
        return {"deployment": self.deployment, "logs": self.logs}

    def tables(self) -> list[Table]:
        return [Table(self.logs, fmt="text")]


def deployment_name(raw: str) -> str:
    """A DNS-1123 label from a model or deployment name.

    >>> deployment_name("Fraud_Model")
    'fraud-model'
    """
    name = re.sub(r"[^a-z0-9-]+", "-", raw.lower()).strip("-")[:63].strip("-")
    if not name:
        raise UsageError(f"cannot make a deployment name from {raw!r}", hint="pass --name")
    return name


def get_target(target: str, loaded: LoadedConfig) -> DeployTarget:
    """The DeployTarget for a ``deploy.target`` value."""
    if target == "local":
        from mlctl.lifecycle.deploy.local import LocalTarget

        return LocalTarget(loaded.state_dir)
    if target.startswith("k8s://"):
        from mlctl.lifecycle.deploy.k8s import K8sTarget

        return K8sTarget.from_url(target)
    if target == "docker":
        from mlctl.core.paths import cache_root
        from mlctl.lifecycle.deploy.docker import DockerTarget

        # the image's wheels: mlctl's own (from its checkout or its installed distribution) and its
        # dependencies' (from this environment, else downloaded once), prepared in mlctl's cache
        return DockerTarget(base_url=loaded.config.services.docker, cache=cache_root())
    raise UsageError(f"unknown deploy target {target!r}", hint="local, docker or k8s://CONTEXT/NAMESPACE")


def _store(loaded: LoadedConfig) -> StateStore:
    return StateStore(loaded.state_dir / STATE_FILE)


def _rows(store: StateStore, deployment: str) -> list[dict[str, Any]]:
    return store.select("releases", {"deployment": deployment}, order_by="revision")


def _record(store: StateStore, spec: DeploySpec, target: str, status: DeploymentStatus,
            rollback_of: int | None = None) -> Release:
    with store.transaction() as tx:
        rows = [dict(r) for r in tx.execute(
            "SELECT id, revision FROM releases WHERE deployment = ? ORDER BY revision DESC LIMIT 1", (spec.name,))]
        previous = rows[0] if rows else None
        revision = (previous["revision"] if previous else 0) + 1
        tx.execute("UPDATE releases SET status = 'superseded' WHERE deployment = ? AND status = 'active'",
                   (spec.name,))
        details = {"alias": spec.model.alias, "digest": status.digest or spec.model.sha256,
                   "config_hash": spec.config_hash(), "artifact": _artifact_dict(spec.model),
                   "replicas": spec.replicas, "port": spec.port, "endpoint": status.endpoint,
                   "rollback_of": rollback_of}
        now = utcnow()
        tx.execute(
            "INSERT INTO releases (model, version, target, status, created_at, previous_id, details, deployment, "
            "revision) VALUES (?, ?, ?, 'active', ?, ?, ?, ?, ?)",
            (spec.model.name, spec.model.version, target, now, previous["id"] if previous else None,
             StateStore.encode_row({"details": details})["details"], spec.name, revision))
        tx.execute(
            "INSERT OR REPLACE INTO deployments (name, model, version, target, status, url, updated_at, spec) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (spec.name, spec.model.name, spec.model.version, target, status.health, status.endpoint, now,
             StateStore.encode_row({"spec": {"revision": revision, "alias": spec.model.alias,
                                          "replicas": spec.replicas, "port": spec.port}})["spec"]))
    (row,) = store.select("releases", {"deployment": spec.name, "revision": revision})
    return Release.from_row(row)


def _artifact_dict(artifact: ModelArtifact) -> dict[str, Any]:
    data = asdict(artifact)
    data["path"] = str(Path(artifact.path).resolve())
    return data


def deploy(ref: str, loaded: LoadedConfig, *, target: str | None = None, replicas: int | None = None,
           port: int | None = None, name: str | None = None, dry_run: bool = False,
           timeout_s: float = 60.0) -> DeployResult:
    """Resolve ``ref`` in the registry and deploy it; records a release unless ``dry_run``."""
    from mlctl.lifecycle import registry

    loaded.require_project()
    cfg = loaded.config.deploy
    target = target or cfg.target
    port = cfg.port if port is None else port
    if port == 0:
        from mlctl.core.proc import free_port

        port = free_port()
    artifact = registry.resolve_model(ref, loaded)
    spec = DeploySpec(name=deployment_name(name or artifact.name), model=artifact,
                      replicas=replicas or cfg.replicas, port=port, project_root=loaded.root,
                      ready_timeout_s=timeout_s)
    backend = get_target(target, loaded)
    if dry_run:
        return DeployResult(spec.name, target, True, plan=backend.plan(spec))
    with _locked(loaded, spec.name, "deploy"):
        status = backend.apply(spec)
        release = _record(_store(loaded), spec, target, status)
    return DeployResult(spec.name, target, False, status=status, release=release)


def _locked(loaded: LoadedConfig, name: str, operation: str) -> Any:
    """Deployment ``name``'s lock (re-entrant in this thread), for a deploy, rollback or stop."""
    return deployment_lock(lock_folder(loaded.state_dir, name), name, operation)


def list_releases(name: str, loaded: LoadedConfig) -> ReleaseList:
    """Every release of a deployment, oldest first."""
    loaded.require_project()
    path = loaded.state_dir / STATE_FILE
    if not path.exists():
        raise NotFound(f"no deployment named {name!r}", hint="see `mlctl status` for deployments")
    with StateStore(path) as store:
        rows = _rows(store, name)
    if not rows:
        raise NotFound(f"no deployment named {name!r}", hint="see `mlctl status` for deployments")
    return ReleaseList(Release.from_row(r) for r in rows)


def rollback(name: str, loaded: LoadedConfig, *, to: int | None = None, dry_run: bool = False) -> RollbackResult:
    """Return deployment ``name`` (and its registry alias) to the previous or the given release.

    The deployment keeps its current endpoint: the older version starts beside the running one
    and takes over once ready. When it cannot start, the running version keeps serving, nothing
    is recorded, the alias stays, and :class:`~mlctl.core.errors.OperationFailed` says so.
    """
    if dry_run:
        return _rollback(name, loaded, to=to, dry_run=True)
    list_releases(name, loaded)  # NotFound before a lock folder is made for a name that never existed
    with _locked(loaded, name, "rollback"):
        return _rollback(name, loaded, to=to, dry_run=False)


def _rollback(name: str, loaded: LoadedConfig, *, to: int | None, dry_run: bool) -> RollbackResult:
    from mlctl.lifecycle import registry

    releases = list_releases(name, loaded)
    current = next((r for r in reversed(releases) if r.status == "active"), releases[-1])
    if to is None:
        earlier = [r for r in releases if r.revision < current.revision and r.version != current.version]
        if not earlier:
            raise NotFound(f"deployment {name} has no earlier release with another version to roll back to",
                           hint=f"see `mlctl releases {name}`")
        goal = earlier[-1]
    else:
        goal = next((r for r in releases if r.revision == to), None)  # type: ignore[assignment]
        if goal is None:
            known = ", ".join(str(r.revision) for r in releases)
            raise NotFound(f"deployment {name} has no revision {to}", hint=f"revisions: {known}")
        if goal.revision == current.revision:
            raise UsageError(f"revision {to} is already the active release of {name}")
    with StateStore(loaded.state_dir / STATE_FILE) as store:
        (row,) = store.select("releases", {"deployment": name, "revision": goal.revision})
        (current_row,) = store.select("releases", {"deployment": name, "revision": current.revision})
    details = row["details"]
    art = dict(details["artifact"])
    art["path"] = Path(art["path"])
    artifact = ModelArtifact(**art)
    backend = get_target(goal.target, loaded)
    port = _current_port(backend, name, current_row["details"], loaded)
    spec = DeploySpec(name=name, model=artifact, replicas=int(details.get("replicas", 1)), port=port,
                      project_root=loaded.root)
    changes = [f"deployment {name}: {current.model} version {current.version} (revision {current.revision}) -> "
               f"version {goal.version} (revision {goal.revision}), staying on port {port}"]
    alias = goal.alias or current.alias
    result = RollbackResult(name, dry_run, current, goal, changes=changes)
    if alias:
        changes.append(f"registry: {goal.model}@{alias} -> version {goal.version}")
    if dry_run:
        return result
    from mlctl.core.errors import OperationFailed

    try:
        result.status = backend.apply(spec)
    except OperationFailed as exc:
        raise OperationFailed(  # the target's message says what keeps serving
            f"rollback of {name} to version {goal.version} (release {goal.revision}) failed: {exc.message}",
            hint=exc.hint, details={**exc.details, "deployment": name, "to_release": goal.revision}) from None
    if alias:
        before = registry.set_alias(goal.model, alias, goal.version, loaded)
        result.alias_moved = {"model": goal.model, "alias": alias, "from": before, "to": goal.version}
    result.release = _record(_store(loaded), spec, goal.target, result.status, rollback_of=current.revision)
    return result


def _current_port(backend: DeployTarget, name: str, recorded: dict[str, Any], loaded: LoadedConfig) -> int:
    """The port the deployment serves on now: live for a local one, else the current release's."""
    if backend.kind == "local":
        from urllib.parse import urlsplit

        live = backend.status(name)
        if live is not None and live.endpoint:
            port = urlsplit(live.endpoint).port
            if port:
                return port
    return int(recorded.get("port", loaded.config.deploy.port))


def stop(name: str, loaded: LoadedConfig) -> bool:
    """Stop a deployment on the target it was deployed to; False when nothing was running.

    A local deployment that runs without a recorded release (a deploy interrupted between its
    start and its record) is stopped too, rather than called unknown.
    """
    from mlctl.lifecycle.deploy.local import LocalTarget

    try:
        releases = list_releases(name, loaded)
    except NotFound:
        local = LocalTarget(loaded.state_dir)
        if name not in local.list():
            raise
        return local.stop(name)
    backend = get_target(releases[-1].target, loaded)
    with _locked(loaded, name, "stop"):
        stopped = backend.stop(name)
        with StateStore(loaded.state_dir / STATE_FILE) as store:
            store.update("deployments", {"name": name},
                         {"status": "stopped", "url": None, "updated_at": utcnow()})
    return stopped


def scale(name: str, loaded: LoadedConfig, replicas: int, *, dry_run: bool = False) -> ScaleResult:
    """Run ``replicas`` servers of what deployment ``name`` serves now, on the target it was deployed to.

    The count is checked first (0..:data:`~mlctl.lifecycle.deploy.base.MAX_REPLICAS`, else
    :class:`UsageError`); an unknown deployment is :class:`NotFound`. Holds the deployment's lock,
    waits until the servers are ready, and records the count for ``mlctl status``; no release is
    recorded (what serves did not change), and a later deploy sets its own count.
    """
    from mlctl.lifecycle.deploy.base import validate_replicas

    validate_replicas(replicas)
    releases = list_releases(name, loaded)
    target = releases[-1].target
    backend = get_target(target, loaded)
    if dry_run:
        now = backend.status(name) if target == "local" else None
        return ScaleResult(name, target, replicas, None, now.replicas_desired if now else None, True)
    with _locked(loaded, name, "scale"):
        before = backend.status(name)
        status = backend.scale(name, replicas)
        with StateStore(loaded.state_dir / STATE_FILE) as store:
            rows = store.select("deployments", {"name": name})
            if rows:
                spec = {**(rows[0].get("spec") or {}), "replicas": replicas}
                store.update("deployments", {"name": name}, {"spec": spec, "status": status.health,
                                                              "updated_at": utcnow()})
    return ScaleResult(name, target, replicas, status.replicas_ready,
                       before.replicas_desired if before else None, False)


def logs(name: str, loaded: LoadedConfig, tail: int = 100) -> str:
    releases = list_releases(name, loaded)
    return get_target(releases[-1].target, loaded).logs(name, tail)


def stop_deployment(name: str, loaded: LoadedConfig, *, dry_run: bool = False) -> StopResult:
    """:func:`stop` as a result to render; a dry run only checks that the deployment exists."""
    if dry_run:
        list_releases(name, loaded)
        return StopResult(name, False, True)
    return StopResult(name, stop(name, loaded), False)


def deployment_logs(name: str, loaded: LoadedConfig, tail: int = 100) -> DeploymentLogs:
    """:func:`logs` as a result to render."""
    return DeploymentLogs(name, logs(name, loaded, tail))


def _probe_ready(endpoint: str | None, timeout_s: float = 1.0) -> str | None:
    """Health from a loopback endpoint's ``/ready``: healthy, degraded or down (None: not probed)."""
    from mlctl.core import http
    from mlctl.core.errors import ServiceUnavailable

    if not endpoint or not http.is_loopback(endpoint):
        return None
    try:  # a probe: one attempt, no retries
        resp = http.request("GET", endpoint.rstrip("/") + "/ready", timeout=timeout_s, retries=0, limit=0)
    except ServiceUnavailable:
        return "down"
    return "healthy" if resp.status == 200 else "degraded"


def deployment_statuses(loaded: LoadedConfig, *, live: bool = False) -> list[DeploymentStatus]:
    """Every recorded deployment: live for local ones, last known for the others.

    A Docker deployment's loopback endpoint is probed (``/ready``); with ``live`` every remote
    target (Docker engine, cluster) is asked for its status, and an unreachable one is reported
    as ``unknown`` with the reason in ``details["error"]``.
    """
    path = loaded.state_dir / STATE_FILE
    rows: list[dict[str, Any]] = []
    if path.exists():
        with StateStore(path, readonly=True) as store:
            rows = store.select("deployments", order_by="name")
    out = []
    for row in rows:
        live_status, error = None, None
        if row["target"] == "local":
            from mlctl.lifecycle.deploy.local import LocalTarget

            live_status = LocalTarget(loaded.state_dir).status(row["name"])
        elif live and row["status"] != "stopped":
            from mlctl.core.errors import MlctlError

            try:
                live_status = get_target(row["target"], loaded).status(row["name"])
            except MlctlError as exc:
                error = exc.message
        spec = row.get("spec") or {}
        known = DeploymentStatus(
            name=row["name"], target=row["target"], model=row["model"], version=row["version"],
            alias=spec.get("alias"), replicas_desired=int(spec.get("replicas", 1)), replicas_ready=0,
            endpoint=row["url"], health="unknown" if row["status"] != "stopped" else "down",
            details={"updated_at": row["updated_at"]})  # fmt: skip
        if live_status is None and known.health == "unknown":
            probed = _probe_ready(row["url"])
            if probed is not None:
                known.health = probed
                known.replicas_ready = known.replicas_desired if probed == "healthy" else 0
        if error:
            known.details["error"] = error
        out.append(live_status or known)
        out[-1].details["updated_at"] = row["updated_at"]
    from mlctl.lifecycle.deploy.local import LocalTarget

    local = LocalTarget(loaded.state_dir)
    recorded = {row["name"] for row in rows}
    for name in local.running():  # running, but no release records it: list it rather than hide it
        if name not in recorded:
            unrecorded = local.status(name)
            if unrecorded is not None:
                unrecorded.details.update({"updated_at": None, "error": "running without a recorded release; "
                                           f"stop it with `mlctl deploy stop {name}`"})
                out.append(unrecorded)
    return sorted(out, key=lambda d: d.name)
