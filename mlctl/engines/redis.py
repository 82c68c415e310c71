"""Redis: ``redis-server`` in the foreground, no persistence, loopback only; URL ``redis://127.0.0.1:PORT/0``.

An already-running Redis given by URL is probed with its password, when the URL carries one.
"""

from __future__ import annotations

import urllib.parse
from pathlib import Path

from mlctl.core.probes import redis_ready
from mlctl.core.proc import LOOPBACK
from mlctl.engines._base import flag_pairs, require_binary, split_url
from mlctl.engines._registry import EngineSpec, engine


def _redis_probe(url: str) -> bool:
    host, port = split_url(url)
    password = urllib.parse.urlsplit(url).password
    return port is not None and redis_ready(host, port, password=password)


@engine("redis", package="redis-server", probe=_redis_probe, start_timeout=15.0)
def _redis(workdir: Path, port: int) -> EngineSpec:
    """redis-server in the foreground (so we hold its PID), no persistence, loopback only."""
    flags = {"--port": str(port), "--bind": LOOPBACK, "--save": "", "--appendonly": "no", "--daemonize": "no"}
    argv = [require_binary("redis-server"), *flag_pairs(flags), "--dir", str(workdir), "--logfile", ""]
    return EngineSpec(argv=argv, url=f"redis://{LOOPBACK}:{port}/0", ready=lambda: redis_ready(LOOPBACK, port))
