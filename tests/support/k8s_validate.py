"""Strict schema validation of rendered manifests for Kubernetes 1.32, with PyPI ``kubernetes-validate``.

``--strict`` also fails on fields the schema does not know (a misspelt ``readinesProbe``), which the
API server would otherwise drop without a word.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = ["KUBERNETES_VERSION", "validate_strict"]

KUBERNETES_VERSION = "1.32.0"


def validate_strict(tmp_path: Path, manifests: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
    """Run ``kubernetes-validate --strict`` over ``manifests`` (one JSON file each, under ``tmp_path``)."""
    script = Path(sys.executable).with_name("kubernetes-validate")
    files = []
    for i, manifest in enumerate(manifests):
        path = tmp_path / f"{i}-{manifest['kind']}.json"
        path.write_text(json.dumps(manifest))
        files.append(str(path))
    return subprocess.run(
        [str(script), "--strict", "--kubernetes-version", KUBERNETES_VERSION, *files],
        capture_output=True,
        text=True,
        timeout=120,
    )
