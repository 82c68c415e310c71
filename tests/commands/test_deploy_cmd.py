"""deploy / rollback / releases commands: options -> library -> output (in-memory target and registry)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.unit.test_releases import FakeTarget, env  # noqa: F401 - the fixture is used by name


def test_deploy_is_the_default_subcommand(cli, env) -> None:  # noqa: F811
    target, _ = env
    r = cli("deploy", "churn@champion", "--port", "9100", "-o", "json")
    assert r.code == 0, r.err
    doc = json.loads(r.out)
    assert doc["deployment"] == "churn" and doc["dry_run"] is False
    assert doc["status"]["endpoint"] == "http://127.0.0.1:9100" and doc["release"]["revision"] == 1
    assert target.running["churn"].port == 9100


def test_deploy_dry_run_table(cli, env) -> None:  # noqa: F811
    target, _ = env
    r = cli("deploy", "up", "churn", "--dry-run")
    assert r.code == 0 and "run churn:1" in r.out and "dry run" in r.out
    assert target.applied == []


def test_deploy_table_then_rollback_and_releases(cli, env) -> None:  # noqa: F811
    _, aliases = env
    assert cli("deploy", "churn@champion").code == 0
    aliases["champion"] = "2"
    r = cli("deploy", "churn@champion")
    assert r.code == 0 and "churn:2 (@champion)" in r.out and "2/1" not in r.out
    r = cli("rollback", "churn", "--dry-run")
    assert r.code == 0 and "would change" in r.out
    r = cli("rollback", "churn", "-o", "json")
    doc = json.loads(r.out)
    assert doc["to_release"]["version"] == "1" and doc["alias_moved"]["to"] == "1"
    r = cli("releases", "churn", "-o", "json")
    assert [x["revision"] for x in json.loads(r.out)] == [1, 2, 3]
    r = cli("releases", "churn")
    assert "superseded" in r.out and "active" in r.out


def test_stop_and_logs(cli, env) -> None:  # noqa: F811
    cli("deploy", "churn@champion")
    r = cli("deploy", "logs", "churn")
    assert r.out == "logs of churn\n"
    r = cli("deploy", "logs", "churn", "-o", "json")
    assert json.loads(r.out) == {"deployment": "churn", "logs": "logs of churn\n"}
    r = cli("deploy", "stop", "churn", "--dry-run", "-o", "json")
    assert json.loads(r.out)["dry_run"] is True
    r = cli("deploy", "stop", "churn", "-o", "json")
    assert json.loads(r.out) == {"deployment": "churn", "stopped": True, "dry_run": False}
    r = cli("deploy", "stop", "churn")
    assert r.code == 0 and "was not running" in r.err


def test_unknown_deployment_and_bad_target(cli, env) -> None:  # noqa: F811
    r = cli("rollback", "ghost")
    assert r.code == 2 and "no deployment named 'ghost'" in r.err
    r = cli("releases", "ghost", "-o", "json")
    assert r.code == 2 and json.loads(r.err)["error"]["type"] == "NotFound"


def test_a_deployment_being_changed_exits_1_naming_the_holder(cli, env, tmp_path) -> None:  # noqa: F811
    import subprocess
    import sys

    from mlctl.lifecycle.deploy.lock import lock_folder

    target, _ = env
    assert cli("deploy", "churn@champion").code == 0
    folder = lock_folder(Path.cwd() / ".mlctl", "churn")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from pathlib import Path\n"
         "from mlctl.lifecycle.deploy.lock import deployment_lock\n"
         "with deployment_lock(Path(sys.argv[1]), 'churn', 'deploy'):\n"
         "    print('locked', flush=True); sys.stdin.read()", str(folder)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        for args in (["deploy", "churn@champion"], ["rollback", "churn", "--to", "1"], ["deploy", "stop", "churn"]):
            r = cli(*args, "-o", "json")
            assert r.code == 1 and r.out == "", args
            error = json.loads(r.err)["error"]
            assert error["type"] == "DeploymentBusy"
            assert error["message"].startswith(f"deployment churn is busy: pid {holder.pid} (`")
            assert error["details"]["holder"]["pid"] == holder.pid
        r = cli("deploy", "churn@champion")
        assert r.code == 1 and r.err.startswith(f"Error: deployment churn is busy: pid {holder.pid} ")
    finally:
        holder.communicate("", timeout=30)
    assert target.applied == ["1"]  # none of the refused commands reached the target
    assert [x["revision"] for x in json.loads(cli("releases", "churn", "-o", "json").out)] == [1]


def test_a_port_held_by_another_process_exits_2(cli, env, monkeypatch) -> None:  # noqa: F811
    import os
    import socket

    from mlctl.lifecycle.deploy.local import ensure_port_free

    target, _ = env
    monkeypatch.setattr(target, "apply", lambda spec: ensure_port_free("127.0.0.1", spec.port,
                                                                       hint="pass --port with a free port"))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = cli("deploy", "churn@champion", "--port", str(port), "-o", "json")
    assert r.code == 2 and r.out == ""
    error = json.loads(r.err)["error"]
    assert error["type"] == "UsageError"
    assert error["message"].startswith(f"port {port} on 127.0.0.1 is already in use by pid {os.getpid()} (")
    assert error["details"]["holder_pid"] == os.getpid()


def test_rollback_asks_on_a_terminal_unless_yes(cli, env, monkeypatch) -> None:  # noqa: F811
    import sys

    import typer

    _, aliases = env
    assert cli("deploy", "churn@champion").code == 0
    aliases["champion"] = "2"
    assert cli("deploy", "churn@champion").code == 0
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    asked: list[str] = []

    def answer(reply: bool):  # noqa: ANN202 - a typer.confirm stand-in
        def confirm(text: str, **_: object) -> bool:
            asked.append(text)
            return reply
        return confirm

    monkeypatch.setattr(typer, "confirm", answer(False))
    r = cli("rollback", "churn")
    assert r.code == 1 and asked == ["Roll churn back to version 1?"] and "would change" in r.out
    assert [x["revision"] for x in json.loads(cli("releases", "churn", "-o", "json").out)] == [1, 2]  # nothing done
    r = cli("rollback", "churn", "--yes")
    assert r.code == 0 and len(asked) == 1  # not asked again
    assert [x["revision"] for x in json.loads(cli("releases", "churn", "-o", "json").out)] == [1, 2, 3]


def test_deploy_has_no_yes_flag_that_does_nothing(cli, env) -> None:  # noqa: F811
    r = cli("deploy", "up", "churn", "--yes")
    assert r.code == 2


def test_scale_calls_the_target_and_prints_a_small_document(cli, env) -> None:  # noqa: F811
    target, _ = env
    assert cli("deploy", "churn@champion").code == 0
    r = cli("deploy", "scale", "churn", "--replicas", "3", "--dry-run", "-o", "json")
    assert r.code == 0, r.err
    assert json.loads(r.out) == {"name": "churn", "target": "local", "replicas": 3, "ready": None, "from": 1,
                                 "dry_run": True}
    assert target.running["churn"].replicas == 1  # a dry run changes nothing
    r = cli("deploy", "scale", "churn", "--replicas", "3", "-o", "json")
    assert r.code == 0, r.err
    assert json.loads(r.out) == {"name": "churn", "target": "local", "replicas": 3, "ready": 3, "from": 1,
                                 "dry_run": False}
    assert target.running["churn"].replicas == 3
    r = cli("deploy", "scale", "churn", "-r", "0")
    assert r.code == 0 and "churn: 0/0 replica(s) ready on local" in r.err


def test_scale_refuses_bad_counts_and_unknown_deployments(cli, env) -> None:  # noqa: F811
    target, _ = env
    assert cli("deploy", "churn@champion").code == 0
    for bad in ("-1", "65"):
        r = cli("deploy", "scale", "churn", "--replicas", bad, "-o", "json")
        assert r.code == 2 and json.loads(r.err)["error"]["type"] == "UsageError"
    assert target.running["churn"].replicas == 1
    r = cli("deploy", "scale", "ghost", "--replicas", "2", "-o", "json")
    assert r.code == 2 and json.loads(r.err)["error"]["type"] == "NotFound"
