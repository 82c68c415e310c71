"""The model gateway: an A/B experiment beside the single-model server and ``mlflow models serve``,
then many models behind one gateway. One run, one machine.

The forest is serve_single's (``build_model``: a 50-tree RandomForestClassifier on 20 features,
saved once as an MLflow model folder whose ``model.skops`` is also mlctl's artifact). Then, one
server at a time, each a process of its own:

* ``mlctl, single model``: ``python -m mlctl.serving --artifact artifact.json`` (serve_single's);
* ``gateway, pinned version``: a gateway serving model ``bench`` with versions 1 and 2 (two
  predictors loaded from the same artifact; aliases champion -> 1, challenger -> 2) and no
  experiment store, loaded on ``POST /v1/models/bench/versions/1/predict``: the gateway's own cost;
* ``gateway, A/B experiment``: the same gateway with the embedded experiment store (an SQLite
  file in a temporary folder) holding a running experiment ``ab`` (champion:50, challenger:50),
  flushed every second, loaded on ``POST /v1/models/bench/predict``: every request is assigned a
  variant, counted, and recorded for feedback;
* ``mlflow``: ``mlflow models serve --env-manager local`` (serve_single's).

Every server gets check requests first (its predictions must equal the estimator's; under the
experiment both variants must answer), then the load of serve_single: wrk, one thread, 1-row JSON
requests, ``--connections`` keep-alive connections (16), ``--warmup`` then ``--duration`` seconds
(3 + 20), latency percentiles from wrk's own histogram; every non-2xx answer and socket error
counts as an error. Routing cost: the gateway's p50 minus the single server's, both under that
load (so queueing is part of both). After the A/B gateway stopped, the store's assignment counts
must equal the gateway's answered requests (nothing lost by the batched writes).

Many models: ``--models`` (10) forests, each trained with its own seed, served by one gateway
process (one version each, the embedded store, no experiment). Memory: the process's resident set
(VmRSS) after the imports and after each model is loaded (a garbage collection before each
reading), and once serving after the load; memory per model is the growth divided by the number
of models. Load: one wrk run spreading the requests over every model in turn (a Lua request
counter picks the path), then ``--model-duration`` seconds (5) on each model alone, for its p99.

Usage:
    python benchmarks/serve_gateway.py [--duration 20] [--connections 16] [--rounds 1] [--models 10]
        [--model-duration 5] [--skip-mlflow] [--pin] [--write-docs]
Writes benchmarks/results/serve_gateway.json and, with --write-docs, the serve_gateway section of
docs/benchmarks.md. Needs wrk (Debian: apt-get install wrk) and Linux (/proc for the memory).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import platform
import shutil
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from _common import RESULTS, machine, write_section  # noqa: E402 - benchmarks/ is not a package
from serve_single import (  # noqa: E402
    LUA,
    TARGET_P99_MS,
    Row,
    build_model,
    free_port,
    http,
    measure,
    median_row,
    run_mlctl,
    run_mlflow,
    running,
    versions,
    wrk,
)

TARGET_SINGLE_RATIO = 0.9  # gateway (A/B) req/s over the single-model server's
TARGET_ROUTING_MS = 0.1  # gateway (A/B) p50 minus the single-model server's
TARGET_MLFLOW_RATIO = 50.0  # gateway (A/B) req/s over mlflow's
MODEL = "bench"
EXPERIMENT = "ab"
SINGLE, PINNED, AB, MLFLOW = ("mlctl, single model", "gateway, pinned version (no experiment)",
                              "gateway, A/B experiment", "mlflow")
#: the gateway process: this module's gateway_process, in a fresh interpreter
LAUNCHER = (f"import sys; sys.path.insert(0, {str(BENCH)!r}); import serve_gateway; "
            "serve_gateway.gateway_process(sys.argv[1])")


# ------------------------------------------------------------------------------------------ the gateway process


def rss_kb(pid: int | str = "self") -> int:
    """A process's resident set size (VmRSS), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS in /proc/{pid}/status")


