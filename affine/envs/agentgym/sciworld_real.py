"""The real ScienceWorld engine (PyPI ``scienceworld``, a JVM per instance) and the AgentGym server's task list.

Task list: AgentGym's SciWorld server enumerates ``ScienceWorldEnv().tasks`` in order, drops the seven long task types
``5-1 5-2 9-1 9-2 9-3 10-1 10-2`` and expands each remaining one into all its variations; its ``data_idx`` indexes
that list.  ``data/sciworld_tasks.json`` holds, per kept task, its name, variation count and where ScienceWorld's own
dev and test variations start (they are contiguous ranges, checked against the engine in the tests), so building an
env needs no JVM.  Splits: ``eval`` = ScienceWorld's test variations, ``train`` = its train and dev variations, so the
two never share a variation.  Task ids interleave the 23 task types (``task_id % 23`` is the type, ``task_id // 23``
picks the variation within the split) so any range of ids covers every type; :func:`data_idx` gives the real server's
index for a task.

Steps call the Java side directly: the Python wrapper's ``step()`` also builds the list of every valid action-object
combination on each call (~0.25 s a step here), which nothing here reads; the score, completion and step-limit rules
it applies are reproduced in :meth:`Engine.step` (the real server keeps the wrapper's default limit of 100 moves).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from functools import cache
from importlib import resources

NO_MATCH = "No known action matches that input."
INVALID_PREFIXES = (NO_MATCH, "Unknown action.")
STEP_LIMIT = 100  # ScienceWorldEnv's default envStepLimit, which AgentGym's server keeps


class EngineMissing(FileNotFoundError):
    """Java or the ``scienceworld`` package is absent; the message says what to install (one line)."""


@dataclass(frozen=True)
class TaskType:
    id: str
    name: str
    variations: int
    dev_start: int
    test_start: int
    offset: int  # data_idx of this task's variation 0 on the real server

    def split_variations(self, split: str) -> range:
        return range(self.test_start, self.variations) if split == "eval" else range(0, self.test_start)


@cache
def task_types() -> tuple[TaskType, ...]:
    rows = json.loads(resources.files("affine.envs.agentgym").joinpath("data/sciworld_tasks.json").read_text())
    out, offset = [], 0
    for row in rows:
        out.append(TaskType(offset=offset, **row))
        offset += row["variations"]
    return tuple(out)


def num_real_tasks() -> int:
    """The real server's task count (every variation of the 23 kept task types)."""
    last = task_types()[-1]
    return last.offset + last.variations


def resolve(split: str, task_id: int) -> tuple[TaskType, int]:
    """``(task type, variation)`` of our ``task_id`` in ``split`` (see the module docstring)."""
    if task_id < 0:
        raise ValueError(f"task_id must be >= 0, got {task_id}")
    types = task_types()
    kind = types[task_id % len(types)]
    variations = kind.split_variations(split)
    return kind, variations[(task_id // len(types)) % len(variations)]


def data_idx(split: str, task_id: int) -> int:
    """The AgentGym server's ``data_idx`` for our ``task_id`` in ``split``."""
    kind, variation = resolve(split, task_id)
    return kind.offset + variation


def check_available() -> None:
    """Stop with one line saying what to install when the real engine cannot start here."""
    try:
        import scienceworld  # noqa: F401
    except ImportError as exc:
        raise EngineMissing(
            "agentgym:sciworld runs the real ScienceWorld: pip install scienceworld==1.2.3 (it also needs Java 17)"
        ) from exc
    if shutil.which("java") is None:
        raise EngineMissing(
            "agentgym:sciworld runs the real ScienceWorld in a JVM and no `java` is on PATH: install Java 17 "
            "(e.g. apt-get install openjdk-17-jre-headless)"
        )


class Engine:
    """One ScienceWorld JVM: load a task variation, step it, give its gold path; ``close()`` ends the JVM."""

    def __init__(self) -> None:
        check_available()
        from scienceworld import ScienceWorldEnv

        self._env = ScienceWorldEnv(envStepLimit=STEP_LIMIT)
        self._server = self._env.server
        self.closed = False

    @property
    def pid(self) -> int:
        return self._env._gateway.java_process.pid

    def load(self, task: str, variation: int, gold: bool = False) -> tuple[str, str]:
        """Load like the AgentGym server (no simplifications); returns (task description, ``look around``)."""
        self._env.load(task, variation, "", generateGoldPath=gold)
        return str(self._server.getTaskDescription()), self.step("look around")[0]

    def step(self, action: str) -> tuple[str, int, bool]:
        """(observation, score 0..100 or negative, done) exactly as ``ScienceWorldEnv.step`` computes them."""
        obs = str(self._server.step(action))
        score = int(round(100 * self._server.getScore()))
        done = bool(self._server.getCompleted()) or self._server.getNumMoves() > STEP_LIMIT or score < 0
        return obs, score, done

    def gold(self) -> list[str]:
        return [str(a) for a in self._server.getGoldActionSequence()]

    def close(self) -> None:
        """Shut the JVM down and wait for it, so no java process outlives its episode."""
        if self.closed:
            return
        self.closed = True
        proc = self._env._gateway.java_process
        self._env.close()
        try:
            proc.wait(timeout=10)
        except Exception:  # a JVM that ignores the shutdown is killed rather than leaked
            proc.kill()
            proc.wait(timeout=10)
