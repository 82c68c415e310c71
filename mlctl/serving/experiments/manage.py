"""``mlctl serve experiment ...``: create, list, show, pause, resume and stop experiments.

Each function takes the loaded configuration, opens the store ``serve.state`` names and returns
a :class:`~mlctl.core.output.Result`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mlctl.core.errors import NotFound, UsageError
from mlctl.core.output import Result, Table
from mlctl.serving.experiments.definition import Experiment, new_experiment
from mlctl.serving.experiments.store import ExperimentStore, VariantStats, open_store

if TYPE_CHECKING:
    from mlctl.core.config import LoadedConfig


def store_for(loaded: LoadedConfig) -> ExperimentStore:
    """The store ``serve.state`` names (``sqlite``: the project's ``.mlctl/experiments.db``)."""
    state = str(loaded.config.serve.state)
    if state == "sqlite" or state.startswith("sqlite:///"):
        loaded.require_project()  # the embedded store belongs to a project
    return open_store(state, base=loaded.state_dir)


def check_variants(loaded: LoadedConfig, experiment: Experiment) -> list[str]:
    """Refuse a model or variant (alias or version) the registry does not have; notes when the
    registry cannot be read here (the gateway checks again when it loads the versions)."""
    from mlctl.lifecycle.registry_fast import CannotAnswer, reader_for

    try:
        reader = reader_for(loaded)
    except CannotAnswer as exc:
        if str(exc) == "no store yet":
            raise NotFound(f"no registered model {experiment.model}: nothing is registered yet",
                           hint="train and register a model first (mlctl train)") from exc
        return [f"variants not checked against the registry ({exc})"]
    try:
        record = reader.model(experiment.model)
        if record is None:
            known = ", ".join(reader.model_names(10)) or "none"
            raise NotFound(f"no registered model {experiment.model} (registered: {known})")
        versions = reader.versions(experiment.model)
        targets = [*experiment.variant_names, *([experiment.shadow.target] if experiment.shadow else [])]
        for name in targets:
            if name not in record.aliases and name not in versions:
                aliases = ", ".join(sorted(record.aliases)) or "none"
                raise NotFound(f"model {experiment.model} has no alias or version {name!r} "
                               f"(aliases: {aliases}; versions: {', '.join(versions) or 'none'})")
    finally:
        reader.close()
    return []


def variant_versions(loaded: LoadedConfig, experiment: Experiment) -> tuple[dict[str, str | None], list[str]]:
    """The version each variant (and the shadow) names now in the registry, and notes when it cannot be read."""
    from mlctl.lifecycle.registry_fast import CannotAnswer, reader_for

    names = [*experiment.variant_names, *([experiment.shadow.target] if experiment.shadow else [])]
    try:
        reader = reader_for(loaded)
    except CannotAnswer as exc:
        return ({n: (n if n.isdigit() else None) for n in names},
                [f"versions of aliases not read from the registry ({exc})"])
    try:
        record = reader.model(experiment.model)
        aliases = record.aliases if record is not None else {}
    finally:
        reader.close()
    return {n: (n if n.isdigit() else aliases.get(n)) for n in names}, []


@dataclass
class ExperimentResult(Result):
    """``create``, ``pause``, ``resume``, ``stop``: the experiment and what changed."""

    experiment: Experiment
    action: str
    changed: bool
    dry_run: bool = False
    store: str = ""
    warnings: list[str] = field(default_factory=list)

    def document(self) -> dict[str, Any]:
        return {"experiment": self.experiment.to_dict(), "action": self.action, "changed": self.changed,
                "dry_run": self.dry_run, "store": self.store, "warnings": self.warnings}

    def tables(self) -> list[Table]:
        e = self.experiment
        verb = "would be " if self.dry_run else ""
        what = f"{self.action}d" if self.action.endswith("e") else f"{self.action}ed"
        if self.action == "stop":
            what = "stopped"
        title = f"experiment {e.name} {verb}{what}" if self.changed else f"experiment {e.name}: no change"
        return [Table(_summary(e), title=title)]

    def notes(self) -> list[str]:
        return list(self.warnings)


def _summary(e: Experiment) -> dict[str, Any]:
    return {"name": e.name, "model": e.model, "status": e.status, "strategy": e.strategy,
            "variants": ", ".join(f"{v.name}:{v.weight:g}" for v in e.variants),
            "control": e.control, "sticky key": e.sticky_key or "-",
            "shadow": f"{e.shadow.target}:{e.shadow.share:g}" if e.shadow else "-", "reward": e.reward}


@dataclass
class ExperimentList(Result):
    """``mlctl serve experiment list``."""

    experiments: list[Experiment]
    store: str
    title = "experiments"
    columns = ("name", "model", "status", "strategy", "variants", "shadow")

    def document(self) -> dict[str, Any]:
        return {"store": self.store, "experiments": [e.to_dict() for e in self.experiments]}

    def rows(self) -> list[dict[str, Any]]:
        return [_summary(e) for e in self.experiments]

    def notes(self) -> list[str]:
        return [] if self.experiments else ["no experiments; create one with `mlctl serve experiment create`"]


@dataclass
class ExperimentDetail(Result):
    """``mlctl serve experiment show``: the definition, counters per variant and the traffic
    share each variant gets now (for a bandit, from the outcomes so far)."""

    experiment: Experiment
    stats: dict[str, VariantStats]
    shares: dict[str, float]
    store: str

    def document(self) -> dict[str, Any]:
        return {"experiment": self.experiment.to_dict(), "store": self.store,
                "variants": [self._row(name) for name in self._names()]}

    def _names(self) -> list[str]:
        names = self.experiment.variant_names
        return names + sorted(n for n in self.stats if n not in names)

    def _row(self, name: str) -> dict[str, Any]:
        s = self.stats.get(name, VariantStats())
        mean = s.reward_sum / s.trials if s.trials else None
        role = ("control" if name == self.experiment.control
                else "shadow" if name not in self.experiment.variant_names else "variant")
        return {"variant": name, "role": role, "share": self.shares.get(name, 0.0), **s.to_dict(),
                "mean_reward": mean}

    def tables(self) -> list[Table]:
        rows = [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in self._row(n).items()
                 if k not in ("reward_sq_sum",)} for n in self._names()]
        return [Table(_summary(self.experiment), title=f"experiment {self.experiment.name}"),
                Table(rows, title="variants")]


