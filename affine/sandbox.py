"""Run untrusted Python programs (model replies, dataset programs) with Affine's limits plus real OS isolation.

Affine's executor limits (the defaults of :class:`Limits`): 30 s wall clock, RLIMIT_CPU 10 s, RLIMIT_AS 512 MiB, no
core dumps, 1,000,000 bytes kept per output stream, the process group killed (TERM, 0.2 s, KILL) on timeout or
overflow, ``\\n[TIMEOUT]`` appended to stderr on timeout, and the ``solve()`` rerun rule (see :func:`run_program`).

Affine isolates nothing else.  Here each run uses the best mode that works (chosen once by a probe run, logged at INFO
with the active protections and at WARNING with the missing ones; ``Limits.isolation`` can force one):

``namespaces`` (root + util-linux ``unshare``/``setpriv``; the mode on our Debian 12 machines):
  * network: a new network namespace with no interface up -- even 127.0.0.1 is unreachable;
  * filesystem: a new mount namespace whose root, ``chroot``-ed into, is an empty read-only tmpfs holding read-only
    ``nosuid,nodev`` binds of /usr (+ the /bin, /lib links), the interpreter's prefix and /etc/ld.so.cache, four
    harmless /dev nodes and a private size-capped tmpfs /tmp (the cwd).  No /proc, /sys, /etc/shadow, /home, /root
    data or project files exist in there, and writes can only reach that /tmp, which vanishes with the run;
  * processes: a pid namespace (when the supervisor at its pid 1 exits or is killed, the kernel kills everything the
    program left behind, ``setsid()`` or not), a non-root uid unique per concurrent run with RLIMIT_NPROC (fork bombs
    get EAGAIN), ``no_new_privs`` (set-uid binaries cannot give root back), parent-death signals all the way down;
  * new IPC and UTS namespaces too (no SysV IPC or hostname shared with the host);
  * a clean environment (PATH, HOME, LANG only): no variable, token or key of the parent reaches the program, which
    runs as ``python -I -S``: the standard library only, no site-packages (what rl-python programs use).
``userns`` (not root, unprivileged user namespaces allowed): the same namespaces and filesystem view, but the program
  keeps the caller's uid (root inside), so there is no fork limit beyond the caller's own ``ulimit -u``.
``uid`` (root, no namespaces): a unique non-root uid with RLIMIT_NPROC, clean environment, private temp cwd: root-only
  files are safe, but world-readable files are readable, the network is open, and ``setsid()`` children can outlive it.
  It needs an interpreter that uid may execute (so not one under a 0700 /root, as on our machines: there the probe
  fails and ``auto`` falls through to ``none``).
``none``: Affine's behaviour plus a clean environment and a private temp cwd.

Never protected: CPU time shared with the host (RLIMIT_CPU is per process), kernel exploits, side channels, memory of
the process tree as a whole (RLIMIT_AS is per process: ``max_procs`` x ``memory_bytes`` is the worst case).
"""

# ruff: noqa: E402 -- the parent-side imports sit below the boot path, which must start fast (python -I -S)
from __future__ import annotations

import ctypes
import os
import resource
import signal
import sys

_SETUP_ERROR = "[sandbox-setup-error]"
_SETUP_RC = 121
_RO, _NOSUID, _NODEV, _NOEXEC, _REMOUNT, _BIND, _REC, _PRIVATE = 1, 2, 4, 8, 32, 4096, 16384, 1 << 18


_INTS = ("uid", "max_procs", "tmp_bytes", "cpu_s", "memory_bytes")


def _encode(cfg: dict) -> list[str]:
    """The boot config as ``key=value`` arguments (json and re would cost the boot path ~10 ms of imports)."""
    return [
        f"{k}={chr(10).join(v) if isinstance(v, list) else int(v) if isinstance(v, bool) else v}"
        for k, v in cfg.items()
    ]


def _decode(args: list[str]) -> dict:
    cfg: dict = dict(arg.split("=", 1) for arg in args)
    cfg.update({k: int(cfg[k]) for k in _INTS}, ns=cfg["ns"] == "1", drop=cfg["drop"] == "1")
    cfg["binds"] = [b for b in cfg["binds"].split(chr(10)) if b]
    return cfg


