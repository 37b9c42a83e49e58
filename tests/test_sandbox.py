"""Real attacks against affine.sandbox: each must fail inside the sandbox and leave the host untouched.

Tests that need a protection the machine cannot give (e.g. namespaces when not root) skip and say so; on the project's
Debian 12 machines (root) the sandbox runs in ``namespaces`` mode and every test runs.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from affine import sandbox
from affine.sandbox import Limits, run_many, run_program

ACTIVE = sandbox.protections(sandbox.resolve_isolation())


def needs(*names: str):
    missing = [n for n in names if n not in ACTIVE]
    return pytest.mark.skipif(bool(missing), reason=f"sandbox here lacks {', '.join(missing)}")


def leftovers(token: str = "") -> list[int]:
    """Host pids still running a sandboxed uid of this process, or with ``token`` in their command line."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        uid = int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])
        state = next(line for line in status.splitlines() if line.startswith("State:")).split()[1]
        if state != "Z" and (uid in sandbox._UIDS or (token and token in cmdline)):
            found.append(int(entry.name))
    return found


def settle(token: str = "", timeout: float = 3.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while (left := leftovers(token)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def test_runs_a_program_with_stdin_and_unicode():
    result = run_program("name = input()\nprint('héllo', name[::-1], '✓')", "abc")
    assert (result.stdout, result.stderr, result.returncode) == ("héllo cba ✓\n", "", 0)
    assert not result.timed_out and not result.truncated and not result.setup_error


def test_large_stdin_does_not_deadlock():
    result = run_program("import sys\ndata = sys.stdin.read()\nprint(len(data))", "y" * 3_000_000)
    assert result.stdout == "3000000\n"


@needs("network")
def test_cannot_connect_to_a_host_listener_on_localhost():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.setblocking(False)
    port = server.getsockname()[1]
    program = (
        "import socket\ntry:\n"
        f"    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n    print('CONNECTED')\n"
        "except OSError as exc:\n    print('BLOCKED', exc.errno)\n"
    )
    try:
        control = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=10)
        assert control.stdout.startswith("CONNECTED")  # the attack works outside the sandbox
        server.accept()[0].close()
        result = run_program(program)
        assert result.stdout.startswith("BLOCKED"), result
        with pytest.raises(BlockingIOError):
            server.accept()
    finally:
        server.close()


@needs("network")
def test_cannot_reach_an_external_address_or_resolve_names():
    program = (
        "import socket\nfor target in [('1.1.1.1', 53), ('8.8.8.8', 443)]:\n    s = socket.socket()\n"
        "    s.settimeout(2)\n    try:\n        s.connect(target)\n        print('CONNECTED')\n"
        "    except OSError as exc:\n        print('BLOCKED', exc.errno)\n"
        "try:\n    socket.getaddrinfo('pypi.org', 443)\n    print('RESOLVED')\nexcept OSError:\n    print('NO-DNS')\n"
    )
    start = time.monotonic()
    result = run_program(program)
    assert result.stdout.splitlines() == ["BLOCKED 101", "BLOCKED 101", "NO-DNS"], result
    assert time.monotonic() - start < 5


@needs("filesystem")
def test_cannot_read_host_files():
    secret = uuid.uuid4().hex
    host_file = Path(f"/tmp/affine-sandbox-secret-{secret}.txt")
    host_file.write_text(secret)
    host_file.chmod(0o644)
    targets = [str(host_file), "/etc/shadow", "/etc/passwd", "/proc/1/environ", __file__, sandbox.__file__]
    program = (
        f"for path in {targets!r}:\n    try:\n        print('READ', path, open(path).read())\n"
        "    except OSError as exc:\n        print('DENIED', type(exc).__name__)\n"
    )
    try:
        result = run_program(program)
    finally:
        host_file.unlink()
    assert secret not in result.stdout
    assert result.stdout.count("DENIED") == len(targets), result


@needs("filesystem")
def test_cannot_write_outside_its_own_tmp(tmp_path: Path):
    open_dir = Path(f"/tmp/affine-sandbox-drop-{uuid.uuid4().hex}")
    open_dir.mkdir(mode=0o777)
    open_dir.chmod(0o777)
    targets = [str(open_dir / "pwned"), "/usr/pwned", "/etc/pwned", "/pwned", "/dev/pwned", str(tmp_path / "pwned")]
    program = (
        f"for path in {targets!r}:\n    try:\n        open(path, 'w').write('x')\n        print('WROTE', path)\n"
        "    except OSError as exc:\n        print('DENIED', type(exc).__name__)\n"
        "open('/tmp/mine.txt', 'w').write('ok')\nprint('OWN', open('/tmp/mine.txt').read())\n"
    )
    try:
        result = run_program(program)
        assert result.stdout.count("DENIED") == len(targets), result
        assert "OWN ok" in result.stdout
        assert not any(Path(t).exists() for t in targets if not t.startswith("/dev"))
        assert list(open_dir.iterdir()) == []
    finally:
        open_dir.rmdir()


@needs("clean_env")
def test_parent_environment_does_not_leak(monkeypatch: pytest.MonkeyPatch):
    token = uuid.uuid4().hex
    monkeypatch.setenv("AFFINE_TEST_SECRET", token)
    assert os.environ["AFFINE_TEST_SECRET"] == token
    program = "import os\nprint(sorted(os.environ))\nprint(dict(os.environ))\n"
    program += "try:\n    print(open('/proc/self/environ').read())\nexcept OSError:\n    pass\n"
    result = run_program(program)
    assert token not in result.stdout and "AFFINE_TEST_SECRET" not in result.stdout
    assert result.stdout.splitlines()[0] == "['HOME', 'LANG', 'PATH']"


@needs("uid_drop")
def test_cannot_regain_root_or_signal_host_processes():
    program = (
        "import os, signal\nprint(os.getuid() != 0)\n"
        f"for attempt in (lambda: os.setuid(0), lambda: os.kill({os.getpid()}, signal.SIGKILL)):\n"
        "    try:\n        attempt()\n        print('DID')\n    except OSError as exc:\n        print('DENIED')\n"
        "os.kill(-1, signal.SIGKILL)\n"
    )
    result = run_program(program)
    assert result.stdout.splitlines()[:3] == ["True", "DENIED", "DENIED"], result
    assert os.getppid() > 1  # still alive, and our parent too


@needs("fork_limit", "pid_namespace")
def test_fork_bomb_is_bounded_and_leaves_nothing():
    counting = (
        "import os, time\nn = 0\nfor _ in range(10_000):\n    try:\n        pid = os.fork()\n"
        "    except OSError as exc:\n        print('LIMIT', exc.errno)\n        break\n"
        "    if pid == 0:\n        time.sleep(60)\n        os._exit(0)\n    n += 1\nprint(n)\n"
    )
    result = run_program(counting, limits=Limits(max_procs=16))
    lines = result.stdout.split()
    assert lines[:2] == ["LIMIT", "11"] and int(lines[2]) < 16, result  # EAGAIN
    assert settle() == []
    start = time.monotonic()
    bomb = run_program("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
                       limits=Limits(wall_s=1.5, cpu_s=2, max_procs=32))  # fmt: skip
    assert bomb.timed_out and bomb.stderr.endswith("[TIMEOUT]")
    assert time.monotonic() - start < 6
    assert settle() == []


def test_infinite_loop_times_out_with_the_marker():
    start = time.monotonic()
    result = run_program("while True:\n    pass\n", limits=Limits(wall_s=1.0))
    assert result.timed_out and result.stderr == "\n[TIMEOUT]"
    assert time.monotonic() - start < 3


def test_cpu_limit_kills_a_busy_program():
    result = run_program("while True:\n    pass\n", limits=Limits(wall_s=20.0, cpu_s=1))
    assert not result.timed_out and result.returncode in (-24, -9)  # SIGXCPU at the soft limit, KILL at the hard
    assert result.wall_s < 5


def test_memory_hog_gets_memory_error():
    result = run_program("x = bytearray(1 << 30)\nprint('ALLOCATED')\n")
    assert "MemoryError" in result.stderr and "ALLOCATED" not in result.stdout


def test_huge_output_is_truncated_and_stopped():
    start = time.monotonic()
    result = run_program("import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n")
    assert result.truncated and len(result.stdout) == 1_000_000
    flood = run_program(
        "import sys\nwhile True:\n    sys.stderr.write('e' * 65536)\n", limits=Limits(output_bytes=1000)
    )
    assert flood.truncated and len(flood.stderr) == 1000
    assert time.monotonic() - start < 5


@needs("pid_namespace")
def test_background_children_do_not_survive_the_run():
    token = f"affine-sandbox-orphan-{uuid.uuid4().hex}"
    program = (
        "import os, subprocess, sys, time\n"
        f"subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)', {token!r}],"
        " start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
        "if os.fork() == 0:\n    os.setsid()\n"
        f"    os.execv(sys.executable, [sys.executable, '-c', 'import time; time.sleep(60)', {token!r}])\n"
        "time.sleep(0.3)\nprint('bye')\n"
    )
    start = time.monotonic()
    result = run_program(program)
    assert result.stdout == "bye\n" and time.monotonic() - start < 5
    assert settle(token) == []


def test_solve_without_main_guard_is_called():
    assert run_program("def solve():\n    return [1, 2]\n").stdout == "1 2\n"
    assert run_program("def solve():\n    print(int(input()) * 2)\n", "21").stdout == "42\n"
    guarded = "def solve():\n    return 1\n\nif __name__ == '__main__':\n    pass\n"
    assert run_program(guarded).stdout == ""
    assert run_program("def solve():\n    return 7\n", auto_solve=False).stdout == ""


def test_executor_source_takes_the_first_fence():
    assert sandbox.executor_source("x\n```python\nprint(1)\n```\n```\nprint(2)\n```") == "print(1)"
    assert sandbox.executor_source("  print(3)\n") == "print(3)"


def test_run_many_keeps_order_and_runs_in_parallel():
    jobs = [(f"import time\ntime.sleep(0.5)\nprint({i} * int(input()))", "3") for i in range(6)]
    start = time.monotonic()
    results = run_many(jobs, workers=3)
    assert [r.stdout for r in results] == [f"{3 * i}\n" for i in range(6)]
    assert time.monotonic() - start < 2.8  # one at a time would take over 3 s
    assert run_many([]) == []


def test_degrades_with_a_warning_when_isolation_is_unavailable(monkeypatch, caplog):
    real = sandbox._command
    broken = {"namespaces": ["/nonexistent/unshare"], "userns": ["false"], "uid": ["false"]}  # missing, failing
    monkeypatch.setattr(sandbox, "_command", lambda mode, cfg: broken.get(mode) or real(mode, cfg))
    monkeypatch.setattr(sandbox, "_mode_cache", {})
    with caplog.at_level(logging.INFO, logger="affine.sandbox"):
        assert sandbox.resolve_isolation("auto") == "none"
    assert any(r.levelno == logging.WARNING and "lacks" in r.getMessage() for r in caplog.records)
    assert run_program("print(6 * 7)").stdout == "42\n"
    with pytest.raises(ValueError, match="unknown sandbox isolation"):
        sandbox.resolve_isolation("chroot")
