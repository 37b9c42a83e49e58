"""Run untrusted Python programs (model replies, dataset programs) with Affine's limits inside real OS isolation.

Affine's executor limits (the defaults of :class:`Limits`): 30 s wall clock, 10 s CPU, 512 MiB, no core dumps,
1,000,000 bytes kept per output stream, the process group killed (TERM, 0.2 s, KILL) on timeout or overflow,
``\\n[TIMEOUT]`` appended to stderr on timeout (the CPU budget running out is a timeout too), and the ``solve()``
rerun rule (see :func:`run_program`).

The mode is a param (``sandbox.isolation``) and the sandbox fails closed: :func:`configure` proves the chosen mode
with a probe run and raises :class:`SandboxUnavailable` (one line: why, and what to install or allow) when it cannot
be set up; it never falls back to a weaker mode, and a run whose setup fails is retried once, then reported with its
cause -- never scored as the program's failure.  Nothing a program prints, signals or returns can pass for a setup
failure: the boot process reports on a private pipe closed before the program starts.

``namespaces`` (the default; needs root, util-linux ``unshare``/``setpriv``, writable cgroups and libseccomp):
  * network: a new network namespace with no interface up; seccomp refuses every socket family but AF_UNIX, so
    AF_VSOCK, netlink and packet sockets (which a network namespace does not cover) are closed too;
  * filesystem: a new mount namespace, chroot-ed into an empty read-only tmpfs holding read-only ``nosuid,nodev``
    binds of /usr (+ the /bin, /lib links), the interpreter's own files, /etc/ld.so.cache, four /dev nodes and a
    private /tmp (64 MiB, 4,096 inodes; the cwd).  /usr/local and Debian's /usr/lib/python3 are masked and the
    interpreter's site-packages holds only ``sandbox.packages``: no host package is importable by any path trick;
  * processes: a pid namespace (when its pid 1, the supervisor, exits, the kernel kills everything left, ``setsid()``
    or not), new IPC and UTS namespaces, a non-root uid from a range owned by this caller alone (slot locks, see
    :mod:`affine.sandbox.host`), so no capability survives (no user namespace is ever made), ``no_new_privs``;
  * one budget for the whole program (a cgroup per run): memory of all its processes, page cache, tmpfs, pipe and
    socket buffers (512 MiB), tasks including threads (512), at most one core, 10 CPU-seconds in total;
  * seccomp (:mod:`affine.sandbox.seccomp`): no memfd, io_uring, keyrings, ptrace, new namespaces, mounts, bpf,
    perf events or userfaultfd;
  * the program runs as ``python -I`` under ``sandbox.python`` (the validator's 3.12 where installed): the ``site``
    builtins (``exit``, ``quit``) exist, no user site, no environment variable of the parent (PATH, HOME, LANG only).
``none`` (asked for by name only, e.g. on a machine without root or cgroups): Affine's own executor -- rlimits through
  util-linux ``prlimit``, a clean environment and a private cwd; no isolation at all.

Never protected: kernel exploits (the kernel is shared), side channels, and what the kernel does not account to a
cgroup.  Two places where we are deliberately more robust than the validator's runner: a program that echoes a large
stdin cannot deadlock (stdin is fed while the output is read), and a child that keeps stdout open after the program
exits is ended with the pid namespace instead of holding the run until its timeout.
"""

from affine.sandbox.host import SandboxUnavailable
from affine.sandbox.runner import (
    MODES,
    Limits,
    RunResult,
    Setup,
    configure,
    current,
    executor_source,
    protections,
    run_many,
    run_program,
)

__all__ = [
    "MODES",
    "Limits",
    "RunResult",
    "SandboxUnavailable",
    "Setup",
    "configure",
    "current",
    "executor_source",
    "protections",
    "run_many",
    "run_program",
]