def _boot(cfg: dict) -> None:
    """The sandbox's first process (root, or root in a user namespace): build the jail, drop privileges, supervise."""
    libc = ctypes.CDLL(None, use_errno=True)

    def mount(src: str | None, dst: str, fstype: str | None, flags: int, data: str | None = None) -> None:
        enc = [s.encode() if s is not None else None for s in (src, dst, fstype, data)]
        if libc.mount(enc[0], enc[1], enc[2], ctypes.c_ulong(flags), enc[3]) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"mount {dst}: {os.strerror(err)}")

    uid, work = cfg["uid"], cfg["work"]
    if cfg["ns"]:
        root = os.path.join(work, "root")
        with open(os.path.join(work, "main.py"), "rb") as fh:
            source = fh.read()
        mount(None, "/", None, _REC | _PRIVATE)  # nothing below propagates back to the host
        mount("sandbox", root, "tmpfs", _NOSUID | _NODEV, "size=1m,mode=755")

        def bind(path: str, flags: int = _RO | _NOSUID | _NODEV) -> None:
            target = root + path
            os.makedirs(target if os.path.isdir(path) else os.path.dirname(target), exist_ok=True)
            if not os.path.isdir(path):
                open(target, "wb").close()
            mount(path, target, None, _BIND)  # not recursive: host submounts below stay out of the jail
            mount(None, target, None, _REMOUNT | _BIND | flags)

        for top in ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
            if os.path.islink(top):
                os.symlink(os.readlink(top), root + top)
            elif os.path.isdir(top):
                bind(top)
        for path in [*cfg["binds"], "/etc/ld.so.cache"]:
            if os.path.exists(path) and not os.path.exists(root + path):
                bind(path)
        for dev in ("null", "zero", "random", "urandom"):
            bind("/dev/" + dev, _NOSUID | _NOEXEC)
        os.makedirs(root + "/tmp")
        opts = f"size={cfg['tmp_bytes']},mode=700,uid={uid},gid={uid}"
        mount("tmp", root + "/tmp", "tmpfs", _NOSUID | _NODEV, opts)
        with open(root + "/tmp/main.py", "wb") as fh:
            fh.write(source)
        mount(None, root, None, _REMOUNT | _RO | _NOSUID | _NODEV, "size=1m,mode=755")
        os.chdir(root)
        os.chroot(".")
        script = "/tmp/main.py"
    else:
        script = os.path.join(work, "tmp", "main.py")
    os.chdir(os.path.dirname(script))
    if cfg["drop"]:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
        resource.setrlimit(resource.RLIMIT_NPROC, (cfg["max_procs"], cfg["max_procs"]))
    libc.prctl(38, 1, 0, 0, 0)  # PR_SET_NO_NEW_PRIVS: set-uid binaries cannot give root back
    cpu, mem, fsize = cfg["cpu_s"], cfg["memory_bytes"], cfg["tmp_bytes"]
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": os.path.dirname(script), "LANG": "C.UTF-8"}
    # Stay behind as a supervisor (pid 1 of the namespace) so the program is an ordinary process: a namespace's
    # init ignores default-action signals such as SIGTERM and SIGXCPU, which would change how the limits end it.
    child = os.fork()
    if child == 0:
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG: die with the supervisor
        os.execve(cfg["python"], [cfg["python"], "-I", "-S", script], env)
    libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # the uid change cleared the one unshare set
    code = os.waitstatus_to_exitcode(os.waitpid(child, 0)[1])
    os._exit(code if code >= 0 else 128 - code)


if __name__ == "__main__" and sys.argv[1:2] == ["--boot"]:
    try:
        _boot(_decode(sys.argv[2:]))
    except BaseException as exc:  # any setup failure is reported and nothing runs unconfined
        os.write(2, f"{_SETUP_ERROR} {type(exc).__name__}: {exc}\n".encode())
        os._exit(_SETUP_RC)

# ---------------------------------------------------------------------------------------------- the parent side
import logging
import queue
import re
import selectors
import shutil
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass

log = logging.getLogger(__name__)

_PROTECTIONS = {
    "namespaces": ("network", "filesystem", "pid_namespace", "uid_drop", "fork_limit", "clean_env", "rlimits"),
    "userns": ("network", "filesystem", "pid_namespace", "clean_env", "rlimits"),
    "uid": ("uid_drop", "fork_limit", "clean_env", "rlimits"),
    "none": ("clean_env", "rlimits"),
}
MODES = tuple(_PROTECTIONS)
_HAS_MAIN = re.compile(r"if\s+__name__\s*==\s*['\"]__main__['\"]")
_FENCE = re.compile(r"```(?:python)?\s*([\s\S]*?)```", re.IGNORECASE)
_SOLVE_RUNNER = (
    "\n\nif __name__ == '__main__':\n    _r = solve()\n    if _r is not None:\n"
    "        if isinstance(_r, (list, tuple)):\n            print(*_r)\n        else:\n            print(_r)\n"
)


