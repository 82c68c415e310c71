"""``mlctl detect``: anomaly detection on server metrics."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from mlctl.commands._common import DryRunOpt, OutputOpt, QuietOpt, VerboseOpt, load
from mlctl.core.output import OutputFormat, message, render, render_stream, ui

app = typer.Typer(help="Detect anomalies in server metrics: score files, watch Prometheus, alert, evaluate.",
                  no_args_is_help=True, rich_markup_mode=None, add_completion=False)  # fmt: skip

DetectorOpt = Annotated[str | None, typer.Option(
    "--detector", "-d", metavar="NAME", help="Detector (default: detect.detector, context).")]  # fmt: skip
ParamOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--param", "-p", metavar="NAME=VALUE", help="Detector parameter (repeatable; overrides detect.params)."
    ),
]
ThresholdOpt = Annotated[
    float | None,
    typer.Option(
        "--threshold", "-t", min=0.0, max=1.0, help="Score at which a point is anomalous (default: the detector's)."
    ),
]
PrometheusOpt = Annotated[
    str | None,
    typer.Option(
        "--prometheus", metavar="URL", help="Prometheus URL (default: detect.prometheus, then services.prometheus)."
    ),
]
QueryOpt = Annotated[str | None, typer.Option("--query", metavar="PROMQL", help="PromQL query to watch.")]
NameOpt = Annotated[
    str | None, typer.Option("--name", metavar="NAME", help="Name of the watch (default: detect.name).")
]


def _spec(**flags: Any) -> tuple[Any, Any]:
    """The project's detect: spec with the flags applied, and the loaded config."""
    from mlctl.core.config import parse_params
    from mlctl.detect.spec import with_overrides

    loaded = load()
    spec = loaded.config.detect
    params = flags.pop("param", None)
    if params:
        flags["params"] = {**spec.params, **parse_params(params)}
    spec = with_overrides(spec, **flags)
    if spec.prometheus is None:
        spec = with_overrides(spec, prometheus=loaded.config.services.prometheus)
    return spec, loaded