def create_experiment(loaded: LoadedConfig, name: str, *, model: str, variants: str, strategy: str | None = None,
                      sticky_key: str | None = None, shadow: str | None = None,
                      params: dict[str, Any] | None = None, reward: str = "binary",
                      feedback_window: str | None = None, replace: bool = False,
                      dry_run: bool = False) -> ExperimentResult:
    """Define an experiment on a registered model (the same definition again changes nothing)."""
    window = feedback_window or str(loaded.config.serve.feedback_window)
    exp = new_experiment(name, model, variants, strategy=strategy, sticky_key=sticky_key, shadow=shadow,
                         params=params, reward=reward, feedback_window=window)
    warnings = check_variants(loaded, exp)
    with store_for(loaded) as store:
        if dry_run:
            try:
                old: Experiment | None = store.get(name)
            except NotFound:
                old = None
            changed = replace or old is None or not old.same_definition(exp) or old.status == "stopped"
            return ExperimentResult(exp, "create", changed, dry_run=True, store=store.url, warnings=warnings)
        changed = store.create(exp, replace=replace)
        return ExperimentResult(store.get(name), "create", changed, store=store.url, warnings=warnings)


def list_experiments(loaded: LoadedConfig) -> ExperimentList:
    with store_for(loaded) as store:
        return ExperimentList(store.experiments(), store.url)


def show_experiment(loaded: LoadedConfig, name: str) -> ExperimentDetail:
    with store_for(loaded) as store:
        exp = store.get(name)
        arms = store.arms(name)
        shares = dict(zip(exp.variant_names, exp.make_strategy().probabilities(arms), strict=True))
        if exp.status != "running":
            shares = {n: (1.0 if n == exp.control else 0.0) for n in exp.variant_names}
        return ExperimentDetail(exp, store.stats(name), shares, store.url)


_ACTIONS = {"pause": "paused", "resume": "running", "stop": "stopped"}


def set_status(loaded: LoadedConfig, name: str, action: str, *, dry_run: bool = False) -> ExperimentResult:
    """``pause`` (all traffic to the control, counters kept), ``resume`` or ``stop`` (final)."""
    status = _ACTIONS[action]
    with store_for(loaded) as store:
        exp = store.get(name)
        if exp.status == "stopped" and status != "stopped":
            raise UsageError(f"experiment {name} is stopped; create a new one (or create --replace)")
        if dry_run:
            return ExperimentResult(exp.with_status(status) if exp.status != status else exp, action,
                                    exp.status != status, dry_run=True, store=store.url)
        changed = store.set_status(name, status)
        return ExperimentResult(changed, action, exp.status != status, store=store.url)

