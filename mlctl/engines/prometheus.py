"""Prometheus, Alertmanager and Pushgateway (the Debian packages), each on one loopback port.

* ``prometheus`` scrapes itself every second, with the lifecycle and admin APIs on: rewrite
  ``info['config']`` and POST ``/-/reload``;
* ``alertmanager`` has one ``null`` receiver and clustering off;
* ``pushgateway`` keeps metrics in memory only.
"""

from __future__ import annotations

from pathlib import Path

from mlctl.core.probes import http_ready
from mlctl.core.proc import LOOPBACK
from mlctl.engines._base import require_binary
from mlctl.engines._registry import EngineSpec, engine, http_probe


@engine("prometheus", package="prometheus", probe=http_probe("/-/ready"))
def _prometheus(workdir: Path, port: int) -> EngineSpec:
    """Prometheus scraping itself every second; ``/-/reload`` enabled (rewrite ``info['config']``)."""
    binary = require_binary("prometheus")
    config = workdir / "prometheus.yml"
    data = workdir / "data"
    url = f"http://{LOOPBACK}:{port}"

    def setup() -> None:
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: prometheus\n"
            f"    static_configs:\n      - targets: ['{LOOPBACK}:{port}']\n"
        )

    argv = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={data}",
        f"--web.listen-address={LOOPBACK}:{port}",
        "--web.enable-lifecycle",
        "--web.enable-admin-api",
    ]
    return EngineSpec(
        argv=argv,
        url=url,
        ready=lambda: http_ready(url + "/-/ready"),
        setup=setup,
        info={"config": str(config), "data_dir": str(data)},
    )


@engine("alertmanager", package="prometheus-alertmanager", probe=http_probe("/-/ready"))
def _alertmanager(workdir: Path, port: int) -> EngineSpec:
    """Alertmanager with one ``null`` receiver and clustering disabled."""
    binary = require_binary("prometheus-alertmanager", "alertmanager")
    config = workdir / "alertmanager.yml"
    data = workdir / "data"
    url = f"http://{LOOPBACK}:{port}"

    def setup() -> None:
        config.write_text(
            "route:\n  receiver: 'null'\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\n"
            "receivers:\n  - name: 'null'\n"
        )

    argv = [
        binary,
        f"--config.file={config}",
        f"--storage.path={data}",
        f"--web.listen-address={LOOPBACK}:{port}",
        "--cluster.listen-address=",
    ]
    return EngineSpec(
        argv=argv,
        url=url,
        ready=lambda: http_ready(url + "/-/ready"),
        setup=setup,
        info={"config": str(config), "data_dir": str(data)},
    )


@engine("pushgateway", package="prometheus-pushgateway", probe=http_probe("/-/ready"))
def _pushgateway(workdir: Path, port: int) -> EngineSpec:
    """Pushgateway keeping metrics in memory only."""
    binary = require_binary("prometheus-pushgateway", "pushgateway")
    url = f"http://{LOOPBACK}:{port}"
    argv = [binary, f"--web.listen-address={LOOPBACK}:{port}", "--persistence.file="]
    return EngineSpec(argv=argv, url=url, ready=lambda: http_ready(url + "/-/ready"))