@app.command("score")
def score(
    input: Annotated[
        str | None,
        typer.Argument(metavar="INPUT", show_default=False, help="CSV, Parquet or JSON-lines file; - for stdin."),
    ] = None,
    detector: DetectorOpt = None,
    param: ParamOpt = None,
    threshold: ThresholdOpt = None,
    plot: Annotated[
        Path | None,
        typer.Option("--plot", metavar="FILE", help="Also draw the series and scores: .png, .svg, .pdf or .html."),
    ] = None,
    prometheus: PrometheusOpt = None,
    query: QueryOpt = None,
    since: Annotated[str, typer.Option("--since", help="With --query: how far back to read.")] = "6h",
    step: Annotated[
        str | None, typer.Option("--step", help="With --query: resolution (default: detect.step, then the interval).")
    ] = None,
    anomalies_only: Annotated[bool, typer.Option("--anomalies-only", help="Only write the flagged points.")] = False,
    output: OutputOpt = OutputFormat.table,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Score a metric series and flag its anomalous points.

    Writes timestamp, value, anomaly_score and is_anomaly per point (one column per metric
    when the input is wide). Input is a CSV or Parquet file (timestamp,value or one column per
    metric), JSON lines on stdin, or a Prometheus query over a time range. Under -o table it
    shows a summary and the flagged points; -o csv or -o jsonl writes every point.

    Example: mlctl detect score cpu.csv -o csv --plot cpu.html > scores.csv
    """
    from mlctl.core.durations import parse_duration
    from mlctl.core.errors import UsageError
    from mlctl.detect.scoring import score_frame
    from mlctl.detect.sources import frames_from_series, read_input

    spec, _ = _spec(detector=detector, param=param, threshold=threshold, prometheus=prometheus, step=step)
    if (input is None) == (query is None):
        raise UsageError("give either INPUT or --query", hint="mlctl detect score cpu.csv, or --query 'up' --since 1h")
    if input is not None:
        frames = [({}, read_input(input))]
    else:
        import time

        from mlctl.connectors.prometheus import PrometheusClient, require_series

        assert query is not None and spec.prometheus is not None
        now = time.time()
        series = require_series(PrometheusClient(spec.prometheus).query_range(
            query, now - parse_duration(since, what="--since"), now, spec.step_s), query)  # fmt: skip
        frames = frames_from_series(series, source=spec.prometheus)
    results = [score_frame(f, detector=spec.detector, params=spec.params, threshold=spec.threshold, series=labels)
               for labels, f in frames]  # fmt: skip
    for res in results:
        for w in res.frame.warnings:
            message(f"warning: {res.frame.source}: {w}")
    if plot is not None:
        from mlctl.detect.plot import plot as draw

        message(f"plot: {draw(results, plot)}")
    rows = [r for res in results for r in res.rows() if r["is_anomaly"] or not anomalies_only]
    summaries = [res.summary() for res in results]
    if ui.format is OutputFormat.json:
        render({"summary": summaries[0] if len(summaries) == 1 else summaries, "points": rows})
    elif ui.format in (OutputFormat.csv, OutputFormat.jsonl):
        render_stream(rows)
    elif ui.format is OutputFormat.yaml:
        render({"summary": summaries, "points": rows})
    else:
        for s in summaries:
            shown = {k: v for k, v in s.items() if k not in ("warnings", "params") and v is not None}
            render(shown, title="mlctl detect score")
        flagged = [r for r in rows if r["is_anomaly"]]
        render(flagged, title=f"{len(flagged)} anomalous point(s)")


@app.command("watch")
def watch(
    prometheus: PrometheusOpt = None,
    query: QueryOpt = None,
    interval: Annotated[str | None, typer.Option("--interval", "-i", help="Polling period, e.g. 15s.")] = None,
    history: Annotated[str | None, typer.Option("--history", help="History read at start to warm up, e.g. 6h.")] = None,
    step: Annotated[str | None, typer.Option("--step", help="query_range resolution (default: the interval).")] = None,
    detector: DetectorOpt = None,
    param: ParamOpt = None,
    threshold: ThresholdOpt = None,
    alertmanager: Annotated[
        str | None, typer.Option("--alertmanager", metavar="URL", help="Send alerts to this Alertmanager (API v2).")
    ] = None,
    webhook: Annotated[
        list[str] | None,
        typer.Option(
            "--webhook", metavar="URL", help="Send alerts to a webhook (repeatable; slack+https://... for Slack)."
        ),
    ] = None,
    cooldown: Annotated[str | None, typer.Option("--cooldown", help="Quiet time after a resolved alert.")] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option("--metrics-port", min=0, max=65535, help="Port of this loop's /metrics (0: any free port)."),
    ] = None,
    name: NameOpt = None,
    duration: Annotated[str | None, typer.Option("--duration", help="Stop after this long, e.g. 10m.")] = None,
    iterations: Annotated[int | None, typer.Option("--iterations", min=1, help="Stop after N polls.")] = None,
    dry_run: DryRunOpt = False,
    output: OutputOpt = OutputFormat.table,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Watch a Prometheus query online: score, export and alert.

    Warms one detector per series up on the history window, then polls every interval,
    serves the scores on its own /metrics for Prometheus to scrape (see `mlctl detect rules`
    and `mlctl detect dashboard`), and sends alerts to Alertmanager and webhooks, queued and
    retried when they are down. Stops on Ctrl-C or SIGTERM (or --duration / --iterations);
    a restart picks up where it stopped without alerting twice.

    Example: mlctl detect watch --prometheus http://127.0.0.1:9090 --query 'rate(cpu_seconds_total[1m])' --interval 15s
    """
    from mlctl.core.durations import parse_duration
    from mlctl.detect.watch import Watcher, build_alerter, install_signal_handlers, report_dict

    webhooks = list(webhook) if webhook else None
    spec, loaded = _spec(prometheus=prometheus, query=query, interval=interval, history=history, step=step,
                         detector=detector, param=param, threshold=threshold, alertmanager=alertmanager,
                         webhooks=webhooks, cooldown=cooldown, metrics_port=metrics_port, name=name)  # fmt: skip
    duration_s = parse_duration(duration, what="--duration") if duration else None
    if dry_run:
        plan = spec.model_dump()
        plan.update({"duration_s": duration_s, "iterations": iterations, "state_dir": str(loaded.state_dir)})
        render(plan, title="mlctl detect watch --dry-run (nothing was started)")
        return
    alerter = build_alerter(spec, loaded.state_dir)
    watcher = Watcher(spec, prometheus_url=str(spec.prometheus), state_dir=loaded.state_dir, alerter=alerter)
    url = watcher.start_exporter()
    message(f"watching {spec.query!r} on {spec.prometheus} every {spec.interval}; metrics on {url}")
    previous = install_signal_handlers(watcher)
    try:
        report = watcher.run(duration_s=duration_s, iterations=iterations)
    finally:
        import signal

        for sig, handler in previous.items():
            signal.signal(sig, handler)
        watcher.stop_exporter()
    doc = report_dict(report, events=ui.format is not OutputFormat.table)
    render(doc, title=f"watch {spec.name}")
    if report.stopped_by == "SIGINT":
        raise typer.Exit(130)


@app.command("rules")
def rules(
    out: Annotated[Path | None, typer.Option("--out", metavar="FILE", help="Write to FILE instead of stdout.")] = None,
    for_: Annotated[str, typer.Option("--for", help="How long the score must stay high before firing.")] = "0s",
    threshold: ThresholdOpt = None,
    detector: DetectorOpt = None,
    name: NameOpt = None,
    output: OutputOpt = OutputFormat.table,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Write Prometheus alerting rules on the watch loop's exported score.

    The rules fire MetricAnomaly when mlctl_detect_anomaly_score reaches the threshold, and
    warn when the watch loop stops polling or its /metrics is down. Check them with
    `promtool check rules FILE`; also prints the scrape config for the loop's /metrics.

    Example: mlctl detect rules --out rules/mlctl-detect.yml
    """
    from mlctl.core.durations import parse_duration
    from mlctl.detect.export import alerting_rules, scrape_config

    spec, _ = _spec(threshold=threshold, detector=detector, name=name)
    if for_ not in ("0", "0s"):
        parse_duration(for_, what="--for")
    text = alerting_rules(spec, for_=for_)
    if out is None:
        if ui.format is OutputFormat.table:
            ui.out.write(text)
        else:
            render({"rules": text, "scrape_config": scrape_config(spec)})
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    render({"file": str(out), "scrape_config": scrape_config(spec)}, title="wrote alerting rules")
    message(f"Add to prometheus.yml: rule_files: ['{out}'] and under scrape_configs:\n{scrape_config(spec)}")


@app.command("dashboard")
def dashboard(
    out: Annotated[Path | None, typer.Option("--out", metavar="FILE", help="Write to FILE instead of stdout.")] = None,
    title: Annotated[str | None, typer.Option("--title", help="Dashboard title.")] = None,
    query: QueryOpt = None,
    name: NameOpt = None,
    output: OutputOpt = OutputFormat.table,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Write a Grafana dashboard for a watch: series, score, threshold and anomaly annotations.

    The JSON imports as is (Dashboards > Import) and asks for the Prometheus data source.

    Example: mlctl detect dashboard --out grafana/anomalies.json
    """
    from mlctl.detect.export import dashboard as build

    spec, _ = _spec(query=query, name=name)
    doc = build(spec, title=title)
    if out is None:
        ui.out.write(json.dumps(doc, indent=2) + "\n")
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    render({"file": str(out), "uid": doc["uid"], "title": doc["title"], "panels": len(doc["panels"])},
           title="wrote Grafana dashboard")  # fmt: skip


@app.command("detectors")
def detectors(
    output: OutputOpt = OutputFormat.table,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """List the detectors, their default thresholds and parameters.

    Example: mlctl detect detectors -o json
    """
    from mlctl.detect.base import DEFAULT_DETECTOR, available_detectors

    rows = []
    for name, cls in available_detectors().items():
        rows.append({
            "name": name,
            "default": name == DEFAULT_DETECTOR,
            "threshold": cls.default_threshold,
            "summary": cls.summary,
            "params": {k: {"default": p.default, "doc": p.doc} for k, p in cls.params.items()},
        })  # fmt: skip
    table = [{**r, "params": ", ".join(f"{k}={v['default']}" for k, v in r["params"].items())} for r in rows]
    render(rows, table_data=table, columns=["name", "default", "threshold", "summary", "params"], title="detectors")


@app.command("evaluate")
def evaluate(
    data: Annotated[Path, typer.Option("--data", metavar="DIR", help="Folder of timestamp,value CSVs (NAB layout).")],
    labels: Annotated[
        Path,
        typer.Option("--labels", metavar="FILE", help="Anomaly windows JSON keyed by file path relative to --data."),
    ],  # fmt: skip
    detector: DetectorOpt = None,
    param: ParamOpt = None,
    profile: Annotated[
        list[str] | None,
        typer.Option(
            "--profile", help="standard, reward_low_FP_rate or reward_low_FN_rate (repeatable; default: all three)."
        ),
    ] = None,
    results_dir: Annotated[
        Path | None,
        typer.Option("--results-dir", metavar="DIR", help="Also write each file's scores in NAB's results layout."),
    ] = None,
    results: Annotated[
        bool,
        typer.Option("--score-results", help="Score the files already in --results-dir instead of running a detector."),
    ] = False,  # fmt: skip
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, help="Files scored in parallel processes.")] = 1,
    min_score: Annotated[
        float | None, typer.Option("--min-score", help="Exit 3 when the standard score is below.")
    ] = None,
    output: OutputOpt = OutputFormat.table,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Evaluate a detector on a labelled corpus with the NAB scoring rules.

    Runs a fresh detector over every labelled file, then scores it as NAB does: anomaly
    windows, probation, the scaled sigmoid, one corpus-wide optimal threshold per profile,
    and normalisation between the null (0) and the perfect (100) detector. Prints per-file
    and overall scores; --results-dir writes timestamp,value,anomaly_score files NAB can read.

    Example: mlctl detect evaluate --data ../nab/data --labels ../nab/labels/combined_windows.json
    """
    from mlctl.core.config import parse_params
    from mlctl.core.errors import CheckFailed, UsageError
    from mlctl.core.output import progress
    from mlctl.detect import evaluate as ev

    profiles = tuple(profile) if profile else ev.DEFAULT_PROFILES
    if results:
        if results_dir is None:
            raise UsageError("--score-results needs --results-dir DIR")
        report = ev.score_results(results_dir, labels, detector=detector, profiles=profiles)
    else:
        with progress("scoring files") as task:

            def tick(_key: str, done: int, total: int) -> None:
                task.update(completed=done, total=total)

            report = ev.evaluate(data, labels, detector=detector, params=parse_params(param or []), profiles=profiles,
                                 results_dir=results_dir, jobs=jobs, progress=tick)  # fmt: skip
    for w in report.warnings:
        message(f"warning: {w}")
    render(report, table_data=report.table_rows(), title=f"NAB scores of {report.detector}")
    if ui.format is OutputFormat.table:
        summary = ", ".join(f"{name} {score:.1f}" if score is not None else f"{name} n/a"
                            for name, score in report.scores.items())  # fmt: skip
        message(f"NAB score ({report.files} files, {report.rows} rows): {summary}")
    standard = report.scores.get("standard")
    if min_score is not None and (standard is None or standard < min_score):
        raise CheckFailed(f"NAB standard score {standard} is below --min-score {min_score}")
