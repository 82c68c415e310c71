"""``mlctl doctor``: which optional engines are installed or reachable."""

from __future__ import annotations

from mlctl.commands._common import OutputOpt, QuietOpt, VerboseOpt, WideOpt, load
from mlctl.core.output import OutputFormat, render


def doctor(output: OutputOpt = OutputFormat.table, wide: WideOpt = False, verbose: VerboseOpt = False,
           quiet: QuietOpt = False) -> None:
    """Check every optional engine at its configured URL.

    Exits 0 even when some are missing: they are optional.

    The table shows engine, status, whether its client is installed and the URL; ``--wide`` adds
    the detail of each probe and what the engine enables.

    Example: MLCTL_SERVICES_PROMETHEUS=http://127.0.0.1:9090 mlctl doctor -o json
    """
    from mlctl.core.doctor import doctor_report

    render(doctor_report(load().config))
