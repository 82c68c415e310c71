"""Unit tests of mlctl.engines with trivial engines (python -m http.server, fake sockets)."""

from __future__ import annotations

import os
import shutil
import stat
import struct
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlctl.core.errors import ServiceUnavailable
from mlctl.core.probes import http_ready
from mlctl.engines import (
    EngineNotInstalled,
    EngineSpec,
    ExternalService,
    LocalService,
    _base,
    engine,
    env_var_for,
    external_or_start,
    find_binary,
    free_port,
    get_recipe,
    http_probe,
    private_dir,
    registered_engines,
    require_binary,
    start_engine,
    tcp_probe,
    unregister_engine,
)
from tests.support.local_servers import FakeServers, gone, http_server

PY = sys.executable
CRLF = b"\r\n"
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@pytest.fixture
def fake_server() -> Iterator[FakeServers]:
    """TCP servers on loopback answering fixed bytes: ``fake_server(reply) -> port``."""
    servers = FakeServers()
    yield servers
    servers.close()


def test_probes_for_external_urls(fake_server: FakeServers) -> None:
    redis_probe = get_recipe("redis").probe
    pg_probe = get_recipe("postgres").probe
    assert redis_probe(f"redis://127.0.0.1:{fake_server(b'+PONG' + CRLF)}/0")
    assert redis_probe(f"redis://:pw@127.0.0.1:{fake_server(b'+OK' + CRLF + b'+PONG' + CRLF)}/0")
    auth_ok = b"R" + (8).to_bytes(4, "big") + (0).to_bytes(4, "big")
    assert pg_probe(f"postgresql://app@127.0.0.1:{fake_server(auth_ok)}/appdb")
    assert tcp_probe(f"http://127.0.0.1:{fake_server(b'')}")
    assert not tcp_probe(f"http://127.0.0.1:{free_port()}")
    assert not http_probe("/-/ready")(f"http://127.0.0.1:{free_port()}/")
    api_versions = struct.pack("!iih", 6, 11, 0) + struct.pack("!i", 0)  # size, correlation 11, no error
    assert get_recipe("kafka").probe(f"kafka://127.0.0.1:{fake_server(api_versions)}")
    assert not get_recipe("kafka").probe(f"kafka://127.0.0.1:{free_port()}")


def test_env_var_for() -> None:
    assert env_var_for("redis") == "MLCTL_TEST_REDIS_URL"
    assert env_var_for("open-search") == "MLCTL_TEST_OPEN_SEARCH_URL"


# --------------------------------------------------------------------------- find_binary


def _executable(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return path


def test_find_binary_on_path_and_missing() -> None:
    assert find_binary("sh") == os.path.abspath(str(find_binary("sh")))
    assert find_binary("surely-not-a-binary-xyz", "sh") is not None
    assert find_binary("surely-not-a-binary-xyz", extra_dirs=()) is None


def test_find_binary_extra_dirs_highest_version_first(tmp_path: Path) -> None:
    for version in ("9", "10", "15"):
        _executable(tmp_path / "pg" / version / "bin" / "mlctl-fake-engine")
    (tmp_path / "pg" / "16" / "bin").mkdir(parents=True)  # no binary there
    (tmp_path / "pg" / "17" / "bin" / "mlctl-fake-engine").parent.mkdir(parents=True)
    (tmp_path / "pg" / "17" / "bin" / "mlctl-fake-engine").write_text("not executable")
    found = find_binary("mlctl-fake-engine", extra_dirs=[str(tmp_path / "pg" / "*" / "bin")])
    assert found == str(tmp_path / "pg" / "15" / "bin" / "mlctl-fake-engine")
    plain = find_binary("mlctl-fake-engine", extra_dirs=[tmp_path / "pg" / "9" / "bin"])
    assert plain == str(tmp_path / "pg" / "9" / "bin" / "mlctl-fake-engine")


def test_require_binary_names_the_package() -> None:
    assert require_binary("sh")
    with pytest.raises(EngineNotInstalled) as info:
        require_binary("surely-not-a-binary-xyz", package="some-deb", extra_dirs=())
    assert info.value.hint == "install it with: apt-get install some-deb"
    assert isinstance(info.value, ServiceUnavailable)



# --------------------------------------------------------------------------- a folder for the engine's user


def test_can_traverse() -> None:
    base = Path(tempfile.mkdtemp(prefix="mlctl-unit-"))  # under the world-searchable temp dir
    try:
        base.chmod(0o755)
        locked = base / "locked"
        inner = locked / "inner"
        inner.mkdir(parents=True)
        locked.chmod(0o700)
        st = locked.stat()
        stranger = st.st_uid + 12345
        assert _base._can_traverse(inner, st.st_uid, [])
        assert not _base._can_traverse(inner, stranger, [])
        locked.chmod(0o710)
        assert _base._can_traverse(inner, stranger, [st.st_gid])
        assert not _base._can_traverse(inner, stranger, [])
        locked.chmod(0o711)
        assert _base._can_traverse(inner, stranger, [])
    finally:
        shutil.rmtree(base)


def test_private_dir_without_user(tmp_path: Path) -> None:
    path, cleanup = private_dir(tmp_path, "data", None)
    assert path == tmp_path / "data" and path.is_dir() and cleanup == []
    assert stat.S_IMODE(path.stat().st_mode) == 0o700


@pytest.mark.skipif(not IS_ROOT, reason="switching users needs root")
def test_private_dir_moves_out_of_an_unreachable_workdir(tmp_path: Path) -> None:
    import pwd

    nobody = pwd.getpwnam("nobody")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o700)
    path, cleanup = private_dir(locked, "data", "nobody")
    try:
        assert path.stat().st_uid == nobody.pw_uid
        assert (locked / "data").resolve() == path
        assert _base._can_traverse(path, nobody.pw_uid, [nobody.pw_gid])
        assert len(cleanup) == 1 and path.parent == cleanup[0]
        shutil.rmtree(cleanup[0])
        # a later run replaces the dangling symlink the first one left behind
        path, cleanup = private_dir(locked, "data", "nobody")
        assert (locked / "data").resolve() == path and path.is_dir()
    finally:
        for extra in cleanup:
            shutil.rmtree(extra)
    reachable = Path(tempfile.mkdtemp(prefix="mlctl-unit-"))
    try:
        reachable.chmod(0o755)
        path, cleanup = private_dir(reachable, "data", "nobody")
        assert path == reachable / "data" and cleanup == []
        assert path.stat().st_uid == nobody.pw_uid
    finally:
        shutil.rmtree(reachable)



