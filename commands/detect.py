"""``mlctl detect``: anomaly detection on server metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from mlctl.commands._common import DryRunOpt, OutputOpt, QuietOpt, VerboseOpt, load
from mlctl.core.output import OutputFormat, message, render

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
    from mlctl.detect.scoring import score as score_series

    spec, _ = _spec(detector=detector, param=param, threshold=threshold, prometheus=prometheus, step=step)
    render(score_series(spec, input=input, query=query, since=since, anomalies_only=anomalies_only, plot=plot))


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
    from mlctl.core.graceful import exit_code_for_stop
    from mlctl.detect.results import WatchOutcome
    from mlctl.detect.watch import Watcher, build_alerter, install_signal_handlers

    webhooks = list(webhook) if webhook else None
    spec, loaded = _spec(prometheus=prometheus, query=query, interval=interval, history=history, step=step,
                         detector=detector, param=param, threshold=threshold, alertmanager=alertmanager,
                         webhooks=webhooks, cooldown=cooldown, metrics_port=metrics_port, name=name)  # fmt: skip
    duration_s = parse_duration(duration, what="--duration") if duration else None
    if dry_run:
        from mlctl.detect.results import watch_plan

        render(watch_plan(spec, loaded.state_dir, duration_s=duration_s, iterations=iterations))
        return
    alerter = build_alerter(spec, loaded.state_dir)
    watcher = Watcher(spec, prometheus_url=str(spec.prometheus), state_dir=loaded.state_dir, alerter=alerter)
    url = watcher.start_exporter()
    message(f"watching {spec.query!r} on {spec.prometheus} every {spec.interval}; metrics on {url}")
    stop = install_signal_handlers(watcher)
    try:
        report = watcher.run(duration_s=duration_s, iterations=iterations)
    finally:
        stop.restore()
        watcher.stop_exporter()
    render(WatchOutcome(report))
    if code := exit_code_for_stop(report.stopped_by):  # 130 after Ctrl-C
        raise typer.Exit(code)


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
    from mlctl.detect.results import alerting_rules

    spec, _ = _spec(threshold=threshold, detector=detector, name=name)
    render(alerting_rules(spec, for_=for_, out=out))


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
    from mlctl.detect.results import grafana_dashboard

    spec, _ = _spec(query=query, name=name)
    render(grafana_dashboard(spec, title=title, out=out))


@app.command("detectors")
def detectors(
    output: OutputOpt = OutputFormat.table,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """List the detectors, their default thresholds and parameters.

    Example: mlctl detect detectors -o json
    """
    from mlctl.detect.results import list_detectors

    render(list_detectors())


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
    render(ev.EvaluationResult(report))
    standard = report.scores.get("standard")
    if min_score is not None and (standard is None or standard < min_score):
        raise CheckFailed(f"NAB standard score {standard} is below --min-score {min_score}")
