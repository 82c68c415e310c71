"""The docker target's wheels without an engine: tags, rebuilding installed wheels, the closure, the cache."""

from __future__ import annotations

import base64
import hashlib
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

from mlctl.core.errors import OperationFailed
from mlctl.lifecycle.deploy import docker_wheels
from mlctl.lifecycle.deploy.docker_wheels import (
    dependency_wheels,
    image_accepts,
    installed_closure,
    mlctl_wheel,
    rebuild_wheel,
)


def _fake_dist(site: Path, name: str, version: str = "1.0", *, tag: str = "py3-none-any",
               requires: tuple[str, ...] = (), editable: bool = False) -> metadata.Distribution:
    """An installed distribution as pip leaves it: package, __pycache__, a script outside, RECORD."""
    module = name.replace("-", "_")
    info = site / f"{module}-{version}.dist-info"
    (site / module / "__pycache__").mkdir(parents=True)
    info.mkdir()
    (site / module / "__init__.py").write_text(f"NAME = {name!r}\n")
    (site / module / "data.txt").write_text("payload\n")
    (site / module / "__pycache__" / "__init__.cpython-311.pyc").write_bytes(b"\0compiled")
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}",
             *(f"Requires-Dist: {r}" for r in requires)]
    (info / "METADATA").write_text("\n".join(lines) + "\n")
    (info / "WHEEL").write_text(f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: {tag}\n")
    (info / "INSTALLER").write_text("pip\n")
    url = '{"url": "file:///src", "dir_info": {"editable": true}}' if editable else '{"url": "file:///x.whl"}'
    (info / "direct_url.json").write_text(url)
    files = [f"{module}/__init__.py", f"{module}/data.txt", f"{module}/__pycache__/__init__.cpython-311.pyc",
             f"{info.name}/METADATA", f"{info.name}/WHEEL", f"{info.name}/INSTALLER",
             f"{info.name}/direct_url.json", f"{info.name}/RECORD", f"../../../bin/{module}"]
    (info / "RECORD").write_text("".join(f"{f},,\n" for f in files))
    return metadata.PathDistribution(info)


@pytest.mark.parametrize(("tag", "accepted"), [
    ("py3-none-any", True), ("py2.py3-none-any", False), ("py311-none-any", True), ("py312-none-any", False),
    ("cp311-cp311-manylinux_2_17_x86_64", True), ("cp311-cp311-manylinux2014_x86_64", True),
    ("cp311-cp311-manylinux_2_36_x86_64", True), ("cp311-cp311-manylinux_2_38_x86_64", False),
    ("cp310-abi3-manylinux_2_17_x86_64", True), ("cp312-abi3-manylinux_2_17_x86_64", False),
    ("cp312-cp312-manylinux_2_17_x86_64", False), ("cp311-cp311-linux_x86_64", False),
    ("cp311-cp311-manylinux_2_17_aarch64", False), ("cp311-cp311-musllinux_1_2_x86_64", False),
    ("cp311-none-manylinux_2_17_x86_64", True), ("pp311-pypy311_pp73-manylinux_2_17_x86_64", False),
])
def test_image_accepts_what_pip_on_bookworm_cpython_311_x86_64_installs(tag: str, accepted: bool) -> None:
    # py2.py3 is written as two tags in WHEEL files, never as one: as one it is malformed
    assert image_accepts(tag) is accepted


def test_rebuilt_wheel_is_the_installed_package_deterministic_and_cached(tmp_path: Path) -> None:
    dist = _fake_dist(tmp_path / "site", "fake-pkg", "1.2.0")
    wheel = rebuild_wheel(dist, tmp_path / "cache")
    assert wheel.name == "fake_pkg-1.2.0-py3-none-any.whl"
    assert wheel.parent.parent == tmp_path / "cache" / "wheels" / "local"
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        record = zf.read("fake_pkg-1.2.0.dist-info/RECORD").decode().splitlines()
        data = {name: zf.read(name) for name in names}
        times = {info.date_time for info in zf.infolist()}
    # no bytecode, no installer files, nothing from outside site-packages; the dist-info folder last
    assert names == ["fake_pkg/__init__.py", "fake_pkg/data.txt", "fake_pkg-1.2.0.dist-info/METADATA",
                     "fake_pkg-1.2.0.dist-info/WHEEL", "fake_pkg-1.2.0.dist-info/RECORD"]
    assert times == {(1980, 1, 1, 0, 0, 0)}
    for line in record[:-1]:  # a fresh RECORD with the hash and size of every file
        path, digest, size = line.split(",")
        expected = base64.urlsafe_b64encode(hashlib.sha256(data[path]).digest()).rstrip(b"=").decode()
        assert digest == f"sha256={expected}" and int(size) == len(data[path])
    assert record[-1] == "fake_pkg-1.2.0.dist-info/RECORD,,"

    # the same installation gives the same bytes (the engine's layer cache still applies), reused
    assert rebuild_wheel(dist, tmp_path / "other-cache").read_bytes() == wheel.read_bytes()
    stamp = wheel.stat().st_mtime_ns
    assert rebuild_wheel(dist, tmp_path / "cache") == wheel and wheel.stat().st_mtime_ns == stamp


def test_pip_installs_a_rebuilt_wheel(tmp_path: Path) -> None:
    wheel = rebuild_wheel(_fake_dist(tmp_path / "site", "fake-pkg", "1.2.0"), tmp_path / "cache")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                    "--disable-pip-version-check", "--target", str(tmp_path / "target"), str(wheel)],
                   check=True, capture_output=True, timeout=120)
    assert (tmp_path / "target" / "fake_pkg" / "data.txt").read_text() == "payload\n"
    installed = metadata.PathDistribution(tmp_path / "target" / "fake_pkg-1.2.0.dist-info")
    assert installed.version == "1.2.0"


