"""Running one program: the setup a process configures once, one run's resources, its I/O, and what it reports."""

from __future__ import annotations

import logging
import os
import queue
import re
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field

from affine.sandbox import boot, host, interpreter, seccomp
from affine.sandbox.host import SandboxUnavailable

log = logging.getLogger("affine.sandbox")
_CLEANUP_TIMEOUT_S = 30.0  # a hang guard for a killed run's exit, not a limit: cleanup normally takes milliseconds

_PROTECTIONS = {
    "namespaces": (
        "network",
        "filesystem",
        "pid_namespace",
        "uid_drop",
        "cgroup",
        "seccomp",
        "packages",
        "clean_env",
        "rlimits",
    ),  # fmt: skip
    "none": ("clean_env", "rlimits"),
}
MODES = tuple(_PROTECTIONS)
_HAS_MAIN = re.compile(r"if\s+__name__\s*==\s*['\"]__main__['\"]")
_FENCE = re.compile(r"```(?:python)?\s*([\s\S]*?)```", re.IGNORECASE)
_SOLVE_RUNNER = (
    "\n\nif __name__ == '__main__':\n    _r = solve()\n    if _r is not None:\n"
    "        if isinstance(_r, (list, tuple)):\n            print(*_r)\n        else:\n            print(_r)\n"
)
_BOOT = [os.path.realpath(sys.executable), "-I", "-S", os.path.abspath(boot.__file__)]
_UNSHARE = ["setpriv", "--pdeathsig", "KILL", "unshare", "--net", "--mount", "--pid", "--ipc", "--uts", "--fork"]
_UNSHARE += ["--kill-child"]


@dataclass(frozen=True)
class Limits:
    """One run's budget (Affine's executor limits by default); memory, tasks and cores cover the whole program."""

    wall_s: float = 30.0
    cpu_s: int = 10  # CPU seconds of all its processes together (and RLIMIT_CPU of each)
    memory_bytes: int = 512 * 2**20  # the cgroup's total: every page of every process, kernel buffers included
    # RLIMIT_AS of each process.  Affine set it to 512 MiB, but address space is not memory: each thread reserves an
    # 8 MiB stack, so 512 MiB refused a 60th thread.  The real 512 MiB budget is memory_bytes above.
    address_space_bytes: int = 4 * 2**30  # room for 300+ threads; memory itself is capped by memory_bytes
    output_bytes: int = 1_000_000  # kept per stream; more kills the run
    max_tasks: int = 512  # processes + threads (cgroup pids.max)
    cores: float = 1.0  # CPU bandwidth while it runs
    tmp_bytes: int = 64 * 2**20  # size of the private /tmp, and RLIMIT_FSIZE
    tmp_inodes: int = 4096
    open_files: int = 1024  # RLIMIT_NOFILE per process


@dataclass
class RunResult:
    stdout: str
    stderr: str
    returncode: int | None  # negative: killed by that signal
    timed_out: bool = False  # wall clock or the CPU budget ran out (stderr ends with [TIMEOUT])
    truncated: bool = False  # a stream passed output_bytes and the run was killed
    wall_s: float = 0.0
    isolation: str = "none"
    cpu_s: float = 0.0
    memory_peak: int = 0


@dataclass
class Setup:
    """What a process configures once (``sandbox`` params): checked by a probe run before anything else runs."""

    isolation: str = "namespaces"
    python: str = "auto"
    packages: tuple[str, ...] = ()
    site_packages: str | None = None
    cgroup_parent: str | None = None
    slots: int = 4096
    uid_base: int = 5_000_000  # above the 3,000,000 + pid-based ranges of the sandbox before slots
    interp: interpreter.Interpreter | None = field(default=None, repr=False)
    slot: host.Slot | None = field(default=None, repr=False)
    cgroups: host.Cgroups | None = field(default=None, repr=False)
    free_uids: queue.SimpleQueue | None = field(default=None, repr=False)


_setup_lock = threading.Lock()
_setups: dict[tuple, Setup] = {}
_current: Setup | None = None
_slot: host.Slot | None = None  # one uid range per process, whatever is reconfigured
_free_uids: queue.SimpleQueue = queue.SimpleQueue()  # of that range, shared by every setup of the process