def gateway_process(spec_file: str) -> None:
    """Run a gateway as ``spec_file`` describes it (runs in the server process; see :func:`start_gateway`).

    Writes the resident set after the imports and after each loaded version to the spec's ``report``.
    """
    spec = json.loads(Path(spec_file).read_text())
    import sklearn.ensemble  # noqa: F401 - what loading a forest imports is no model's memory

    from mlctl.lifecycle.artifact import ModelArtifact
    from mlctl.serving.app import create_app
    from mlctl.serving.experiments.store import SqliteStore
    from mlctl.serving.gateway import Gateway, ServedModel
    from mlctl.serving.predictor import Predictor
    from mlctl.serving.runner import run_asgi
    from mlctl.serving.startup import import_skops

    import_skops()
    gc.collect()
    rss = [rss_kb()]
    served: dict[str, ServedModel] = {}
    for name, model in spec["models"].items():
        alias_of = {version: alias for alias, version in model["aliases"].items()}
        apps = {}
        for version, artifact_json in model["versions"].items():
            artifact = dataclasses.replace(ModelArtifact.from_json(Path(artifact_json)), name=name, version=version,
                                           alias=alias_of.get(version))
            apps[version] = create_app(Predictor.from_artifact(artifact), max_batch=spec["max_batch"],
                                       max_wait_ms=spec["max_wait_ms"])
            gc.collect()
            rss.append(rss_kb())
        served[name] = ServedModel(name, apps, dict(model["aliases"]), model["default"], model.get("default_alias"))
    Path(spec["report"]).write_text(json.dumps({"pid": os.getpid(), "rss_kb": rss}))
    store = SqliteStore(spec["store"]) if spec.get("store") else None
    gateway = Gateway(served, store=store, flush_interval_s=spec["flush_interval_s"])
    try:
        run_asgi(gateway, lambda endpoint: endpoint, host="127.0.0.1", port=spec["port"], log_level="warning")
    finally:
        if store is not None:
            store.close()


def start_gateway(name: str, models: dict[str, Any], store: Path | None, args: argparse.Namespace,
                  tmp: Path) -> tuple[str, list[str], Path, Path]:
    """The base URL, argv, log and report file of a gateway process serving ``models``."""
    slug = name.split(",")[0].replace(" ", "-") + f"-{len(models)}"
    port = free_port()
    spec = {"port": port, "models": models, "store": str(store) if store else None, "flush_interval_s": 1.0,
            "max_batch": args.max_batch, "max_wait_ms": args.max_wait_ms, "report": str(tmp / f"{slug}.rss.json")}
    spec_file = tmp / f"{slug}.spec.json"
    spec_file.write_text(json.dumps(spec))
    return f"http://127.0.0.1:{port}", [sys.executable, "-c", LAUNCHER, str(spec_file)], tmp / f"{slug}.log", \
        Path(spec["report"])


# ------------------------------------------------------------------------------------------ measuring


def gateway_metrics(base: str) -> dict[str, float]:
    """Model calls (every version), answered requests and assignments per variant, from the gateway's /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    _, text = http(f"{base}/metrics")
    out: dict[str, float] = {"model_calls": 0.0, "answered": 0.0, "assigned": 0.0}
    for family in text_string_to_metric_families(text.decode()):
        for s in family.samples:
            if s.name == "mlctl_batch_size_rows_count":
                out["model_calls"] += s.value
            elif s.name == "mlctl_gateway_requests_total" and s.labels.get("status") == "200":
                out["answered"] += s.value
            elif s.name == "mlctl_gateway_assignments_total":
                out["assigned"] += s.value
                key = f"assigned_{s.labels['variant']}"
                out[key] = out.get(key, 0.0) + s.value
    return out


def check_answers(label: str, url: str, records: list[dict[str, float]], expected: list[Any], times: int = 1
                  ) -> list[str]:
    """``times`` requests that must all answer the estimator's prediction; the variants they got."""
    seen = []
    for _ in range(times):
        status, answer = http(url, json.dumps({"records": records}).encode())
        doc = json.loads(answer) if status == 200 else {}
        if doc.get("predictions") != expected:
            raise SystemExit(f"{label}: wrong answer {status} {answer[:300]!r}, expected {expected}")
        seen.append(str(doc.get("variant", "-")))
    return seen