@pytest.mark.parametrize(("kwargs", "why"), [
    ({"editable": True}, "editable install"),
    ({"tag": "cp312-cp312-manylinux_2_17_x86_64"}, "another interpreter or platform"),
])
def test_what_cannot_be_rebuilt_says_what_to_run(tmp_path: Path, kwargs: dict, why: str) -> None:
    dist = _fake_dist(tmp_path / "site", "fake-pkg", **kwargs)
    with pytest.raises(OperationFailed, match=why) as caught:
        rebuild_wheel(dist, tmp_path / "cache")
    assert "pip install --force-reinstall --no-deps 'fake-pkg==1.0'" in (caught.value.hint or "")


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder first on sys.path, where the fake distributions are found by importlib.metadata."""
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    return folder


def test_closure_follows_extras_and_the_images_markers(site: Path) -> None:
    _fake_dist(site, "zz-app", requires=("zz-lib[fast]>=1", 'zz-old; python_version < "3.10"',
                                          'zz-win; sys_platform == "win32"', "mlctl"))
    _fake_dist(site, "zz-lib", requires=('zz-speed; extra == "fast"', 'zz-docs; extra == "docs"'))
    _fake_dist(site, "zz-speed", tag="cp311-cp311-manylinux_2_17_x86_64")
    closure = installed_closure(["zz-app==1.0"])
    assert closure is not None
    assert [d.metadata["Name"] for d in closure] == ["zz-app", "zz-lib", "zz-speed"]
    # one requirement not installed here, or installed at an excluded version: pip must resolve
    assert installed_closure(["zz-app==1.0", "zz-absent"]) is None
    assert installed_closure(["zz-lib>=2"]) is None


def test_dependency_wheels_rebuild_what_fits_and_download_the_rest_once(
        site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_dist(site, "zz-app", requires=("zz-native",))
    _fake_dist(site, "zz-native", "2.0", tag="cp312-cp312-manylinux_2_17_x86_64")  # built for another Python
    calls: list[list[str]] = []

    def fake_pip(args: list[str], what: str, **kwargs: object) -> None:
        calls.append(args)
        dest = Path(args[args.index("-d") + 1])
        (dest / "zz_native-2.0-cp311-cp311-manylinux_2_17_x86_64.whl").write_bytes(b"PK")

    monkeypatch.setattr(docker_wheels, "_pip", fake_pip)
    cache = tmp_path / "cache"
    wheels = dependency_wheels(["zz-app==1.0"], cache)
    assert [w.name for w in wheels] == ["zz_app-1.0-py3-none-any.whl",
                                        "zz_native-2.0-cp311-cp311-manylinux_2_17_x86_64.whl"]
    (call,) = calls
    assert call[0] == "download" and "--no-deps" in call and call[-1] == "zz-native==2.0"
    assert "cp311" in call and "manylinux_2_17_x86_64" in call
    assert dependency_wheels(["zz-app==1.0"], cache) == wheels and len(calls) == 1  # cached: offline now


def test_a_requirement_not_installed_here_is_resolved_by_pip_once(
        site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []

    def fake_pip(args: list[str], what: str, **kwargs: object) -> None:
        calls.append(args)
        (Path(args[args.index("-d") + 1]) / "zz_absent-1.0-py3-none-any.whl").write_bytes(b"PK")

    monkeypatch.setattr(docker_wheels, "_pip", fake_pip)
    wheels = dependency_wheels(["zz-absent==1.0"], tmp_path / "cache")
    assert [w.name for w in wheels] == ["zz_absent-1.0-py3-none-any.whl"]
    assert calls[0][0] == "download" and "--no-deps" not in calls[0] and calls[0][-1] == "zz-absent==1.0"
    assert dependency_wheels(["zz-absent==1.0"], tmp_path / "cache") == wheels and len(calls) == 1


def test_an_offline_failure_says_what_to_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # pip with no index at all stands for a machine without network
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")
    with pytest.raises(OperationFailed) as caught:
        dependency_wheels(["zz-not-installed-anywhere==1.0"], tmp_path / "cache")
    hint = caught.value.hint or ""
    assert "pip install 'mlctl[docker,serve,ml]'" in hint and "MLCTL_CACHE_DIR" in hint
    assert "DockerTarget" not in hint and not list((tmp_path / "cache" / "wheelhouse").glob("*"))


def test_mlctl_wheel_from_an_installed_mlctl_is_rebuilt_from_its_files(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dist = _fake_dist(tmp_path / "site", "mlctl", "9.9.9")
    monkeypatch.setattr(docker_wheels, "source_root", lambda: None)
    monkeypatch.setattr(docker_wheels, "installed_mlctl", lambda: dist)
    wheel = mlctl_wheel(tmp_path / "cache")
    assert wheel.name == "mlctl-9.9.9-py3-none-any.whl" and "wheels/local" in wheel.as_posix()

    monkeypatch.setattr(docker_wheels, "installed_mlctl", lambda: None)
    with pytest.raises(OperationFailed, match="no installed distribution") as caught:
        mlctl_wheel(tmp_path / "cache")
    assert caught.value.hint == "install mlctl with pip (`pip install 'mlctl[docker,serve,ml]'`) and deploy again"


def test_installed_mlctl_is_none_for_a_source_checkout() -> None:
    # the tests run mlctl from this checkout (editable: its dist-info lists no mlctl/__init__.py; the
    # checkout's mlctl.egg-info lists it in SOURCES.txt, but has no RECORD)
    assert docker_wheels.source_root() is not None
    assert docker_wheels.installed_mlctl() is None


def test_the_cache_keeps_the_three_latest_builds_of_a_wheel(tmp_path: Path) -> None:
    import os

    folders = []
    for n in range(5):
        wheel = rebuild_wheel(_fake_dist(tmp_path / f"site{n}", "fake-pkg", f"1.{n}"), tmp_path / "cache")
        os.utime(wheel.parent, ns=(n * 10**9, n * 10**9))  # made in this order
        folders.append(wheel.parent)
    rebuild_wheel(_fake_dist(tmp_path / "other", "other-pkg"), tmp_path / "cache")  # another name: untouched
    left = sorted(p.name for p in (tmp_path / "cache" / "wheels" / "local").glob("*/*.whl"))
    assert left == ["fake_pkg-1.2-py3-none-any.whl", "fake_pkg-1.3-py3-none-any.whl",
                    "fake_pkg-1.4-py3-none-any.whl", "other_pkg-1.0-py3-none-any.whl"]
