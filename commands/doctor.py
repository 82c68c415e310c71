"""``mlctl doctor``: which optional engines are installed or reachable."""

from __future__ import annotations

from mlctl.commands._common import OutputOpt, QuietOpt, VerboseOpt, load
from mlctl.core.output import OutputFormat, render, ui


def doctor(output: OutputOpt = OutputFormat.table, verbose: VerboseOpt = False, quiet: QuietOpt = False) -> None:
    """Check every optional engine at its configured URL.

    Exits 0 even when some are missing: they are optional.

    Example: MLCTL_SERVICES_PROMETHEUS=http://127.0.0.1:9090 mlctl doctor -o json
    """
    from mlctl.core.doctor import run_doctor

    checks = run_doctor(load().config)
    if ui.format is OutputFormat.table:
        rows = [{"engine": c.engine, "status": "up" if c.reachable else "down", "url": c.url, "detail": c.detail,
                 "installed": c.installed, "enables": c.enables} for c in checks]
        render(rows, title="optional engines")
    else:
        render({"engines": checks})