def row_of(name: str, command: str, w: dict[str, Any], extra: dict[str, Any]) -> Row:
    """A Row from wrk's summary (as serve_single's measure makes it)."""
    socket_errors = w["connect"] + w["read"] + w["write"] + w["timeout"]
    return Row(server=name, command=command, req_per_s=w["requests"] / (w["duration_us"] / 1e6),
               p50_ms=w["p50_us"] / 1000, p90_ms=w["p90_us"] / 1000, p99_ms=w["p99_us"] / 1000,
               max_ms=w["max_us"] / 1000, requests=w["requests"], non_2xx=w["status_errors"],
               socket_errors=socket_errors, errors=w["status_errors"] + socket_errors, details={**extra, "wrk": w})


def run_ab_gateway(name: str, artifact: Path, records: list[dict[str, float]], expected: list[Any],
                   args: argparse.Namespace, tmp: Path, experiment: bool) -> Row:
    """The two-version gateway; with ``experiment``, routed by the A/B experiment, else pinned to version 1."""
    from mlctl.serving.experiments.definition import new_experiment
    from mlctl.serving.experiments.store import SqliteStore

    models = {MODEL: {"versions": {"1": str(artifact), "2": str(artifact)},
                      "aliases": {"champion": "1", "challenger": "2"}, "default": "1", "default_alias": "champion"}}
    store_file = None
    if experiment:
        store_file = tmp / f"experiments-{len(list(tmp.glob('experiments-*.db')))}.db"
        store = SqliteStore(store_file)
        store.create(new_experiment(EXPERIMENT, MODEL, "champion:50,challenger:50"))
        store.close()
    base, argv, log, _ = start_gateway(name, models, store_file, args, tmp)
    path = f"/v1/models/{MODEL}/predict" if experiment else f"/v1/models/{MODEL}/versions/1/predict"
    with running(argv, f"{base}/ready", log, cpus=args.server_cpus):
        seen = check_answers(name, base + path, records, expected, times=20 if experiment else 1)
        if experiment and set(seen) != {"champion", "challenger"}:
            raise SystemExit(f"{name}: 20 requests went to {sorted(set(seen))} only, not to both variants")
        before = gateway_metrics(base)
        row = measure(name, f"gateway, POST {path}" + (", experiment ab (champion:50, challenger:50), SQLite store"
                                                       if experiment else ", no store"),
                      base + path, {"records": records}, args, tmp, {})
        after = gateway_metrics(base)
    calls = after["model_calls"] - before["model_calls"]
    row.details["model_calls"] = calls
    row.details["mean_batch_rows"] = row.requests / calls if calls else 0.0
    if experiment and store_file is not None:
        store = SqliteStore(store_file)
        try:
            stats = store.stats(EXPERIMENT)
        finally:
            store.close()
        stored = {v: s.assigned for v, s in stats.items()}
        row.details["assignments"] = {"stored": stored, "stored_total": sum(stored.values()),
                                      "answered_by_gateway": int(after["answered"]),
                                      "counted_by_gateway": int(after["assigned"]),
                                      "share_champion": stored.get("champion", 0) / max(1, sum(stored.values()))}
        if sum(stored.values()) != int(after["assigned"]):
            print(f"  warning: the store counted {sum(stored.values())} assignments, the gateway "
                  f"{int(after['assigned'])}", file=sys.stderr)
    return row


