"""Fuzzing the model gateway's OpenAPI document with schemathesis, plus a list of hand-written bad payloads.

One gateway process (serve_gateway's ``gateway_process``, in its own process group, on a free
loopback port) serves two models:

* ``forest``: serve_single's forest (``build_model``: a 50-tree RandomForestClassifier on 20 double
  features ``f0``..``f19``) loaded twice, as versions 1 and 2 (aliases champion -> 1,
  challenger -> 2), under a running A/B experiment ``ab`` (champion:50, challenger:50) in the
  embedded experiment store (an SQLite file in a temporary folder), so ``POST
  /v1/models/forest/predict`` is routed and counted and ``POST /v1/feedback`` finds its requests;
* ``small``: a 10-tree forest on another signature (four doubles ``a``..``d`` and an integer
  ``n``), one version, no experiment.

Then schemathesis (``st run URL/openapi.json``, from its own virtual environment: ``--schemathesis
PATH`` or ``.venv-peers/schemathesis``, created with ``python3 -m venv`` + pip when missing) tests
every operation the document describes: phases examples, coverage and fuzzing, positive and
negative data (``--mode all``), ``--max-examples`` (100) per operation, one worker, a fixed seed,
checks ``not_a_server_error``, ``status_code_conformance``, ``content_type_conformance``,
``response_headers_conformance``, ``response_schema_conformance``, ``negative_data_rejection``
(a request the document forbids must get a 4xx) and ``unsupported_method`` (another method must
get 405), bounded by ``--time-limit`` seconds (600). Its JSON run report gives the operations and
test cases, its VCR cassette every request and response: server errors (5xx) are counted from the
cassette, independently of schemathesis's verdicts.

Last, a hand-written list of bad payloads (invalid JSON, wrong types, extra fields, NaN, an empty
records list, a 2 MB body, an unknown model or version, feedback for an unknown request id or with
a string reward, ...) sent with http.client: each must get its expected 4xx and a JSON body whose
``detail`` is not empty. One good predict and its feedback come first, as positive controls.

Usage:
    python benchmarks/gateway_fuzz.py [--schemathesis PATH] [--max-examples 100] [--time-limit 600]
        [--seed 0] [--strict] [--write-docs] [--report-only]
Writes benchmarks/results/gateway_fuzz.json (and the raw schemathesis reports under
benchmarks/results/gateway_fuzz/) and, with --write-docs, the gateway_fuzz section of
docs/benchmarks.md. With --strict, exits 1 when a target is missed (a server error, a response
failing a check, a bad payload answered otherwise than expected).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from _common import REPO, RESULTS, machine, write_section  # noqa: E402 - benchmarks/ is not a package
from serve_gateway import LAUNCHER  # noqa: E402
from serve_single import build_model, free_port, running  # noqa: E402

PEER_VENV = REPO / ".venv-peers" / "schemathesis"
RAW = RESULTS / "gateway_fuzz"
CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_headers_conformance", "response_schema_conformance", "negative_data_rejection",
          "unsupported_method")
PHASES = "examples,coverage,fuzzing"
FOREST, SMALL, EXPERIMENT = "forest", "small", "ab"
SMALL_SIGNATURE = {"inputs": [*({"name": n, "type": "double"} for n in "abcd"), {"name": "n", "type": "long"}],
                   "outputs": [{"name": "label", "type": "long"}]}
MAX_BODY = 1_000_000  # the gateway's default max_body_bytes


# ------------------------------------------------------------------------------------------ schemathesis


def schemathesis_executable(given: str | None) -> Path:
    """The ``st`` to run: ``given``, else the peer environment's (created on first use)."""
    if given:
        st = Path(given)
        if not os.access(st, os.X_OK):
            raise SystemExit(f"--schemathesis {given}: not an executable")
        return st
    st = PEER_VENV / "bin" / "st"
    if not os.access(st, os.X_OK):
        print(f"creating {PEER_VENV.relative_to(REPO)} (python3 -m venv + pip install schemathesis)", file=sys.stderr)
        python3 = shutil.which("python3") or sys.executable
        subprocess.run([python3, "-m", "venv", str(PEER_VENV)], check=True)
        subprocess.run([str(PEER_VENV / "bin" / "python"), "-m", "pip", "install", "--quiet", "schemathesis"],
                       check=True)
    return st


