"""A command group that imports each subcommand's module only when it is used.

``mlctl --help`` lists every group from a static table (name -> ``module:attr`` and
one line of help), so start-up does not grow with the number of commands. A test checks
that the static help lines match the commands' own docstrings.
"""

from __future__ import annotations

import importlib
from typing import Any

import typer
from typer.core import TyperGroup

#: name -> (import path "module:attribute", one-line help). The attribute is a command
#: function or a Typer sub-app.
LAZY_COMMANDS: dict[str, tuple[str, str]] = {
    "init": ("mlctl.commands.init:init", "Scaffold a new project from a template."),
    "status": ("mlctl.commands.status:status", "Show the project: config file, tracking store, state counts."),
    "config": ("mlctl.commands.config:app", "Show and edit configuration."),
    "doctor": ("mlctl.commands.doctor:doctor", "Check every optional engine at its configured URL."),
    "train": ("mlctl.commands.train:train", "Train the project's model, track it in MLflow, gate and register it."),
    "models": ("mlctl.commands.models:app", "List, inspect, compare and promote registered models."),
    "serve": ("mlctl.commands.serve:app", "Serve one model over HTTP, or many behind a gateway with A/B tests."),
    "deploy": ("mlctl.commands.deploy:app", "Deploy a registered model: local processes, Docker or Kubernetes."),
    "rollback": ("mlctl.commands.rollback:rollback",
                 "Roll a deployment back to the previous (or given) release, alias included."),
    "releases": ("mlctl.commands.rollback:releases", "List a deployment's releases, oldest first."),
    "detect": ("mlctl.commands.detect:app",
               "Detect anomalies in server metrics: score files, watch Prometheus, alert, evaluate."),
    "classify-logs": ("mlctl.commands.classify_logs:app",
                      "Parse, classify and route system logs: templates, classes, sinks, Kafka streaming, search."),
}


def load_command(name: str) -> Any:
    """Import and convert the named subcommand to a click command."""
    target, _ = LAZY_COMMANDS[name]
    module_name, attr = target.split(":")
    obj = getattr(importlib.import_module(module_name), attr)
    if isinstance(obj, typer.Typer):
        cmd = typer.main.get_command(obj)
    else:
        holder = typer.Typer(rich_markup_mode=None, add_completion=False)
        holder.command(name)(obj)
        cmd = typer.main.get_command(holder)
    cmd.name = name
    return cmd


class LazyGroup(TyperGroup):
    """A TyperGroup whose registered-by-path commands load on first use."""

    def list_commands(self, ctx: Any) -> list[str]:
        return [*super().list_commands(ctx), *LAZY_COMMANDS]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        cmd = super().get_command(ctx, cmd_name)
        if cmd is None and cmd_name in LAZY_COMMANDS:
            cmd = load_command(cmd_name)
            self.commands[cmd_name] = cmd
        return cmd

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        rows = []
        for name in self.list_commands(ctx):
            if name in self.commands:
                cmd = self.commands[name]
                if cmd.hidden:
                    continue
                rows.append((name, cmd.get_short_help_str(formatter.width - 6 - len(name))))
            else:
                rows.append((name, LAZY_COMMANDS[name][1]))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)
