"""Start-up time of ``mlctl --help`` beside ``dvc --help`` and ``mlflow --help``.

Measures the median wall time of N runs of each command (after one warm-up run each), on this
machine, in one run, round-robin so that machine noise hits every command alike. mlctl is
measured twice: as the editable install of the dev venv and as a regular (non-editable) install
into a temporary folder, which is what users get. Peers are measured when found on PATH or given
with ``--peer NAME=PATH``.

Usage:
    python benchmarks/startup.py [--runs 30] [--peer dvc=/path/to/dvc] [--write-docs]
Writes benchmarks/results/startup.json and, with --write-docs, the startup section of
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, write_section  # noqa: E402 - benchmarks/ is not a package

TARGET_S = 0.15


def _run_once(argv: list[str], env: dict[str, str] | None) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, env=env, check=False)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{argv} exited {proc.returncode}: {proc.stderr.decode()[-500:]}")
    return elapsed


def time_interleaved(commands: dict[str, tuple[list[str], dict[str, str] | None]], runs: int) -> list[dict]:
    """Time every command ``runs`` times, round-robin, so machine noise hits all of them alike."""
    for argv, env in commands.values():  # warm-up: page cache, .pyc
        _run_once(argv, env)
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, (argv, env) in commands.items():
            samples[name].append(_run_once(argv, env))
    return [{"command": name, "median_s": statistics.median(v), "min_s": min(v), "max_s": max(v), "runs": runs}
            for name, v in samples.items()]


def installed_copy(dest: Path) -> Path:
    """A regular install of this checkout (no editable finder), run with this interpreter's deps."""
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-compile",
                    "--target", str(dest), str(REPO)], check=True, capture_output=True)
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(dest)], check=True)
    return dest


def version_of(argv0: str) -> str:
    proc = subprocess.run([argv0, "--version"], capture_output=True, text=True, check=False)
    return (proc.stdout or proc.stderr).strip().splitlines()[-1] if (proc.stdout or proc.stderr) else "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--peer", action="append", default=[], help="NAME=PATH of a peer CLI")
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()

    mlctl_bin = shutil.which("mlctl", path=str(Path(sys.executable).parent)) or "mlctl"
    peers = dict(p.split("=", 1) for p in args.peer)
    skipped = []
    with tempfile.TemporaryDirectory() as tmp:
        target = installed_copy(Path(tmp) / "site")
        commands: dict[str, tuple[list[str], dict[str, str] | None]] = {
            "mlctl --help (regular install)": (
                [sys.executable, "-c", "from mlctl.commands import main; main()", "--help"],
                {**os.environ, "PYTHONPATH": str(target)}),
            "mlctl --help (editable dev install)": ([mlctl_bin, "--help"], None),
            # The floor any Typer CLI pays here: the interpreter plus `import typer`.
            "floor: python -c 'import typer'": ([sys.executable, "-c", "import typer"], None),
        }
        for name in ("dvc", "mlflow"):
            path = peers.get(name) or shutil.which(name)
            if path:
                commands[f"{name} --help ({version_of(path)})"] = ([path, "--help"], None)
            else:
                skipped.append({"command": f"{name} --help", "skipped": "not installed"})
        rows = time_interleaved(commands, args.runs) + skipped

    result = {"benchmark": "startup", "target_s": TARGET_S, "python": platform.python_version(),
              "machine": f"{platform.machine()}, {os.cpu_count()} cores", "rows": rows}
    out = REPO / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "startup.json").write_text(json.dumps(result, indent=2) + "\n")
    table = ["| command | median (s) | min (s) | max (s) | runs |", "|---|---|---|---|---|"]
    for r in rows:
        if "skipped" in r:
            table.append(f"| {r['command']} | {r['skipped']} | | | |")
        else:
            table.append(f"| {r['command']} | {r['median_s']:.3f} | {r['min_s']:.3f} | {r['max_s']:.3f} | "
                         f"{r['runs']} |")
    text = "\n".join(table)
    print(text)
    if args.write_docs:
        write_section("startup", text, result)


if __name__ == "__main__":
    main()
