"""What ``mlctl config show|get|set`` return: results that know their document and their table."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlctl.core.config import LoadedConfig
from mlctl.core.output import Result, Table, to_data


@dataclass
class ConfigShow(Result):
    """Every effective value and where it came from (``mlctl config show``)."""

    project_file: Path | None
    user_file: Path | None
    values: dict[str, Any]
    origins: dict[str, str] = field(default_factory=dict)
    with_origin: bool = False

    def document(self) -> dict[str, Any]:
        return {"project_file": to_data(self.project_file), "user_file": to_data(self.user_file),
                "values": to_data(self.values), "origins": dict(self.origins)}

    def rows(self) -> Iterable[dict[str, Any]]:
        for key, value in self.values.items():
            yield {"key": key, "value": to_data(value),
                   **({"origin": self.origins.get(key)} if self.with_origin else {})}

    def tables(self) -> Iterable[Table]:
        return [Table(list(self.rows()), title=f"config ({self.project_file or 'no project file'})")]


@dataclass
class ConfigValue(Result):
    """One effective value (``mlctl config get``): the table view is the bare value."""

    key: str
    value: Any
    origin: str | None

    def document(self) -> dict[str, Any]:
        return {"key": self.key, "value": to_data(self.value), "origin": self.origin}

    def tables(self) -> Iterable[Table]:
        return [Table(self.value)]


@dataclass
class ConfigChange(Result):
    """A value set in the project file (``mlctl config set``), or the change a dry run would make."""

    file: Path
    key: str
    value: Any
    dry_run: bool

    def document(self) -> dict[str, Any]:
        return {"file": str(self.file), "key": self.key, "value": to_data(self.value), "dry_run": self.dry_run}

    def tables(self) -> Iterable[Table]:
        return [Table(self.document())] if self.dry_run else []

    def notes(self) -> Iterable[str]:
        return [] if self.dry_run else [f"{self.file}: {self.key} = {self.value}"]


def show_config(loaded: LoadedConfig, *, origin: bool = False) -> ConfigShow:
    """Every effective value of ``loaded`` (with ``origin``, the table also says where each came from)."""
    return ConfigShow(loaded.project_file, loaded.user_file, loaded.values(), dict(loaded.origins), origin)


def get_config(loaded: LoadedConfig, key: str) -> ConfigValue:
    """One effective value; an unknown key is :class:`NotFound` with a suggestion."""
    from mlctl.core.config import key_hint
    from mlctl.core.errors import NotFound

    values = loaded.values()
    if key not in values:
        raise NotFound(f"unknown config key '{key}'", hint=key_hint(key))
    return ConfigValue(key, values[key], loaded.origins.get(key))


def set_config(path: Path, key: str, value: str, *, dry_run: bool = False) -> ConfigChange:
    """Set ``key`` in the project file ``path`` (see :func:`mlctl.core.config.set_value`)."""
    from mlctl.core.config import set_value

    return ConfigChange(path, key, set_value(path, key, value, dry_run=dry_run), dry_run)