def run_many(count: int, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """``count`` forests behind one gateway: memory, a mixed load, then each model alone."""
    built = []
    records: list[dict[str, float]] = []
    for i in range(count):
        print(f"  training forest {i + 1}/{count}", file=sys.stderr)
        artifact, _, records, expected = build_model(tmp / f"forest-{i}", seed=i)
        built.append((f"model-{i}", artifact, expected))
    records_body = {"records": records}
    models = {name: {"versions": {"1": str(artifact)}, "aliases": {"champion": "1"}, "default": "1",
                     "default_alias": "champion"} for name, artifact, _ in built}
    base, argv, log, report = start_gateway("many", models, tmp / "many.db", args, tmp)
    paths = [f"/v1/models/{name}/predict" for name, _, _ in built]
    lua = tmp / "one-row.lua"
    lua.write_text(LUA.replace("BODY", json.dumps(records_body)))
    mixed_lua = tmp / "mixed.lua"
    mixed_lua.write_text(LUA.replace("BODY", json.dumps(records_body)) + (
        "local paths = {" + ", ".join(json.dumps(p) for p in paths) + "}\n"
        "local counter = 0\n"
        "request = function()\n"
        "  counter = counter + 1\n"
        "  return wrk.format(nil, paths[counter % #paths + 1])\n"
        "end\n"))
    per_model: list[Row] = []
    with running(argv, f"{base}/ready", log, cpus=args.server_cpus) as proc:
        loading = json.loads(report.read_text())
        rss_ready = rss_kb(proc.pid)
        for (name, _, expected), path in zip(built, paths, strict=True):
            check_answers(name, base + path, records, expected)
        wrk(base + paths[0], mixed_lua, args.connections, args.warmup, args.wrk_cpus)
        mixed = row_of(f"{count} models, requests in turn", "gateway, POST /v1/models/model-N/predict, N in turn",
                       wrk(base + paths[0], mixed_lua, args.connections, args.duration, args.wrk_cpus), {})
        for name, path in zip(models, paths, strict=True):
            w = wrk(base + path, lua, args.connections, args.model_duration, args.wrk_cpus)
            per_model.append(row_of(name, f"gateway, POST {path}", w, {}))
        rss_served = rss_kb(proc.pid)
    rss = loading["rss_kb"]
    return {
        "models": count, "model": f"RandomForestClassifier, 50 trees each, seeds 0-{count - 1}",
        "rss_mib": {"after_imports": rss[0] / 1024, "after_each_load": [x / 1024 for x in rss[1:]],
                    "ready": rss_ready / 1024, "after_load": rss_served / 1024},
        "mib_per_model": (rss[-1] - rss[0]) / 1024 / count,
        "mib_per_model_after_first": (rss[-1] - rss[1]) / 1024 / (count - 1) if count > 1 else None,
        "mixed": asdict(mixed), "per_model": [asdict(r) for r in per_model],
        "model_duration_s": args.model_duration,
    }


# ------------------------------------------------------------------------------------------ report


def report(result: dict[str, Any]) -> str:
    """The markdown tables and summary lines of a result document."""
    out = ["| server | req/s | p50 (ms) | p90 (ms) | p99 (ms) | max (ms) | requests | errors (non-2xx + socket) | "
           "mean batch (rows) | every round: req/s (p99 ms) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        batch = f"{r['details']['mean_batch_rows']:.1f}" if "mean_batch_rows" in r["details"] else "-"
        every = ", ".join(f"{x['req_per_s']:,.0f} ({x['p99_ms']:.1f})" for x in result["all_rounds"][r["server"]])
        out.append(f"| {r['server']} | {r['req_per_s']:,.0f} | {r['p50_ms']:.2f} | {r['p90_ms']:.2f} | "
                   f"{r['p99_ms']:.1f} | {r['max_ms']:.1f} | {r['requests']:,} | {r['errors']} ({r['non_2xx']} + "
                   f"{r['socket_errors']}) | {batch} | {every} |")
    text = "\n".join(out)
    c, met = result["comparison"], result["target_met"]
    ab = next(r for r in result["rows"] if r["server"] == AB)

    def verdict(ok: bool | None) -> str:
        return "not measured" if ok is None else ("**met**" if ok else "**not met**")

    lines = [f"gateway (A/B) / single-model server throughput: **{c['ab_over_single']:.2f}** "
             f"(target >= {TARGET_SINGLE_RATIO:.2f}): {verdict(met['vs_single'])}",
             f"routing cost, p50 gateway (A/B) minus single-model server: **{c['routing_p50_ms']:+.2f} ms** "
             f"(target <= {TARGET_ROUTING_MS} ms): {verdict(met['routing'])}; of it the gateway without an "
             f"experiment {c['gateway_p50_ms']:+.2f} ms, the experiment {c['experiment_p50_ms']:+.2f} ms",
             "gateway (A/B) / mlflow throughput: " + ("not measured (--skip-mlflow)" if c["ab_over_mlflow"] is None
                                                      else f"**{c['ab_over_mlflow']:.1f}x**")
             + f" (target >= {TARGET_MLFLOW_RATIO:.0f}x): {verdict(met['vs_mlflow'])}",
             f"gateway (A/B) p99 {ab['p99_ms']:.1f} ms (target <= {TARGET_P99_MS:.0f} ms): {verdict(met['p99'])}; "
             f"errors {ab['errors']} (target 0): {verdict(met['zero_errors'])}"]
    text += "\n\n" + "\n".join(f"- {line}" for line in lines)
    assigned = ab["details"].get("assignments")
    if assigned:
        text += (f"\n\nExperiment store after the A/B run: {assigned['stored_total']:,} assignments "
                 f"({assigned['share_champion']:.1%} champion), the gateway counted "
                 f"{assigned['counted_by_gateway']:,}"
                 + (" (equal: none lost)." if assigned["stored_total"] == assigned["counted_by_gateway"]
                    else " (**differ**)."))
    many = result.get("many")
    if many:
        rss = many["rss_mib"]
        after_first = many["mib_per_model_after_first"]
        text += (f"\n\n{many['models']} models in one gateway ({many['model']}): resident set "
                 f"{rss['after_imports']:.0f} MiB after the imports, {rss['after_each_load'][-1]:.0f} MiB with every "
                 f"model loaded, {rss['after_load']:.0f} MiB after the load below: **{many['mib_per_model']:.1f} MiB "
                 f"per model**"
                 + (f" ({after_first:.1f} MiB each after the first)" if after_first is not None else "") + ".")
        m = many["mixed"]
        text += ("\n\n| load | req/s | p50 (ms) | p99 (ms) | max (ms) | requests | errors |"
                 "\n|---|---|---|---|---|---|---|"
                 f"\n| every model in turn, {result['load']['duration_s']} s | {m['req_per_s']:,.0f} | "
                 f"{m['p50_ms']:.2f} | {m['p99_ms']:.1f} | {m['max_ms']:.1f} | {m['requests']:,} | {m['errors']} |")
        for r in many["per_model"]:
            text += (f"\n| {r['server']} alone, {many['model_duration_s']} s | {r['req_per_s']:,.0f} | "
                     f"{r['p50_ms']:.2f} | {r['p99_ms']:.1f} | {r['max_ms']:.1f} | {r['requests']:,} | "
                     f"{r['errors']} |")
    load, settings, avg = result["load"], result["mlctl_settings"], result["load_average_1m"]
    rounds = load["rounds"]
    text += (f"\n\nLoad: wrk, 1 thread, {load['connections']} connections, {load['duration_s']} s after a "
             f"{load['warmup_s']} s warm-up, 1-row JSON requests"
             f"{', servers pinned to CPU 1 and wrk to CPU 0' if load['pinned'] else ''}"
             f"{f'; each row is the round with the median req/s of {rounds} alternating rounds' if rounds > 1 else ''}"
             f". p50 under this load includes the queueing of 16 connections. 1-minute load average "
             f"{avg['before']:.2f} before, {avg['after']:.2f} after (the machine is shared). Every model version: "
             f"1 process, max_batch {settings['max_batch']}, max_wait_ms {settings['max_wait_ms']:g}; experiment "
             f"store: SQLite, flushed every {settings['flush_interval_s']:g} s. Versions: "
             + ", ".join(f"{k} {v}" for k, v in result["versions"].items()) + ".")
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=20, help="seconds of measured load per server")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of warm-up load per server")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=1, help="measure each server this many times, alternating")
    parser.add_argument("--models", type=int, default=10, help="models in the many-models gateway (0: skip it)")
    parser.add_argument("--model-duration", type=int, default=5, help="seconds of load on each model alone")
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--max-wait-ms", type=float, default=2.0)
    parser.add_argument("--pin", action="store_true", help="servers on CPU 1, wrk on CPU 0 (taskset)")
    parser.add_argument("--skip-mlflow", action="store_true")
    parser.add_argument("--write-docs", action="store_true")
    parser.add_argument("--report-only", action="store_true",
                        help="measure nothing: rewrite the docs section from benchmarks/results/serve_gateway.json")
    args = parser.parse_args()
    if args.report_only:
        result = json.loads((RESULTS / "serve_gateway.json").read_text())
        print(report(result))
        if args.write_docs:
            write_section("serve_gateway", report(result), result)
        return
    if not shutil.which("wrk"):
        raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")
    args.server_cpus = "1" if args.pin else None
    args.wrk_cpus = "0" if args.pin else None
    args.mlflow_workers = None  # mlflow's default: one uvicorn worker

    load_before = os.getloadavg()
    rounds: dict[str, list[Row]] = {}
    many = None
    with tempfile.TemporaryDirectory(prefix="mlctl-bench-") as tmpdir:
        tmp = Path(tmpdir)
        artifact, model_dir, records, expected = build_model(tmp)
        for i in range(args.rounds):
            print(f"round {i + 1}/{args.rounds}", file=sys.stderr)
            plan: list[tuple[str, Any]] = [
                (SINGLE, lambda: run_mlctl(SINGLE, artifact, records, expected, args, tmp, fast_path=True)),
                (PINNED, lambda: run_ab_gateway(PINNED, artifact, records, expected, args, tmp, experiment=False)),
                (AB, lambda: run_ab_gateway(AB, artifact, records, expected, args, tmp, experiment=True))]
            if not args.skip_mlflow:
                plan.append((MLFLOW, lambda: run_mlflow(model_dir, records, expected, args, tmp)))
            for name, run in plan:
                row = run()
                print(f"  {name}: {row.req_per_s:,.0f} req/s, p50 {row.p50_ms:.2f} ms, p99 {row.p99_ms:.1f} ms, "
                      f"errors {row.errors}", file=sys.stderr)
                rounds.setdefault(name, []).append(row)
        if args.models > 0:
            print(f"{args.models} models", file=sys.stderr)
            many = run_many(args.models, args, tmp)

    rows = [median_row(v) for v in rounds.values()]
    by_name = {r.server: r for r in rows}
    single, pinned, ab, mlflow = by_name[SINGLE], by_name[PINNED], by_name[AB], by_name.get(MLFLOW)
    vs_single, routing = ab.req_per_s / single.req_per_s, ab.p50_ms - single.p50_ms
    vs_mlflow = ab.req_per_s / mlflow.req_per_s if mlflow and mlflow.req_per_s else None
    comparison = {"ab_over_single": vs_single, "pinned_over_single": pinned.req_per_s / single.req_per_s,
                  "ab_over_mlflow": vs_mlflow, "routing_p50_ms": routing,
                  "gateway_p50_ms": pinned.p50_ms - single.p50_ms, "experiment_p50_ms": ab.p50_ms - pinned.p50_ms}
    target = {"ab_over_single_min": TARGET_SINGLE_RATIO, "routing_p50_ms_max": TARGET_ROUTING_MS,
              "ab_over_mlflow_min": TARGET_MLFLOW_RATIO, "p99_ms_max": TARGET_P99_MS, "errors": 0,
              "connections": 16}
    met = {"vs_single": vs_single >= TARGET_SINGLE_RATIO, "routing": routing <= TARGET_ROUTING_MS,
           "vs_mlflow": None if vs_mlflow is None else vs_mlflow >= TARGET_MLFLOW_RATIO,
           "p99": ab.p99_ms <= TARGET_P99_MS, "zero_errors": ab.errors == 0,
           "connections": args.connections == 16}
    result = {
        "benchmark": "serve_gateway", "python": platform.python_version(), "machine": machine(),
        "versions": versions(),
        "model": "RandomForestClassifier, 50 trees, 20 features (serve_single's; the gateway's versions 1 and 2 "
                 "load the same file)",
        "load": {"tool": "wrk", "threads": 1, "connections": args.connections, "duration_s": args.duration,
                 "warmup_s": args.warmup, "rows_per_request": 1, "rounds": args.rounds, "pinned": args.pin},
        "mlctl_settings": {"max_batch": args.max_batch, "max_wait_ms": args.max_wait_ms, "processes": 1,
                           "flush_interval_s": 1.0},
        "rows": [asdict(r) for r in rows], "all_rounds": {k: [asdict(r) for r in v] for k, v in rounds.items()},
        "comparison": comparison, "target": target, "target_met": met, "many": many,
        "load_average_1m": {"before": round(load_before[0], 2), "after": round(os.getloadavg()[0], 2)},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "serve_gateway.json").write_text(json.dumps(result, indent=2) + "\n")
    text = report(result)
    print(text)
    if args.write_docs:
        write_section("serve_gateway", text, result)


if __name__ == "__main__":
    main()