# --------------------------------------------------------------------------- registry


@pytest.fixture
def throwaway_engine() -> Iterator[str]:
    """Register an http.server engine for the test and remove it afterwards."""
    name = "unit-http"

    @engine(name, package="python3", probe=http_probe("/"), start_timeout=10)
    def _recipe(workdir: Path, port: int) -> EngineSpec:
        url = f"http://127.0.0.1:{port}"
        marker = workdir / "setup-ran"
        return EngineSpec(
            argv=[PY, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(workdir)],
            url=url,
            ready=lambda: http_ready(url + "/"),
            setup=lambda: marker.write_text("yes"),
            info={"marker": str(marker)},
        )

    yield name
    unregister_engine(name)


def test_builtin_engines_are_registered() -> None:
    engines = registered_engines()
    assert {"postgres", "redis", "prometheus", "alertmanager", "pushgateway"} <= set(engines)
    assert engines["redis"].package == "redis-server"
    assert engines["alertmanager"].package == "prometheus-alertmanager"
    assert engines["postgres"].env_var == "MLCTL_TEST_POSTGRES_URL"


def test_unknown_engine() -> None:
    with pytest.raises(ServiceUnavailable, match="no engine recipe named 'nope'") as info:
        get_recipe("nope")
    assert info.value.hint is not None and "redis" in info.value.hint


def test_unregister_engine(throwaway_engine: str) -> None:
    recipe = get_recipe(throwaway_engine)
    assert unregister_engine(throwaway_engine) == recipe
    assert throwaway_engine not in registered_engines() and unregister_engine(throwaway_engine) is None


def test_start_engine_with_a_registered_recipe(throwaway_engine: str, tmp_path: Path) -> None:
    svc = start_engine(throwaway_engine, tmp_path / "eng")
    try:
        assert svc.port is not None and svc.url == f"http://127.0.0.1:{svc.port}"
        assert Path(svc.info["marker"]).read_text() == "yes"
        assert http_ready(svc.url + "/")
    finally:
        pid = svc.pid
        svc.stop()
    assert pid is not None and gone(pid)


def test_start_engine_on_a_given_port(throwaway_engine: str, tmp_path: Path) -> None:
    port = free_port()
    with start_engine(throwaway_engine, tmp_path, port) as svc:
        assert svc.port == port


def test_start_engine_retries_when_the_engine_dies(tmp_path: Path) -> None:
    attempts: list[int] = []

    @engine("unit-flaky", package="python3")
    def _flaky(workdir: Path, port: int) -> EngineSpec:
        attempts.append(port)
        if len(attempts) == 1:  # dies before it is ever ready, like an engine that lost its port
            return EngineSpec(argv=[PY, "-c", "raise SystemExit(1)"], url="", ready=lambda: False)
        return EngineSpec(argv=[PY, "-c", "import time; time.sleep(30)"], url=f"x://{port}", ready=lambda: True)

    try:
        with pytest.warns(UserWarning, match="retrying on another port"):
            svc = start_engine("unit-flaky", tmp_path)
        with svc:
            assert len(attempts) == 2 and svc.running
        # a fixed port is never retried
        attempts.clear()
        with pytest.raises(ServiceUnavailable, match="exited with status 1"):
            start_engine("unit-flaky", tmp_path, free_port())
        assert len(attempts) == 1
        # ... and neither is the last attempt
        attempts.clear()
        with pytest.raises(ServiceUnavailable, match="exited with status 1"):
            start_engine("unit-flaky", tmp_path, attempts=1)
    finally:
        unregister_engine("unit-flaky")


