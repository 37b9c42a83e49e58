"""The sandbox's first process: join the run's cgroups, build the jail, drop privileges, start the program, supervise.

It runs as root in fresh network, mount, pid, IPC and UTS namespaces made by util-linux ``unshare`` (never a user
namespace), under the host's interpreter as ``python -I -S``: standard library only, so it must not import ``affine``
(it is run as a file).  The jail (a chroot into a read-only tmpfs) is built by hand because no packaged tool here does
all of it without a user namespace: bubblewrap's unprivileged mode needs one, and its setuid mode is not shipped.

It reports on a private status pipe (``status=FD``), closed on ``exec``: ``ready`` just before the program starts,
or ``error <cause>``.  The program never holds that pipe, so nothing it prints can pass for a sandbox failure.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import sys

_RO, _NOSUID, _NODEV, _NOEXEC, _REMOUNT, _BIND, _REC, _PRIVATE = 1, 2, 4, 8, 32, 4096, 16384, 1 << 18
_INTS = ("uid", "max_tasks", "tmp_bytes", "tmp_inodes", "cpu_s", "address_space", "open_files", "status")
_LISTS = ("binds", "masks", "cgroups", "packages")
_PR_SET_PDEATHSIG, _PR_SET_NO_NEW_PRIVS, _PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 1, 38, 22, 2


def encode(cfg: dict) -> list[str]:
    """The boot config as ``key=value`` arguments (json and re would cost the boot path ~10 ms of imports)."""
    return [f"{k}={chr(10).join(v) if isinstance(v, (list, tuple)) else v}" for k, v in cfg.items()]


def decode(args: list[str]) -> dict:
    cfg: dict = dict(arg.split("=", 1) for arg in args)
    cfg.update({k: int(cfg[k]) for k in _INTS})
    cfg.update({k: [b for b in cfg[k].split(chr(10)) if b] for k in _LISTS})
    return cfg


class _Jail:
    def __init__(self, root: str) -> None:
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.root = root

    def mount(self, src: str | None, dst: str, fstype: str | None, flags: int, data: str | None = None) -> None:
        enc = [s.encode() if s is not None else None for s in (src, dst, fstype, data)]
        if self.libc.mount(enc[0], enc[1], enc[2], ctypes.c_ulong(flags), enc[3]) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"mount {dst}: {os.strerror(err)}")

    def bind(self, path: str, flags: int = _RO | _NOSUID | _NODEV, target: str | None = None) -> None:
        """Bind ``path`` read-only at its place (or ``target``) in the jail; not recursive: host submounts stay out."""
        target = self.root + (target or path)
        if os.path.isdir(path):
            os.makedirs(target, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            if not os.path.exists(target):
                open(target, "wb").close()
        self.mount(path, target, None, _BIND)
        self.mount(None, target, None, _REMOUNT | _BIND | flags)

    def tmpfs(self, path: str, opts: str, flags: int = _NOSUID | _NODEV) -> None:
        os.makedirs(self.root + path, exist_ok=True)
        self.mount("sandbox", self.root + path, "tmpfs", flags, opts)

    def seal(self, path: str, opts: str) -> None:
        self.mount(None, self.root + path, None, _REMOUNT | _RO | _NOSUID | _NODEV, opts)


def _build_jail(cfg: dict) -> str:
    """Mount the jail's view under ``work/root`` and chroot into it; returns the program's path inside."""
    work, uid = cfg["work"], cfg["uid"]
    with open(os.path.join(work, "main.py"), "rb") as fh:
        source = fh.read()
    jail = _Jail(os.path.join(work, "root"))
    jail.mount(None, "/", None, _REC | _PRIVATE)  # nothing below propagates back to the host
    jail.tmpfs("", "size=1m,nr_inodes=4096,mode=755")
    for top in ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            os.symlink(os.readlink(top), jail.root + top)
        elif os.path.isdir(top):
            jail.bind(top)
    # Hide the host's package trees (/usr/local, Debian's dist-packages): an empty tmpfs over each, into which only
    # the interpreter's own files and the allowed packages are bound back.
    masks = [m for m in cfg["masks"] if os.path.isdir(m)]
    for mask in masks:
        jail.tmpfs(mask, "size=64k,nr_inodes=1024,mode=755")
    for path in [*cfg["binds"], "/etc/ld.so.cache"]:
        if os.path.exists(path):
            jail.bind(path)
    site = cfg["site"]  # the interpreter's site-packages: an empty tmpfs holding only the allowed packages
    jail.tmpfs(site, "size=64k,nr_inodes=1024,mode=755")
    for pkg in cfg["packages"]:
        jail.bind(pkg, target=os.path.join(site, os.path.basename(pkg)))
    jail.seal(site, "size=64k,nr_inodes=1024,mode=755")
    for mask in masks:
        jail.seal(mask, "size=64k,nr_inodes=1024,mode=755")
    for dev in ("null", "zero", "random", "urandom"):
        jail.bind("/dev/" + dev, _NOSUID | _NOEXEC)
    opts = f"size={cfg['tmp_bytes']},nr_inodes={cfg['tmp_inodes']},mode=700,uid={uid},gid={uid}"
    jail.tmpfs("/tmp", opts)
    with open(jail.root + "/tmp/main.py", "wb") as fh:
        fh.write(source)
    os.chown(jail.root + "/tmp/main.py", uid, uid)
    jail.seal("", "size=1m,nr_inodes=4096,mode=755")
    os.chdir(jail.root)
    os.chroot(".")
    os.chdir("/tmp")
    return "/tmp/main.py"


def _load_seccomp(libc: ctypes.CDLL, bpf: bytes) -> None:
    """Install the BPF program libseccomp compiled in the parent (``PR_SET_SECCOMP``; needs no_new_privs first)."""

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    buf = ctypes.create_string_buffer(bpf, len(bpf))
    prog = SockFprog(len(bpf) // 8, ctypes.addressof(buf))
    if libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"seccomp: {os.strerror(err)}")


def boot(cfg: dict) -> None:
    """Everything between ``unshare`` and the program's ``exec``; any failure goes to the status pipe."""
    libc = ctypes.CDLL(None, use_errno=True)
    status, uid = cfg["status"], cfg["uid"]
    os.set_inheritable(status, False)
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # as pid 1 of the namespace it then ignores the program's SIGINT
    for procs in cfg["cgroups"]:  # first, so every page the jail and the program use is charged to the run
        with open(procs, "w") as fh:
            fh.write("0")
    with open(os.path.join(cfg["work"], "filter.bpf"), "rb") as fh:
        bpf = fh.read()
    script = _build_jail(cfg)
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)  # root -> non-root in the host's user namespace: every capability is gone
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # the uid change cleared the one unshare set
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "no_new_privs")
    cpu, mem, fsize, nfiles = cfg["cpu_s"], cfg["address_space"], cfg["tmp_bytes"], cfg["open_files"]
    for limit, value in (
        (resource.RLIMIT_CPU, (cpu, cpu + 1)),
        (resource.RLIMIT_AS, (mem, mem)),
        (resource.RLIMIT_CORE, (0, 0)),
        (resource.RLIMIT_FSIZE, (fsize, fsize)),
        (resource.RLIMIT_NPROC, (cfg["max_tasks"], cfg["max_tasks"])),
        (resource.RLIMIT_NOFILE, (nfiles, nfiles)),
    ):
        resource.setrlimit(limit, value)
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8"}
    # Stay behind as a supervisor (pid 1 of the namespace) so the program is an ordinary process: a namespace's
    # init ignores default-action signals such as SIGTERM and SIGXCPU, which would change how the limits end it.
    child = os.fork()
    if child == 0:
        try:
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            _load_seccomp(libc, bpf)
            os.write(status, b"ready")
            os.execve(cfg["python"], [cfg["python"], "-I", script], env)
        except BaseException as exc:
            os.write(status, f"\nerror {type(exc).__name__}: {exc}".encode())
        os._exit(127)
    os.close(status)
    code = os.waitstatus_to_exitcode(os.waitpid(child, 0)[1])
    os._exit(code if code >= 0 else 128 - code)


if __name__ == "__main__":
    try:
        _cfg = decode(sys.argv[1:])
    except Exception as exc:
        os.write(2, f"sandbox boot: bad arguments: {exc}\n".encode())
        os._exit(127)
    try:
        boot(_cfg)
    except BaseException as exc:  # any setup failure is reported and nothing runs unconfined
        try:
            os.write(_cfg["status"], f"error {type(exc).__name__}: {exc}".encode())
        finally:
            os._exit(127)
