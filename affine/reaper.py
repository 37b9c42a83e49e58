"""Stop a stage's helper processes when the stage dies, however it dies.

Why: vLLM runs its EngineCore in a child process and tears it down only from the parent (``close()`` or interpreter
exit).  A stage killed with SIGKILL (the OOM killer) or stopped by a signal it does not handle left the EngineCore
and its worker running, 1-4 GB each, one of them burning a core for half an hour.  A process cannot make another one
die with it (``PR_SET_PDEATHSIG`` is set by the child on itself), so :func:`reap_on_exit` starts a tiny watcher
process that holds the read end of a pipe from the stage: when the stage exits for any reason the kernel closes the
write end, the watcher reads EOF and kills the listed processes that still run (processes are named by pid *and*
start time, so a reused pid is never hit).  After a normal :meth:`Reaper.close` the processes are already gone and
the watcher just exits.

Linux only (``/proc``); elsewhere :func:`reap_on_exit` returns an inert reaper.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

Proc = tuple[int, int]  # (pid, start time in clock ticks since boot): a pid alone may be reused


def _stat(pid: int | str) -> list[str] | None:
    """``/proc/<pid>/stat`` from field 3 (state) on; the command name before it may hold spaces and ')'."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _started(fields: list[str] | None) -> int | None:
    """Start time (field 22) of a live process, None for a gone one or a zombie."""
    return None if fields is None or fields[0] in ("Z", "X") else int(fields[19])


def start_time(pid: int) -> int | None:
    """The process's start time, None when it is gone or a zombie."""
    return _started(_stat(pid))


def descendants(pid: int) -> list[Proc]:
    """Every live process below ``pid`` (children, grandchildren, ...), with start times; one read per process."""
    children: dict[int, list[Proc]] = {}
    for entry in Path("/proc").iterdir():
        fields = _stat(entry.name) if entry.name.isdigit() else None
        started = _started(fields)
        if started is not None:
            children.setdefault(int(fields[1]), []).append((int(entry.name), started))
    found, todo = [], list(children.get(pid, []))
    while todo:
        proc = todo.pop()
        found.append(proc)
        todo += children.get(proc[0], [])
    return found


def kill(procs: list[Proc], grace_s: float = 5.0) -> None:
    """SIGTERM the processes that are still the ones named, then SIGKILL what is left after ``grace_s``."""
    alive = [p for p in procs if start_time(p[0]) == p[1]]
    for pid, _ in alive:
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while alive and time.monotonic() < deadline:
        time.sleep(0.1)
        alive = [p for p in alive if start_time(p[0]) == p[1]]
    for pid, _ in alive:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class Reaper:
    """The watcher of :func:`reap_on_exit`; :meth:`close` ends it (the processes should be stopped first)."""

    def __init__(self, watcher: subprocess.Popen | None) -> None:
        self.watcher = watcher

    def close(self) -> None:
        watcher, self.watcher = self.watcher, None
        if watcher is not None:
            watcher.stdin.close()  # EOF: it kills whatever of the list still runs, then exits
            watcher.wait(timeout=30)


def reap_on_exit(procs: list[Proc]) -> Reaper:
    """Kill ``procs`` when this process exits, SIGKILL included (see the module docstring)."""
    if not procs or not Path("/proc/self/stat").exists():
        return Reaper(None)
    listing = " ".join(f"{pid}:{started}" for pid, started in procs)
    watcher = subprocess.Popen(
        [sys.executable, __file__, listing],  # run as a script: stdlib only, no ``affine`` (torch) import
        stdin=subprocess.PIPE,
        start_new_session=True,  # a Ctrl-C to the stage's process group must not kill the watcher first
    )
    return Reaper(watcher)


def _watch(listing: str) -> None:
    procs = [(int(pid), int(started)) for pid, started in (item.split(":") for item in listing.split())]
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.stdin.buffer.read()  # returns at EOF: the stage closed the pipe or died
    kill(procs)


if __name__ == "__main__":
    _watch(sys.argv[1])
