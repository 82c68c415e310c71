"""PostgreSQL: a private cluster (``initdb``, trust auth, loopback only) run as the ``postgres`` user.

URL ``postgresql://postgres@127.0.0.1:PORT/postgres``; fsync and synchronous commit are off (a test
and development engine). ``info`` names the data and socket folders.
"""

from __future__ import annotations

import os
import signal
import subprocess
import urllib.parse
from pathlib import Path

from mlctl.core.errors import ServiceUnavailable
from mlctl.core.probes import postgres_ready
from mlctl.core.proc import LOOPBACK, user_kwargs
from mlctl.engines._base import flag_pairs, private_dir, require_binary, split_url
from mlctl.engines._registry import EngineSpec, engine


def _postgres_probe(url: str) -> bool:
    host, port = split_url(url)
    parts = urllib.parse.urlsplit(url)
    database = parts.path.lstrip("/") or "postgres"
    return port is not None and postgres_ready(host, port, user=parts.username or "postgres", database=database)


@engine("postgres", package="postgresql", probe=_postgres_probe, start_timeout=60.0)
def _postgres(workdir: Path, port: int) -> EngineSpec:
    """A private cluster: initdb (trust auth, loopback only) then ``postgres -D``; runs as ``postgres``."""
    postgres = require_binary("postgres")
    initdb = require_binary("initdb")
    user = "postgres"
    data, cleanup = private_dir(workdir, "pgdata", user)
    # Unix sockets live in the data dir unless its path is too long for one (108 bytes).
    sockets = str(data) if len(str(data)) < 80 else ""

    def setup() -> None:
        if (data / "PG_VERSION").exists():
            return
        result = subprocess.run(
            [initdb, "-D", str(data), *"-U postgres --auth=trust -E UTF8 --locale=C --no-sync".split()],
            cwd=str(data),
            capture_output=True,
            text=True,
            env={**os.environ, "LC_ALL": "C"},
            **user_kwargs(user),
        )
        if result.returncode != 0:
            raise ServiceUnavailable(
                f"initdb failed ({result.returncode}): {(result.stderr or result.stdout).strip()[-2000:]}",
                hint=f"the data dir {data} must be writable by the '{user}' user",
            )

    settings = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
    argv = [postgres, *flag_pairs({"-D": str(data), "-p": str(port), "-h": LOOPBACK, "-k": sockets})]
    argv += flag_pairs(("-c", f"{key}={value}") for key, value in settings.items())
    return EngineSpec(
        argv=argv,
        url=f"postgresql://postgres@{LOOPBACK}:{port}/postgres",
        ready=lambda: postgres_ready(LOOPBACK, port),
        env={"LC_ALL": "C"},
        cwd=data,
        user=user,
        setup=setup,
        stop_signal=signal.SIGINT,  # "fast" shutdown; SIGTERM would wait for clients to leave
        cleanup=cleanup,
        info={"data_dir": str(data), "socket_dir": sockets},
    )
