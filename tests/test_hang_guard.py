"""conftest.run_guarded: what the subprocess tests rely on to end everything they start (issue 21: an orphaned
stage kept training for 37 min after a test timed out)."""

import time
from pathlib import Path

import pytest
from conftest import run_guarded


def _alive(pid: int) -> bool:
    """Running, not merely a zombie waiting to be reaped."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def test_output_and_exit_code_come_back():
    done = run_guarded(["bash", "-c", "echo out; echo err >&2; exit 3"], timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (3, "out\n", "err\n")


def test_a_hung_command_is_killed_with_its_whole_process_group(tmp_path):
    pidfile = tmp_path / "grandchild.pid"
    with pytest.raises(pytest.fail.Exception, match="hang guard"):
        # the grandchild stands for a stage that `dvc repro` started: killing only bash would orphan it
        run_guarded(["bash", "-c", f"sleep 600 & echo $! > {pidfile}; wait"], timeout=2)
    grandchild = int(pidfile.read_text())
    deadline = time.monotonic() + 10
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(grandchild), "the grandchild outlived the test"
