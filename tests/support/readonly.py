"""Running a command that must obey file permissions, even when the tests run as root.

Root ignores file modes (CAP_DAC_OVERRIDE), so a read-only project is only read-only for it in a
process started without that capability: ``setpriv`` drops it (and CAP_DAC_READ_SEARCH) from the
bounding set, and the process keeps uid 0, so it still owns the test's files but can no longer
write the ones whose mode says it may not. A non-root user needs nothing.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

SETPRIV = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]


@functools.cache
def unprivileged() -> list[str] | None:
    """An argv prefix under which file permissions hold ([] for a non-root user), or None."""
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv") is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "probe"
        probe.write_text("x")
        probe.chmod(0o444)
        try:
            r = subprocess.run([*SETPRIV, "sh", "-c", f"echo y >> {probe}"], capture_output=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return SETPRIV if r.returncode != 0 else None


def make_read_only(folder: Path) -> None:
    """``chmod 444`` every file in ``folder`` (not below) and ``chmod 555`` the folder."""
    for child in folder.iterdir():
        if child.is_file():
            child.chmod(0o444)
    folder.chmod(0o555)


def make_writable(folder: Path) -> None:
    folder.chmod(0o755)
    for child in folder.iterdir():
        if child.is_file():
            child.chmod(0o644)
