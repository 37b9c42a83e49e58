"""Issue 16's attack table, one test per row: the attack runs inside the sandbox, the test checks the HOST afterwards
(available memory, a host process's CPU share, leftover processes, files, cgroups, keys).  Each attack is bounded to
a few seconds by its limits.  Skips (saying why) where the namespaces mode cannot be set up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
from sandbox_host import HostCPU, MemoryWatch, assert_host_clean, baseline_cpu_share, require_sandbox

from affine import sandbox
from affine.envs.ded import DED
from affine.sandbox import Limits, host, run_program

SETUP = require_sandbox()
GIB = 1 << 30


def prog(text: str) -> str:
    return textwrap.dedent(text).strip() + "\n"


# --- row 1: force the weaker mode --------------------------------------------------------------------------------
def test_no_weaker_mode_exists_and_uid_ranges_are_per_caller():
    assert sandbox.MODES == ("namespaces", "none")  # no user-namespace mode, no automatic choice
    code = (
        "import time; from affine.sandbox import host\n"
        "import sys; s = host.Slot(4096, 5_000_000); print(s.index, s.uids.start, flush=True); sys.stdin.read()\n"
    )
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    # each holds its range until its stdin closes, so all three are alive however slowly the machine runs
    others = [subprocess.Popen([sys.executable, "-c", code], stdin=-1, stdout=-1, text=True, env=env) for _ in range(2)]
    try:
        starts = {SETUP.slot.uids.start} | {int(p.stdout.readline().split()[1]) for p in others}
    finally:
        for p in others:
            p.kill()
            p.wait()
    assert len(starts) == 3  # three live callers, three disjoint uid ranges


def test_classic_chroot_escape_fails_and_host_files_stay_untouched():
    markers = [Path(f"/usr/affine-escape-{os.getpid()}"), Path(f"/affine-escape-{os.getpid()}")]
    attack = prog(f"""
        import os
        for step in ("chroot", "unshare"):
            try:
                if step == "chroot":
                    os.makedirs("/tmp/d", exist_ok=True)
                    os.chroot("/tmp/d")
                    for _ in range(64):
                        os.chdir("..")
                    os.chroot(".")
                else:
                    os.unshare(os.CLONE_NEWUSER | os.CLONE_NEWNS)
                print("ESCAPED", step)
            except (OSError, AttributeError) as exc:
                print("DENIED", step, getattr(exc, "errno", None))
        for path in ["/etc/shadow", *{[str(m) for m in markers]!r}]:
            try:
                open(path, "a").write("x")
                print("WROTE", path)
            except OSError:
                print("DENIED", path)
    """)
    result = run_program(attack)
    assert "ESCAPED" not in result.stdout and "WROTE" not in result.stdout, result
    assert result.stdout.count("DENIED") == 5 and not any(m.exists() for m in markers)
    assert_host_clean()


# --- row 2: memory outside the per-process cap ------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, attack",
    [
        ("memfd", "import os\ntry:\n    os.memfd_create('x')\n    print('MADE')\nexcept OSError as e:\n"
                  "    print('DENIED', e.errno)\nwith open('/tmp/big', 'wb') as f:\n    try:\n"
                  "        f.write(b'1' * (200 << 20))\n    except OSError as e:\n        print('FULL', e.errno)\n"),
        ("socketpairs", prog("""
            import os, socket
            for _ in range(5):
                if os.fork() == 0:
                    break
            held = []
            try:
                for _ in range(1500):
                    a, b = socket.socketpair()
                    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
                    a.setblocking(False)
                    try:
                        while True:
                            a.send(b'x' * 65536)
                    except OSError:
                        pass
                    held.append((a, b))
            except OSError as exc:
                print('STOPPED', exc.errno, len(held), flush=True)
            import time; time.sleep(2)
        """)),
        ("children", prog("""
            import os, time
            for _ in range(6):
                if os.fork() == 0:
                    block = b'1' * (400 << 20)
                    time.sleep(3)
                    os._exit(0)
            time.sleep(3.5)
            print('done')
        """)),
    ],
)  # fmt: skip
def test_memory_of_the_whole_program_is_one_budget(name, attack):
    with MemoryWatch() as mem:
        result = run_program(attack, limits=Limits(wall_s=5.0))
    assert "MADE" not in result.stdout, result
    assert result.memory_peak <= Limits().memory_bytes + (8 << 20), result  # all processes, sockets, tmpfs, together
    assert mem.drop < GIB, f"{name}: the host lost {mem.drop >> 20} MiB"
    assert_host_clean()


# --- row 3: CPU starvation --------------------------------------------------------------------------------------
BUSY_CHILDREN = prog("""
    import os
    for _ in range(62):
        if os.fork() == 0:
            os.setsid()
            while True:
                pass
    while True:
        pass
