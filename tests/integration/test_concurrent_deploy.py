"""Concurrent deploys of one deployment (issue 8): the CLI twice at once, a real registry and servers.

One deploy wins and is recorded; the other fails (exit 1, ``DeploymentBusy``) naming the holder;
nothing keeps running that ``mlctl deploy stop`` and ``mlctl status`` do not know about.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlctl.core.proc import free_port
from mlctl.lifecycle.deploy.lock import holder

MLCTL = str(Path(sys.executable).parent / "mlctl")
CLI_TIMEOUT_S = 240

# Holds the model servers of the process whose environment names a gate file until that file
# exists: a deploy that keeps its lock for as long as the test needs, whatever the machine's speed.
SITECUSTOMIZE = """\
import os, time
_gate = os.environ.get("DEPLOY_TEST_SERVER_GATE")
if _gate:
    try:
        _argv = open("/proc/self/cmdline", "rb").read().split(b"\\0")
    except OSError:
        _argv = []
    if b"mlctl.serving" in _argv:
        _deadline = time.monotonic() + 300
        while not os.path.exists(_gate) and time.monotonic() < _deadline:
            time.sleep(0.05)
"""


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLCTL_") or k.startswith("MLCTL_TEST_")}
    env.update({"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"), "NO_COLOR": "1", **extra})
    return env


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project whose registry holds model ``churn`` versions 1 and 2, trained by ``mlctl train``."""
    root = tmp_path_factory.mktemp("concurrent-deploy") / "proj"
    (root / "data").mkdir(parents=True)
    import random

    rng = random.Random(7)
    lines = ["f0,f1,f2,f3,label"]
    for _ in range(300):
        x = [round(rng.gauss(0, 1), 4) for _ in range(4)]
        lines.append(",".join(map(str, x)) + f",{int(x[0] - x[1] > 0)}")
    (root / "data" / "churn.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    spec = {"data": "data/churn.csv", "target": "label", "task": "classification", "model": "random_forest",
            "params": {"n_estimators": 10}, "registered_model": "churn"}
    (root / "mlctl.yaml").write_text(yaml.safe_dump({"project": {"name": "cc"}, "train": spec}), encoding="utf-8")
    home = root.parent / "home"
    home.mkdir()
    for n_estimators in (10, 20):
        done = subprocess.run([MLCTL, "train", "--param", f"n_estimators={n_estimators}", "-o", "json"], cwd=root,
                              env=_env(home), capture_output=True, text=True, timeout=CLI_TIMEOUT_S)
        assert done.returncode == 0, done.stderr[-3000:]
    return root


