"""Helpers shared by the benchmark scripts: machine description and the docs/benchmarks.md sections."""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
DOC = REPO / "docs" / "benchmarks.md"


def shown_path(path: Path | str) -> str:
    """``path`` as written in docs: relative to the repository (``../shared/data/nab``), never a
    machine's absolute path."""
    return os.path.relpath(Path(path).resolve(), REPO)


def machine() -> str:
    """``x86_64, 2 cores`` style description of this machine."""
    return f"{platform.machine()}, {os.cpu_count()} cores"


def write_section(name: str, table: str, result: dict[str, object], doc: Path = DOC) -> None:
    """Replace the section between ``<!-- bench:NAME -->`` markers in docs/benchmarks.md."""
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    begin, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = (f"{begin}\nMeasured {time.strftime('%Y-%m-%d')} on {result['machine']}, Python {result['python']}."
             f"\n\n{table}\n{end}")
    if begin in text and end in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + f"\n\n{block}\n"
    doc.write_text(text)


def stop_group(proc: subprocess.Popen, timeout: float = 30.0) -> None:
    """Stop the process group a benchmark started (``start_new_session=True``): SIGTERM to the
    server and its workers, SIGKILL after ``timeout``."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
