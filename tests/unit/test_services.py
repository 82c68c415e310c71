"""Unit tests of mlctl.core.services with trivial engines (python -m http.server, fake sockets)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import socketserver
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mlctl.core import proc, services
from mlctl.core.errors import ServiceUnavailable
from mlctl.core.services import (
    EngineNotInstalled,
    EngineSpec,
    ExternalService,
    LocalService,
    engine,
    env_var_for,
    external_or_start,
    find_binary,
    free_port,
    get_recipe,
    http_probe,
    http_ready,
    postgres_ready,
    redis_ready,
    registered_engines,
    require_binary,
    start_engine,
    tcp_probe,
    tcp_ready,
    wait_until,
)

PY = sys.executable
CRLF = b"\r\n"
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def _gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (a zombie nobody reaped yet counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def _http_server(workdir: Path, port: int, name: str = "web") -> LocalService:
    return LocalService(
        name=name,
        argv=[PY, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(workdir)],
        workdir=workdir,
        ready=lambda: http_ready(f"http://127.0.0.1:{port}/"),
        url=f"http://127.0.0.1:{port}",
        port=port,
    )


@pytest.fixture
def fake_server() -> Iterator[Callable[[bytes], int]]:
    """Start TCP servers on loopback that answer every connection with fixed bytes; yield a factory."""
    servers: list[socketserver.TCPServer] = []

    def make(reply: bytes) -> int:
        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                self.request.settimeout(1)
                if not reply:
                    return  # close at once
                try:
                    self.request.recv(4096)
                    self.request.sendall(reply)
                    self.request.recv(4096)
                except OSError:
                    pass

        server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        servers.append(server)
        return int(server.server_address[1])

    yield make
    for server in servers:
        server.shutdown()
        server.server_close()


# --------------------------------------------------------------------------- helpers


def test_free_port_can_be_bound() -> None:
    port = free_port()
    assert 0 < port < 65536
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


def test_wait_until_returns_the_truthy_value() -> None:
    calls = iter([0, None, "ok"])
    assert wait_until(lambda: next(calls), timeout=2, interval=0.001) == "ok"


def test_wait_until_times_out_with_service_unavailable() -> None:
    with pytest.raises(ServiceUnavailable, match="waiting for the thing"):
        wait_until(lambda: False, timeout=0.05, interval=0.01, what="the thing")


def test_wait_until_propagates_errors_at_once() -> None:
    def boom() -> bool:
        raise ValueError("nope")

    with pytest.raises(ValueError):
        wait_until(boom, timeout=5)


def test_tcp_ready(fake_server: Callable[[bytes], int]) -> None:
    assert tcp_ready("127.0.0.1", fake_server(b""))
    assert not tcp_ready("127.0.0.1", free_port())


def test_http_ready_against_a_real_server(tmp_path: Path) -> None:
    port = free_port()
    with _http_server(tmp_path, port) as svc:
        assert http_ready(svc.url + "/")
        assert http_ready(svc.url + "/missing", expect_status=404)
        assert not http_ready(svc.url + "/missing")
    assert not http_ready(f"http://127.0.0.1:{port}/")
    assert not http_ready("not a url")


def test_redis_ready(fake_server: Callable[[bytes], int]) -> None:
    assert redis_ready("127.0.0.1", fake_server(b"+PONG\r\n"))
    assert not redis_ready("127.0.0.1", fake_server(b"-LOADING Redis is loading\r\n"))
    assert not redis_ready("127.0.0.1", fake_server(b""))
    assert not redis_ready("127.0.0.1", free_port())
    # AUTH first: the fake answers +PONG to AUTH, which is not +OK
    assert not redis_ready("127.0.0.1", fake_server(b"+PONG\r\n"), password="secret")
    assert redis_ready("127.0.0.1", fake_server(b"+OK\r\n+PONG\r\n"), password="secret")


def test_postgres_ready(fake_server: Callable[[bytes], int]) -> None:
    auth_ok = b"R" + (8).to_bytes(4, "big") + (0).to_bytes(4, "big")
    assert postgres_ready("127.0.0.1", fake_server(auth_ok))
    assert not postgres_ready("127.0.0.1", fake_server(b"E\x00\x00\x00\x20SFATAL starting up"))
    assert not postgres_ready("127.0.0.1", free_port())


def test_probes_for_external_urls(fake_server: Callable[[bytes], int]) -> None:
    redis_probe = get_recipe("redis").probe
    pg_probe = get_recipe("postgres").probe
    assert redis_probe(f"redis://127.0.0.1:{fake_server(b'+PONG' + CRLF)}/0")
    assert redis_probe(f"redis://:pw@127.0.0.1:{fake_server(b'+OK' + CRLF + b'+PONG' + CRLF)}/0")
    auth_ok = b"R" + (8).to_bytes(4, "big") + (0).to_bytes(4, "big")
    assert pg_probe(f"postgresql://app@127.0.0.1:{fake_server(auth_ok)}/appdb")
    assert tcp_probe(f"http://127.0.0.1:{fake_server(b'')}")
    assert not tcp_probe(f"http://127.0.0.1:{free_port()}")
    assert not http_probe("/-/ready")(f"http://127.0.0.1:{free_port()}/")


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


# --------------------------------------------------------------------------- LocalService


def test_start_ready_stop_and_pid_gone(tmp_path: Path) -> None:
    svc = _http_server(tmp_path, free_port())
    assert svc.pid is None and not svc.running and svc.returncode is None
    assert svc.start() is svc
    assert svc.start() is svc  # already running: no second process
    pid = svc.pid
    assert pid is not None and os.getpgid(pid) == pid  # its own session
    svc.wait_ready(timeout=5)
    assert svc.running and http_ready(svc.url + "/")
    code = svc.stop(timeout=5)
    assert code == -signal.SIGTERM
    assert _gone(pid)
    assert not svc.running
    assert svc.stop() == code  # twice is fine
    assert "GET / HTTP" in svc.log_tail()


def test_context_manager_and_log_path(tmp_path: Path) -> None:
    with _http_server(tmp_path / "work", free_port()) as svc:
        pid = svc.pid
        assert svc.log_path == tmp_path / "work" / "web.log"
    assert pid is not None and _gone(pid)


def test_early_exit_fails_fast_with_the_log_tail(tmp_path: Path) -> None:
    svc = LocalService(
        name="crashy",
        argv=[PY, "-c", "import sys; print('boom', flush=True); sys.exit(3)"],
        workdir=tmp_path,
        ready=lambda: False,
    )
    svc.start()
    started = time.monotonic()
    with pytest.raises(ServiceUnavailable) as info:
        svc.wait_ready(timeout=10)
    assert time.monotonic() - started < 5
    assert "boom" in info.value.message and "status 3" in info.value.message
    assert info.value.details["returncode"] == 3
    assert svc.stop() == 3


def test_context_manager_stops_on_failed_start(tmp_path: Path) -> None:
    svc = LocalService(name="crashy", argv=[PY, "-c", "raise SystemExit(2)"], workdir=tmp_path, ready=bool)
    with pytest.raises(ServiceUnavailable), svc:
        pass  # pragma: no cover
    assert svc.returncode == 2


def test_readiness_timeout_includes_the_log(tmp_path: Path) -> None:
    svc = LocalService(
        name="sleepy",
        argv=[PY, "-c", "import time; print('still warming up', flush=True); time.sleep(30)"],
        workdir=tmp_path,
        ready=lambda: False,
    )
    svc.start()
    try:
        wait_until(lambda: "warming" in svc.log_tail(), timeout=5, interval=0.02)
        with pytest.raises(ServiceUnavailable) as info:
            svc.wait_ready(timeout=0.2)
        assert "timed out" in info.value.message and "still warming up" in info.value.message
    finally:
        pid = svc.pid
        svc.stop(timeout=5)
    assert pid is not None and _gone(pid)


def test_wait_ready_before_start_fails(tmp_path: Path) -> None:
    with pytest.raises(ServiceUnavailable, match="never started"):
        LocalService(name="x", argv=["true"], workdir=tmp_path).wait_ready(timeout=1)


def test_no_ready_check_means_alive_is_ready(tmp_path: Path) -> None:
    with LocalService(name="alive", argv=[PY, "-c", "import time; time.sleep(30)"], workdir=tmp_path) as svc:
        assert svc.running


def test_stop_escalates_to_sigkill(tmp_path: Path) -> None:
    code = (
        "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('armed', flush=True)\ntime.sleep(30)"
    )
    svc = LocalService(name="stubborn", argv=[PY, "-c", code], workdir=tmp_path)
    svc.ready = lambda: "armed" in svc.log_tail()
    svc.start().wait_ready(timeout=5)
    pid = svc.pid
    assert svc.stop(timeout=0.3) == -signal.SIGKILL
    assert pid is not None and _gone(pid)


def test_custom_stop_signal_env_and_cwd(tmp_path: Path) -> None:
    code = (
        "import os, signal, sys, time\n"
        "signal.signal(signal.SIGINT, lambda *a: sys.exit(0))\n"
        "print('cwd=' + os.getcwd(), 'flag=' + os.environ['MLCTL_FLAG'], flush=True)\n"
        "time.sleep(30)\n"
    )
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    svc = LocalService(
        name="polite", argv=[PY, "-c", code], workdir=tmp_path, env={"MLCTL_FLAG": "on"}, cwd=run_dir,
        stop_signal=signal.SIGINT, log_path=tmp_path / "logs" / "polite.log",
    )  # fmt: skip
    svc.ready = lambda: "flag=" in svc.log_tail()
    with svc:
        assert f"cwd={run_dir}" in svc.log_tail() and "flag=on" in svc.log_tail()
    assert svc.returncode == 0


def test_missing_program_raises_service_unavailable(tmp_path: Path) -> None:
    svc = LocalService(name="ghost", argv=[str(tmp_path / "no-such-binary")], workdir=tmp_path)
    with pytest.raises(ServiceUnavailable, match="could not run"):
        svc.start()
    assert svc.pid is None


def test_log_tail(tmp_path: Path) -> None:
    svc = LocalService(name="logs", argv=["true"], workdir=tmp_path)
    assert svc.log_tail() == ""
    assert svc.log_path is not None
    svc.log_path.write_text("".join(f"line {i}\n" for i in range(50)))
    assert svc.log_tail(3) == "line 47\nline 48\nline 49"
    assert svc.log_tail(0) == ""


def test_stop_removes_cleanup_paths(tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    svc = LocalService(name="noop", argv=["true"], workdir=tmp_path, cleanup=[scratch])
    assert svc.stop() is None
    assert not scratch.exists()


def test_atexit_safety_net_stops_leftovers(tmp_path: Path) -> None:
    svc = LocalService(name="left", argv=[PY, "-c", "import time; time.sleep(30)"], workdir=tmp_path).start()
    pid = svc.pid
    proc._stop_leftovers()
    assert pid is not None and _gone(pid)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux only")
def test_engine_dies_with_a_killed_parent(tmp_path: Path) -> None:
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from mlctl.core.services import LocalService\n"
        f"svc = LocalService(name='child', argv=[{PY!r}, '-c', 'import time; time.sleep(30)'],"
        f" workdir=Path({str(tmp_path)!r})).start()\n"
        "print(svc.pid, flush=True)\n"
        "time.sleep(30)\n"
    )
    parent = subprocess.Popen([PY, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
    finally:
        parent.kill()
        parent.wait()
    wait_until(lambda: _gone(child), timeout=5, interval=0.02, what="the orphaned engine to exit")


# --------------------------------------------------------------------------- running as another user


def test_user_kwargs() -> None:
    assert proc.user_kwargs(None) == {}
    assert proc.user_kwargs("root") == {}
    if IS_ROOT:
        with pytest.raises(ServiceUnavailable, match="does not exist"):
            proc.user_kwargs("mlctl-no-such-user")
    if IS_ROOT:
        import pwd

        nobody = pwd.getpwnam("nobody")
        kwargs = proc.user_kwargs("nobody")
        assert kwargs["user"] == nobody.pw_uid and kwargs["group"] == nobody.pw_gid
    else:  # pragma: no cover - depends on who runs the tests
        assert proc.user_kwargs("nobody") == {}


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
        assert proc._can_traverse(inner, st.st_uid, [])
        assert not proc._can_traverse(inner, stranger, [])
        locked.chmod(0o710)
        assert proc._can_traverse(inner, stranger, [st.st_gid])
        assert not proc._can_traverse(inner, stranger, [])
        locked.chmod(0o711)
        assert proc._can_traverse(inner, stranger, [])
    finally:
        shutil.rmtree(base)


def test_private_dir_without_user(tmp_path: Path) -> None:
    path, cleanup = services.private_dir(tmp_path, "data", None)
    assert path == tmp_path / "data" and path.is_dir() and cleanup == []
    assert stat.S_IMODE(path.stat().st_mode) == 0o700


@pytest.mark.skipif(not IS_ROOT, reason="switching users needs root")
def test_private_dir_moves_out_of_an_unreachable_workdir(tmp_path: Path) -> None:
    import pwd

    nobody = pwd.getpwnam("nobody")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o700)
    path, cleanup = services.private_dir(locked, "data", "nobody")
    try:
        assert path.stat().st_uid == nobody.pw_uid
        assert (locked / "data").resolve() == path
        assert proc._can_traverse(path, nobody.pw_uid, [nobody.pw_gid])
        assert len(cleanup) == 1 and path.parent == cleanup[0]
        shutil.rmtree(cleanup[0])
        # a later run replaces the dangling symlink the first one left behind
        path, cleanup = services.private_dir(locked, "data", "nobody")
        assert (locked / "data").resolve() == path and path.is_dir()
    finally:
        for extra in cleanup:
            shutil.rmtree(extra)
    reachable = Path(tempfile.mkdtemp(prefix="mlctl-unit-"))
    try:
        reachable.chmod(0o755)
        path, cleanup = services.private_dir(reachable, "data", "nobody")
        assert path == reachable / "data" and cleanup == []
        assert path.stat().st_uid == nobody.pw_uid
    finally:
        shutil.rmtree(reachable)


@pytest.mark.skipif(not IS_ROOT, reason="switching users needs root")
def test_local_service_runs_as_another_user(tmp_path: Path) -> None:
    import pwd

    nobody = pwd.getpwnam("nobody")
    # /bin/sh, since nobody may not reach the virtual environment's interpreter
    svc = LocalService(name="who", argv=["/bin/sh", "-c", 'echo "uid $(id -u) $USER"'], workdir=tmp_path, user="nobody")
    svc.start()
    assert svc._proc is not None
    svc._proc.wait(timeout=5)
    assert f"uid {nobody.pw_uid} nobody" in svc.log_tail()
    svc.stop()


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
    services._REGISTRY.pop(name, None)


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


def test_start_engine_with_a_registered_recipe(throwaway_engine: str, tmp_path: Path) -> None:
    svc = start_engine(throwaway_engine, tmp_path / "eng")
    try:
        assert svc.port is not None and svc.url == f"http://127.0.0.1:{svc.port}"
        assert Path(svc.info["marker"]).read_text() == "yes"
        assert http_ready(svc.url + "/")
    finally:
        pid = svc.pid
        svc.stop()
    assert pid is not None and _gone(pid)


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
        services._REGISTRY.pop("unit-flaky", None)


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
        services._REGISTRY.pop("unit-deaf", None)
    assert len(started) == 1 and started[0].pid is not None and _gone(started[0].pid)


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
        services._REGISTRY.pop("unit-badsetup", None)
    assert not (tmp_path / "junk").exists()


def test_missing_binary_names_the_recipe_package(tmp_path: Path) -> None:
    @engine("unit-missing", package="imaginary-deb")
    def _missing(workdir: Path, port: int) -> EngineSpec:
        return EngineSpec(argv=[require_binary("surely-not-a-binary-xyz", extra_dirs=())], url="", ready=bool)

    try:
        with pytest.raises(EngineNotInstalled) as info:
            start_engine("unit-missing", tmp_path)
    finally:
        services._REGISTRY.pop("unit-missing", None)
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
    with _http_server(tmp_path, free_port()) as running:
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
    with _http_server(tmp_path, free_port()) as running:
        monkeypatch.setenv(env_var_for(throwaway_engine), running.url)
        svc = external_or_start(throwaway_engine, tmp_path)
        assert isinstance(svc, ExternalService) and svc.host == "127.0.0.1"