def _forget_after_fork() -> None:
    """A forked child (a DataLoader worker, say) takes its own uid range: sharing the parent's would mix runs."""
    global _setup_lock, _setups, _current, _slot, _free_uids
    _setup_lock, _setups, _current, _slot, _free_uids = threading.Lock(), {}, None, None, queue.SimpleQueue()


os.register_at_fork(after_in_child=_forget_after_fork)


def configure(
    isolation: str = "namespaces",
    python: str = "auto",
    packages: tuple[str, ...] | list[str] = (),
    site_packages: str | None = None,
    cgroup_parent: str | None = None,
) -> Setup:
    """Set up the sandbox for this process and prove it with a probe run; raises :class:`SandboxUnavailable`."""
    global _current, _slot
    key = (isolation, python, tuple(packages), site_packages, cgroup_parent)
    with _setup_lock:
        if key in _setups:
            _current = _setups[key]
            return _current
        if isolation not in MODES:
            raise SandboxUnavailable(f"sandbox.isolation: unknown mode {isolation!r}; choose one of {', '.join(MODES)}")
        setup = Setup(isolation, python, tuple(packages), site_packages, cgroup_parent)
        setup.interp = interpreter.resolve(python, tuple(packages), site_packages)
        if isolation == "namespaces":
            missing = [tool for tool in ("setpriv", "unshare") if not shutil.which(tool)]
            if os.geteuid() != 0 or missing:
                why = f"{' and '.join(missing)} not found (apt-get install util-linux)" if missing else "not root"
                raise SandboxUnavailable(
                    f"sandbox.isolation: namespaces needs root and util-linux unshare/setpriv ({why}); on a machine "
                    "without them ask for the unprotected mode by name: sandbox.isolation: none"
                )
            seccomp.filter_bpf()
            first = _slot is None
            _slot = _slot or host.Slot(setup.slots, setup.uid_base)
            setup.slot, setup.cgroups = _slot, host.Cgroups(cgroup_parent)
            if first:
                for uid in _slot.uids:
                    _free_uids.put(uid)
            stale = host.remove_stale_work_dirs(_slot) + setup.cgroups.remove_stale(_slot)
            if stale:
                log.info("sandbox: removed %d work dirs/cgroups left by dead callers", stale)
            setup.free_uids = _free_uids
        try:
            probe = _run_checked("print(exit.__class__.__name__)", "", Limits(wall_s=20.0), setup, attempts=1)
        except SandboxUnavailable as exc:
            raise SandboxUnavailable(f"sandbox probe run failed ({isolation}): {exc}") from None
        if probe.stdout != "Quitter\n":
            raise SandboxUnavailable(f"sandbox probe run failed: {(probe.stderr or probe.stdout).strip()[-300:]}")
        log.info("sandbox %r (Python %s at %s) active: %s", isolation, setup.interp.version, setup.interp.python,
                 ", ".join(_PROTECTIONS[isolation]))  # fmt: skip
        if isolation == "none":
            log.warning("sandbox isolation 'none' was asked for: programs run with Affine's rlimits only")
        _setups[key], _current = setup, setup
        return setup


def current() -> Setup:
    """The active setup (the default one, configured on first use, unless :func:`configure` was called)."""
    return _current or configure()


def protections(mode: str) -> tuple[str, ...]:
    return _PROTECTIONS[mode]


def executor_source(raw_code: str) -> str:
    """What Affine's executor actually runs: the inside of the first ```/```python fence if there is one, stripped."""
    match = _FENCE.search(raw_code)
    return (match.group(1) if match else raw_code).strip()