def test_start_engine_stops_the_process_when_never_ready(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[LocalService] = []

    @engine("unit-deaf", package="python3")
    def _deaf(workdir: Path, port: int) -> EngineSpec:
        return EngineSpec(argv=[PY, "-c", "import time; time.sleep(30)"], url="", ready=lambda: False)

    real_start = LocalService.start

    def spy(self: LocalService) -> LocalService:
        started.append(self)
        return real_start(self)

    monkeypatch.setattr(LocalService, "start", spy)
    try:
        with pytest.raises(ServiceUnavailable, match="timed out"):
            start_engine("unit-deaf", tmp_path, timeout=0.2)
    finally:
        unregister_engine("unit-deaf")
    assert len(started) == 1 and started[0].pid is not None and gone(started[0].pid)


def test_start_engine_stops_on_unexpected_errors(tmp_path: Path) -> None:
    @engine("unit-badsetup", package="python3")
    def _bad(workdir: Path, port: int) -> EngineSpec:
        def setup() -> None:
            raise RuntimeError("setup broke")

        return EngineSpec(argv=["true"], url="", ready=lambda: True, setup=setup, cleanup=[workdir / "junk"])

    (tmp_path / "junk").mkdir()
    try:
        with pytest.raises(RuntimeError, match="setup broke"):
            start_engine("unit-badsetup", tmp_path)
    finally:
        unregister_engine("unit-badsetup")
    assert not (tmp_path / "junk").exists()


def test_missing_binary_names_the_recipe_package(tmp_path: Path) -> None:
    @engine("unit-missing", package="imaginary-deb")
    def _missing(workdir: Path, port: int) -> EngineSpec:
        return EngineSpec(argv=[require_binary("surely-not-a-binary-xyz", extra_dirs=())], url="", ready=bool)

    try:
        with pytest.raises(EngineNotInstalled) as info:
            start_engine("unit-missing", tmp_path)
    finally:
        unregister_engine("unit-missing")
    assert info.value.message.startswith("unit-missing: ")
    assert info.value.hint == "install it with: apt-get install imaginary-deb"


def test_builtin_recipes_build_specs(tmp_path: Path) -> None:
    """The built-in recipes produce loopback-only argv and URLs (started for real in tests/integration)."""
    port = free_port()
    for name, scheme in [("redis", "redis://"), ("prometheus", "http://"), ("alertmanager", "http://"),
                         ("pushgateway", "http://"), ("postgres", "postgresql://")]:  # fmt: skip
        try:
            (tmp_path / name).mkdir()
            spec = get_recipe(name).build(tmp_path / name, port)
        except EngineNotInstalled:  # pragma: no cover - covered by tests/integration, which fail instead
            continue
        try:
            assert spec.url.startswith(scheme + "") and f"127.0.0.1:{port}" in spec.url
            assert any("127.0.0.1" in arg for arg in spec.argv)
            assert not spec.ready()  # nothing listens on that port
            if spec.setup is not None and name != "postgres":
                spec.setup()
                assert Path(spec.info["config"]).is_file()
        finally:
            for path in spec.cleanup:
                shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------- external_or_start


def test_external_or_start_uses_a_reachable_url(throwaway_engine: str, tmp_path: Path) -> None:
    with http_server(tmp_path, free_port()) as running:
        env = {env_var_for(throwaway_engine): running.url + "/"}
        svc = external_or_start(throwaway_engine, tmp_path / "unused", environ=env)
        assert isinstance(svc, ExternalService)
        assert svc.pid is None and svc.url == running.url + "/" and svc.port == running.port
        with svc:
            pass
        assert svc.stop() is None
        assert running.running  # we never stop what we did not start
    assert not (tmp_path / "unused").exists()


def test_external_or_start_starts_one_when_unset_or_unreachable(throwaway_engine: str, tmp_path: Path) -> None:
    svc = external_or_start(throwaway_engine, tmp_path / "a", environ={})
    with svc:
        assert isinstance(svc, LocalService) and svc.pid is not None
    dead = {"MY_URL": f"http://127.0.0.1:{free_port()}"}
    with pytest.warns(UserWarning, match="does not answer"):
        svc = external_or_start(throwaway_engine, tmp_path / "b", env_var="MY_URL", environ=dead, probe_timeout=0.2)
    with svc:
        assert isinstance(svc, LocalService)


def test_external_or_start_reads_os_environ(
    throwaway_engine: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with http_server(tmp_path, free_port()) as running:
        monkeypatch.setenv(env_var_for(throwaway_engine), running.url)
        svc = external_or_start(throwaway_engine, tmp_path)
        assert isinstance(svc, ExternalService) and svc.host == "127.0.0.1"