@dataclass(frozen=True)
class Limits:
    wall_s: float = 30.0
    cpu_s: int = 10
    memory_bytes: int = 512 * 2**20
    output_bytes: int = 1_000_000  # kept per stream; more kills the run
    max_procs: int = 64  # RLIMIT_NPROC of the run's own uid (modes with uid_drop)
    tmp_bytes: int = 64 * 2**20  # size of the private /tmp, and RLIMIT_FSIZE
    isolation: str = "auto"  # "auto" (the best that works here) or one of MODES


@dataclass
class RunResult:
    stdout: str
    stderr: str
    returncode: int | None  # negative: killed by that signal
    timed_out: bool = False
    truncated: bool = False  # a stream passed output_bytes and the run was killed
    wall_s: float = 0.0
    isolation: str = "none"
    setup_error: bool = False  # the sandbox failed to start (not the program's fault)


def executor_source(raw_code: str) -> str:
    """What Affine's executor actually runs: the inside of the first ```/```python fence if there is one, stripped."""
    match = _FENCE.search(raw_code)
    return (match.group(1) if match else raw_code).strip()


def _python() -> str:
    return os.path.realpath(sys.executable)


def _python_binds() -> list[str]:
    prefixes = {os.path.realpath(p) for p in (sys.base_prefix, os.path.dirname(os.path.dirname(_python())))}
    return sorted(p for p in prefixes if not p.startswith("/usr/"))


# Distinct non-root uids, so RLIMIT_NPROC counts each concurrent run on its own.
_UIDS = range(3_000_000 + (os.getpid() % 4096) * 256, 3_000_000 + (os.getpid() % 4096 + 1) * 256)
_free_uids: queue.SimpleQueue[int] = queue.SimpleQueue()
for _uid in _UIDS:
    _free_uids.put(_uid)
_mode_lock = threading.Lock()
_mode_cache: dict[str, str] = {}


_UNSHARE = ["setpriv", "--pdeathsig", "KILL", "unshare"]
_NAMESPACES = ["--net", "--mount", "--pid", "--ipc", "--uts", "--fork", "--kill-child"]


def _command(mode: str, cfg: dict) -> list[str]:
    boot = [_python(), "-I", "-S", os.path.abspath(__file__), "--boot", *_encode(cfg)]
    if mode in ("uid", "none"):
        return boot
    return _UNSHARE + (["--user", "--map-root-user"] if mode == "userns" else []) + _NAMESPACES + boot


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


def _exchange(proc: subprocess.Popen, data: bytes, limits: Limits) -> tuple[bytes, bytes, bool, bool]:
    """Feed stdin, keep at most output_bytes per stream, stop at the wall-clock limit; kill the group when cut off."""
    start, sel = time.monotonic(), selectors.DefaultSelector()
    bufs = {proc.stdout.fileno(): bytearray(), proc.stderr.fileno(): bytearray()}
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
        if now - start > limits.wall_s:
            timed_out = True
            break
        if proc.poll() is not None:
            exited_at = exited_at or now
            if not sel.get_map() or now - exited_at > 0.5:  # done, or leftovers still hold our pipes
                break
        if not sel.get_map():  # both streams closed: wait for the exit itself
            with suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.0, start + limits.wall_s - now))
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
                if len(bufs[key.fd]) > limits.output_bytes:
                    del bufs[key.fd][limits.output_bytes :]
                    truncated = True
            else:
                sel.unregister(key.fd)
    sel.close()
    _kill_group(proc, 0.2 if (timed_out or truncated) else 0.0)
    out, err = bytes(bufs[proc.stdout.fileno()]), bytes(bufs[proc.stderr.fileno()])
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        stream.close()
    return out, err, timed_out, truncated


