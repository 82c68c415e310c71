"""Serving one model: mlctl's server beside ``mlflow models serve``, the same load on both, one run.

Trains a 50-tree RandomForestClassifier on 20 synthetic features and saves it once, as an MLflow
model folder (skops format, through ``mlctl.lifecycle.serialize.save_mlflow_model``) whose
``model.skops`` is also mlctl's artifact, so both servers load the very same file. Then, one
server at a time on this machine:

* ``mlctl``: ``python -m mlctl.serving --artifact artifact.json`` (one process; adaptive
  micro-batching; the verified tree fast path);
* ``mlctl, estimator.predict``: the same with ``--no-fast-path`` (scikit-learn's own predict);
* ``mlflow``: ``mlflow models serve --env-manager local -m MODEL_DIR`` (its default: one uvicorn
  worker), with the venv's bin on PATH.

Each gets a check request (its prediction must equal the estimator's), a warm-up, then the measured
load: wrk, 1-row JSON requests, ``--connections`` keep-alive connections (16), ``--duration``
seconds (20), one wrk thread, latency percentiles from wrk's own histogram (a Lua ``done`` hook
prints them as JSON). Every non-2xx answer and socket error counts as an error.

Usage:
    python benchmarks/serve_single.py [--duration 20] [--connections 16] [--rounds 1] [--write-docs]
        [--max-batch 64] [--max-wait-ms 2] [--pin] [--skip-mlflow] [--skip-generic]
Writes benchmarks/results/serve_single.json and, with --write-docs, the serve_single section of
docs/benchmarks.md. Needs wrk (Debian: apt-get install wrk).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, RESULTS, machine, stop_group, write_section  # noqa: E402 - benchmarks/ is not a package

N_FEATURES = 20
N_TREES = 50
TARGET_RATIO = 10.0
TARGET_P99_MS = 25.0
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never a proxy

LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = [[BODY]]
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'JSON:{"requests":%d,"duration_us":%d,"status_errors":%d,"connect":%d,"read":%d,"write":%d,"timeout":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
"""


@dataclass
class Row:
    """One server under the load."""

    server: str
    command: str
    req_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    requests: int
    non_2xx: int
    socket_errors: int
    errors: int
    details: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------ the model


def build_model(folder: Path, seed: int = 0) -> tuple[Path, Path, list[dict[str, float]], list[Any]]:
    """Train and save the model; returns (artifact.json, MLflow model dir, a probe record, its prediction).
    ``seed``: the data's and the forest's (another seed, another forest; the probe record is the same)."""
    import numpy as np
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier

    from mlctl.lifecycle.artifact import ModelArtifact
    from mlctl.lifecycle.serialize import save_mlflow_model

    X, y = make_classification(n_samples=5000, n_features=N_FEATURES, n_informative=10, random_state=seed)
    est = RandomForestClassifier(n_estimators=N_TREES, random_state=seed).fit(X, y)
    names = [f"f{i}" for i in range(N_FEATURES)]
    signature = {"inputs": [{"name": n, "type": "double"} for n in names],
                 "outputs": [{"name": "label", "type": "long"}]}
    model_dir = folder / "model"
    saved = save_mlflow_model(est, model_dir, signature=signature)
    artifact = ModelArtifact(name="bench-rf", version="1", alias="champion", path=saved.model_file,
                             sha256=saved.sha256, signature=signature)
    artifact.to_json(model_dir / "artifact.json")
    row = np.random.default_rng(1).normal(size=(1, N_FEATURES))
    records = [{n: round(float(v), 6) for n, v in zip(names, row[0], strict=True)}]
    expected = est.predict(np.array([[r[n] for n in names] for r in records])).tolist()
    return model_dir / "artifact.json", model_dir, records, expected


# ------------------------------------------------------------------------------------------ processes


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http(url: str, body: bytes | None = None, timeout: float = 10.0) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
        with contextlib.suppress(OSError):
            if http(url, timeout=2)[0] == 200:
                return
        time.sleep(0.2)
    raise SystemExit(f"server not ready after {timeout:.0f}s:\n{log.read_text()[-2000:]}")


