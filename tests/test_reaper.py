"""affine.reaper: a stage's helper processes die with the stage, SIGKILL included, and nothing else is hit."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import gone_within

from affine.reaper import descendants, kill, reap_on_exit, start_time

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="affine.reaper reads Linux's /proc")


def start_stage(body: str) -> tuple[subprocess.Popen, list[int]]:
    """A child 'stage' that runs ``body`` (which prints its helper pids on one line), then sleeps to be killed."""
    code = textwrap.dedent(body) + "\nimport time; time.sleep(600)\n"
    stage = subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    line = stage.stdout.readline()
    assert line.strip(), "the stage printed no helper pids"
    return stage, [int(pid) for pid in line.split()]


HELPERS = """
    import os, subprocess
    from affine.reaper import descendants, reap_on_exit
    helper = subprocess.Popen(["sleep", "600"])
    grandchild = subprocess.Popen(["sh", "-c", "sleep 600 & wait"])
    import time; time.sleep(0.3)
    reaper = reap_on_exit(descendants(os.getpid()))
    print(*[pid for pid, _ in descendants(os.getpid()) if pid != reaper.watcher.pid], flush=True)
"""


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_helpers_die_when_the_stage_is_killed(sig) -> None:
    stage, helpers = start_stage(HELPERS)
    assert len(helpers) == 3 and all(start_time(pid) is not None for pid in helpers)  # sleep, sh and its sleep
    stage.send_signal(sig)
    stage.wait(timeout=30)
    assert gone_within(helpers, 20), [pid for pid in helpers if start_time(pid) is not None]


def test_close_ends_the_watcher_and_spares_live_unlisted_processes() -> None:
    bystander = subprocess.Popen(["sleep", "600"])
    try:
        listed = subprocess.Popen(["sleep", "600"])
        reaper = reap_on_exit([p for p in descendants(os.getpid()) if p[0] == listed.pid])
        watcher = reaper.watcher
        reaper.close()
        assert watcher.returncode == 0
        listed.wait(timeout=10)  # it was still running at close: the watcher stopped it
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def test_a_reused_pid_is_not_signalled() -> None:
    victim = subprocess.Popen(["sleep", "600"])
    try:
        kill([(victim.pid, start_time(victim.pid) + 1)], grace_s=0.2)  # same pid, another start time
        time.sleep(0.2)
        assert victim.poll() is None
    finally:
        victim.kill()
        victim.wait()


def test_nothing_to_watch_starts_no_watcher() -> None:
    assert reap_on_exit([]).watcher is None
