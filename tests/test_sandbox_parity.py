"""Issue 17's runner rows: each reply scored by DED as the validator scored it (its expected score in the test),
plus the two rows where we stay more robust than the validator's runner.  Skips (saying why) where the namespaces
mode, Python 3.12 or numpy for the chosen interpreter is not there."""

from __future__ import annotations

import os
import sys
import sysconfig
import time

import pytest
from sandbox_host import assert_host_clean, require_sandbox

from affine import sandbox
from affine.envs.ded import DED
from affine.sandbox import Limits

SETUP = require_sandbox()
DOUBLE = "n = int(input())\nprint(n * 2)\n"


def challenge(stdin: str = "21", out: str = "42") -> dict:
    cases = [{"type": "stdin_stdout", "input": stdin, "output": out, "fn_name": None}]
    return {"env": "affine:ded", "task_id": 0, "prompt": "x", "test_cases": cases, "program": ""}


def score(code: str, task: dict | None = None, wall_s: float = 10.0) -> float:
    return DED(limits=Limits(wall_s=wall_s)).score(task or challenge(), f"```python\n{code}```")


@pytest.fixture
def restore_setup():
    yield
    sandbox.configure()  # back to the default setup for the other tests


@pytest.mark.parametrize("ending", ["exit()", "quit()", "exit(0)", "raise SystemExit"])
def test_site_builtins_exit_and_quit_exist(ending):
    assert score(DOUBLE + ending + "\n") == 1.0  # validator: 1 (we used to run -I -S: NameError -> 0)


def test_python_is_the_validators_312_where_installed():
    if SETUP.interp.version != "3.12":
        pytest.skip(f"no Python 3.12 here (auto chose {SETUP.interp.python}, {SETUP.interp.version})")
    code = "import re, sys\ns = input()\nprint(len(re.findall('\\d', s)) * 0 + int(s) * 2)\n"
    assert score(code) == 0.0  # validator: 0, SyntaxWarning on stderr (3.11 printed nothing: 1)
    assert score("import sys\nprint(sys.version_info[:2] == (3, 12) and 42)\n") == 1.0


def test_numpy_imports_only_where_the_allowed_set_has_it(restore_setup):
    numpy = pytest.importorskip("numpy", reason="numpy is not installed for the host interpreter")
    code = "import numpy as np\nprint(int(np.int64(input()) * 2))\n"
    assert score(code) == 0.0  # the default set is empty: numpy is hidden
    site = os.path.dirname(os.path.dirname(numpy.__file__))
    host_python = os.path.realpath(sys.executable)  # numpy here is built for the host's interpreter
    sandbox.configure(python=host_python, packages=["numpy"], site_packages=site)
    assert score(code) == 1.0  # validator (numpy in its image): 1
    assert score("import requests\nprint(42)\n") == 0.0  # the rest of that site-packages stays hidden
    assert_host_clean()


def test_packages_and_python_params_fail_with_one_line():
    with pytest.raises(sandbox.SandboxUnavailable, match="'no_such_pkg' is not installed"):
        sandbox.configure(packages=["no_such_pkg"])
    with pytest.raises(sandbox.SandboxUnavailable, match="not an executable file"):
        sandbox.configure(python="/nonexistent/python3")
    with pytest.raises(sandbox.SandboxUnavailable, match="does not run as a Python interpreter"):
        sandbox.configure(python="/bin/true")
    with pytest.raises(sandbox.SandboxUnavailable, match="not a directory"):
        sandbox.configure(packages=["numpy"], site_packages="/nonexistent")
    assert sysconfig.get_path("purelib")  # the default setup stays usable
    assert score(DOUBLE) == 1.0


def test_one_hundred_threads_alive_at_once():
    code = (
        "import threading, time\nn = int(input())\nbarrier = threading.Barrier(101)\n"
        "ts = [threading.Thread(target=barrier.wait) for _ in range(100)]\n"
        "[t.start() for t in ts]\nbarrier.wait()\n[t.join() for t in ts]\nprint(n * 2)\n"
    )
    assert score(code) == 1.0  # validator: 1 (our 64-process cap per uid counted threads: timeout, 0)
    wide = code.replace("101", "301").replace("range(100)", "range(300)")
    assert score(wide) == 1.0  # the task cap (512) leaves room for threaded programs


def test_a_large_stdin_echo_does_not_deadlock():
    data = "x" * 590_000
    start = time.monotonic()
    assert score("import sys\nsys.stdout.write(sys.stdin.read())\n", challenge(data, data)) == 1.0
    assert time.monotonic() - start < 10  # validator: deadlock until its 35 s guard, 0; we stay robust: 1


def test_a_child_keeping_stdout_open_does_not_hold_the_run():
    code = DOUBLE + "import os, sys, time\nsys.stdout.flush()\nif os.fork() == 0:\n    time.sleep(60)\n"
    start = time.monotonic()
    assert score(code) == 1.0  # validator: waits for the child, [TIMEOUT], 0; our pid namespace ends it: 1
    assert time.monotonic() - start < 5
    assert_host_clean()