def _kill_group(proc: subprocess.Popen, grace: float) -> None:
    """TERM the group and give it ``grace`` seconds (if still running), then KILL what is left of it."""
    gone = (ProcessLookupError, PermissionError)
    if proc.poll() is None and grace > 0:
        with suppress(*gone):
            os.killpg(proc.pid, signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
    with suppress(*gone):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _exchange(proc: subprocess.Popen, data: bytes, limits: Limits, status: int, group: host.RunGroup | None):
    """Feed stdin, keep at most output_bytes per stream, stop at the wall-clock or CPU limit; read the status pipe."""
    start, sel = time.monotonic(), selectors.DefaultSelector()
    out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
    bufs = {out_fd: bytearray(), err_fd: bytearray(), status: bytearray()}
    for fd in bufs:
        sel.register(fd, selectors.EVENT_READ)
    stdin_fd, view = proc.stdin.fileno(), memoryview(data)
    if data:
        os.set_blocking(stdin_fd, False)
        sel.register(stdin_fd, selectors.EVENT_WRITE)
    else:
        proc.stdin.close()
    timed_out = truncated = False
    exited_at = None
    while not truncated:
        now = time.monotonic()
        if now - start > limits.wall_s or (group is not None and group.cpu_seconds() >= limits.cpu_s):
            timed_out = True
            break
        if proc.poll() is not None:
            exited_at = exited_at or now
            if not sel.get_map() or now - exited_at > 0.5:  # done, or leftovers still hold our pipes
                break
        if not sel.get_map():  # all streams closed: wait for the exit itself
            with suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=min(0.1, max(0.0, start + limits.wall_s - now)))
            continue
        for key, _ in sel.select(timeout=min(0.1, max(0.0, start + limits.wall_s - now))):
            if key.fd == stdin_fd:
                try:
                    view = view[os.write(stdin_fd, view[:65536]) :]
                except OSError:
                    view = view[:0]
                if not view:
                    sel.unregister(stdin_fd)
                    proc.stdin.close()
            elif chunk := os.read(key.fd, 65536):
                bufs[key.fd] += chunk
                if key.fd != status and len(bufs[key.fd]) > limits.output_bytes:
                    del bufs[key.fd][limits.output_bytes :]
                    truncated = True
            else:
                sel.unregister(key.fd)
    sel.close()
    _kill_group(proc, 0.2 if (timed_out or truncated) else 0.0)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        stream.close()
    return bytes(bufs[out_fd]), bytes(bufs[err_fd]), bytes(bufs[status]), timed_out, truncated


def _command(setup: Setup, limits: Limits, work: str, uid: int, status: int, group: host.RunGroup | None) -> list[str]:
    interp = setup.interp
    script = os.path.join(work, "tmp", "main.py")
    if setup.isolation == "none":  # Affine's executor: rlimits (util-linux prlimit) and nothing else
        cpu, mem = limits.cpu_s, limits.memory_bytes  # no cgroup here: Affine's per-process cap
        rlimits = [f"--cpu={cpu}:{cpu + 1}", f"--as={mem}", "--core=0", f"--fsize={limits.tmp_bytes}"]
        return ["prlimit", *rlimits, "--", interp.python, "-I", script]
    cfg = {
        "work": work, "uid": uid, "status": status, "python": interp.python, "binds": interp.binds,
        "masks": interpreter.MASKS, "site": interp.site, "packages": interp.packages,
        "cgroups": group.procs_files if group else [], "max_tasks": limits.max_tasks, "tmp_bytes": limits.tmp_bytes,
        "tmp_inodes": limits.tmp_inodes, "cpu_s": limits.cpu_s, "address_space": limits.address_space_bytes,
        "open_files": limits.open_files,
    }  # fmt: skip
    return _UNSHARE + _BOOT + boot.encode(cfg)


