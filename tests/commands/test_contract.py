"""The contract every command keeps: output formats, exit codes, errors, help."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
import yaml

from mlctl.commands import _lazy, app
from mlctl.commands._lazy import LAZY_COMMANDS, load_command


def test_version_json_has_stable_keys(cli) -> None:
    r = cli("version", "-o", "json")
    assert r.code == 0 and r.err == ""
    assert set(json.loads(r.out)) == {"version", "python", "platform"}


def test_version_flag(cli) -> None:
    r = cli("--version")
    assert r.code == 0 and r.out.startswith("mlctl ")


def test_yaml_output(cli) -> None:
    r = cli("version", "--output", "yaml")
    assert r.code == 0 and "version" in yaml.safe_load(r.out)


def test_unknown_output_format_is_a_usage_error(cli) -> None:
    r = cli("version", "-o", "xml")
    assert r.code == 2
    assert r.out == ""
    assert "Error:" in r.err and "xml" in r.err and "Traceback" not in r.err


def test_unknown_command(cli) -> None:
    r = cli("frobnicate")
    assert r.code == 2
    assert "No such command 'frobnicate'" in r.err
    assert "Hint: run `mlctl --help`" in r.err


def test_unknown_command_under_json_gives_json_error(cli) -> None:
    r = cli("status", "-o", "json", "--bogus")
    assert r.code == 2 and r.out == ""
    payload = json.loads(r.err)
    assert payload["error"]["type"] == "UsageError"
    assert "--bogus" in payload["error"]["message"]


def test_no_args_shows_help_as_usage_error(cli) -> None:
    r = cli()
    assert r.code == 2 and "Usage: mlctl" in r.err
    r = cli("config")
    assert r.code == 2 and "Usage: mlctl config" in r.err


def test_help_exits_zero(cli) -> None:
    r = cli("--help")
    assert r.code == 0
    for name in LAZY_COMMANDS:
        assert name in r.out


def _walk(cmd, path):  # noqa: ANN001, ANN202
    yield path, cmd
    for name in getattr(cmd, "commands", {}) or {}:
        yield from _walk(cmd.commands[name], [*path, name])


def test_every_command_has_help_and_an_example() -> None:
    root = typer.main.get_command(app)
    for name in root.list_commands(None):
        root.get_command(None, name)
    walked = list(_walk(root, ["mlctl"]))
    assert len(walked) >= 8
    for path, cmd in walked:
        assert cmd.help, f"{' '.join(path)} has no help text"
        if not getattr(cmd, "commands", None):
            assert "Example:" in cmd.help, f"{' '.join(path)} has no example"
            assert "mlctl " in cmd.help.split("Example:")[1]
            names = {opt for p in cmd.params for opt in getattr(p, "opts", [])}
            assert {"-o", "--output"} <= names, f"{' '.join(path)} lacks -o/--output"


def test_lazy_help_lines_match_the_commands() -> None:
    for name, (_, line) in LAZY_COMMANDS.items():
        cmd = load_command(name)
        first = (cmd.help or "").strip().splitlines()[0]
        assert first == line, f"{name}: table says {line!r}, command says {first!r}"


def test_lazy_group_caches_loaded_commands() -> None:
    root = typer.main.get_command(app)
    a = root.get_command(None, "status")
    assert root.get_command(None, "status") is a
    assert root.get_command(None, "nope") is None
    assert isinstance(_lazy.LazyGroup.list_commands(root, None), list)


def test_library_error_is_one_line_without_traceback(cli, isolated_env: Path) -> None:
    r = cli("status")
    assert r.code == 2
    assert r.err.splitlines() == [
        f"Error: no mlctl.yaml found in {isolated_env} or any parent folder",
        "Hint: run `mlctl init DIR` to create a project, or cd into one",
    ]


def test_verbose_adds_the_traceback(cli) -> None:
    r = cli("--verbose", "status")
    assert r.code == 2 and "Traceback" in r.err


def test_quiet_hides_messages(cli) -> None:
    r = cli("--quiet", "init", "service", "q")
    assert r.code == 0 and "Next:" not in r.err
    r = cli("init", "service", "q2")
    assert r.code == 0 and "Next: cd q2 && mlctl status" in r.err


def test_keyboard_interrupt_exits_130(cli, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mlctl.status

    def interrupted(loaded, **kwargs):  # noqa: ANN001, ANN003, ANN202
        raise KeyboardInterrupt

    monkeypatch.chdir(project)
    monkeypatch.setattr(mlctl.status, "project_status", interrupted)
    assert cli("status").code == 130


def test_unexpected_error_is_reported_with_exit_1(cli, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mlctl.status

    def broken(loaded, **kwargs):  # noqa: ANN001, ANN003, ANN202
        raise RuntimeError("kaput")

    monkeypatch.chdir(project)
    monkeypatch.setattr(mlctl.status, "project_status", broken)
    r = cli("status", "-o", "json")
    assert r.code == 1
    assert json.loads(r.err)["error"]["message"] == "unexpected error: RuntimeError: kaput"


def test_format_from_argv() -> None:
    from mlctl.commands import _format_from_argv

    assert _format_from_argv(["x", "-o", "json"]).value == "json"
    assert _format_from_argv(["--output=yaml"]).value == "yaml"
    assert _format_from_argv(["-ojson"]).value == "json"
    assert _format_from_argv(["-o", "xml"]).value == "table"
    assert _format_from_argv([]).value == "table"


def test_shell_completion_script_and_completions(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    # With shellingham installed, Typer detects the shell from the process tree (under make: sh);
    # pin it to bash so the test does not depend on what started it.
    try:
        import shellingham
    except ImportError:
        pass
    else:
        monkeypatch.setattr(shellingham, "detect_shell", lambda *a, **k: ("bash", "/bin/bash"))
    r = cli("--show-completion", "bash")
    assert r.code == 0 and "_mlctl_completion" in r.out
    import subprocess
    import sys

    env = {"_MLCTL_COMPLETE": "complete_bash", "COMP_WORDS": "mlctl config s", "COMP_CWORD": "2",
           "PATH": "/usr/bin:/bin", "HOME": str(Path.home())}
    proc = subprocess.run([sys.executable, "-m", "mlctl"], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    assert proc.stdout.split() == ["show", "set"]
