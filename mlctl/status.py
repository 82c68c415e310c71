"""``mlctl status``: the project at a glance."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mlctl.core.config import LoadedConfig
from mlctl.core.durations import format_age as _age
from mlctl.core.durations import seconds_since as _seconds_since
from mlctl.core.output import Result, Table, to_data
from mlctl.core.state import SCHEMA_VERSION, STATE_FILE, StateStore, read_counts

LATEST_RUNS = 5


@dataclass
class ProjectStatus(Result):
    """Stable keys of ``mlctl status -o json``."""

    project: str
    root: str
    config_file: str
    template: str | None
    tracking_uri: str
    deploy_target: str
    state_file: str
    state_initialised: bool
    schema_version: int
    counts: dict[str, int] = field(default_factory=dict)
    #: {"name", "target", "model", "alias", "version", "replicas_ready", "replicas_desired", "endpoint",
    #:  "health", "age_s"}
    deployments: list[dict[str, Any]] = field(default_factory=list)
    #: {"id", "kind", "name", "status", "started_at", "metrics"}, newest first
    latest_runs: list[dict[str, Any]] = field(default_factory=list)

    def document(self) -> dict[str, Any]:
        return to_data(self)

    def tables(self) -> list[Table]:
        """The summary, then the deployments and the latest runs (when there are any)."""
        blocks = [Table(self.table(), title=f"mlctl project {self.project}")]
        if self.deployments:
            rows = self.deployment_rows()
            narrow = [c for c in rows[0] if c not in self.DEPLOYMENT_WIDE]
            blocks.append(Table(rows, title="deployments", columns=narrow, wide_columns=self.DEPLOYMENT_WIDE,
                                fit=True))
        if self.latest_runs:
            blocks.append(Table(self.run_rows(), title="latest runs", wide_columns=["started"], fit=True,
                                columns=["run", "kind", "name", "status", "metrics"]))
        return blocks

    def table(self) -> dict[str, object]:
        rows: dict[str, object] = {
            "project": self.project,
            "root": self.root,
            "config file": self.config_file,
            "template": self.template,
            "tracking": self.tracking_uri,
            "deploy target": self.deploy_target,
            "state": self.state_file if self.state_initialised else f"{self.state_file} (not created yet)",
        }
        rows.update({name: n for name, n in self.counts.items()})
        return rows

    #: columns of the deployments table that only ``--wide`` shows
    DEPLOYMENT_WIDE = ("target", "url")

    def deployment_rows(self) -> list[dict[str, object]]:
        """One row per deployment: NAME:VERSION@ALIAS as one cell, the endpoint without its scheme
        (``url`` has it, under ``--wide``), and a relative age, so a row fits 80 columns."""
        return [{"deployment": d["name"],
                 "model": f"{d['model']}:{d['version']}" + (f"@{d['alias']}" if d.get("alias") else ""),
                 "ready": f"{d['replicas_ready']}/{d['replicas_desired']}", "health": d["health"],
                 "endpoint": _short_url(d["endpoint"]), "age": _age(d.get("age_s")),
                 "target": d["target"], "url": d["endpoint"]} for d in self.deployments]

    def run_rows(self) -> list[dict[str, object]]:
        return [{"run": r["id"][:12], "kind": r["kind"], "name": r["name"], "status": r["status"],
                 "started": r["started_at"][:19].replace("T", " "),
                 "metrics": ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                      for k, v in list((r.get("metrics") or {}).items())[:4])}
                for r in self.latest_runs]


def _short_url(url: str | None) -> str | None:
    """``http://127.0.0.1:8000`` -> ``127.0.0.1:8000`` (tables; documents keep the whole URL)."""
    if not url:
        return url
    return url.split("://", 1)[1].rstrip("/") if url.startswith(("http://", "https://")) else url


def project_status(loaded: LoadedConfig, *, live: bool = False) -> ProjectStatus:
    """Summarise the project; reads state without creating it (``live``: ask remote targets too)."""
    project_file = loaded.require_project()
    state_path = loaded.state_dir / STATE_FILE
    counts = read_counts(state_path)
    cfg = loaded.config
    result = ProjectStatus(
        project=loaded.project_name,
        root=str(loaded.root),
        config_file=str(project_file),
        template=cfg.project.template,
        tracking_uri=cfg.tracking.uri,
        deploy_target=cfg.deploy.target,
        state_file=str(state_path),
        state_initialised=counts is not None,
        schema_version=SCHEMA_VERSION,
        counts=counts or {"runs": 0, "releases": 0, "deployments": 0, "alerts": 0},
    )
    from mlctl.lifecycle.releases import deployment_statuses

    # without a state file too: a local deployment may run that no release records (listed, to be stopped)
    for d in deployment_statuses(loaded, live=live):
        result.deployments.append({
            "name": d.name, "target": d.target, "model": d.model, "alias": d.alias, "version": d.version,
            "replicas_ready": d.replicas_ready, "replicas_desired": d.replicas_desired, "endpoint": d.endpoint,
            "health": d.health, "age_s": _seconds_since(d.details.get("updated_at")),
            **({"error": d.details["error"]} if d.details.get("error") else {}),
        })
    if counts is None:
        return result
    with StateStore(state_path, readonly=True) as store:
        for run in store.select("runs", order_by="started_at", descending=True, limit=LATEST_RUNS):
            result.latest_runs.append({k: run[k] for k in ("id", "kind", "name", "status", "started_at", "metrics")})
    return result
