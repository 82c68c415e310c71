"""An OpenSearch-API engine: osmem-server (PyPI ``osmem-server``), in memory; URL ``http://127.0.0.1:PORT``.

No Elasticsearch or OpenSearch can be installed on these machines; opensearch-py works against it as is.
"""

from __future__ import annotations

from pathlib import Path

from mlctl.core.probes import opensearch_ready
from mlctl.core.proc import LOOPBACK
from mlctl.engines._base import EngineNotInstalled, require_binary
from mlctl.engines._registry import EngineSpec, engine


def _osmem_binary() -> str:
    try:
        import osmem_server
    except ImportError:
        return require_binary("osmem-server", package="osmem-server (pip install osmem-server)")
    try:
        return str(osmem_server.resolve_binary())
    except Exception as exc:  # OsmemError: no binary for this platform
        raise EngineNotInstalled(str(exc), hint="pip install osmem-server, or set OSMEM_SERVER_BIN") from None


@engine("opensearch", package="osmem-server (pip install osmem-server)", probe=opensearch_ready,
        start_timeout=30.0)
def _opensearch(workdir: Path, port: int) -> EngineSpec:
    """osmem-server, an in-memory engine speaking the OpenSearch REST API; URL ``http://127.0.0.1:PORT``."""
    url = f"http://{LOOPBACK}:{port}"
    argv = [_osmem_binary(), "-addr", f"{LOOPBACK}:{port}", "-no-stdin-watch", "-no-ja"]
    return EngineSpec(argv=argv, url=url, ready=lambda: opensearch_ready(url))
