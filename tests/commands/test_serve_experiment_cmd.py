"""``mlctl serve experiment``: create/list/show/pause/resume/stop in a project, exact output and exit
codes, bad input. The registry is a fake reader here; test_json_schemas runs the same commands
against a real MLflow registry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import mlctl.lifecycle.registry_fast as registry_fast
from mlctl.lifecycle.registry_fast import CannotAnswer, ModelRecord, RegistryReader, VersionRecord
from mlctl.serving.experiments.store import Tally, open_store


class FakeRegistry(RegistryReader):
    """churn: versions 1-3, champion -> 2, challenger -> 3."""

    def model(self, name: str) -> ModelRecord | None:
        return ModelRecord("churn", {"champion": "2", "challenger": "3"}) if name == "churn" else None

    def model_names(self, limit: int = 50) -> list[str]:
        return ["churn"]

    def versions(self, name: str) -> list[str]:
        return ["1", "2", "3"] if name == "churn" else []

    def version(self, name: str, version: str) -> VersionRecord | None:  # pragma: no cover - not asked
        return None


@pytest.fixture
def proj(project: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(project)
    monkeypatch.setattr(registry_fast, "reader_for", lambda loaded: FakeRegistry())
    return project


CREATE = ("serve", "experiment", "create", "ab", "--model", "churn", "--variants", "champion:90,challenger:10")


def test_create_show_and_the_same_definition_again(cli, proj: Path) -> None:  # noqa: ANN001
    r = cli(*CREATE, "--dry-run", "-o", "json")
    assert r.code == 0 and json.loads(r.out)["dry_run"] is True and json.loads(r.out)["changed"] is True
    assert json.loads(cli("serve", "experiment", "list", "-o", "json").out)["experiments"] == []  # dry run
    r = cli(*CREATE, "-o", "json")
    doc = json.loads(r.out)
    assert r.code == 0 and doc["changed"] is True and doc["store"].endswith(".mlctl/experiments.db")
    assert doc["experiment"]["control"] == "champion" and doc["experiment"]["strategy"] == "weighted"
    again = json.loads(cli(*CREATE, "-o", "json").out)
    assert again["changed"] is False and again["experiment"]["created_at"] == doc["experiment"]["created_at"]

    r = cli("serve", "experiment", "create", "ab", "--model", "churn", "--variants", "champion:50,challenger:50")
    assert r.code == 2 and "exists with another definition" in r.err and "--replace" in r.err

    r = cli("serve", "experiment", "show", "ab")
    assert r.code == 0 and "champion:90, challenger:10" in r.out and "variants" in r.out
    shares = {v["variant"]: v["share"] for v in json.loads(cli("serve", "experiment", "show", "ab",
                                                                   "-o", "json").out)["variants"]}
    assert shares == {"champion": 0.9, "challenger": 0.1}


def test_show_reports_counters_from_the_store(cli, proj: Path) -> None:  # noqa: ANN001
    assert cli(*CREATE, "--shadow", "1:5").code == 0
    with open_store("sqlite", base=proj / ".mlctl") as store:
        t = Tally()
        for i in range(4):
            t.assign("ab", "challenger", f"r{i}", expires_at=4e9, prediction="yes")
        t.shadow("ab", "1")
        store.flush(t)
        store.feedback("r0", label="yes")
        store.feedback("r1", label="no")
    rows = json.loads(cli("serve", "experiment", "show", "ab", "-o", "json").out)["variants"]
    by = {v["variant"]: v for v in rows}
    assert [v["variant"] for v in rows] == ["champion", "challenger", "1"]
    assert by["challenger"]["assigned"] == 4 and by["challenger"]["trials"] == 2
    assert by["challenger"]["mean_reward"] == 0.5 and by["1"]["role"] == "shadow" and by["1"]["shadowed"] == 1


def test_pause_resume_stop_are_idempotent_and_stop_is_final(cli, proj: Path) -> None:  # noqa: ANN001
    assert cli(*CREATE).code == 0
    r = cli("serve", "experiment", "pause", "ab", "-o", "json")
    assert r.code == 0 and json.loads(r.out)["experiment"]["status"] == "paused"
    assert json.loads(cli("serve", "experiment", "pause", "ab", "-o", "json").out)["changed"] is False
    shares = {v["variant"]: v["share"] for v in json.loads(cli("serve", "experiment", "show", "ab",
                                                                   "-o", "json").out)["variants"]}
    assert shares == {"champion": 1.0, "challenger": 0.0}  # paused: all traffic to the control
    r = cli("serve", "experiment", "resume", "ab", "--dry-run", "-o", "json")
    assert json.loads(r.out)["experiment"]["status"] == "running"
    assert json.loads(cli("serve", "experiment", "list", "-o", "json").out)["experiments"][0]["status"] == "paused"
    assert cli("serve", "experiment", "resume", "ab").code == 0
    r = cli("serve", "experiment", "stop", "ab")
    assert r.code == 0 and "experiment ab stopped" in r.out
    r = cli("serve", "experiment", "resume", "ab")
    assert r.code == 2 and "is stopped" in r.err
    assert cli(*CREATE).code == 0  # a stopped name can be defined again
    r = cli("serve", "experiment", "list")
    assert r.code == 0 and "ab" in r.out and "running" in r.out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--variants", "champion:90,challenger:20"), "100"),
        (("--variants", "champion:90,v9:10"), "no alias or version 'v9'"),
        (("--model", "nope"), "no registered model nope"),
        (("--shadow", "7:5"), "no alias or version '7'"),
        (("--strategy", "sticky"), "--sticky-key"),
        (("--strategy", "coin"), "unknown strategy"),
        (("--reward", "money"), "unknown reward"),
        (("--feedback-window", "0s"), "feedback window"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(cli, proj: Path, args: tuple[str, ...], message: str) -> None:  # noqa: ANN001
    base = {"--model": "churn", "--variants": "champion:90,challenger:10"}
    extra: list[str] = []
    for flag, value in zip(args[::2], args[1::2], strict=True):
        if flag in base:
            base[flag] = value
        else:
            extra += [flag, value]
    r = cli("serve", "experiment", "create", "ab", *[x for kv in base.items() for x in kv], *extra, "-o", "json")
    assert r.code == 2 and r.out == ""
    assert message in json.loads(r.err)["error"]["message"]
    assert not (proj / ".mlctl" / "experiments.db").exists()  # nothing written


def test_unknown_experiment_and_registry_states(cli, proj: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    r = cli("serve", "experiment", "show", "nope")
    assert r.code == 2 and "no experiment nope" in r.err
    assert cli("serve", "experiment", "list").code == 0

    def nothing_yet(loaded: object) -> RegistryReader:
        raise CannotAnswer("no store yet")

    monkeypatch.setattr(registry_fast, "reader_for", nothing_yet)
    r = cli(*CREATE)
    assert r.code == 2 and "nothing is registered yet" in r.err

    def cannot(loaded: object) -> RegistryReader:
        raise CannotAnswer("MLflow client TLS/auth settings")

    monkeypatch.setattr(registry_fast, "reader_for", cannot)
    r = cli(*CREATE, "-o", "json")
    assert r.code == 0 and "not checked against the registry" in json.loads(r.out)["warnings"][0]


def test_outside_a_project_the_embedded_store_is_refused(cli, isolated_env: Path) -> None:  # noqa: ANN001
    r = cli("serve", "experiment", "list")
    assert r.code == 2 and "project" in r.err


def test_a_memory_store_from_the_environment(cli, proj: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("MLCTL_SERVE__STATE", "memory")
    r = cli(*CREATE, "-o", "json")
    assert r.code == 0 and json.loads(r.out)["store"] == "memory"
    assert not (proj / ".mlctl" / "experiments.db").exists()
    monkeypatch.setenv("MLCTL_SERVE__STATE", "postgres://x")
    r = cli("serve", "experiment", "list")
    assert r.code == 2 and "unknown state" in r.err


# --------------------------------------------------------------------------- serve report


def _outcomes(root: Path, per_variant: dict[str, tuple[int, int]], name: str = "ab") -> None:
    """Record (requests, conversions) per variant: assignments and their outcomes, in one flush."""
    with open_store("sqlite", base=root / ".mlctl") as store:
        t = Tally()
        for variant, (n, wins) in per_variant.items():
            for i in range(n):
                t.assign(name, variant, f"{variant}-{i}", expires_at=4e9)
                t.outcome(name, variant, 1.0 if i < wins else 0.0)
        store.flush(t)


def test_report_not_yet_significant_and_promote_exits_3(cli, proj: Path) -> None:  # noqa: ANN001
    assert cli(*CREATE).code == 0
    _outcomes(proj, {"champion": (300, 30), "challenger": (300, 33)})
    r = cli("serve", "report", "ab", "-o", "json")
    doc = json.loads(r.out)
    assert r.code == 0 and doc["decision"]["status"] == "not_yet" and doc["promotion"] is None
    (cmp,) = doc["comparisons"]
    assert cmp["variant"] == "challenger" and abs(cmp["difference"] - 0.01) < 1e-12
    assert not cmp["sequential"]["reject"] and 0.5 < cmp["probability_to_beat"] < 0.9
    assert [v["version"] for v in doc["variants"]] == ["2", "3"]  # from the registry's aliases
    r = cli("serve", "report", "ab", "--promote")
    assert r.code == 3 and "not significant yet" in r.err and "decision" in r.out  # the report is still shown


def test_report_significant_promotes_the_winner_and_stops_the_experiment(cli, proj: Path,  # noqa: ANN001
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import mlctl.lifecycle.registry as registry

    moved: list[tuple[str, str, str, bool]] = []

    def promote(loaded: object, name: str, version: str, alias: str = "champion", *, dry_run: bool = False):  # noqa: ANN202
        moved.append((name, version, alias, dry_run))
        return registry.PromoteResult(name, alias, version, "2", True, dry_run)

    monkeypatch.setattr(registry, "promote", promote)
    assert cli(*CREATE, "--shadow", "1:5").code == 0
    _outcomes(proj, {"champion": (2000, 200), "challenger": (2000, 300)})
    r = cli("serve", "report", "ab", "--promote", "--dry-run", "-o", "json")
    doc = json.loads(r.out)
    assert r.code == 0 and doc["decision"] == {"status": "significant", "winner": "challenger",
                                               "reason": doc["decision"]["reason"]}
    assert doc["promotion"]["dry_run"] is True and moved == [("churn", "3", "champion", True)]
    assert doc["experiment"]["status"] == "running" and doc["shadow"]["target"] == "1"
    plot = proj / "out" / "ab.png"
    r = cli("serve", "report", "ab", "--promote", "--plot", str(plot))
    assert r.code == 0 and "champion: 2 -> 3" in r.out and plot.read_bytes()[:4] == b"\x89PNG"
    assert moved[-1] == ("churn", "3", "champion", False)
    assert json.loads(cli("serve", "experiment", "show", "ab", "-o", "json").out)["experiment"]["status"] == "stopped"


def test_report_refuses_a_bad_alpha_and_an_unknown_experiment(cli, proj: Path) -> None:  # noqa: ANN001
    assert cli(*CREATE).code == 0
    r = cli("serve", "report", "ab", "--alpha", "1.5")
    assert r.code == 2 and "--alpha" in r.err
    r = cli("serve", "report", "nope")
    assert r.code == 2 and "no experiment nope" in r.err
