"""What ``mlctl serve model`` prints once its server is ready: a result the renderer knows."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mlctl.core.output import Result, Table


class ServerReady(Result):
    """A started server (:class:`~mlctl.serving.runner.ServerInfo`): under json/yaml one document
    ``{"model", "version", "alias", "sha256", "endpoint", "pid"}``; for people, one line on stderr."""

    def __init__(self, info: Any) -> None:
        self.info = info

    def document(self) -> dict[str, Any]:
        i = self.info
        return {"model": i.model, "version": i.version, "alias": i.alias, "sha256": i.sha256,
                "endpoint": i.endpoint, "pid": i.pid}

    def tables(self) -> Iterable[Table]:
        return []

    def notes(self) -> Iterable[str]:
        i = self.info
        return [f"Serving {i.model} version {i.version}{f' ({i.alias})' if i.alias else ''} at {i.endpoint} "
                "(Ctrl-C to stop)"]
