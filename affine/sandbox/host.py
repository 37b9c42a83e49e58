"""Host-side resources of sandbox runs: a uid range per caller, work dirs, one cgroup per run, and stale cleanup.

Uid ranges come from slot locks: a caller takes the first free ``flock`` among ``slots`` lock files and owns uids
``uid_base + slot * 256`` to ``+ 255`` while it lives; the kernel drops the lock when the caller dies, however it
dies, so two live callers never share a range and a dead caller's range is free again.  Every work dir and cgroup
carries its caller's slot in its name, so the next caller that finds that slot unlocked removes what it left.

The cgroup (v1: one directory in each of the ``memory``, ``pids``, ``cpu`` and ``cpuacct`` hierarchies; v2: one
directory with those controllers) gives the whole process tree one budget: memory (pages, page cache, tmpfs, pipe
and socket buffers, kernel objects), a task count (threads included), at most one core, and a CPU-time total the
runner polls.  The kernel has no CPU-seconds cap, so that total is enforced by reading it while the run goes.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import tempfile
import threading
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from affine.errors import StageError

UIDS_PER_SLOT = 256
_V1 = ("memory", "pids", "cpu", "cpuacct")
_GROUP = "affine-sandbox"


class SandboxUnavailable(StageError, RuntimeError):
    """The sandbox cannot be set up here as configured; the message says why and what to install or allow."""


def _private_dir(path: Path) -> Path:
    """A directory only we can write, refusing a link or someone else's directory in a shared temp folder."""
    path.mkdir(mode=0o700, exist_ok=True)
    info = path.lstat()
    if not path.is_dir() or path.is_symlink() or info.st_uid != os.geteuid() or info.st_mode & 0o022:
        raise SandboxUnavailable(f"{path} is not a private directory of this user: remove it")
    return path


class Slot:
    """This process's uid range, held by an exclusive ``flock`` for as long as the process lives."""

    def __init__(self, slots: int, uid_base: int) -> None:
        self.locks = _private_dir(Path(tempfile.gettempdir()) / "affine-sandbox-locks")
        self.slots, self.uid_base, self._fh = slots, uid_base, None
        for index in range(slots):
            fh = open(self.locks / f"slot-{index}.lock", "a")  # noqa: SIM115 - held for the process's life
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.close()
                continue
            self.index, self._fh = index, fh
            break
        else:
            raise SandboxUnavailable(f"all {slots} sandbox uid slots are taken by live processes")
        self.pid = os.getpid()
        self.uids = range(uid_base + self.index * UIDS_PER_SLOT, uid_base + (self.index + 1) * UIDS_PER_SLOT)

    def is_dead(self, index: int) -> bool:
        """True when slot ``index`` is ours or no live process holds it (so what carries its tag is stale)."""
        if index == self.index:
            return True
        try:
            with open(self.locks / f"slot-{index}.lock", "a") as fh:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(fh, fcntl.LOCK_UN)
                return True
        except (BlockingIOError, OSError):
            return False


def _slot_of(name: str) -> int | None:
    """``affine-sbx-s12-...`` / ``s12-...`` → 12."""
    tag = name.removeprefix("affine-sbx-").split("-", 1)[0]
    return int(tag[1:]) if tag[:1] == "s" and tag[1:].isdigit() else None


def remove_stale_work_dirs(slot: Slot) -> int:
    removed = 0
    for entry in Path(tempfile.gettempdir()).glob("affine-sbx-s*"):
        index = _slot_of(entry.name)
        own_live = entry.name.startswith(f"affine-sbx-s{slot.index}-{slot.pid}-")  # this process's runs in flight
        if index is not None and not own_live and slot.is_dead(index) and entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
            removed += 1
    return removed


@dataclass(frozen=True)
class RunGroup:
    """One run's cgroup: ``dirs`` (one per v1 hierarchy, or the single v2 directory)."""

    version: int
    dirs: tuple[Path, ...]

    @property
    def procs_files(self) -> list[str]:
        return [str(d / "cgroup.procs") for d in self.dirs]

    def _dir(self, controller: str) -> Path:
        if self.version == 2:
            return self.dirs[0]
        return next(d for d in self.dirs if controller in d.parent.parent.name.split(","))

    def cpu_seconds(self) -> float:
        """CPU time used by every task that ever ran in the run, in seconds."""
        if self.version == 2:
            for line in (self.dirs[0] / "cpu.stat").read_text().splitlines():
                if line.startswith("usage_usec "):
                    return int(line.split()[1]) / 1e6
            return 0.0
        return int((self._dir("cpuacct") / "cpuacct.usage").read_text()) / 1e9

    def memory_peak(self) -> int:
        name = "memory.peak" if self.version == 2 else "memory.max_usage_in_bytes"
        with suppress(OSError, ValueError):
            return int((self._dir("memory") / name).read_text())
        return 0

    def kill(self) -> None:
        if self.version == 2:
            with suppress(OSError):
                (self.dirs[0] / "cgroup.kill").write_text("1")
                return
        for d in self.dirs:
            with suppress(OSError):
                for pid in (d / "cgroup.procs").read_text().split():
                    with suppress(ProcessLookupError, PermissionError):
                        os.kill(int(pid), signal.SIGKILL)

    def remove(self, timeout: float = 2.0) -> bool:
        """Kill what is left and remove the directories; True when all are gone."""
        deadline = time.monotonic() + timeout
        pending = [d for d in self.dirs if d.exists()]
        while pending:
            self.kill()
            for d in list(pending):
                with suppress(FileNotFoundError):
                    try:
                        d.rmdir()
                    except OSError:  # EBUSY: a task is still exiting
                        continue
                pending.remove(d)
            if not pending or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        return not pending