@contextlib.contextmanager
def running(argv: list[str], ready_url: str, log: Path, env: dict[str, str] | None = None,
            cpus: str | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """A server in its own session (so its workers can be stopped with it), stopped by its PID/group."""
    if cpus:
        argv = ["taskset", "-c", cpus, *argv]
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO,
                                start_new_session=True)
    try:
        wait_http(ready_url, proc, log)
        yield proc
    finally:
        stop_group(proc)  # the group we created: the server and its workers


def wrk(url: str, lua: Path, connections: int, duration: int, cpus: str | None) -> dict[str, Any]:
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--timeout", "10s", "--latency", "-s", str(lua), url]
    if cpus:
        argv = ["taskset", "-c", cpus, *argv]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60, check=False)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("JSON:")), None)
    if proc.returncode != 0 or line is None:
        raise SystemExit(f"wrk failed ({proc.returncode}): {proc.stdout[-1500:]} {proc.stderr[-1500:]}")
    return json.loads(line[len("JSON:"):])


def measure(name: str, command: str, url: str, body: dict[str, Any], args: argparse.Namespace, tmp: Path,
            extra: dict[str, Any]) -> Row:
    lua = tmp / f"{re.sub(r'[^a-z0-9]+', '-', name)}.lua"
    lua.write_text(LUA.replace("BODY", json.dumps(body)))
    wrk(url, lua, args.connections, args.warmup, args.wrk_cpus)  # warm-up: caches, lazy imports, JIT-less paths
    w = wrk(url, lua, args.connections, args.duration, args.wrk_cpus)
    socket_errors = w["connect"] + w["read"] + w["write"] + w["timeout"]
    return Row(server=name, command=command, req_per_s=w["requests"] / (w["duration_us"] / 1e6),
               p50_ms=w["p50_us"] / 1000, p90_ms=w["p90_us"] / 1000, p99_ms=w["p99_us"] / 1000,
               max_ms=w["max_us"] / 1000, requests=w["requests"], non_2xx=w["status_errors"],
               socket_errors=socket_errors, errors=w["status_errors"] + socket_errors, details={**extra, "wrk": w})