@pytest.fixture
def proj(trained: Path, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """The trained project, a deployment name and port of this test's own; stopped (and checked) after."""
    name = f"cc{os.getpid() % 1000}{time.monotonic_ns() % 100000}"
    info = {"root": trained, "name": name, "port": free_port(), "home": tmp_path / "home",
            "folder": trained / ".mlctl" / "deploy" / name}
    try:
        yield info
    finally:
        cli(info, "deploy", "stop", name, check=False)
        for pid in processes_of(info["folder"]):  # never leave one behind, even when the test failed
            os.kill(pid, signal.SIGKILL)


def cli(info: dict[str, Any], *args: str, check: bool = True, **env: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([MLCTL, *args], cwd=info["root"], env=_env(info["home"], **env), capture_output=True,
                          text=True, timeout=CLI_TIMEOUT_S)
    if check:
        assert done.returncode == 0, f"mlctl {' '.join(args)}: exit {done.returncode}\n{done.stderr[-3000:]}"
    return done


def popen(info: dict[str, Any], *args: str, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen([MLCTL, *args], cwd=info["root"], env=_env(info["home"], **env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def deploy_args(info: dict[str, Any], version: str) -> list[str]:
    return ["deploy", f"churn:{version}", "--name", info["name"], "--port", str(info["port"]), "--timeout", "120",
            "-o", "json"]


def processes_of(folder: Path) -> list[int]:
    """Live processes whose command line names the deployment's folder: its supervisor and servers."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if str(folder).encode() in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


def listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def metadata(port: int) -> dict[str, Any]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://127.0.0.1:{port}/metadata", timeout=10) as resp:
        return json.loads(resp.read())


def check_known_then_stop(info: dict[str, Any], serving_version: str, releases: int) -> None:
    """What runs is what mlctl records and shows, and `deploy stop` stops all of it."""
    name, port, folder = info["name"], info["port"], info["folder"]
    rows = json.loads(cli(info, "releases", name, "-o", "json").stdout)
    assert len(rows) == releases and rows[-1]["status"] == "active" and rows[-1]["version"] == serving_version
    assert metadata(port)["version"] == serving_version
    status = json.loads(cli(info, "status", "-o", "json").stdout)
    (row,) = [d for d in status["deployments"] if d["name"] == name]
    assert (row["version"], row["endpoint"], row["health"]) == (serving_version, f"http://127.0.0.1:{port}",
                                                                "healthy")
    pid = int((folder / "supervisor.pid").read_text())
    running = processes_of(folder)
    assert pid in running  # supervisor.pid names the live supervisor
    supervisors = [p for p in running
                   if b"mlctl.lifecycle.deploy.supervisor" in Path(f"/proc/{p}/cmdline").read_bytes()]
    assert supervisors == [pid]

    stopped = cli(info, "deploy", "stop", name, "-o", "json")
    assert json.loads(stopped.stdout)["stopped"] is True
    deadline = time.monotonic() + 30
    while processes_of(folder) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert processes_of(folder) == []  # no orphan: supervisor and servers are gone
    assert not listening(port)


def busy_error(proc: subprocess.Popen[str], err: str, winner: subprocess.Popen[str], version: str) -> None:
    """The loser's exit 1 names the winner: its pid and its command."""
    assert proc.returncode == 1, err
    error = json.loads(err)["error"]
    assert error["type"] == "DeploymentBusy"
    assert f"pid {winner.pid} " in error["message"] and f"mlctl deploy churn:{version} --name" in error["message"]
    assert error["details"]["holder"]["pid"] == winner.pid


def test_two_deploys_at_once_one_wins_the_other_names_it(proj: dict[str, Any], tmp_path: Path) -> None:
    """Deterministic overlap: the first deploy's servers wait on a gate until the second has finished."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE, encoding="utf-8")
    gate = tmp_path / "gate"
    first = popen(proj, *deploy_args(proj, "1"), DEPLOY_TEST_SERVER_GATE=str(gate),
                  PYTHONPATH=os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])))
    try:
        deadline = time.monotonic() + CLI_TIMEOUT_S
        while (holder(proj["folder"]) or {}).get("pid") != first.pid:
            assert first.poll() is None, first.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "the first deploy never took the deployment's lock"
            time.sleep(0.05)
        second = popen(proj, *deploy_args(proj, "2"))
        _, err2 = second.communicate(timeout=CLI_TIMEOUT_S)
        busy_error(second, err2, first, "1")
    finally:
        gate.touch()
        out1, err1 = first.communicate(timeout=CLI_TIMEOUT_S)
    assert first.returncode == 0, err1[-3000:]
    assert json.loads(out1)["release"]["revision"] == 1
    check_known_then_stop(proj, serving_version="1", releases=1)


def test_two_deploys_started_together_leave_nothing_unknown(proj: dict[str, Any]) -> None:
    """The issue's reproduction, as it races: whatever the order, every success is recorded, every
    failure names the holder, what serves is the last release, and `deploy stop` stops it all."""
    procs = {version: popen(proj, *deploy_args(proj, version)) for version in ("1", "2")}
    results = {version: p.communicate(timeout=CLI_TIMEOUT_S) for version, p in procs.items()}
    winners = [v for v, p in procs.items() if p.returncode == 0]
    assert winners, {v: r[1][-2000:] for v, r in results.items()}
    for version, proc in procs.items():
        if proc.returncode != 0:
            other = "2" if version == "1" else "1"
            busy_error(proc, results[version][1], procs[other], other)
    # both may succeed when one finished before the other took the lock: then they ran one after the other
    last = max(winners, key=lambda v: json.loads(results[v][0])["release"]["revision"])
    check_known_then_stop(proj, serving_version=last, releases=len(winners))


def test_a_deployment_running_without_a_release_is_listed_and_stopped(proj: dict[str, Any]) -> None:
    """A deploy killed after its servers started but before it recorded the release (or an older
    mlctl's race) leaves a running deployment: `status` lists it and `deploy stop` stops it."""
    from mlctl.core.config import load_config
    from mlctl.lifecycle.artifact import ModelArtifact
    from mlctl.lifecycle.deploy.local import LocalTarget
    from mlctl.lifecycle.releases import deployment_statuses, stop

    cli(proj, *deploy_args(proj, "1"))  # resolves churn:1 into .mlctl/models; then stop it
    cli(proj, "deploy", "stop", proj["name"])
    artifact = ModelArtifact.from_json(sorted((proj["folder"] / "releases").glob("rev*/artifact.json"))[-1])
    other = proj["name"] + "x"
    info = {**proj, "name": other, "folder": proj["folder"].parent / other}
    cwd = os.getcwd()
    os.chdir(proj["root"])
    try:
        from mlctl.lifecycle.deploy.base import DeploySpec

        loaded = load_config()
        target = LocalTarget(loaded.state_dir)
        try:
            target.apply(DeploySpec(other, artifact, replicas=1, port=free_port(), project_root=proj["root"]))
            listed = [d for d in deployment_statuses(loaded) if d.name == other]
            assert len(listed) == 1 and listed[0].health == "healthy" and "without a recorded release" in \
                listed[0].details["error"]
            assert stop(other, loaded) is True
            assert processes_of(info["folder"]) == []
            assert [d for d in deployment_statuses(loaded) if d.name == other] == []
        finally:
            target.stop(other)
    finally:
        os.chdir(cwd)
