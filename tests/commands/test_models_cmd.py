"""``mlctl models`` and the registry API (resolve_model, set_alias) on the embedded MLflow store.

One project per module holds model ``demo`` with two versions trained by ``train()``; the tests
run in file order (list/show/compare, then the alias moves, then resolution).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mlctl.core.config import load_config
from mlctl.core.errors import NotFound, UsageError, exit_code_for
from mlctl.lifecycle import registry, serialize
from mlctl.lifecycle.serialize import ArtifactTampered
from mlctl.lifecycle.train import TrainOptions, train
from tests.commands.test_train_cmd import make_project, mlflow_db_template, set_train  # noqa: F401 - fixture


@pytest.fixture(scope="module")
def reg(tmp_path_factory: pytest.TempPathFactory, mlflow_db_template: Path) -> dict:  # noqa: F811
    root = make_project(tmp_path_factory.mktemp("models") / "proj", mlflow_db_template)
    loaded = load_config(start=root, use_user_file=False, env={})
    first = train(loaded, TrainOptions(register="demo"))
    second = train(loaded, TrainOptions(register="demo", params={"n_estimators": 3, "max_depth": 2}))
    return {"root": root, "v1": first, "v2": second}


@pytest.fixture
def in_reg(reg: dict, monkeypatch: pytest.MonkeyPatch) -> dict:
    monkeypatch.chdir(reg["root"])
    return reg


def _loaded(reg: dict):  # noqa: ANN202
    return load_config(start=reg["root"], use_user_file=False, env={})


def test_list(cli, in_reg: dict) -> None:
    r = cli("models", "list", "-o", "json")
    assert r.code == 0, r.err
    [model] = json.loads(r.out)
    assert model["name"] == "demo" and model["latest_version"] == "2"
    assert model["aliases"] == {"challenger": "2"}
    table = cli("models", "list")
    assert "challenger=v2" in table.out


def test_show(cli, in_reg: dict) -> None:
    r = cli("models", "show", "demo", "-o", "json")
    assert r.code == 0, r.err
    detail = json.loads(r.out)
    assert [v["version"] for v in detail["versions"]] == ["1", "2"]
    v1, v2 = detail["versions"]
    assert v1["artifact_sha256"] == in_reg["v1"].artifact_sha256 and v1["run_id"] == in_reg["v1"].run_id
    assert v2["aliases"] == ["challenger"] and v1["aliases"] == []
    assert v1["metrics"]["accuracy"] == pytest.approx(in_reg["v1"].metrics["accuracy"])
    assert v1["tags"]["mlctl.flavor"] == "sklearn" and v1["tags"]["mlctl.task"] == "classification"
    assert "challenger" in cli("models", "show", "demo").out


def test_compare_marks_the_better_value(cli, in_reg: dict) -> None:
    r = cli("models", "compare", "demo", "1", "2", "-o", "json")
    assert r.code == 0, r.err
    cmp = json.loads(r.out)
    assert (cmp["v1"], cmp["v2"]) == ("1", "2")
    m1, m2 = in_reg["v1"].metrics, in_reg["v2"].metrics
    for m in cmp["metrics"]:
        assert m["higher_is_better"] is True
        expected = None if m1[m["name"]] == m2[m["name"]] else ("v1" if m1[m["name"]] > m2[m["name"]] else "v2")
        assert m["better"] == expected
    params = {p["name"]: p for p in cmp["params"]}
    assert params["n_estimators"] == {"name": "n_estimators", "v1": "10", "v2": "3", "same": False}
    assert params["criterion"]["same"] is True
    table = cli("models", "compare", "demo", "1", "2")
    assert "n_estimators (differs)" in table.out and "(higher better)" in table.out and " *" in table.out


@pytest.mark.parametrize(("args", "fragment", "hint"), [
    (("show", "nope"), "no registered model named 'nope'", "registered models: demo"),
    (("compare", "demo", "1", "9"), "model 'demo' has no version 9", "versions: 1, 2"),
    (("promote", "demo", "9"), "model 'demo' has no version 9", "versions: 1, 2"),
    (("promote", "nope", "1"), "no registered model named 'nope'", "registered models: demo"),
    (("promote", "demo", "1", "--alias", "latest"), "'latest' is not a valid alias", "champion"),
    (("compare", "demo", "1", "x"), "version must be a positive number", "NAME:VERSION"),
])
def test_unknown_model_version_or_alias_exits_2(cli, in_reg: dict, args: tuple, fragment: str, hint: str) -> None:
    r = cli("models", *args, "-o", "json")
    assert r.code == 2 and r.out == ""
    err = json.loads(r.err)["error"]
    assert fragment in err["message"] and hint in err["hint"]


def test_promote_moves_the_alias_idempotently_with_dry_run(cli, in_reg: dict) -> None:
    dry = json.loads(cli("models", "promote", "demo", "1", "--dry-run", "-o", "json").out)
    assert dry == {"name": "demo", "alias": "champion", "version": "1", "previous": None, "changed": True,
                   "dry_run": True}
    assert "champion" not in json.loads(cli("models", "list", "-o", "json").out)[0]["aliases"]
    first = cli("models", "promote", "demo", "1")
    assert first.code == 0 and "demo@champion: nothing -> v1" in first.err
    again = json.loads(cli("models", "promote", "demo", "1", "--alias", "champion", "-o", "json").out)
    assert again["changed"] is False and again["previous"] == "1"
    assert "already points at v1" in cli("models", "promote", "demo", "1").err
    assert registry.set_alias("demo", "champion", "2", _loaded(in_reg)) == "1"
    assert registry.set_alias("demo", "champion", "1", _loaded(in_reg)) == "2"
    assert json.loads(cli("models", "list", "-o", "json").out)[0]["aliases"] == {"champion": "1", "challenger": "2"}


def test_resolve_model_downloads_verifies_and_loads(in_reg: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    loaded = _loaded(in_reg)
    art = registry.resolve_model("demo", loaded)  # bare name: the champion (v1)
    assert (art.name, art.version, art.alias, art.flavor) == ("demo", "1", "champion", "sklearn")
    assert art.path == in_reg["root"] / ".mlctl" / "models" / "demo" / "1" / "model.skops"
    assert art.sha256 == in_reg["v1"].artifact_sha256 == serialize.sha256_file(art.path)
    assert art.run_id == in_reg["v1"].run_id
    assert art.signature["inputs"] == [{"name": "x1", "type": "double"}, {"name": "x2", "type": "double"},
                                       {"name": "x3", "type": "double"}, {"name": "colour", "type": "string"}]
    assert art.signature["outputs"] == [{"name": "label", "type": "string"}]
    model = serialize.load_model(art)
    import pandas as pd

    row = pd.DataFrame([{"x1": 0.9, "x2": 0.9, "x3": 0.1, "colour": "red"}])
    assert model.predict(row)[0] in ("good", "bad")

    v2 = registry.resolve_model("demo@challenger", loaded, dest=in_reg["root"] / "elsewhere")
    assert (v2.version, v2.alias, v2.path.parent.name) == ("2", "challenger", "elsewhere")
    assert registry.resolve_model("demo:2", loaded).alias is None

    def no_download(*a: object, **k: object) -> None:
        raise AssertionError("a verified local copy must be reused")

    monkeypatch.setattr(registry, "_download", no_download)
    assert registry.resolve_model("demo:1", loaded).sha256 == art.sha256


def test_resolve_model_errors(in_reg: dict) -> None:
    loaded = _loaded(in_reg)
    with pytest.raises(NotFound, match="model 'demo' has no alias 'staging'") as info:
        registry.resolve_model("demo@staging", loaded)
    assert info.value.hint == "aliases: challenger -> v2, champion -> v1"
    with pytest.raises(NotFound, match="no registered model named 'ghost'"):
        registry.resolve_model("ghost", loaded)
    with pytest.raises(NotFound, match="has no version 7"):
        registry.resolve_model("demo:7", loaded)
    with pytest.raises(UsageError):
        registry.resolve_model("demo@", loaded)


def test_a_tampered_local_copy_is_refused_at_load_and_replaced_on_resolve(in_reg: dict) -> None:
    loaded = _loaded(in_reg)
    art = registry.resolve_model("demo:1", loaded)
    original = art.path.read_bytes()
    art.path.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    with pytest.raises(ArtifactTampered) as info:
        serialize.load_model(art)
    assert exit_code_for(info.value) == 1
    fresh = registry.resolve_model("demo:1", loaded)  # the registry's copy is the source of truth
    assert fresh.path.read_bytes() == original


def test_a_tampered_registry_artifact_is_refused(in_reg: dict) -> None:
    loaded = _loaded(in_reg)
    stored = next((in_reg["root"] / ".mlctl" / "mlartifacts").rglob(f"{in_reg['v2'].run_id}/**/model.skops"))
    original = stored.read_bytes()
    try:
        stored.write_bytes(original + b"tampered")
        with pytest.raises(ArtifactTampered, match="refusing to load it") as info:
            registry.resolve_model("demo:2", loaded, dest=in_reg["root"] / "tampered")
        assert info.value.exit_code == 1 and info.value.details["expected"] == in_reg["v2"].artifact_sha256
    finally:
        stored.write_bytes(original)


def test_champion_gate_blocks_a_worse_model(cli, in_reg: dict) -> None:
    set_train(in_reg["root"], gates={"max_regression_vs_champion": 0.0}, primary_metric="roc_auc",
              params={"n_estimators": 1, "max_depth": 1})
    try:
        r = cli("train", "--register", "demo", "-o", "json")
        assert r.code == 3, r.err
        gate = json.loads(r.err)["error"]["details"]["gates"][0]
        assert gate["name"] == "max_regression_vs_champion" and gate["value"] > 0 and not gate["passed"]
        versions = json.loads(cli("models", "show", "demo", "-o", "json").out)["versions"]
        assert [v["version"] for v in versions] == ["1", "2"]  # nothing registered
    finally:
        set_train(in_reg["root"], gates={}, primary_metric=None, params={"n_estimators": 10})


def test_models_help_has_examples(cli) -> None:
    for sub in ("list", "show", "compare", "promote"):
        r = cli("models", sub, "--help")
        assert r.code == 0 and "Example: mlctl models " + sub in r.out


def test_predictions_are_stable_across_resolutions(in_reg: dict) -> None:
    loaded = _loaded(in_reg)
    import pandas as pd

    rows = pd.DataFrame({"x1": np.linspace(0, 1, 5), "x2": np.linspace(1, 0, 5), "x3": 0.5, "colour": "blue"})
    a = serialize.load_model(registry.resolve_model("demo:1", loaded)).predict(rows)
    b = serialize.load_model(registry.resolve_model("demo@champion", loaded)).predict(rows)
    assert list(a) == list(b)


def test_read_only_commands_do_not_create_the_embedded_store(cli, project: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project)
    r = cli("models", "list", "-o", "json")
    assert r.code == 0 and json.loads(r.out) == []
    r = cli("models", "show", "demo", "-o", "json")
    assert r.code == 2 and "no models are registered yet" in json.loads(r.err)["error"]["message"]
    assert cli("models", "promote", "demo", "1").code == 2
    assert not (project / ".mlctl").exists()


def test_outside_a_project_the_embedded_store_needs_one(cli, isolated_env: Path) -> None:
    for args in (("models", "list"), ("train",)):
        r = cli(*args)
        assert r.code == 2 and "no mlctl.yaml found" in r.err
    assert not (isolated_env / ".mlctl").exists()
