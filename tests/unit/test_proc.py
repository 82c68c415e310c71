"""Unit tests of mlctl.core.proc (supervised local processes) with trivial programs."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlctl.core import proc
from mlctl.core.errors import ServiceUnavailable
from mlctl.core.probes import http_ready
from mlctl.core.proc import LocalService, free_port, wait_until
from tests.support.local_servers import gone, http_server

PY = sys.executable
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


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


# --------------------------------------------------------------------------- LocalService


def test_start_ready_stop_and_pid_gone(tmp_path: Path) -> None:
    svc = http_server(tmp_path, free_port())
    assert svc.pid is None and not svc.running and svc.returncode is None
    assert svc.start() is svc
    assert svc.start() is svc  # already running: no second process
    pid = svc.pid
    assert pid is not None and os.getpgid(pid) == pid  # its own session
    svc.wait_ready(timeout=5)
    assert svc.running and http_ready(svc.url + "/")
    code = svc.stop(timeout=5)
    assert code == -signal.SIGTERM
    assert gone(pid)
    assert not svc.running
    assert svc.stop() == code  # twice is fine
    assert "GET / HTTP" in svc.log_tail()


def test_context_manager_and_log_path(tmp_path: Path) -> None:
    with http_server(tmp_path / "work", free_port()) as svc:
        pid = svc.pid
        assert svc.log_path == tmp_path / "work" / "web.log"
    assert pid is not None and gone(pid)


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
    assert pid is not None and gone(pid)


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
    assert pid is not None and gone(pid)


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
    assert pid is not None and gone(pid)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux only")
def test_engine_dies_with_a_killed_parent(tmp_path: Path) -> None:
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from mlctl.core.proc import LocalService\n"
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
    wait_until(lambda: gone(child), timeout=5, interval=0.02, what="the orphaned engine to exit")


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
