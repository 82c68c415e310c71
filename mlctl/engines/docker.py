"""A private Docker engine: ``dockerd`` with its own socket, data root and exec root; no bridge, no iptables.

Containers use the host network. :func:`release_docker_dirs` removes what it leaves behind once
stopped. The HTTP client for the engine API is :mod:`mlctl.connectors.docker`.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping
from pathlib import Path

from mlctl.core.probes import docker_ready
from mlctl.engines._base import flag_pairs, require_binary
from mlctl.engines._registry import EngineSpec, engine

__all__ = ["release_docker_dirs"]


@engine("docker", package="docker.io", env_var="MLCTL_TEST_DOCKER_URL", probe=docker_ready, start_timeout=60.0)
def _docker(workdir: Path, port: int) -> EngineSpec:
    """A private dockerd: its own data-root, exec-root, pidfile and unix socket; no bridge, no iptables.

    ``port`` is unused: the engine answers on ``unix://.../docker.sock`` only. The socket, exec-root
    and pidfile live in a short temporary folder (unix socket paths are limited to 108 bytes),
    removed once the engine stopped; images and containers live in ``workdir/data``.
    """
    import tempfile

    binary = require_binary("dockerd")
    run_dir = Path(tempfile.mkdtemp(prefix="mlctl-dockerd-"))
    sock = run_dir / "docker.sock"
    url = f"unix://{sock}"
    argv = [binary, *flag_pairs({
        "--host": url,
        "--data-root": str(workdir / "data"),
        "--exec-root": str(run_dir / "exec"),
        "--pidfile": str(run_dir / "docker.pid"),
        "--shutdown-timeout": "5",
    }), "--bridge=none", "--iptables=false", "--ip6tables=false", "--ip-masq=false"]
    return EngineSpec(
        argv=argv,
        url=url,
        ready=lambda: docker_ready(url),
        env={"DOCKER_HOST": url},
        cleanup=[run_dir],
        info={"socket": str(sock), "run_dir": str(run_dir), "data_root": str(workdir / "data")},
    )


def release_docker_dirs(info: Mapping[str, str]) -> None:
    """After a private dockerd stopped: unmount what it left mounted below its folders, then remove them.

    dockerd leaves ``EXEC_ROOT/netns/default`` (an nsfs bind mount) behind when it exits; the data
    root holds every image and container layer of the session.
    """
    import shutil

    roots = [info[key] for key in ("run_dir", "data_root") if info.get(key)]
    try:
        with open("/proc/mounts", encoding="utf-8") as fh:
            mounts = [line.split()[1].replace("\\040", " ") for line in fh if len(line.split()) > 1]
    except OSError:
        mounts = []
    for mount in sorted(mounts, key=len, reverse=True):
        if any(mount == root or mount.startswith(root.rstrip("/") + "/") for root in roots):
            subprocess.run(["umount", "-l", mount], capture_output=True, check=False)
    for root in roots:
        shutil.rmtree(root, ignore_errors=True)
