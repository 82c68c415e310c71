"""``mlctl classify-logs``: parse, classify, route and search system logs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from mlctl.commands._common import DryRunOpt, OutputOpt, QuietOpt, VerboseOpt, load
from mlctl.core.output import OutputFormat, message, render, ui

if TYPE_CHECKING:
    from mlctl.core.config import LoadedConfig
    from mlctl.logs.pipeline import LogPipeline

app = typer.Typer(
    help="Parse, classify and route system logs: templates, classes, sinks, Kafka streaming, search.",
    no_args_is_help=True,
    rich_markup_mode=None,
    add_completion=False,
)

InputArg = Annotated[str, typer.Argument(metavar="INPUT", help="Log file, or - for stdin.")]
FormatOpt = Annotated[
    str | None,
    typer.Option(
        "--log-format",
        "-f",
        metavar="FORMAT",
        help="Header format with <Field> placeholders and <Content>, a preset (syslog, apache-error, "
        "nginx, jsonl, docker, k8s, cri, raw), or auto: detected from the first lines and said on stderr "
        "(default: logs.log_format, else auto).",
    ),
]
RulesOpt = Annotated[str | None, typer.Option("--rules", metavar="FILE", help="YAML rules (default: logs.rules).")]
NoSaveOpt = Annotated[bool, typer.Option("--no-save-templates", help="Do not update the template model.")]
TemplatesOpt = Annotated[
    Path | None,
    typer.Option(
        "--templates",
        metavar="FILE",
        help="Template model to load and update (default: logs.templates in a project; outside a project "
        "none is kept).",
    ),
]


def _pipeline(
    log_format: str | None, rules: str | None = None, use_model: bool = True, templates: Path | None = None
) -> tuple[LogPipeline, LoadedConfig]:
    from mlctl.logs.pipeline import LogPipeline

    loaded = load()
    pipeline = LogPipeline(loaded, log_format=log_format, rules=rules, use_model=use_model, templates=templates)
    return pipeline, loaded


def _say_where_written(loaded: LoadedConfig, sink: str | None = None) -> None:
    """Outside a project, tell on stderr where lines went (the default sinks are relative paths)."""
    from mlctl.logs.pipeline import sink_urls

    if loaded.project_file is None:
        message(f"not in a project: lines written to {', '.join(sink_urls(loaded, sink_override=sink).values())}")


@app.command("parse")
def parse(
    input: InputArg,
    log_format: FormatOpt = None,
    drift: Annotated[
        str | None, typer.Option("--drift", metavar="INTERVAL", help="Also report new templates per interval.")
    ] = None,
    no_save_templates: NoSaveOpt = False,
    templates: TemplatesOpt = None,
    output: OutputOpt = OutputFormat.table,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Parse log lines into header fields and templates.

    Writes one row per input line (-o csv or jsonl): LineId, the header fields, EventId,
    EventTemplate (variables as <*>) and ParameterList. Lines that do not match the format
    are kept with EventId unparsed. The table shows the templates found. The project's
    template model (or --templates FILE) is updated unless --no-save-templates; outside a
    project nothing is written without --templates.

    Example: mlctl classify-logs parse app.log -f '<Date> <Time> <Level> <Component>: <Content>' -o csv
    """
    from mlctl.logs.pipeline import read_input

    pipeline, _ = _pipeline(log_format, use_model=False, templates=templates)
    render(pipeline.parse(read_input(input), save_templates=not no_save_templates))
    if drift:
        from mlctl.core.durations import parse_duration

        render(pipeline.miner.drift(parse_duration(drift, what="--drift")), title="new templates per interval")


