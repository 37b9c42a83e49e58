"""What the sandbox tests look at on the HOST after (and during) an attack: processes, cgroups, work dirs, keys,
available memory and a host process's CPU share.  Not a test module: the sandbox test files import it."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from affine import sandbox


def require_sandbox() -> sandbox.Setup:
    """The default (namespaces) setup, or skip the calling module with the reason it can't be set up here."""
    try:
        return sandbox.configure()
    except sandbox.SandboxUnavailable as exc:
        pytest.skip(f"the sandbox cannot be set up here: {exc}", allow_module_level=True)


def _setup() -> sandbox.Setup:
    return sandbox.configure()


def leftover_pids(token: str = "") -> list[int]:
    """Live host processes running one of this caller's sandbox uids, or with ``token`` in their command line."""
    uids, found = _setup().slot.uids, []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = {line.split(":", 1)[0]: line.split(":", 1)[1].split() for line in status.splitlines() if ":" in line}
        if fields["State"][0] != "Z" and (int(fields["Uid"][0]) in uids or (token and token in cmdline)):
            found.append(int(entry.name))
    return found


def leftover_cgroups() -> list[Path]:
    setup = _setup()
    prefix = f"s{setup.slot.index}-{os.getpid()}-"
    return [p for base in setup.cgroups.bases if base.is_dir() for p in base.iterdir() if p.name.startswith(prefix)]


def leftover_work_dirs() -> list[Path]:
    return list(Path(tempfile.gettempdir()).glob(f"affine-sbx-s{_setup().slot.index}-{os.getpid()}-*"))


def key_users() -> list[int]:
    """Sandbox uids that own kernel keys (``/proc/key-users``)."""
    uids = _setup().slot.uids
    lines = Path("/proc/key-users").read_text().splitlines() if Path("/proc/key-users").exists() else []
    return [int(line.split(":")[0]) for line in lines if int(line.split(":")[0]) in uids]


def assert_host_clean(token: str = "", timeout: float = 3.0) -> None:
    """Nothing of any run is left: processes, cgroups, work dirs, keys (waits a little for exits in flight)."""
    deadline = time.monotonic() + timeout
    while True:
        state = {"pids": leftover_pids(token), "cgroups": leftover_cgroups(), "work": leftover_work_dirs()}
        state["keys"] = key_users()
        if not any(state.values()) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not any(state.values()), state


def mem_available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no MemAvailable in /proc/meminfo")


class MemoryWatch:
    """The largest drop of the machine's available memory while the block runs (sampled every 20 ms)."""

    def __enter__(self) -> MemoryWatch:
        self.before, self.lowest, self._stop = mem_available(), mem_available(), threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.lowest = min(self.lowest, mem_available())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def drop(self) -> int:
        return self.before - self.lowest


class HostCPU:
    """A host busy-loop process; ``share`` is the fraction of one core it got while the block ran."""

    def __enter__(self) -> HostCPU:
        self.proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(0.2)  # let it start before counting
        self.start, self.cpu0 = time.monotonic(), self._cpu()
        return self

    def _cpu(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def __exit__(self, *exc: object) -> None:
        self.share = (self._cpu() - self.cpu0) / (time.monotonic() - self.start)
        self.proc.kill()
        self.proc.wait()


def baseline_cpu_share(seconds: float = 1.0) -> float:
    with HostCPU() as cpu:
        time.sleep(seconds)
    return cpu.share