def _run_once(program: str, stdin: str, limits: Limits, setup: Setup) -> tuple[RunResult, str | None]:
    """One run; the second value is the sandbox's own setup failure (None when the program started)."""
    jailed = setup.isolation == "namespaces"
    uid = setup.free_uids.get() if jailed else os.getuid()
    tag = f"s{setup.slot.index}-{os.getpid()}-" if jailed else f"{os.getpid()}-"
    work, start, group = tempfile.mkdtemp(prefix=f"affine-sbx-{tag}"), time.monotonic(), None
    status_r, status_w = os.pipe()
    try:
        os.makedirs(os.path.join(work, "tmp"))
        with open(os.path.join(work, "main.py" if jailed else "tmp/main.py"), "w", encoding="utf-8") as fh:
            fh.write(program)
        if jailed:
            os.makedirs(os.path.join(work, "root"))
            with open(os.path.join(work, "filter.bpf"), "wb") as fh:
                fh.write(seccomp.filter_bpf())
            group = setup.cgroups.create(setup.slot, limits.memory_bytes, limits.max_tasks, limits.cores)
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"} if jailed else {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
        popen = {"cwd": None if jailed else os.path.join(work, "tmp"), "pass_fds": (status_w,) if jailed else ()}
        with subprocess.Popen(
            _command(setup, limits, work, uid, status_w, group), stdin=-1, stdout=-1, stderr=-1,
            start_new_session=True, env=env, **popen,
        ) as proc:  # fmt: skip
            os.close(status_w)
            status_w = -1
            out, err, status, timed_out, truncated = _exchange(proc, stdin.encode("utf-8", "replace"), limits,
                                                               status_r, group)  # fmt: skip
        cpu = group.cpu_seconds() if group else 0.0
        peak = group.memory_peak() if group else 0
    except (OSError, SandboxUnavailable) as exc:
        return RunResult("", "", None, isolation=setup.isolation), f"{type(exc).__name__}: {exc}"
    finally:
        for fd in (status_r, status_w):
            if fd >= 0:
                os.close(fd)
        # On a loaded machine a killed tree can take seconds to exit (freeing hundreds of MiB): wait for it (the
        # timeout is only a hang guard) so that nothing of this run outlives the call.
        removed = group is None or group.remove(timeout=_CLEANUP_TIMEOUT_S)
        if not removed:
            log.warning("sandbox: could not remove cgroup %s; its uid is retired", group.dirs[0])
        shutil.rmtree(work, ignore_errors=True)
        if jailed and removed:  # a uid whose processes may still live is never handed to the next run
            setup.free_uids.put(uid)
    code = proc.returncode
    code = 128 - code if 128 < code < 160 else code
    if jailed and not status.startswith(b"ready") or b"\nerror" in status:
        cause = status.decode("utf-8", "replace").replace("ready", "").strip() or err.decode("utf-8", "replace")
        return RunResult("", "", code, isolation=setup.isolation), cause.strip() or f"exit {code} before the program"
    # The CPU budget is a time limit: SIGXCPU (one process past RLIMIT_CPU) or the cgroup's total is a timeout.
    timed_out = timed_out or code == -signal.SIGXCPU or (cpu >= limits.cpu_s and code is not None and code < 0)
    stderr = err.decode("utf-8", "replace")
    result = RunResult(
        stdout=out.decode("utf-8", "replace"), stderr=stderr + "\n[TIMEOUT]" if timed_out else stderr,
        returncode=code, timed_out=timed_out, truncated=truncated, wall_s=time.monotonic() - start,
        isolation=setup.isolation, cpu_s=round(cpu, 3), memory_peak=peak,
    )  # fmt: skip
    return result, None


def _run_checked(program: str, stdin: str, limits: Limits, setup: Setup, attempts: int = 2) -> RunResult:
    """A run whose setup failed is tried again, then reported: never run weaker, never scored as the program's."""
    for attempt in range(attempts):
        result, failure = _run_once(program, stdin, limits, setup)
        if failure is None:
            return result
        log.warning("sandbox setup failed (attempt %d of %d): %s", attempt + 1, attempts, failure)
    raise SandboxUnavailable(f"the sandbox failed to set up a run: {failure}")


def run_program(program: str, stdin: str = "", limits: Limits | None = None, *, auto_solve: bool = True) -> RunResult:
    """Run ``program`` (Python source) on ``stdin``; never raises for anything the program does.

    Only the sandbox's own setup failure raises (:class:`SandboxUnavailable`, after one retry).  Affine's rerun rule
    (``auto_solve``): when the run prints nothing on either stream and the source defines ``solve`` without a
    ``__main__`` guard, it runs again with a guard calling ``solve()`` that prints the result (lists and tuples
    space-separated).
    """
    limits, setup = limits or Limits(), current()
    result = _run_checked(program, stdin, limits, setup)
    silent = not result.stdout.strip() and not result.stderr.strip()
    if auto_solve and silent and "def solve" in program and not _HAS_MAIN.search(program):
        result = _run_checked(program + _SOLVE_RUNNER, stdin, limits, setup)
    return result


def run_many(jobs: list[tuple[str, str]], limits: Limits | None = None, workers: int | None = None) -> list[RunResult]:
    """Run ``(program, stdin)`` jobs on a thread pool (one per core by default); results in job order."""
    if not jobs:
        return []
    current()  # set up (and probe) once, before the threads start
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs), host.UIDS_PER_SLOT))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sandbox") as pool:
        return list(pool.map(lambda job: run_program(job[0], job[1], limits), jobs))