def batch_stats(base: str) -> dict[str, float]:
    """Mean micro-batch size and the number of model calls, from the server's /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    _, text = http(f"{base}/metrics")
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text.decode()):
        for s in family.samples:
            if s.name in ("mlctl_batch_size_rows_sum", "mlctl_batch_size_rows_count"):
                values[s.name] = s.value
    calls = values.get("mlctl_batch_size_rows_count", 0.0)
    return {"model_calls": calls, "mean_batch_rows": values.get("mlctl_batch_size_rows_sum", 0.0) / calls
            if calls else 0.0}


def run_mlctl(name: str, artifact: Path, records: list[dict[str, float]], expected: list[Any],
              args: argparse.Namespace, tmp: Path, fast_path: bool) -> Row:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "mlctl.serving", "--artifact", str(artifact), "--port", str(port),
            "--max-batch", str(args.max_batch), "--max-wait-ms", str(args.max_wait_ms), "--log-level", "warning"]
    if not fast_path:
        argv.append("--no-fast-path")
    with running(argv, f"{base}/ready", tmp / f"{name}.log", cpus=args.server_cpus):
        status, answer = http(f"{base}/v1/predict", json.dumps({"records": records}).encode())
        if status != 200 or json.loads(answer)["predictions"] != expected:
            raise SystemExit(f"{name}: wrong answer {status} {answer[:300]!r}, expected {expected}")
        before = batch_stats(base)
        row = measure(name, "python -m mlctl.serving --artifact artifact.json" + ("" if fast_path else
                      " --no-fast-path"), f"{base}/v1/predict", {"records": records}, args, tmp, {})
        after = batch_stats(base)
        calls = after["model_calls"] - before["model_calls"]
        row.details["model_calls"] = calls
        row.details["mean_batch_rows"] = row.requests / calls if calls else 0.0
    return row


def run_mlflow(model_dir: Path, records: list[dict[str, float]], expected: list[Any], args: argparse.Namespace,
               tmp: Path) -> Row:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    venv_bin = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{venv_bin}:{os.environ.get('PATH', '')}"}
    mlflow = shutil.which("mlflow", path=venv_bin) or "mlflow"
    argv = [mlflow, "models", "serve", "--env-manager", "local", "-m", str(model_dir), "-h", "127.0.0.1",
            "-p", str(port)]
    if args.mlflow_workers:
        argv += ["--workers", str(args.mlflow_workers)]
    body = {"dataframe_records": records}
    with running(argv, f"{base}/ping", tmp / "mlflow.log", env=env, cpus=args.server_cpus):
        status, answer = http(f"{base}/invocations", json.dumps(body).encode(), timeout=60)
        if status != 200 or json.loads(answer)["predictions"] != expected:
            raise SystemExit(f"mlflow: wrong answer {status} {answer[:300]!r}, expected {expected}")
        workers = args.mlflow_workers or 1
        row = measure("mlflow", f"mlflow models serve --env-manager local ({workers} uvicorn worker"
                      f"{'s' if workers > 1 else ''})", f"{base}/invocations", body, args, tmp, {"workers": workers})
    return row


# ------------------------------------------------------------------------------------------ report


def median_row(rows: list[Row]) -> Row:
    """The round with the median throughput (its latencies come with it)."""
    ordered = sorted(rows, key=lambda r: r.req_per_s)
    return ordered[(len(ordered) - 1) // 2]


def report(result: dict[str, Any]) -> str:
    """The markdown table and summary lines of a result document."""
    out = ["| server | req/s | p50 (ms) | p90 (ms) | p99 (ms) | max (ms) | requests | errors (non-2xx + socket) | "
           "mean batch (rows) | every round: req/s (p99 ms) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        batch = f"{r['details']['mean_batch_rows']:.1f}" if "mean_batch_rows" in r["details"] else "-"
        every = ", ".join(f"{x['req_per_s']:,.0f} ({x['p99_ms']:.1f})" for x in result["all_rounds"][r["server"]])
        out.append(f"| {r['server']} | {r['req_per_s']:,.0f} | {r['p50_ms']:.1f} | {r['p90_ms']:.1f} | "
                   f"{r['p99_ms']:.1f} | {r['max_ms']:.1f} | {r['requests']:,} | {r['errors']} ({r['non_2xx']} + "
                   f"{r['socket_errors']}) | {batch} | {every} |")
    text = "\n".join(out)
    mlctl_row = next(r for r in result["rows"] if r["server"] == "mlctl")
    if result["throughput_ratio"] is not None:
        text += (f"\n\nmlctl / mlflow throughput: **{result['throughput_ratio']:.1f}x** (target >= "
                 f"{TARGET_RATIO:.0f}x); mlctl p99 {mlctl_row['p99_ms']:.1f} ms (target <= {TARGET_P99_MS:.0f} ms); "
                 f"mlctl errors {mlctl_row['errors']}.")
    load, settings, avg = result["load"], result["mlctl_settings"], result["load_average_1m"]
    rounds = load["rounds"]
    text += (f"\n\nLoad: wrk, 1 thread, {load['connections']} connections, {load['duration_s']} s after a "
             f"{load['warmup_s']} s warm-up, 1-row JSON requests"
             f"{', servers pinned to CPU 1 and wrk to CPU 0' if load['pinned'] else ''}"
             f"{f'; each row is the round with the median req/s of {rounds} alternating rounds' if rounds > 1 else ''}"
             f". 1-minute load average {avg['before']:.2f} before, {avg['after']:.2f} after (the machine is shared). "
             f"mlctl: 1 process, max_batch {settings['max_batch']}, max_wait_ms {settings['max_wait_ms']:g}. "
             "Versions: " + ", ".join(f"{k} {v}" for k, v in result["versions"].items()) + ".")
    return text


def versions() -> dict[str, str]:
    from importlib.metadata import version

    return {d: version(d) for d in ("mlflow", "scikit-learn", "fastapi", "uvicorn", "numpy")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=20, help="seconds of measured load per server")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of warm-up load per server")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=1, help="measure each server this many times, alternating")
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--max-wait-ms", type=float, default=2.0)
    parser.add_argument("--mlflow-workers", type=int, default=None, help="default: mlflow's own (1)")
    parser.add_argument("--pin", action="store_true", help="servers on CPU 1, wrk on CPU 0 (taskset)")
    parser.add_argument("--skip-mlflow", action="store_true")
    parser.add_argument("--skip-generic", action="store_true", help="skip the --no-fast-path row")
    parser.add_argument("--write-docs", action="store_true")
    parser.add_argument("--report-only", action="store_true",
                        help="measure nothing: rewrite the docs section from benchmarks/results/serve_single.json")
    args = parser.parse_args()
    if args.report_only:
        result = json.loads((RESULTS / "serve_single.json").read_text())
        print(report(result))
        if args.write_docs:
            write_section("serve_single", report(result), result)
        return
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")
    args.server_cpus = "1" if args.pin else None
    args.wrk_cpus = "0" if args.pin else None

    load_before = os.getloadavg()
    rounds: dict[str, list[Row]] = {}
    with tempfile.TemporaryDirectory(prefix="mlctl-bench-") as tmpdir:
        tmp = Path(tmpdir)
        artifact, model_dir, records, expected = build_model(tmp)
        for i in range(args.rounds):
            print(f"round {i + 1}/{args.rounds}", file=sys.stderr)
            plan: list[tuple[str, Any]] = [("mlctl", lambda: run_mlctl("mlctl", artifact, records, expected, args,
                                                                       tmp, fast_path=True))]
            if not args.skip_generic:
                plan.append(("mlctl, estimator.predict", lambda: run_mlctl(
                    "mlctl, estimator.predict", artifact, records, expected, args, tmp, fast_path=False)))
            if not args.skip_mlflow:
                plan.append(("mlflow", lambda: run_mlflow(model_dir, records, expected, args, tmp)))
            for name, run in plan:
                row = run()
                print(f"  {name}: {row.req_per_s:,.0f} req/s, p50 {row.p50_ms:.1f} ms, p99 {row.p99_ms:.1f} ms, "
                      f"errors {row.errors}", file=sys.stderr)
                rounds.setdefault(name, []).append(row)

    rows = [median_row(v) for v in rounds.values()]
    by_name = {r.server: r for r in rows}
    mlctl_row, mlflow_row = by_name["mlctl"], by_name.get("mlflow")
    ratio = mlctl_row.req_per_s / mlflow_row.req_per_s if mlflow_row and mlflow_row.req_per_s else None
    target = {"throughput_ratio_min": TARGET_RATIO, "p99_ms_max": TARGET_P99_MS, "errors": 0}
    met = {"throughput_ratio": ratio is not None and ratio >= TARGET_RATIO,
           "p99": mlctl_row.p99_ms <= TARGET_P99_MS, "zero_errors": mlctl_row.errors == 0}
    result = {
        "benchmark": "serve_single", "python": platform.python_version(), "machine": machine(),
        "versions": versions(),
        "model": f"RandomForestClassifier, {N_TREES} trees, {N_FEATURES} features (skops file shared by both)",
        "load": {"tool": "wrk", "threads": 1, "connections": args.connections, "duration_s": args.duration,
                 "warmup_s": args.warmup, "rows_per_request": 1, "rounds": args.rounds, "pinned": args.pin},
        "mlctl_settings": {"max_batch": args.max_batch, "max_wait_ms": args.max_wait_ms, "workers": 1,
                           "processes": 1},
        "rows": [asdict(r) for r in rows], "all_rounds": {k: [asdict(r) for r in v] for k, v in rounds.items()},
        "throughput_ratio": ratio, "target": target, "target_met": met,
        "load_average_1m": {"before": round(load_before[0], 2), "after": round(os.getloadavg()[0], 2)},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "serve_single.json").write_text(json.dumps(result, indent=2) + "\n")
    text = report(result)
    print(text)
    if args.write_docs:
        write_section("serve_single", text, result)


if __name__ == "__main__":
    main()
