"""The seccomp filter every sandboxed program runs under, compiled by libseccomp (PyPI ``pyseccomp``).

Default allow, with a deny list of what no Affine program needs and each of which was a way out or around the other
layers: memory outside the cgroup's view or kernel state that outlives the run (``memfd_create``, keyrings), kernel
attack surface (``io_uring_*``, ``bpf``, ``perf_event_open``, ``userfaultfd``), the network namespace's blind spots
(every socket family but AF_UNIX: AF_VSOCK, AF_NETLINK, AF_PACKET ... are refused), and the tools of escape
(``ptrace``, new namespaces through ``unshare``/``setns``/``clone`` flags, ``mount`` and the new mount API,
``chroot``, ``pivot_root``).  ``clone3`` answers ENOSYS, as container runtimes do, since its flags sit behind a
pointer a filter cannot read; libc then falls back to ``clone``, whose flags are checked.

The filter is compiled once per process to BPF bytes; the boot process installs them with ``PR_SET_SECCOMP`` in the
program's process just before ``exec`` (after no_new_privs), so they bind the program and everything it starts.
"""

from __future__ import annotations

import errno
import functools
import socket
import tempfile

from affine.sandbox.host import SandboxUnavailable

DENIED = (
    "memfd_create", "memfd_secret", "io_uring_setup", "io_uring_enter", "io_uring_register",
    "add_key", "keyctl", "request_key", "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd",
    "unshare", "setns", "mount", "umount2", "pivot_root", "chroot", "fsopen", "fsconfig", "fsmount", "fspick",
    "move_mount", "open_tree", "mount_setattr", "bpf", "perf_event_open", "userfaultfd", "fanotify_init",
    "name_to_handle_at", "open_by_handle_at", "kexec_load", "kexec_file_load", "init_module", "finit_module",
    "delete_module", "swapon", "swapoff", "reboot", "acct", "quotactl", "syslog",
)  # fmt: skip
# CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET, NEWTIME
NAMESPACE_FLAGS = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000, 0x00000080)


@functools.cache
def filter_bpf() -> bytes:
    """The compiled filter; a missing libseccomp is a setup error that names what to install."""
    try:
        import pyseccomp as sc
    except (ImportError, OSError) as exc:  # OSError: the bindings load libseccomp.so.2 at import
        raise SandboxUnavailable(
            f"the sandbox's seccomp filter needs libseccomp's Python bindings ({exc}): pip install pyseccomp "
            "and apt-get install libseccomp2"
        ) from None
    f = sc.SyscallFilter(sc.ALLOW)
    for name in DENIED:
        try:
            f.add_rule(sc.ERRNO(errno.EPERM), name)
        except (ValueError, RuntimeError, OSError):  # a syscall this libseccomp or kernel does not know
            continue
    for call in ("socket", "socketpair"):
        f.add_rule(sc.ERRNO(errno.EAFNOSUPPORT), call, sc.Arg(0, sc.NE, socket.AF_UNIX))
    for flag in NAMESPACE_FLAGS:
        f.add_rule(sc.ERRNO(errno.EPERM), "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    f.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    with tempfile.TemporaryFile() as fh:
        f.export_bpf(fh)
        fh.seek(0)
        return fh.read()
