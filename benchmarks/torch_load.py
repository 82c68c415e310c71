"""Torch model files: how long loading one takes (SHA-256 check included), by artifact format.

Trains a small and a larger ``torch:module:function`` network (an MLP on 10 features, hidden
width 8 and 512) in a temporary project, saves each with :func:`mlctl.lifecycle.serialize.save_model`
(the current format) and, beside it, as a TorchScript archive the way mlctl wrote torch models
before (the network traced with its scaling head, metadata as the extra file ``mlctl.json``), then
times :func:`mlctl.lifecycle.serialize.load_model` on each, which verifies the file's SHA-256 first:

* warm: in one process, after one untimed load, the median of ``--rounds`` loads;
* first load: in a fresh process with torch already imported (untimed), the first ``load_model``
  call, which also imports mlctl's torch modules and the network's module; median over
  ``--processes`` processes, started round-robin across formats so machine noise hits each alike.

On a shared machine compare rows of one run.

Usage:
    python benchmarks/torch_load.py [--rounds 50] [--processes 7] [--write-docs]
Writes benchmarks/results/torch_load.json and, with --write-docs, the torch_load section of
docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, RESULTS, machine, write_section  # noqa: E402 - benchmarks/ is not a package

NETS = '''
import torch


def mlp(n_features, n_outputs, hidden=8):
    return torch.nn.Sequential(torch.nn.Linear(n_features, hidden), torch.nn.Tanh(),
                               torch.nn.Linear(hidden, hidden), torch.nn.Tanh(),
                               torch.nn.Linear(hidden, n_outputs))
'''
SIZES = {"small": 8, "large": 512}
FIRST_LOAD = """
import json, sys, time, warnings
warnings.simplefilter("ignore", FutureWarning)
import torch  # noqa: F401 - untimed
from pathlib import Path
from mlctl.lifecycle.artifact import ModelArtifact
art = ModelArtifact(name="b", version="1", alias=None, path=Path(sys.argv[1]), sha256=sys.argv[2], flavor="torch")
t0 = time.perf_counter()
from mlctl.lifecycle.serialize import load_model
load_model(art)
print(json.dumps(time.perf_counter() - t0))
"""


def legacy_torchscript(est: Any, path: Path) -> str:
    """``est`` written as mlctl wrote torch models before (TorchScript, metadata inside)."""
    import hashlib
    import io
    import warnings

    import torch

    model = est.model_
    module = model.module
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if not isinstance(module, torch.jit.ScriptModule):
            module = torch.jit.trace(module, torch.zeros(4, model.n_features_in_), check_trace=False)
        meta = {**model.metadata(), "format": "torchscript", "format_version": 1}
        buf = io.BytesIO()
        torch.jit.save(module, buf, _extra_files={"mlctl.json": json.dumps(meta, sort_keys=True)})
    path.write_bytes(buf.getvalue())
    return hashlib.sha256(buf.getvalue()).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--processes", type=int, default=7)
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    import warnings

    warnings.simplefilter("ignore", FutureWarning)  # the TorchScript rows: "saved by an older mlctl"

    import numpy as np
    import pandas as pd
    import torch

    from mlctl.lifecycle.artifact import ModelArtifact
    from mlctl.lifecycle.estimators import build_estimator
    from mlctl.lifecycle.serialize import load_model, save_model

    with tempfile.TemporaryDirectory(prefix="mlctl-torch-load-") as tmp:
        root = Path(tmp)
        (root / "bench_nets.py").write_text(NETS, encoding="utf-8")
        sys.path.insert(0, str(root))
        rng = np.random.default_rng(0)
        x = pd.DataFrame(rng.random((200, 10)), columns=[f"f{i}" for i in range(10)])
        y = np.where(x["f0"] + x["f1"] > 1, "yes", "no")
        files: dict[tuple[str, str], tuple[Path, str]] = {}
        for size, hidden in SIZES.items():
            est = build_estimator("torch:bench_nets:mlp", "classification",
                                  {"epochs": 2, "module__hidden": hidden}, seed=0).fit(x, y)
            current = root / size / "model.pt"
            files[("current", size)] = (current, save_model(est, current))
            legacy = root / size / "legacy.pt"
            files[("torchscript", size)] = (legacy, legacy_torchscript(est, legacy))

        rows: list[dict[str, Any]] = []
        for (fmt, size), (path, sha) in files.items():
            art = ModelArtifact(name="b", version="1", alias=None, path=path, sha256=sha, flavor="torch")
            load_model(art)
            times = []
            for _ in range(args.rounds):
                t0 = time.perf_counter()
                load_model(art)
                times.append(time.perf_counter() - t0)
            rows.append({"format": fmt, "size": size, "bytes": path.stat().st_size,
                         "warm_ms": statistics.median(times) * 1000})

        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), str(REPO)])}
        firsts: dict[tuple[str, str], list[float]] = {key: [] for key in files}
        for _ in range(args.processes):
            for key, (path, sha) in files.items():
                out = subprocess.run([sys.executable, "-c", FIRST_LOAD, str(path), sha], env=env, cwd=root,
                                     capture_output=True, text=True, check=True)
                firsts[key].append(json.loads(out.stdout.strip().splitlines()[-1]))
        for row in rows:
            row["first_ms"] = statistics.median(firsts[(row["format"], row["size"])]) * 1000

    result = {"machine": machine(), "python": platform.python_version(), "torch": torch.__version__,
              "rounds": args.rounds, "processes": args.processes, "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "torch_load.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    table = ["| format | network | file (bytes) | load, warm (ms) | first load in a process (ms) |",
             "|---|---|---:|---:|---:|"]
    for row in rows:
        fmt = "state_dict + module reference" if row["format"] == "current" else "TorchScript (before)"
        table.append(f"| {fmt} | {row['size']} | {row['bytes']} | {row['warm_ms']:.2f} | {row['first_ms']:.1f} |")
    text = "\n".join(table)
    print(text)
    if args.write_docs:
        write_section("torch_load", text, result)


if __name__ == "__main__":
    main()
