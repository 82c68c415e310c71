"""Serving start: time from the command's start to ``GET /ready`` answering 200.

Trains and registers a 50-tree RandomForestClassifier on 10 features with ``mlctl train`` in a
temporary project (embedded SQLite store), points alias ``champion`` at it, then times, over
``--rounds`` rounds, round-robin (so machine noise hits every command alike), after one warm-up
start of each:

* ``mlctl serve model NAME@champion``: the registry read without MLflow, the verified local copy
  under ``.mlctl/models/`` reused;
* the same, first start: the local copy removed before each start (copied from the artifact store);
* ``python -m mlctl.serving --artifact artifact.json``: the server alone, as deploy targets run it;
* ``mlflow models serve -m models:/NAME@champion --env-manager local`` (its ``/ping``), when the
  peer is installed (``.venv-peers/mlflow``, or ``--mlflow PATH``);
* ``mlctl serve model`` of an earlier revision (``--baseline REV``, e.g. ``HEAD``): its ``mlctl`` and
  ``commands`` exported with ``git archive`` and run on this environment's libraries;
* the floor: ``python -c 'import gc; gc.disable(); import sklearn.ensemble, uvicorn, prometheus_client'``,
  the libraries the server cannot start without, imported as the server does (timed until it exits).

Each round starts with the next command in turn. Each start is polled every 10 ms; once ready,
one prediction is checked (untimed) and the server is stopped with SIGTERM (its own process group,
waited for until it is gone). The start of a server is CPU-bound: on this
shared machine run it when it is otherwise quiet, and compare rows of one run.

Usage:
    python benchmarks/serve_start.py [--rounds 7] [--baseline REV] [--mlflow PATH] [--write-docs]
Writes benchmarks/results/serve_start.json and, with --write-docs, the serve_start section of
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, RESULTS, machine, shown_path, stop_group, write_section  # noqa: E402 - benchmarks/ is not a package

TARGET_S = 2.0
FLOOR = "import gc; gc.disable(); import sklearn.ensemble, uvicorn, prometheus_client"
MODEL = "bench-start"
N_FEATURES = 10
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never a proxy


@dataclass
class Command:
    """One way of starting a server: ``argv`` with ``{port}``, where readiness is answered."""

    name: str
    argv: list[str]
    ready_path: str | None = "/ready"  # None: timed until it exits (the floor)
    predict_path: str | None = "/v1/predict"
    env: dict[str, str] | None = None
    before: Any = None  # called before each start (e.g. remove the local copy)
    samples: list[float] = field(default_factory=list)


# ------------------------------------------------------------------------------------------ set-up


def run(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    return proc.stdout


def make_project(root: Path, mlctl: list[str]) -> dict[str, Any]:
    """A project with model MODEL version 1 registered and aliased champion."""
    import random

    (root / "data").mkdir(parents=True)
    rng = random.Random(7)
    lines = [",".join([f"f{i}" for i in range(N_FEATURES)] + ["label"])]
    for _ in range(2000):
        x = [round(rng.gauss(0, 1), 4) for _ in range(N_FEATURES)]
        score = 1.5 * x[0] - x[1] + 0.8 * x[2] * x[3] + rng.gauss(0, 0.5)
        lines.append(",".join(map(str, [*x, int(score > 0)])))
    (root / "data" / "train.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (root / "mlctl.yaml").write_text(
        "project: {name: bench}\n"
        "tracking: {uri: 'sqlite:///.mlctl/mlflow.db'}\n"
        "train:\n  data: data/train.csv\n  target: label\n  task: classification\n  model: random_forest\n"
        f"  params: {{n_estimators: 50, max_depth: 8}}\n  registered_model: {MODEL}\n", encoding="utf-8")
    trained = json.loads(run([*mlctl, "train", "-o", "json"], root))
    run([*mlctl, "models", "promote", MODEL, trained["registered"]["version"], "--alias", "champion"], root)
    return trained


def write_artifact_json(root: Path, dest: Path) -> Path:
    """artifact.json for ``python -m mlctl.serving`` (as a deploy target writes it)."""
    code = ("import sys; from pathlib import Path; from mlctl.core.config import load_config; "
            "from mlctl.lifecycle.registry import resolve_model; "
            f"resolve_model('{MODEL}@champion', load_config()).to_json(Path(sys.argv[1]))")
    run([sys.executable, "-c", code, str(dest)], root)
    return dest


def export_revision(rev: str, dest: Path) -> Path:
    """``mlctl`` and ``commands`` of git revision ``rev`` laid out as the installed package."""
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "mlctl", "commands"], capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    (dest / "commands").rename(dest / "mlctl" / "commands")
    return dest


def find_mlflow(given: str | None) -> str | None:
    candidates = [given] if given else [str(REPO / ".venv-peers" / "mlflow" / "bin" / "mlflow")]
    found = next((c for c in candidates if c and Path(c).is_file() and os.access(c, os.X_OK)), None)
    return str(Path(found).resolve()) if found else None


# ------------------------------------------------------------------------------------------ timing


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http(url: str, body: bytes | None = None, timeout: float = 2.0) -> int:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            resp.read()
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def start_once(cmd: Command, cwd: Path, record: dict[str, Any], timeout: float = 180.0) -> float:
    """Seconds from starting ``cmd`` to its ready endpoint answering 200 (then it is stopped)."""
    if cmd.before is not None:
        cmd.before()
    if cmd.ready_path is None:
        started = time.perf_counter()
        subprocess.run(cmd.argv, cwd=cwd, env=cmd.env, check=True, capture_output=True)
        return time.perf_counter() - started
    port = free_port()
    argv = [a.format(port=port) for a in cmd.argv]
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:
        started = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, env=cmd.env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            while True:
                if proc.poll() is not None:
                    log.seek(0)
                    raise SystemExit(f"{cmd.name} exited {proc.returncode}:\n{log.read().decode()[-2000:]}")
                with contextlib.suppress(OSError):
                    if http(base + cmd.ready_path, timeout=1.0) == 200:
                        break
                if time.perf_counter() - started > timeout:
                    raise SystemExit(f"{cmd.name} not ready after {timeout:.0f} s")
                time.sleep(0.01)
            elapsed = time.perf_counter() - started
            if cmd.predict_path:  # a served model, not just a listening socket (not timed)
                status = http(base + cmd.predict_path, json.dumps(record).encode(), timeout=30.0)
                if status != 200:
                    raise SystemExit(f"{cmd.name}: POST {cmd.predict_path} answered {status}")
        finally:
            stop_group(proc)  # the session we created: the server and any child
            wait_group_gone(proc.pid)  # workers of a server (mlflow's) must not eat the next start's CPU
    return elapsed


def wait_group_gone(pgid: int, timeout: float = 30.0) -> None:
    """Wait until no process of our group ``pgid`` is left (SIGKILL after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        if time.monotonic() > deadline:  # (zombies nobody reaps also answer: give up on them)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            return
        time.sleep(0.05)


# ------------------------------------------------------------------------------------------ report


def table(rows: list[dict[str, Any]]) -> str:
    out = ["| command | median (s) | min (s) | max (s) | runs | every run (s) |", "|---|---|---|---|---|---|"]
    for r in rows:
        runs = ", ".join(f"{s:.2f}" for s in r["samples_s"])
        out.append(f"| {r['command']} | {r['median_s']:.2f} | {r['min_s']:.2f} | {r['max_s']:.2f} | {r['runs']} "
                   f"| {runs} |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--baseline", default=None, help="git revision to measure beside (e.g. HEAD)")
    parser.add_argument("--mlflow", default=None, help="mlflow executable of the peer (default .venv-peers/mlflow)")
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()

    py = sys.executable
    mlctl = [py, "-m", "mlctl"]
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="mlctl-serve-start-") as tmp:
        root = Path(tmp) / "proj"
        root.mkdir()
        make_project(root, mlctl)
        artifact = write_artifact_json(root, Path(tmp) / "artifact.json")
        ref = f"{MODEL}@champion"
        copy = root / ".mlctl" / "models" / MODEL
        record = {"records": [{f"f{i}": 0.1 * i for i in range(N_FEATURES)}]}
        commands = [
            Command(f"mlctl serve model {ref}", [*mlctl, "serve", "model", ref, "--port", "{port}"]),
            Command(f"mlctl serve model {ref}, first start (no local copy)",
                    [*mlctl, "serve", "model", ref, "--port", "{port}"],
                    before=lambda: shutil.rmtree(copy, ignore_errors=True)),
            Command("python -m mlctl.serving --artifact artifact.json",
                    [py, "-m", "mlctl.serving", "--artifact", str(artifact), "--port", "{port}"]),
        ]
        commands.append(Command(f"floor: python -c '{FLOOR}'", [py, "-c", FLOOR], ready_path=None))
        if args.baseline:
            old = export_revision(args.baseline, Path(tmp) / "baseline")
            env = {**os.environ, "PYTHONPATH": str(old)}
            commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", args.baseline],
                                    capture_output=True, text=True, check=True).stdout.strip()
            commands.append(Command(f"mlctl serve model {ref} at commit {commit} (before)",
                                    [*mlctl, "serve", "model", ref, "--port", "{port}"], env=env))
        mlflow_bin = find_mlflow(args.mlflow)
        if mlflow_bin:
            version = subprocess.run([mlflow_bin, "--version"], capture_output=True, text=True).stdout.strip()
            notes.append(f"Peer: {version or 'mlflow'} ({shown_path(mlflow_bin)}), `--env-manager local`, its "
                         "defaults otherwise; ready when `/ping` answers 200.")
            env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{root / '.mlctl' / 'mlflow.db'}",
                   "PATH": f"{Path(mlflow_bin).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
            commands.append(Command(f"mlflow models serve -m models:/{ref} --env-manager local",
                                    [mlflow_bin, "models", "serve", "-m", f"models:/{ref}", "--env-manager", "local",
                                     "--host", "127.0.0.1", "--port", "{port}"],
                                    ready_path="/ping", predict_path=None, env=env))
        else:
            notes.append("`mlflow models serve` not measured: no peer at .venv-peers/mlflow (install it there, "
                         "or pass --mlflow PATH)")
        load_before = os.getloadavg()[0]
        for cmd in commands:  # warm-up: page cache, .pyc files, the local copy
            start_once(cmd, root, record)
        for i in range(args.rounds):
            for cmd in commands[i % len(commands):] + commands[:i % len(commands)]:  # each round starts elsewhere
                cmd.samples.append(start_once(cmd, root, record))
            print(f"round {i + 1}/{args.rounds}: " + ", ".join(f"{c.samples[-1]:.2f}" for c in commands),
                  file=sys.stderr)
        load_after = os.getloadavg()[0]

    rows = [{"command": c.name, "median_s": statistics.median(c.samples), "min_s": min(c.samples),
             "max_s": max(c.samples), "runs": len(c.samples), "samples_s": c.samples} for c in commands]
    result: dict[str, Any] = {
        "benchmark": "serve_start", "machine": machine(), "python": platform.python_version(),
        "target_s": TARGET_S, "rounds": args.rounds, "load_average_1m": [load_before, load_after],
        "rows": rows, "notes": notes, "script": shown_path(__file__),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "serve_start.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    main_row = rows[0]
    ratios = [f"{r['median_s'] / main_row['median_s']:.1f}x faster than {what}" for r in rows
              for what in [("before" if "(before)" in r["command"] else
                            "`mlflow models serve`" if r["command"].startswith("mlflow") else None)] if what]
    summary = (f"`mlctl serve model` ready in **{main_row['median_s']:.2f} s** (median of {args.rounds}; "
               f"target <= {TARGET_S:.1f} s){': ' + ', '.join(ratios) if ratios else ''}. "
               f"Model: a 50-tree RandomForestClassifier on {N_FEATURES} features, "
               f"registered in the embedded SQLite store. 1-minute load average {load_before:.2f} before, "
               f"{load_after:.2f} after (the machine is shared).")
    text = "\n\n".join([table(rows), summary, *notes])
    print(text)
    if args.write_docs:
        write_section("serve_start", text, result)


if __name__ == "__main__":
    main()