def schemathesis_version(st: Path) -> str:
    out = subprocess.run([str(st), "--version"], capture_output=True, text=True, check=True, timeout=120).stdout
    match = re.search(r"version\s+(\S+)", out)
    return match.group(1) if match else out.strip()


def run_schemathesis(st: Path, base: str, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """``st run`` against the gateway; its exit code, summary, reports and the command line."""
    out.mkdir(parents=True, exist_ok=True)
    report_json, cassette, junit = out / "report.json", out / "cassette.yaml", out / "junit.xml"
    argv = [str(st), "run", f"{base}/openapi.json", "--checks", ",".join(CHECKS), "--phases", PHASES,
            "--mode", "all", "--max-examples", str(args.max_examples), "--workers", "1", "--seed", str(args.seed),
            "--request-timeout", "30", "--generation-database", "none", "--continue-on-failure",
            "--report", "json,vcr,junit", "--report-json-path", str(report_json), "--report-vcr-path",
            str(cassette), "--report-junit-path", str(junit), "--no-color"]
    env = {**os.environ, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        env.pop(name, None)  # loopback only
    started = time.monotonic()
    timed_out = False
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=args.time_limit, env=env, cwd=out,
                              check=False)  # cwd: its .schemathesis cache stays with the reports
        code, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as exc:
        timed_out, code = True, None
        stdout = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        stderr = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
    (out / "stdout.txt").write_text(stdout + ("\n--- stderr\n" + stderr if stderr else ""))
    shown = [Path(argv[0]).name, *(a.replace(base, "http://127.0.0.1:PORT") if base in a else a for a in argv[1:])]
    shown = [re.sub(r".*/benchmarks/results/", "benchmarks/results/", a) for a in shown]
    return {"exit_code": code, "timed_out": timed_out, "seconds": round(time.monotonic() - started, 1),
            "command": " ".join(shown), "summary": _summary_lines(stdout), "report_json": report_json,
            "cassette": cassette, "junit": junit}


def _summary_lines(stdout: str) -> list[str]:
    """The lines of schemathesis's closing summary (from ``SUMMARY`` on)."""
    lines = stdout.splitlines()
    start = next((i for i, line in enumerate(lines) if "SUMMARY" in line), max(0, len(lines) - 30))
    return [line.rstrip() for line in lines[start:] if line.strip()]


def parse_cassette(path: Path) -> dict[str, Any]:
    """Every interaction of the VCR cassette: statuses per operation, each 5xx, each failed check."""
    out: dict[str, Any] = {"requests": 0, "by_status": {}, "by_operation": {}, "server_errors": [],
                           "failed_checks": {}, "failures": []}
    if not path.exists():
        return out
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with path.open() as fh:
        doc = yaml.load(fh, Loader=loader) or {}  # noqa: S506 - a safe loader
    seen: set[tuple[str, str, str]] = set()
    for item in doc.get("http_interactions") or []:
        request, response = item.get("request") or {}, item.get("response") or {}
        if not response:
            continue
        out["requests"] += 1
        code = str((response.get("status") or {}).get("code"))
        op = f"{request.get('method')} {urlsplit(str(request.get('uri'))).path}"
        _bump(out["by_status"], code)
        _bump(out["by_operation"].setdefault(op, {}), code)
        shown = {"request": f"{request.get('method')} {_local(str(request.get('uri')))} {_body(request)}".strip(),
                 "response": f"{code} {_body(response)}".strip(), "phase": (item.get("phase") or {}).get("name"),
                 "generation": (item.get("generation") or {}).get("mode")}
        if code.startswith("5"):
            out["server_errors"].append({"operation": op, **shown})
        for check in item.get("checks") or []:
            if check.get("status") != "FAILURE":
                continue
            name, message = str(check.get("name")), str(check.get("message") or "")
            _bump(out["failed_checks"], name)
            if (op, name, message) not in seen:
                seen.add((op, name, message))
                out["failures"].append({"operation": op, "check": name, "message": message, **shown})
    out["by_status"] = dict(sorted(out["by_status"].items()))
    return out


def _bump(counts: dict[str, int], key: str) -> None:
    counts[key] = counts.get(key, 0) + 1


def _local(uri: str) -> str:
    """A request URI without the scheme, host and port (the port changes from run to run)."""
    parts = urlsplit(uri)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def _body(message: dict[str, Any], limit: int = 400) -> str:
    body = message.get("body")
    if isinstance(body, dict):
        if "string" in body:
            text = str(body["string"])
        elif "base64_string" in body:
            text = f"(base64) {body['base64_string']}"
        else:
            text = json.dumps(body)
    else:
        text = "" if body is None else str(body)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} chars)"