""")


def test_many_busy_children_get_one_core_and_the_host_keeps_its_share():
    # On an idle machine the host process keeps >= 40 % of a core.  Where other work already holds every core (a
    # shared CI machine), the confined attack still takes its one core, and the host shares what is left with that
    # work: on C cores it keeps about (C - 1) / C of its share without the attack (measured on 2 cores with two
    # busy loops beside the suite: 0.33 vs 0.67), so it must keep 75 % of that; 63 unconfined busy processes left it
    # ~15 %.  Other jobs' load changes within seconds (a training step), so a low share is measured again, up to
    # three times: unconfined children would take the host's core in every trial, a confined attack passes one.
    cores = len(os.sched_getaffinity(0))
    left = max(cores - 1, 0.5) / cores  # one core: the attack and the host's group split it
    shares = []
    for _ in range(3):
        before = baseline_cpu_share(1.0)
        with HostCPU() as cpu:
            result = run_program(BUSY_CHILDREN, limits=Limits(wall_s=4.0, cpu_s=60))
        baseline = (before + baseline_cpu_share(1.0)) / 2
        assert result.timed_out
        assert result.cpu_s / result.wall_s < 1.15, result  # 63 busy processes, at most one core between them
        assert_host_clean()
        shares.append((round(cpu.share, 2), round(baseline, 2)))
        if cpu.share >= min(0.4, 0.75 * left * baseline):
            break
    else:
        raise AssertionError(f"host process's share of a core (with, without the attack) in each trial: {shares}")


def test_cpu_budget_covers_all_processes():
    result = run_program(BUSY_CHILDREN, limits=Limits(wall_s=30.0, cpu_s=1))
    assert result.timed_out and result.stderr.endswith("[TIMEOUT]")
    assert 1.0 <= result.cpu_s < 1.6, result  # one budget, not 1 s per process
    assert_host_clean()


# --- row 4: kernel state that outlives the run ------------------------------------------------------------------
def test_kernel_keys_cannot_be_made_or_read():
    attack = prog("""
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        key = libc.syscall(248, b"user", b"affine-key", b"secret", 6, -2)  # add_key into the session keyring
        print("ADD", key, ctypes.get_errno())
        print("KEYCTL", libc.syscall(250, 0, -2, 0, 0, 0), ctypes.get_errno())  # keyctl(GET_KEYRING_ID)
        print("REQUEST", libc.syscall(249, b"user", b"affine-key", None, 0), ctypes.get_errno())
    """)
    for _ in range(2):  # a second run on a reused uid finds nothing either
        assert run_program(attack).stdout.split() == ["ADD", "-1", "1", "KEYCTL", "-1", "1", "REQUEST", "-1", "1"]
    assert_host_clean()  # includes: no sandbox uid in /proc/key-users


# --- row 5: other reachable surfaces ----------------------------------------------------------------------------
def test_vsock_netlink_io_uring_inodes_and_fds_are_closed_or_bounded():
    attack = prog("""
        import ctypes, os, socket
        for family in (socket.AF_VSOCK, socket.AF_NETLINK, socket.AF_PACKET, socket.AF_INET6):
            try:
                socket.socket(family, socket.SOCK_DGRAM if family == socket.AF_NETLINK else socket.SOCK_STREAM)
                print("SOCKET", family)
            except OSError as exc:
                print("DENIED", exc.errno)
        libc = ctypes.CDLL(None, use_errno=True)
        params = ctypes.create_string_buffer(120)
        print("URING", libc.syscall(425, 8, params), ctypes.get_errno())
        n = 0
        try:
            while n < 1_000_000:
                open(f"/tmp/f{n}", "w").close()
                n += 1
        except OSError as exc:
            print("INODES", n, exc.errno)
        fds = []
        try:
            while len(fds) < 160_000:
                fds.append(os.open("/dev/null", os.O_RDONLY))
        except OSError as exc:
            print("FDS", len(fds), exc.errno)
    """)
    out = run_program(attack, limits=Limits(wall_s=10.0)).stdout.split("\n")
    assert out[:4] == ["DENIED 97"] * 4, out
    assert out[4] == "URING -1 1", out
    inodes, fds = out[5].split(), out[6].split()
    assert inodes[0] == "INODES" and int(inodes[1]) < 4096 and inodes[2] == "28", out  # ENOSPC
    assert fds[0] == "FDS" and int(fds[1]) < 1024 and fds[2] == "24", out  # EMFILE
    assert_host_clean()


# --- row 6: crash the caller ------------------------------------------------------------------------------------
CRASHERS = {
    "sigint_pid1": "import os, signal\nos.kill(1, signal.SIGINT)\nprint(int(input()) * 2)",
    "fake_setup_error": "import sys\nprint('[sandbox-setup-error] OSError: x', file=sys.stderr)\nsys.exit(121)",
    "kill_all": "import os, signal\nos.kill(-1, signal.SIGKILL)\nprint(6)",
    "fake_ready": "import os\nfor fd in range(3, 64):\n    try:\n        os.write(fd, b'error boom')\n"
    "    except OSError:\n        pass\nprint(int(input()) * 2)",
}


@pytest.mark.parametrize("name", sorted(CRASHERS))
def test_a_program_cannot_crash_its_caller(name):
    ded = DED(limits=Limits(wall_s=5.0))
    cases = [{"type": "stdin_stdout", "input": "3", "output": "6", "fn_name": None}]
    challenge = {"env": "affine:ded", "task_id": 0, "prompt": "x", "test_cases": cases, "program": ""}
    parent = os.getppid()
    score = ded.score(challenge, f"```python\n{CRASHERS[name]}\n```")  # must not raise
    assert score == (1.0 if name in ("sigint_pid1", "fake_ready") else 0.0)
    assert os.getppid() == parent  # our parent survived too (its death would have reparented us)
    assert_host_clean()


# --- row 7: leftovers of a caller killed with SIGKILL ------------------------------------------------------------
def test_a_killed_callers_work_dir_and_cgroup_are_removed_at_the_next_start():
    code = (
        "import os; from affine import sandbox; s = sandbox.configure()\n"
        "print(s.slot.index, flush=True)\nsandbox.run_program('import time\\ntime.sleep(30)')\n"
    )
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    caller = subprocess.Popen([sys.executable, "-c", code], stdout=-1, text=True, env=env)
    index = int(caller.stdout.readline())
    tag = f"s{index}-{caller.pid}-"
    work = lambda: list(Path(tempfile.gettempdir()).glob(f"affine-sbx-{tag}*"))  # noqa: E731
    groups = lambda: [p for b in SETUP.cgroups.bases for p in b.glob(f"{tag}*")]  # noqa: E731
    deadline = time.monotonic() + 10
    while not (work() and groups()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert work() and groups()
    caller.send_signal(signal.SIGKILL)
    caller.wait()
    time.sleep(0.3)
    assert work(), "the kill left nothing behind: nothing to test"
    # the next start (any caller) removes what the dead one left
    removed = host.remove_stale_work_dirs(SETUP.slot) + SETUP.cgroups.remove_stale(SETUP.slot)
    assert removed >= 2 and not work() and not groups()
    assert_host_clean()


# --- row 8: host packages ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("python", ["auto", "host"])
def test_host_site_packages_and_usr_local_are_not_visible(python):
    import numpy

    venv = os.path.dirname(os.path.dirname(numpy.__file__))
    base = sysconfig.get_path("purelib", vars={"base": sys.base_prefix, "platbase": sys.base_prefix})
    paths = [venv, base, "/usr/local/lib/python3.11/site-packages", "/usr/lib/python3/dist-packages"]
    attack = prog(f"""
        import os, sys
        sys.path[:0] = {paths!r}
        for name in ("numpy", "requests", "torch", "affine"):
            try:
                __import__(name)
                print("IMPORTED", name)
            except ImportError:
                print("MISSING", name)
        print(os.listdir("/usr/local"), os.path.exists({venv!r}))
    """)
    try:
        if python == "host":  # the fallback interpreter: its own site-packages (numpy, requests here) is masked
            sandbox.configure(python=os.path.realpath(sys.executable))
        result = run_program(attack)
    finally:
        sandbox.configure()
    assert result.stdout.splitlines() == [*(f"MISSING {n}" for n in ("numpy", "requests", "torch", "affine")),
                                          "[] False"], result  # fmt: skip
    assert_host_clean()
