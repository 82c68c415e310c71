"""The ``mlctl`` command line: a thin Typer layer over the :mod:`mlctl` library.

Each command turns its options into one library call and hands the result to the one
renderer (:mod:`mlctl.core.output`). Library modules are imported inside the command
functions, so ``mlctl --help`` and light commands import nothing heavy.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import typer

from mlctl import __version__
from mlctl.commands import _common
from mlctl.commands._common import ConfigOpt, OutputOpt, QuietOpt, VerboseOpt
from mlctl.commands._lazy import LazyGroup
from mlctl.core.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE, MlctlError, UsageError
from mlctl.core.output import OutputFormat, render, render_error, ui

HELP = """mlctl: one command-line toolchain for the whole machine learning lifecycle.

Scaffold a project, train, deploy and roll back models, detect anomalies, classify logs,
autoscale, and run the platform, from the shell or from CI (every command has -o json
and meaningful exit codes: 0 ok, 1 failed, 2 usage/config, 3 check failed,
4 service unreachable, 130 interrupted).

Example:

  mlctl init service my-api && cd my-api && mlctl status
"""

app = typer.Typer(
    name="mlctl",
    cls=LazyGroup,
    help=HELP,
    rich_markup_mode=None,  # plain help: Rich help rendering costs ~140 ms of start-up
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)


def _version_callback(value: bool) -> None:
    if value:
        sys.stdout.write(f"mlctl {__version__}\n")
        raise typer.Exit(0)


@app.callback()
def _root(
    config: ConfigOpt = None,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
    version: bool = typer.Option(False, "--version", help="Print the version and exit.",
                                 callback=_version_callback, is_eager=True),
) -> None:
    _common.cli_state.config_path = config


@app.command("version")
def version_cmd(output: OutputOpt = OutputFormat.table) -> None:
    """Print mlctl's version and platform.

    Example: mlctl version -o json
    """
    import platform

    render({"version": __version__, "python": platform.python_version(),
            "platform": f"{platform.system().lower()}-{platform.machine()}"}, title="mlctl")




def _format_from_argv(argv: Sequence[str]) -> OutputFormat:
    """The -o value even when parsing failed before its callback ran."""
    for i, arg in enumerate(argv):
        value = None
        if arg in ("-o", "--output") and i + 1 < len(argv):
            value = argv[i + 1]
        elif arg.startswith("--output="):
            value = arg.split("=", 1)[1]
        elif arg.startswith("-o") and len(arg) > 2:
            value = arg[2:]
        if value is not None:
            try:
                return OutputFormat(value.lower())
            except ValueError:
                return OutputFormat.table
    return OutputFormat.table


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; map every error to one line on stderr and an exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    ui.format = _format_from_argv(args)
    ui.verbosity = 0
    ui.wide = False
    _common.cli_state.config_path = None
    try:
        rv = app(args=args, prog_name="mlctl", standalone_mode=False)
        code = rv if isinstance(rv, int) else 0
    except MlctlError as exc:
        render_error(exc)
        if ui.verbosity > 0:
            import traceback

            traceback.print_exc(file=ui.err)
        code = exc.exit_code
    except typer.Abort:
        render_error(MlctlError("aborted"))
        code = EXIT_FAILED
    except KeyboardInterrupt:
        code = EXIT_INTERRUPTED
    except SystemExit as exc:  # completion callbacks exit directly
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_FAILED)
    except BrokenPipeError:
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - the reader went away
        code = EXIT_FAILED
    except Exception as exc:  # click usage errors and anything unexpected
        from typer._click.exceptions import ClickException, NoArgsIsHelpError
        from typer._click.exceptions import UsageError as ClickUsageError

        if isinstance(exc, NoArgsIsHelpError):
            ui.err.write(exc.format_message() + "\n")
            code = EXIT_USAGE
        elif isinstance(exc, ClickUsageError):
            msg = exc.format_message()
            hint = f"run `{exc.ctx.command_path} --help`" if exc.ctx else "run `mlctl --help`"
            render_error(UsageError(msg, hint=hint))
            code = EXIT_USAGE
        elif isinstance(exc, ClickException):
            render_error(MlctlError(exc.format_message()))
            code = exc.exit_code
        else:
            render_error(MlctlError(f"unexpected error: {type(exc).__name__}: {exc}",
                                    hint="rerun with --verbose for the traceback, and report it"))
            if ui.verbosity > 0:
                import traceback

                traceback.print_exc(file=ui.err)
            code = EXIT_FAILED
    if argv is None:
        sys.exit(code)
    return code
