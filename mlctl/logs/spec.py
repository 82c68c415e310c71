"""The ``logs:`` section of ``mlctl.yaml``: how lines are parsed, classified and routed.

:mod:`mlctl.sections` registers :class:`LogsSpec` as the ``logs`` section; keep this module
light (pydantic and mlctl.core only): it is imported whenever the configuration is loaded.

.. code-block:: yaml

    logs:
      log_format: '<Date> <Time> <Level> <Component>: <Content>'   # or preset: syslog
      rules: rules.yaml                     # optional; rules override the model
      registered_model: log-classifier      # register trained classifiers under this name
      source: kafka://127.0.0.1:9092/logs   # for `mlctl classify-logs stream`
      group: mlctl-logs
      sinks:                                # name -> URL
        index: sqlite:///.mlctl/logs.db     # the embedded default (SQLite FTS5)
        archive: .mlctl/logs/archive.jsonl   # relative paths are relative to the project
        alerts: webhook+https://hooks.example/logs
      routes:                               # every matching route; '*' = every class
        - classes: [security, error]
          sinks: [index, alerts]
        - classes: '*'
          sinks: [index, archive]
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DEFAULT_INDEX = "sqlite:///.mlctl/logs.db"
DEFAULT_ARCHIVE = ".mlctl/logs/archive.jsonl"


class Route(BaseModel):
    """Send lines of these classes (``'*'``: every class) to these sinks."""

    model_config = ConfigDict(extra="forbid")

    classes: list[str] | str = Field("*", description="class names, or '*' for every class")
    sinks: list[str] = Field(..., min_length=1, description="sink names from logs.sinks")

    @field_validator("classes")
    @classmethod
    def _classes(cls, v: list[str] | str) -> list[str] | str:
        if isinstance(v, str) and v != "*":
            return [v]
        return v

    def class_set(self) -> frozenset[str] | None:
        return None if self.classes == "*" else frozenset(self.classes)


class LogsSpec(BaseModel):
    """``logs:`` parse, classify and route system logs."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    log_format: str | None = Field(None, description="Loghub-style format, e.g. '<Date> <Time> <Level>: <Content>'")
    preset: str | None = Field(None, description="a named format instead: syslog, apache-error, nginx, jsonl, k8s")
    templates: str = Field(".mlctl/logs/templates.json", description="where the template model is kept")
    model_dir: str = Field(".mlctl/logs/model", description="where the current classifier is kept")
    rules: str | None = Field(None, description="YAML rules file (class overrides)")
    registered_model: str | None = Field(None, description="register trained classifiers under this name")
    label_column: str = Field("class", description="label column of training CSVs")
    normal_label: str | None = Field(None, description="label value that means normal, e.g. '-' for BGL")
    source: str | None = Field(None, description="default input of `stream`: kafka://HOST:PORT/TOPIC, a file, or -")
    group: str = Field("mlctl-logs", description="Kafka consumer group")
    batch_size: int = Field(5000, ge=1, le=1_000_000, description="lines per batch")
    sinks: dict[str, str] = Field(
        default_factory=lambda: {"index": DEFAULT_INDEX, "archive": DEFAULT_ARCHIVE},
        description="sink name -> URL (sqlite:///, http(s):// search engine, kafka://, file://, stdout, webhook+https://)",
    )
    routes: list[Route] = Field(default_factory=lambda: [Route(classes="*", sinks=["index", "archive"])],
                                description="class -> sinks; a line goes to every matching route")  # fmt: skip

    @model_validator(mode="after")
    def _check(self) -> LogsSpec:
        if self.log_format and self.preset:
            raise ValueError("give log_format or preset, not both")
        for i, route in enumerate(self.routes, start=1):
            unknown = [s for s in route.sinks if s not in self.sinks]
            if unknown:
                raise ValueError(f"route {i} names unknown sink {unknown[0]!r} (known: {', '.join(self.sinks)})")
        return self

    def dump(self) -> dict[str, Any]:
        return self.model_dump(mode="json")