def _run_once(program: str, stdin: str, limits: Limits, mode: str) -> RunResult:
    drop = mode in ("namespaces", "uid")
    uid = _free_uids.get() if drop else (0 if mode == "userns" else os.getuid())
    work, start = tempfile.mkdtemp(prefix="affine-sbx-"), time.monotonic()
    try:
        os.makedirs(os.path.join(work, "root"))
        os.makedirs(os.path.join(work, "tmp"))
        for path in (os.path.join(work, "main.py"), os.path.join(work, "tmp", "main.py")):
            with open(path, "w", encoding="utf-8") as fh:
                fh.write(program)
        if mode == "uid":
            os.chmod(work, 0o711)
            os.chown(os.path.join(work, "tmp"), uid, uid)
        cfg = {"ns": mode in ("namespaces", "userns"), "drop": drop, "uid": uid, "work": work, "python": _python()}
        cfg.update(binds=_python_binds(), max_procs=limits.max_procs, tmp_bytes=limits.tmp_bytes)
        cfg.update(cpu_s=limits.cpu_s, memory_bytes=limits.memory_bytes)
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
        with subprocess.Popen(
            _command(mode, cfg), stdin=-1, stdout=-1, stderr=-1, start_new_session=True, env=env
        ) as proc:
            out, err, timed_out, truncated = _exchange(proc, stdin.encode("utf-8", "replace"), limits)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if drop:
            _free_uids.put(uid)
    stderr, code = err.decode("utf-8", "replace"), proc.returncode
    setup_error = code == _SETUP_RC and stderr.startswith(_SETUP_ERROR)
    return RunResult(
        stdout=out.decode("utf-8", "replace"),
        stderr=stderr + "\n[TIMEOUT]" if timed_out else stderr,
        returncode=128 - code if 128 < code < 160 else code,
        timed_out=timed_out,
        truncated=truncated,
        wall_s=time.monotonic() - start,
        isolation=mode,
        setup_error=setup_error,
    )


def protections(mode: str) -> tuple[str, ...]:
    """What a mode protects: network, filesystem, pid_namespace, uid_drop, fork_limit, clean_env, rlimits."""
    return _PROTECTIONS[mode]


def resolve_isolation(requested: str = "auto") -> str:
    """The mode runs will use: ``requested`` if given, else the best one whose probe run works here."""
    if requested != "auto" and requested not in MODES:
        raise ValueError(f"unknown sandbox isolation {requested!r}; choose auto or one of {', '.join(MODES)}")
    with _mode_lock:
        if requested not in _mode_cache:
            root = os.geteuid() == 0
            candidates = [m for m in MODES if root or m in ("userns", "none")] if requested == "auto" else [requested]
            chosen, reasons = "none", []
            for mode in candidates:
                try:
                    probe = _run_once("print('ok')", "", Limits(wall_s=15.0), mode)
                    why = (probe.stderr.strip() or f"exit {probe.returncode}").splitlines()[-1]
                except OSError as exc:  # e.g. no unshare/setpriv binary
                    probe, why = None, f"{type(exc).__name__}: {exc}"
                if (probe and probe.stdout == "ok\n") or mode == candidates[-1]:
                    chosen = mode
                    break
                reasons.append(f"{mode}: {why}")
            missing = [p for p in _PROTECTIONS["namespaces"] if p not in _PROTECTIONS[chosen]]
            log.info("sandbox isolation %r active: %s", chosen, ", ".join(_PROTECTIONS[chosen]))
            if missing:
                log.warning("sandbox isolation %r lacks: %s (%s)", chosen, ", ".join(missing), "; ".join(reasons))
            _mode_cache[requested] = chosen
        return _mode_cache[requested]


def run_program(program: str, stdin: str = "", limits: Limits | None = None, *, auto_solve: bool = True) -> RunResult:
    """Run ``program`` (Python source) on ``stdin``; never raises for anything the program does.

    Affine's rerun rule (``auto_solve``): when the run prints nothing on either stream and the source defines
    ``solve`` without a ``__main__`` guard, it runs again with a guard calling ``solve()`` that prints the result
    (lists and tuples space-separated).
    """
    limits = limits or Limits()
    mode = resolve_isolation(limits.isolation)
    result = _run_once(program, stdin, limits, mode)
    silent = not result.stdout.strip() and not result.stderr.strip()
    if auto_solve and silent and "def solve" in program and not _HAS_MAIN.search(program):
        result = _run_once(program + _SOLVE_RUNNER, stdin, limits, mode)
    return result


def run_many(jobs: list[tuple[str, str]], limits: Limits | None = None, workers: int | None = None) -> list[RunResult]:
    """Run ``(program, stdin)`` jobs on a thread pool (one per core by default); results in job order."""
    if not jobs:
        return []
    resolve_isolation((limits or Limits()).isolation)  # probe once, before the threads start
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sandbox") as pool:
        return list(pool.map(lambda job: run_program(job[0], job[1], limits), jobs))