def parse_report(path: Path) -> dict[str, Any]:
    """Operations, test cases and failure kinds from schemathesis's JSON run report."""
    if not path.exists():
        return {"operations": 0, "test_cases": 0, "unique_failures": None, "failure_kinds": [], "errors": [],
                "warnings": {}}
    doc = json.loads(path.read_text())
    cases = doc.get("test_cases") or {}
    return {"operations": (doc.get("operations") or {}).get("tested", 0), "test_cases": cases.get("generated", 0),
            "unique_failures": cases.get("unique_failures"), "errored": cases.get("errored"),
            "failure_kinds": [{k: f.get(k) for k in ("code", "title", "count", "operations")}
                              for f in doc.get("failures") or []],
            "errors": doc.get("errors") or [], "stop_reason": doc.get("stop_reason"),
            "warnings": {k: v for k, v in (doc.get("warnings") or {}).items() if v}}


# ------------------------------------------------------------------------------------------ the gateway


def build_small(folder: Path) -> tuple[Path, list[dict[str, Any]], list[Any]]:
    """A 10-tree forest on four doubles and an integer; (artifact.json, a probe record, its prediction)."""
    import numpy as np
    from sklearn.ensemble import RandomForestClassifier

    from mlctl.lifecycle.artifact import ModelArtifact
    from mlctl.lifecycle.serialize import save_mlflow_model

    rng = np.random.default_rng(5)
    X = np.column_stack([rng.normal(size=(2000, 4)), rng.integers(0, 10, size=2000)])
    y = (X[:, 0] + X[:, 4] / 5 > 1).astype(int)
    est = RandomForestClassifier(n_estimators=10, random_state=0).fit(X, y)
    saved = save_mlflow_model(est, folder / "model", signature=SMALL_SIGNATURE)
    artifact = ModelArtifact(name=SMALL, version="1", alias="champion", path=saved.model_file, sha256=saved.sha256,
                             signature=SMALL_SIGNATURE)
    artifact.to_json(folder / "model" / "artifact.json")
    record: dict[str, Any] = {"a": 0.5, "b": -1.0, "c": 2.25, "d": 0.0, "n": 7}
    expected = est.predict(np.array([[record[k] for k in "abcdn"]], dtype=float)).tolist()
    return folder / "model" / "artifact.json", [record], expected


def gateway_spec(tmp: Path, port: int, forest: Path, small: Path) -> Path:
    """The spec file of serve_gateway's gateway_process: both models, the A/B experiment's store."""
    from mlctl.serving.experiments.definition import new_experiment
    from mlctl.serving.experiments.store import SqliteStore

    store_file = tmp / "experiments.db"
    store = SqliteStore(store_file)
    try:
        store.create(new_experiment(EXPERIMENT, FOREST, "champion:50,challenger:50"))
    finally:
        store.close()
    models = {FOREST: {"versions": {"1": str(forest), "2": str(forest)},
                       "aliases": {"champion": "1", "challenger": "2"}, "default": "1", "default_alias": "champion"},
              SMALL: {"versions": {"1": str(small)}, "aliases": {"champion": "1"}, "default": "1",
                      "default_alias": "champion"}}
    # flushed every 0.1 s: feedback for an unknown request id waits two flush intervals before its 404
    spec = {"port": port, "models": models, "store": str(store_file), "flush_interval_s": 0.1, "max_batch": 64,
            "max_wait_ms": 2.0, "report": str(tmp / "gateway.rss.json")}
    spec_file = tmp / "gateway.spec.json"
    spec_file.write_text(json.dumps(spec))
    return spec_file


