"""``mlctl status``: the project at a glance."""

from __future__ import annotations

from dataclasses import dataclass, field

from mlctl.core.config import LoadedConfig
from mlctl.core.state import SCHEMA_VERSION, STATE_FILE, read_counts


@dataclass
class ProjectStatus:
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


def project_status(loaded: LoadedConfig) -> ProjectStatus:
    """Summarise the project; reads state without creating it."""
    project_file = loaded.require_project()
    state_path = loaded.state_dir / STATE_FILE
    counts = read_counts(state_path)
    cfg = loaded.config
    return ProjectStatus(
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