class Cgroups:
    """Where run cgroups go, found once: cgroup v1 hierarchies, or a v2 tree (the whole one as root, or delegated)."""

    def __init__(self, parent: str | None = None) -> None:
        root = Path("/sys/fs/cgroup")
        self._seq, self._lock = 0, threading.Lock()
        if parent is None and all((root / c / "cgroup.procs").is_file() for c in _V1):
            self.version = 1
            real = {c: (root / c).resolve() for c in _V1}  # "cpu" and "cpuacct" may be one co-mounted hierarchy
            self.bases = tuple(dict.fromkeys(real[c] / _GROUP for c in _V1))
        else:
            base = Path(parent) if parent else root / _GROUP
            if not (base.parent / "cgroup.controllers").is_file():
                raise SandboxUnavailable(
                    f"no cgroup hierarchy for sandbox runs at {base.parent} (need cgroup v1 memory/pids/cpu/cpuacct "
                    "or cgroup v2): run as root, or delegate a cgroup v2 subtree and set sandbox.cgroup_parent to it"
                )
            self.version, self.bases = 2, (base,)
        try:
            for base in self.bases:
                base.mkdir(exist_ok=True)
            if self.version == 2:
                _enable_v2_controllers(self.bases[0])
        except OSError as exc:
            raise SandboxUnavailable(
                f"cannot create sandbox cgroups under {self.bases[0].parent}: {exc.strerror} (run as root, or set "
                "sandbox.cgroup_parent to a cgroup v2 directory delegated to this user)"
            ) from None

    def create(self, slot: Slot, memory_bytes: int, max_tasks: int, cores: float) -> RunGroup:
        with self._lock:
            self._seq += 1
            name = f"s{slot.index}-{slot.pid}-{self._seq}"
        group = RunGroup(self.version, tuple(base / name for base in self.bases))
        period = 100_000
        quota = max(1000, int(period * cores))
        try:
            for d in group.dirs:
                d.mkdir()
            if self.version == 1:
                mem = group._dir("memory")
                (mem / "memory.limit_in_bytes").write_text(str(memory_bytes))
                if (mem / "memory.memsw.limit_in_bytes").exists():  # no swap either
                    (mem / "memory.memsw.limit_in_bytes").write_text(str(memory_bytes))
                (group._dir("pids") / "pids.max").write_text(str(max_tasks))
                (group._dir("cpu") / "cpu.cfs_period_us").write_text(str(period))
                (group._dir("cpu") / "cpu.cfs_quota_us").write_text(str(quota))
            else:
                d = group.dirs[0]
                (d / "memory.max").write_text(str(memory_bytes))
                if (d / "memory.swap.max").exists():
                    (d / "memory.swap.max").write_text("0")
                (d / "pids.max").write_text(str(max_tasks))
                (d / "cpu.max").write_text(f"{quota} {period}")
        except OSError as exc:
            group.remove()
            raise SandboxUnavailable(f"cannot set up the run's cgroup {group.dirs[0]}: {exc}") from None
        return group

    def remove_stale(self, slot: Slot) -> int:
        removed = 0
        for base in self.bases:
            for entry in base.iterdir() if base.is_dir() else ():
                index = _slot_of(entry.name)
                own_live = index == slot.index and entry.name.split("-")[1:2] == [str(slot.pid)]
                if entry.is_dir() and index is not None and slot.is_dead(index) and not own_live:
                    removed += RunGroup(self.version, (entry,)).remove(timeout=0.5)
        return removed


def _enable_v2_controllers(base: Path) -> None:
    """Turn on memory, pids and cpu for ``base`` and its children (v2 needs them in each parent's subtree_control)."""
    for parent in (base.parent, base):
        have = set((parent / "cgroup.subtree_control").read_text().split())
        missing = [c for c in ("memory", "pids", "cpu") if c not in have]
        if missing:
            (parent / "cgroup.subtree_control").write_text(" ".join("+" + c for c in missing))