@app.command("train")
def train(
    data: Annotated[Path, typer.Option("--data", metavar="CSV", help="Training lines: Content (or raw) and labels.")],
    label_column: Annotated[
        str | None, typer.Option("--label-column", help="Column holding the class (default: logs.label_column).")
    ] = None,
    normal_label: Annotated[
        str | None, typer.Option("--normal-label", help="Label value meaning normal, e.g. - for BGL.")
    ] = None,
    weak: Annotated[bool, typer.Option("--weak", help="Train on weak labels from levels and keywords.")] = False,
    log_format: FormatOpt = None,
    register: Annotated[
        str | None, typer.Option("--register", metavar="NAME", help="Register the model (alias challenger).")
    ] = None,
    experiment: Annotated[str | None, typer.Option("--experiment", help="MLflow experiment.")] = None,
    output: OutputOpt = OutputFormat.table,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Train the log classifier, track it in MLflow and register it.

    Features are the mined template tokens plus level and component (TF-IDF), the model a
    balanced logistic regression. Held-out metrics: accuracy, macro precision/recall/F1 and
    alert precision/recall/F1. The model becomes the project's classifier for classify and
    stream.

    Example: mlctl classify-logs train --data BGL.csv --label-column Label --normal-label - --register bgl-logs
    """
    from mlctl.logs.training import train_classifier

    loaded = load()
    loaded.require_project()  # the model, its run and its registration belong to a project
    result = train_classifier(
        loaded,
        data,
        label_column=label_column,
        normal_label=normal_label,
        weak=weak,
        log_format=log_format,
        register=register,
        experiment=experiment,
    )
    table = {
        "lines": result.lines,
        "templates": result.templates,
        "labels": result.labels,
        "classes": ", ".join(f"{k}={v}" for k, v in result.classes.items()),
        **result.metrics,
        "run": result.run_id,
        "model": result.model_dir,
        "registered": f"{result.registered['name']}:{result.registered['version']}" if result.registered else None,
    }
    render(result, table_data=table, title="log classifier")


@app.command("classify")
def classify(
    input: InputArg,
    log_format: FormatOpt = None,
    rules: RulesOpt = None,
    route: Annotated[
        bool, typer.Option("--route", help="Write to the sinks of logs.routes instead of stdout.")
    ] = False,
    no_model: Annotated[bool, typer.Option("--no-model", help="Weak labels and rules only.")] = False,
    alerts_only: Annotated[bool, typer.Option("--alerts-only", help="Only print lines not classed normal.")] = False,
    no_save_templates: NoSaveOpt = False,
    templates: TemplatesOpt = None,
    dry_run: DryRunOpt = False,
    output: OutputOpt = OutputFormat.table,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Classify log lines: class, confidence and severity per line.

    Rules (YAML) override the trained classifier; without one, weak labels from levels and
    keywords. Lines that do not match the format get class unparsed. --route writes every
    line to the sinks of logs.routes (SQLite index and JSONL archive by default).

    Example: mlctl classify-logs classify app.log --rules rules.yaml -o jsonl
    """
    from mlctl.logs.pipeline import classify_input, read_records, route_input

    pipeline, _ = _pipeline(log_format, rules, use_model=not no_model, templates=templates)
    records = read_records(input, defer_id=True)  # ids are computed only for lines that go to a sink
    save = not no_save_templates and not dry_run
    if route:
        render(route_input(pipeline, records, dry_run=dry_run, save_templates=save))
    else:
        render(classify_input(pipeline, records, alerts_only=alerts_only, save_templates=save))


@app.command("search")
def search(
    query: Annotated[str, typer.Argument(metavar="QUERY", help="Words or a phrase in quotes; * for everything.")],
    since: Annotated[str | None, typer.Option("--since", help="Only lines from the last INTERVAL, e.g. 1h.")] = None,
    cls: Annotated[str | None, typer.Option("--class", metavar="CLASS", help="Only lines of this class.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=10_000, help="Most lines to show.")] = 50,
    index: Annotated[
        str | None, typer.Option("--index", metavar="URL", help="Index to search (default: logs.sinks.index).")
    ] = None,
    output: OutputOpt = OutputFormat.table,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Search classified lines in the index (SQLite FTS5 by default, or OpenSearch).

    Example: mlctl classify-logs search 'connection refused' --since 1h --class network
    """
    from mlctl.logs.search import search_index

    hits = search_index(load(), query, since=since, cls=cls, limit=limit, index=index)
    render(hits, title=f"{len(hits)} line(s)", columns=["timestamp", "class", "severity", "source", "raw"])


@app.command("evaluate")
def evaluate(
    data: Annotated[Path, typer.Option("--data", metavar="DIR", help="Loghub-2k layout folder (with formats.json).")],
    system: Annotated[list[str] | None, typer.Option("--system", help="Only these systems (repeatable).")] = None,
    truth: Annotated[
        str,
        typer.Option(
            "--truth",
            metavar="template|event-id",
            help="True groups for grouping accuracy: lines with the same corrected template, or the same EventId.",
        ),
    ] = "template",
    min_grouping: Annotated[
        float | None, typer.Option("--min-grouping", help="Exit 3 when average grouping accuracy is below.")
    ] = None,
    log_format: Annotated[
        str | None,
        typer.Option(
            "--log-format",
            "-f",
            metavar="FORMAT",
            help="Parse every system with this format, or auto (detect each system's from its first lines), "
            "instead of formats.json.",
        ),
    ] = None,
    output: OutputOpt = OutputFormat.table,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Evaluate the parser (and classifier, where labels exist) on labelled logs.

    Per system and on average: grouping accuracy (a line counts when its predicted group holds
    exactly the lines of its true group; --truth event-id takes true groups by ground-truth
    EventId instead of corrected template) and parsing accuracy (template string equal); for
    systems with a label column (BGL), alert precision/recall/F1 of the weak labels and of the
    trained classifier (two-fold cross-validated). --log-format auto ignores formats.json and
    detects each system's format, as parse does by default.

    Example: mlctl classify-logs evaluate --data ../loghub --truth event-id
    """
    from mlctl.core.errors import CheckFailed
    from mlctl.logs.classify_eval import evaluation_result

    result = evaluation_result(data, systems=system, truth=truth, log_format=log_format)
    render(result)
    accuracy = result.doc["average"]["grouping_accuracy"]
    if min_grouping is not None and accuracy < min_grouping:
        raise CheckFailed(f"average grouping accuracy {accuracy:.3f} is below {min_grouping}")


@app.command("stream")
def stream(
    source: Annotated[
        str | None,
        typer.Option("--from", metavar="SOURCE", help="kafka://HOST:PORT/TOPIC, a file, or - (default: logs.source)."),
    ] = None,
    group: Annotated[str | None, typer.Option("--group", help="Kafka consumer group (default: logs.group).")] = None,
    log_format: FormatOpt = None,
    rules: RulesOpt = None,
    templates: TemplatesOpt = None,
    follow: Annotated[bool, typer.Option("--follow", help="Keep reading a file as it grows (tail -f).")] = False,
    batch_size: Annotated[int | None, typer.Option("--batch-size", min=1, help="Lines per batch.")] = None,
    sink: Annotated[
        str | None, typer.Option("--sink", metavar="URL", help="Send everything to this sink instead of logs.routes.")
    ] = None,
    max_lines: Annotated[int | None, typer.Option("--max-lines", min=1, help="Stop after about N lines.")] = None,
    idle_timeout: Annotated[
        str | None, typer.Option("--idle-timeout", help="Stop after this long without a line, e.g. 30s "
                                 "(for Kafka, counted once the group assigned partitions).")
    ] = None,
    output: OutputOpt = OutputFormat.table,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Stream lines through parse and classify into the sinks, at least once.

    From Kafka: consumes in a consumer group and commits offsets only after every sink
    acknowledged the batch (document ids are deterministic, so a redelivery never duplicates);
    SIGTERM or Ctrl-C finish the batch in flight. A sink or broker that goes down is retried
    with backoff; nothing is skipped. A retrained classifier is picked up without a restart.

    Example: mlctl classify-logs stream --from kafka://127.0.0.1:9092/logs --group classifiers
    """
    from mlctl.core.durations import parse_duration
    from mlctl.core.errors import UsageError
    from mlctl.logs.pipeline import build_router
    from mlctl.logs.stream import run_stream

    pipeline, loaded = _pipeline(log_format, rules, templates=templates)
    spec = loaded.config.logs
    src = source or spec.source
    if not src:
        raise UsageError("no input to stream", hint="pass --from kafka://HOST:PORT/TOPIC (or a file, or -)")
    router = build_router(loaded, sink_override=sink)

    def progress(report: object) -> None:
        if ui.verbosity > 0:
            message(f"{report.lines} lines, {report.lines_per_s:.0f} lines/s")  # type: ignore[attr-defined]

    try:
        report = run_stream(
            src,
            processor=pipeline.process,
            router=router,
            group=group or spec.group,
            follow=follow,
            batch_size=batch_size or spec.batch_size,
            max_lines=max_lines,
            idle_timeout_s=parse_duration(idle_timeout, what="--idle-timeout") if idle_timeout else None,
            handle_signals=True,
            on_progress=progress,
        )
    finally:
        router.close()
        pipeline.save_templates()
    _say_where_written(loaded, sink)
    render(report, title="stream")
    from mlctl.core.graceful import exit_code_for_stop

    if code := exit_code_for_stop(getattr(report, "stopped_by", None)):  # 130 after Ctrl-C
        raise typer.Exit(code)


@app.command("retrain")
def retrain(
    step: Annotated[
        list[str] | None,
        typer.Option("--step", help="Run only these steps: pull, train, evaluate, register, publish (repeatable)."),
    ] = None,
    workdir: Annotated[
        Path | None, typer.Option("--workdir", metavar="DIR", help="Work folder shared by the steps.")
    ] = None,
    since: Annotated[str, typer.Option("--since", help="Pull the lines of this last period from the index.")] = "7d",
    data: Annotated[
        Path | None, typer.Option("--data", metavar="CSV", help="Labelled lines to train on and evaluate with.")
    ] = None,
    register: Annotated[
        str | None, typer.Option("--register", metavar="NAME", help="Model name (default: logs.registered_model).")
    ] = None,
    require_better: Annotated[
        bool, typer.Option("--require-better", help="Exit 3 when the candidate is not better.")
    ] = False,
    output: OutputOpt = OutputFormat.table,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Retrain the classifier from the index: pull, train, evaluate, register if better, publish.

    The same steps the Airflow DAG runs, without Airflow. The candidate is compared with the
    current classifier on the same held-out lines; only a better one is registered (alias
    challenger) and published, and a running stream reloads it.

    Example: mlctl classify-logs retrain --since 3d --data labelled.csv
    """
    from datetime import datetime

    from mlctl.logs.retrain import STEPS, report_dict
    from mlctl.logs.retrain import retrain as run_retrain

    loaded = load()
    loaded.require_project()
    folder = workdir or loaded.state_dir / "logs" / "retrain" / f"{datetime.now():%Y%m%dT%H%M%S}"
    report = run_retrain(
        loaded,
        Path(folder),
        steps=tuple(step) if step else STEPS,
        since=since,
        data=data,
        register_as=register,
        require_better=require_better,
    )
    render(report_dict(report), title="retrain")


@app.command("dag")
def dag(
    out: Annotated[Path, typer.Option("--out", metavar="FILE", help="Where to write the DAG file.")] = Path(
        "dags/mlctl_logs_retrain.py"
    ),
    dag_id: Annotated[str | None, typer.Option("--dag-id", help="Airflow DAG id.")] = None,
    schedule: Annotated[str, typer.Option("--schedule", help="Preset (@daily...), 5-field cron, or none.")] = "@daily",
    since: Annotated[str, typer.Option("--since", help="How much history each run pulls.")] = "7d",
    data: Annotated[Path | None, typer.Option("--data", metavar="CSV", help="Labelled lines for every run.")] = None,
    mlctl_bin: Annotated[
        str | None, typer.Option("--mlctl", metavar="PATH", help="The mlctl executable tasks run (default: this one).")
    ] = None,
    dry_run: DryRunOpt = False,
    output: OutputOpt = OutputFormat.table,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Write an Apache Airflow DAG that retrains the classifier on a schedule.

    Tasks: pull recent lines from the index -> retrain -> evaluate -> register if better ->
    publish (the stream reloads the model). Each task runs one `mlctl classify-logs retrain`
    step in this project, so Airflow's environment needs only Airflow.

    Example: mlctl classify-logs dag --out $AIRFLOW_HOME/dags/logs_retrain.py --schedule @daily
    """
    from mlctl.logs.dag import dag_result, dag_spec

    spec = dag_spec(
        load(), dag_id=dag_id, schedule=schedule, since=since, data=str(data) if data else None, mlctl=mlctl_bin
    )
    render(dag_result(spec, out, dry_run=dry_run))
