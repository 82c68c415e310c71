"""Draw a scored series: the metric with its flagged points above, the anomaly score and threshold below.

PNG (or SVG/PDF) through matplotlib's Agg backend; ``.html`` embeds the figure as inline
SVG in one self-contained page with the summary beside it, so it opens anywhere offline.
"""

from __future__ import annotations

import html
import io
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from mlctl.core.errors import UsageError, require
from mlctl.detect.scoring import ScoreResult

FORMATS = (".png", ".svg", ".pdf", ".html")


def _figure(results: Sequence[ScoreResult]) -> object:
    require("matplotlib", "ml", feature="plots", package="matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2 * len(results), 1, figsize=(12, 4.5 * len(results)), sharex=False, squeeze=False,
                             gridspec_kw={"height_ratios": [3, 1] * len(results)})  # fmt: skip
    for k, res in enumerate(results):
        top, bottom = axes[2 * k, 0], axes[2 * k + 1, 0]
        # a series without timestamps is drawn against its row numbers
        when = res.frame.times.tolist() if res.frame.indexed else [datetime.fromtimestamp(t, UTC)
                                                                    for t in res.frame.times]  # fmt: skip
        for j, name in enumerate(res.frame.names):
            top.plot(when, res.frame.values[:, j], lw=0.8, label=name)
        flagged = np.flatnonzero(res.flags)
        if len(flagged):
            for j in range(res.frame.values.shape[1]):
                top.scatter([when[i] for i in flagged], res.frame.values[flagged, j], s=18, color="crimson", zorder=3,
                            label="anomaly" if j == 0 else None)  # fmt: skip
        title = res.frame.source + (f"  {res.summary()['series']}" if res.series else "")
        top.set_title(f"{title}: {res.anomalies} anomalous point(s), detector {res.detector}", fontsize=10)
        top.legend(loc="upper left", fontsize=8)
        bottom.plot(when, res.scores, lw=0.8, color="tab:purple", label="anomaly score")
        bottom.axhline(res.threshold, color="crimson", ls="--", lw=0.8, label=f"threshold {res.threshold:g}")
        bottom.set_ylim(-0.02, 1.02)
        bottom.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


def plot(results: ScoreResult | Sequence[ScoreResult], path: str | Path) -> Path:
    """Write the figure to ``path``; the suffix picks the format (.png, .svg, .pdf or .html)."""
    items = [results] if isinstance(results, ScoreResult) else list(results)
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise UsageError(f"--plot {path}: unknown format {suffix or '(none)'!r}", hint=f"use {', '.join(FORMATS)}")
    if not items:
        raise UsageError("nothing to plot")
    if not path.parent.is_dir():
        raise UsageError(f"--plot {path}: folder {path.parent} does not exist")
    fig = _figure(items)
    import matplotlib.pyplot as plt

    try:
        if suffix == ".html":
            buf = io.StringIO()
            fig.savefig(buf, format="svg")  # type: ignore[attr-defined]
            path.write_text(_page(items, buf.getvalue()), encoding="utf-8")
        else:
            fig.savefig(path, dpi=110)  # type: ignore[attr-defined]
    finally:
        plt.close(fig)  # type: ignore[arg-type]
    return path


def _page(results: Sequence[ScoreResult], svg: str) -> str:
    svg = svg[svg.index("<svg") :]
    rows = []
    for res in results:
        s = res.summary()
        rows.append(
            "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in (
                s["source"], s["series"] or "", s["points"], s["anomalies"], s["detector"], s["threshold"],
                "; ".join(s["warnings"]))) + "</tr>"
        )  # fmt: skip
    head = "".join(f"<th>{h}</th>" for h in ("source", "series", "points", "anomalies", "detector", "threshold",
                                              "warnings"))  # fmt: skip
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>mlctl detect</title>"
        "<style>body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse;margin-bottom:1em}"
        "td,th{border:1px solid #ccc;padding:.3em .6em;font-size:.9em}svg{max-width:100%;height:auto}</style>"
        f"</head><body><h1>mlctl detect</h1><table><tr>{head}</tr>{''.join(rows)}</table>{svg}</body></html>\n"
    )
