"""deploy / rollback / releases commands: options -> library -> output (in-memory target and registry)."""

from __future__ import annotations

import json

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