# ------------------------------------------------------------------------------------------ bad payloads


@dataclass
class Probe:
    """One hand-written request and what the gateway answered."""

    name: str
    method: str
    path: str
    body_excerpt: str
    expected: int
    status: int
    detail: str
    ok: bool


def send(base: str, method: str, path: str, body: bytes | None,
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One request on a fresh connection (status 0 and the error text when the connection failed)."""
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "application/json", **(headers or {})})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    except OSError as exc:  # e.g. the server closed while the body was still being sent
        return 0, {}, f"{type(exc).__name__}: {exc}".encode()
    finally:
        conn.close()


def detail_of(body: bytes) -> str:
    """The ``detail`` of a JSON error body, as text ("" when missing or empty)."""
    try:
        doc = json.loads(body)
    except ValueError:
        return ""
    detail = doc.get("detail") if isinstance(doc, dict) else None
    if not detail:
        return ""
    return detail if isinstance(detail, str) else json.dumps(detail)


def bad_payloads(base: str, forest_record: dict[str, float], small_record: dict[str, Any]) -> tuple[list[Probe],
                                                                                                  dict[str, Any]]:
    """The hand-written probes; returns them and the positive controls."""
    routed, pinned, small = f"/v1/models/{FOREST}/predict", f"/v1/models/{FOREST}/versions/2/predict", \
        f"/v1/models/{SMALL}/predict"
    good = json.dumps({"records": [forest_record]}).encode()
    status, headers, body = send(base, "POST", routed, good)
    controls: dict[str, Any] = {"routed_predict": {"status": status, "variant": headers.get("x-mlctl-variant")}}
    request_id = json.loads(body).get("request_id") if status == 200 else None
    time.sleep(0.3)  # two flushes of the tally: the request is in the store
    status, _, body = send(base, "POST", "/v1/feedback", json.dumps({"request_id": request_id, "reward": 1}).encode())
    controls["feedback"] = {"status": status, "body": body.decode(errors="replace")[:300]}
    status, _, _ = send(base, "POST", pinned, good)
    controls["pinned_predict"] = {"status": status}
    status, _, _ = send(base, "POST", small, json.dumps({"records": [small_record]}).encode())
    controls["small_predict"] = {"status": status}

    def rec(**changes: Any) -> dict[str, Any]:
        return {**forest_record, **changes}

    def js(doc: Any) -> bytes:
        return json.dumps(doc).encode()

    extra_record = rec(f20=1.0)
    missing = dict(forest_record)
    missing.pop("f0")
    cases: list[tuple[str, str, str, bytes | None, int]] = [
        ("invalid JSON (truncated)", "POST", routed, b'{"records": [{"f0": 1.0', 400),
        ("invalid JSON (not UTF-8)", "POST", routed, b'{"records": "\xff\xfe"}', 400),
        ("empty body", "POST", routed, b"", 400),
        ("a string where a number goes", "POST", routed, js({"records": [rec(f0="abc")]}), 422),
        ("a boolean where a number goes", "POST", routed, js({"records": [rec(f0=True)]}), 422),
        ("null where a number goes", "POST", routed, js({"records": [rec(f0=None)]}), 422),
        ("a field missing", "POST", routed, js({"records": [missing]}), 422),
        ("an extra field in a record", "POST", routed, js({"records": [extra_record]}), 422),
        ("an extra top-level object field", "POST", routed, js({"records": [forest_record], "meta": {"a": 1}}), 422),
        ("records not a list", "POST", routed, js({"records": forest_record}), 422),
        ("a record not an object", "POST", routed, js({"records": [[1.0] * 20]}), 422),
        ("body a JSON string", "POST", routed, js("records"), 422),
        ("NaN", "POST", routed, json.dumps({"records": [rec(f0=float("nan"))]}).encode(), 422),
        ("Infinity", "POST", routed, json.dumps({"records": [rec(f0=float("inf"))]}).encode(), 422),
        ("1e999 (overflows to infinity)", "POST", routed,
         json.dumps({"records": [rec(f0=1.0)]}).replace('"f0": 1.0', '"f0": 1e999').encode(), 422),
        # finite as a double, infinite as the float32 the trees compare: scikit-learn's predict refuses it
        ("1e39 (over float32's range)", "POST", routed, js({"records": [rec(f0=1e39)]}), 422),
        ("empty records list", "POST", routed, js({"records": []}), 422),
        ("no records field", "POST", routed, js({}), 422),
        ("2 MB body", "POST", routed, js({"records": [forest_record] * (2_000_000 // len(good) + 1)}), 413),
        ("a float for the integer column (small)", "POST", small, js({"records": [{**small_record, "n": 7.5}]}), 422),
        ("the forest's record to the small model", "POST", small, good, 422),
        ("unknown model", "POST", "/v1/models/nosuch/predict", good, 404),
        ("unknown version", "POST", f"/v1/models/{FOREST}/versions/9/predict", good, 404),
        ("GET on predict", "GET", routed, None, 405),
        ("feedback for an unknown request id", "POST", "/v1/feedback", js({"request_id": "no-such-id", "reward": 1}),
         404),
        ("feedback with a string reward", "POST", "/v1/feedback", js({"request_id": request_id or "x",
                                                                      "reward": "1"}), 422),
        ("feedback without request_id", "POST", "/v1/feedback", js({"reward": 1}), 422),
        ("feedback with an extra field", "POST", "/v1/feedback", js({"request_id": "x", "reward": 1, "why": "x"}),
         422),
        ("feedback counted twice", "POST", "/v1/feedback", js({"request_id": request_id or "x", "reward": 0}), 409),
        ("feedback, invalid JSON", "POST", "/v1/feedback", b"{", 400),
        ("feedback, 100 kB body", "POST", "/v1/feedback", js({"request_id": "x", "label": "y" * 100_000}), 413),
    ]
    probes = []
    for name, method, path, payload, expected in cases:
        status, _, body = send(base, method, path, payload)
        detail = detail_of(body)
        excerpt = "" if payload is None else (payload[:60].decode(errors="replace") + ("..." if len(payload) > 60
                                                                                       else ""))
        probes.append(Probe(name, method, path, excerpt, expected, status,
                            detail or body.decode(errors="replace")[:200], ok=status == expected and bool(detail)))
    return probes, controls


# ------------------------------------------------------------------------------------------ report


def _cell(text: str, limit: int = 90) -> str:
    text = " ".join(text.split())
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return text.replace("|", "\\|").replace("`", "'")


def _statuses(counts: dict[str, int]) -> str:
    return ", ".join(f"{code}: {n:,}" for code, n in sorted(counts.items()))


def report(result: dict[str, Any]) -> str:
    """The markdown of a result document."""
    st, target, met = result["schemathesis"], result["target"], result["target_met"]
    verdict = {True: "**met**", False: "**not met**"}
    lines = [f"schemathesis {result['versions']['schemathesis']}: {st['operations']} operations, "
             f"{st['test_cases']:,} test cases, {st['requests']:,} requests in {st['seconds']:.0f} s "
             f"(exit code {st['exit_code']}{', stopped by the time limit' if st['timed_out'] else ''}); "
             "statuses " + ", ".join(f"{k}: {v:,}" for k, v in st["by_status"].items()) + ".",
             f"server errors (5xx): **{st['server_errors']}** (target {target['server_errors']}): "
             f"{verdict[met['zero_server_errors']]}",
             f"responses failing a check: **{st['failures']}** (target {target['failures']}; "
             f"{st['unique_failures']} unique failures as schemathesis counts them): {verdict[met['zero_failures']]}"
             + ("" if not st["failures_by_check"] else "; by check: " + ", ".join(
                 f"{k} {v}" for k, v in st["failures_by_check"].items())),
             f"bad payloads answered with the expected 4xx and a non-empty detail: "
             f"**{sum(p['ok'] for p in result['bad_payloads'])}/{len(result['bad_payloads'])}**: "
             f"{verdict[met['bad_payloads']]}"]
    text = "\n".join(f"- {line}" for line in lines)
    if st["failure_details"]:
        text += ("\n\nFailures (the first request of each operation, check and message):\n\n"
                 "| operation | check: message | request | response |\n|---|---|---|---|")
        for f in st["failure_details"][:20]:
            text += (f"\n| `{f['operation']}` | {f['check']}: {_cell(f['message'], 60)} | "
                     f"`{_cell(f['request'], 120)}` | `{_cell(f['response'], 120)}` |")
    text += "\n\n| operation | requests | statuses |\n|---|---|---|"
    documented = set(st["documented"])
    other: dict[str, int] = {}
    for op, counts in sorted(st["by_operation"].items()):
        if op in documented:
            text += f"\n| `{op}` | {sum(counts.values()):,} | {_statuses(counts)} |"
        else:
            for code, n in counts.items():
                other[code] = other.get(code, 0) + n
    if other:
        text += f"\n| other methods on the documented paths | {sum(other.values()):,} | {_statuses(other)} |"
    text += "\n\n| bad payload | request | body | status (expected) | reason (detail excerpt) |\n|---|---|---|---|---|"
    for p in result["bad_payloads"]:
        mark = "" if p["ok"] else " **x**"
        text += (f"\n| {p['name']} | {p['method']} `{p['path']}` | `{_cell(p['body_excerpt'], 40)}` | "
                 f"{p['status']} ({p['expected']}){mark} | {_cell(p['detail'])} |")
    c = result["controls"]
    text += (f"\n\nPositive controls: routed predict {c['routed_predict']['status']} (variant "
             f"{c['routed_predict']['variant']}), its feedback {c['feedback']['status']}, pinned predict "
             f"{c['pinned_predict']['status']}, the small model {c['small_predict']['status']}. Gateway log: "
             f"{result['server_log']['tracebacks']} tracebacks" + "".join(
                 f"; `{_cell(w, 100)}`" for w in result["server_log"]["warnings"])
             + f". Models: {result['models']}. Command: "
             f"`{st['command']}` (bounded by {result['time_limit_s']} s). Versions: "
             + ", ".join(f"{k} {v}" for k, v in result["versions"].items()) + ".")
    return text


def summarize(run: dict[str, Any], cassette: dict[str, Any], st_report: dict[str, Any]) -> dict[str, Any]:
    """The schemathesis numbers of the result document."""
    return {"command": run["command"], "exit_code": run["exit_code"], "timed_out": run["timed_out"],
            "seconds": run["seconds"], "operations": st_report["operations"] or len(cassette["by_operation"]),
            "test_cases": st_report["test_cases"], "unique_failures": st_report["unique_failures"],
            "failure_kinds": st_report["failure_kinds"], "errors": st_report["errors"],
            "warnings": st_report["warnings"], "requests": cassette["requests"], "by_status": cassette["by_status"],
            "by_operation": cassette["by_operation"], "server_errors": len(cassette["server_errors"]),
            "server_error_samples": cassette["server_errors"][:20], "failures": sum(cassette["failed_checks"].values()),
            "failures_by_check": cassette["failed_checks"], "failure_details": cassette["failures"][:50],
            "summary": run["summary"]}


# ------------------------------------------------------------------------------------------ main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--schemathesis", metavar="PATH", help="an existing st executable (default: the one in "
                        ".venv-peers/schemathesis, created when missing)")
    parser.add_argument("--max-examples", type=int, default=100, help="test cases per operation and phase")
    parser.add_argument("--time-limit", type=int, default=600, help="seconds schemathesis may run")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--write-docs", action="store_true")
    parser.add_argument("--report-only", action="store_true",
                        help="test nothing: rewrite the docs section from benchmarks/results/gateway_fuzz.json")
    args = parser.parse_args()
    if args.report_only:
        result = json.loads((RESULTS / "gateway_fuzz.json").read_text())
        print(report(result))
        if args.write_docs:
            write_section("gateway_fuzz", report(result), result)
        return
    st = schemathesis_executable(args.schemathesis)
    st_version = schemathesis_version(st)
    if RAW.exists():
        shutil.rmtree(RAW)
    with tempfile.TemporaryDirectory(prefix="mlctl-fuzz-") as tmpdir:
        tmp = Path(tmpdir)
        print("training the forests", file=sys.stderr)
        forest, _, forest_records, _ = build_model(tmp / "forest")
        small, small_records, _ = build_small(tmp / "small")
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        spec_file = gateway_spec(tmp, port, forest, small)
        log = tmp / "gateway.log"
        with running([sys.executable, "-c", LAUNCHER, str(spec_file)], f"{base}/ready", log):
            print(f"gateway on {base}; bad payloads", file=sys.stderr)
            probes, controls = bad_payloads(base, forest_records[0], small_records[0])
            print(f"schemathesis {st_version}: st run {base}/openapi.json", file=sys.stderr)
            run = run_schemathesis(st, base, args, RAW)
            _, _, models_body = send(base, "GET", "/v1/models", None)
            _, _, openapi_body = send(base, "GET", "/openapi.json", None)
        log_text = log.read_text(errors="replace")
        (RAW / "gateway.log").write_text(log_text)
    cassette = parse_cassette(run["cassette"])
    st_report = parse_report(run["report_json"])
    schemathesis = summarize(run, cassette, st_report)
    schemathesis["documented"] = sorted(f"{method.upper()} {path}" for path, ops in
                                        json.loads(openapi_body)["paths"].items() for method in ops)
    from importlib.metadata import version

    met = {"zero_server_errors": schemathesis["server_errors"] == 0 and not run["timed_out"],
           "zero_failures": schemathesis["failures"] == 0 and run["exit_code"] == 0,
           "bad_payloads": all(p.ok for p in probes)}
    described = {m["name"]: {"versions": m["versions"], "experiment": m["experiment"]}
                 for m in json.loads(models_body).get("models", [])}
    result = {
        "benchmark": "gateway_fuzz", "python": platform.python_version(), "machine": machine(),
        "versions": {"schemathesis": st_version, **{d: version(d) for d in ("mlctl", "scikit-learn", "uvicorn")}},
        "models": f"{FOREST} (RandomForestClassifier, 50 trees, 20 double features; versions 1 and 2 under A/B "
                  f"experiment {EXPERIMENT}, champion:50 challenger:50, SQLite store), {SMALL} (RandomForestClassifier,"
                  " 10 trees, 4 doubles and 1 long; version 1)",
        "gateway_models": described, "checks": list(CHECKS), "phases": PHASES, "max_examples": args.max_examples,
        "seed": args.seed, "time_limit_s": args.time_limit, "schemathesis": schemathesis,
        "bad_payloads": [asdict(p) for p in probes], "controls": controls,
        "server_log": {"tracebacks": log_text.count("Traceback"),
                       "warnings": sorted({line.strip().replace(f"{REPO}/", "") for line in log_text.splitlines()
                                           if "Warning" in line or line.startswith("WARNING")}),
                       "tail": log_text[-3000:]},
        "target": {"server_errors": 0, "failures": 0, "bad_payloads": "expected 4xx with a non-empty detail"},
        "target_met": met,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "gateway_fuzz.json").write_text(json.dumps(result, indent=2) + "\n")
    text = report(result)
    print(text)
    if args.write_docs:
        write_section("gateway_fuzz", text, result)
    if args.strict and not all(met.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
