"""SciWorld: a fast offline simulator of a few ScienceWorld task families, plus an optional real-ScienceWorld backend.

The real env (``scienceworld`` pip package, Java) is slow to start and has no scripted expert that fits 30 turns, so
RL and SFT data default to this simulator; ``backend="scienceworld"`` drives the real env behind the same interface
for evaluation where Java is present.  What the simulator keeps from the real env: the action grammar, the first
observation (task description + ``look around``), the room/door world (doors start closed, you must open them), the
0..100 progress score with partial credit, ``-100`` and episode end on a wrong ``focus on`` (or the wrong answer box),
success at 100, and the real feedback for unknown input (``No known action matches that input.``).

Families (real ScienceWorld task names): ``boil``, ``melt``, ``freeze`` (heat on the stove / cool in the closed
freezer; 1 tick per action, ``wait`` = 10 ticks, ``wait1`` = 1), ``test-conductivity`` (a simplified circuit: connect
battery, the object and the light bulb in a loop; the bulb lights iff the object conducts), ``find-living-thing``,
``find-non-living-thing``, ``find-plant``, ``find-animal`` and ``chemistry-mix-paint-secondary-color``.

Splits: each family enumerates its key parameters (substance x container, object x box colours, target x box colour,
colour x cup order); every 4th combination is eval-only, so train and eval tasks never coincide (like ScienceWorld's
own variation splits, eval holds unseen combinations).  Shaping: +``progress`` on each step that raises the score,
+``completion`` at 100, ``-completion`` on failure (Affine maps -100..100 symmetrically, so a failure mirrors success).

This module is the episode protocol; the rules are ``sciworld_world``, the families' data ``sciworld_catalogue``, the
scripted expert ``sciworld_expert`` and the real backend ``sciworld_real``.
"""

from __future__ import annotations

import random

from affine.envs.agentgym.react import parse_last, react
from affine.envs.agentgym.sciworld_catalogue import FAMILIES, NO_MATCH, combos, populate
from affine.envs.agentgym.sciworld_expert import plan
from affine.envs.agentgym.sciworld_real import RealScienceWorld
from affine.envs.agentgym.sciworld_world import World
from affine.envs.base import Shaping, Step

__all__ = ["FAMILIES", "NO_MATCH", "RealScienceWorld", "SciWorld"]


class SciWorld(World):
    """AgentGym SciWorld behind the ``MultiTurnEnv`` interface (see the module docstring)."""

    name = "agentgym:sciworld"
    success_score = 100.0
    instructions = (
        "You are an agent in a science lab world. Each turn you get an observation and reply with one action that "
        "brings you closer to finishing the task.\nActions: open/close OBJ, activate/deactivate OBJ, "
        "connect OBJ to OBJ, disconnect OBJ, use OBJ [on OBJ], look around, look at OBJ, look in OBJ, read OBJ, "
        "move OBJ to OBJ, pick up OBJ, put down OBJ, pour OBJ into OBJ, dunk OBJ into OBJ, mix OBJ, go to LOC, "
        "eat OBJ, focus on OBJ, wait (10 steps), wait1 (1 step), examine OBJ, task (repeat the task), inventory.\n"
        "Focus only on the object the task names: focusing on a wrong one fails the task. Doors between rooms "
        "must be opened before you can go through them.\n"
        "Reply in this format:\nThought:\n<your reasoning>\n\nAction:\n<one action>"
    )

    def __init__(
        self,
        split: str = "train",
        max_turns: int = 30,
        difficulty: int = 1,
        shaping: Shaping | None = None,
        seed: int = 0,
        backend: str = "sim",
    ) -> None:
        if split not in ("train", "eval") or backend not in ("sim", "scienceworld"):
            raise ValueError(f"bad split {split!r} or backend {backend!r}")
        self.split, self.max_turns, self.difficulty, self.seed = split, max_turns, max(1, difficulty), seed
        self.shaping, self.backend = shaping or Shaping(), backend
        self.fail_penalty = -self.shaping.completion
        self._real = RealScienceWorld() if backend == "scienceworld" else None
        self._done, self.turn, self.score, self.family = True, 0, 0.0, ""

    # -- episode --------------------------------------------------------------------------------------------------
    def reset(self, task_id: int) -> str:
        self.task_id, self.turn, self.score, self._done = task_id, 0, 0.0, False
        if self._real is not None:
            self.family, self.task, obs = self._real.reset(self.split, task_id)
            return obs
        self.family = FAMILIES[task_id % len(FAMILIES)]
        rng = random.Random(f"sciworld:{self.seed}:{self.split}:{task_id}:{self.difficulty}")
        choices = combos(self.family)
        pool = [c for i, c in enumerate(choices) if (i % 4 == 3) == (self.split == "eval")]
        self.combo = pool[(task_id // len(FAMILIES)) % len(pool)]
        populate(self, rng)
        return f"{self.task}\n{self._look()}"

    def step(self, reply: str) -> Step:
        if self._done:
            info = {"action": None, "valid": False, "success": self.score >= 100, "truncated": False, "progress": False}
            return Step("The episode is over; call reset().", 0.0, True, self.score, info)
        self.turn += 1
        parsed = parse_last(reply)
        action = parsed.action
        if action is None:
            obs, valid, new = parsed.error or "Invalid Action.", False, self.score
        elif self._real is not None:
            obs, valid, new = self._real.step(action)
        else:
            obs, valid = self._act(action)
            progress = float(self._progress())  # may set ``failed``
            new = -100.0 if self.failed else max(self.score, progress)
        reward = 0.0 if valid else self.shaping.invalid_penalty
        failed, improved = new < 0, new > max(self.score, 0.0)
        reward += self.fail_penalty if failed else 0.0
        reward += (self.shaping.progress + (self.shaping.completion if new >= 100 else 0.0)) if improved else 0.0
        self.score = new
        truncated = not (failed or new >= 100) and self.turn >= self.max_turns
        reward += self.shaping.timeout_penalty if truncated else 0.0
        self._done = failed or new >= 100 or truncated
        info = {"action": action, "valid": valid, "success": new >= 100, "truncated": truncated}
        info.update(progress=improved, turn=self.turn, task=self.family)
        return Step(obs, reward, self._done, self.score, info)

    def close(self) -> None:
        if self._real is not None:
            self._real.close()

    def expert_reply(self) -> str:
        """The scripted planner's next ReAct reply (simulator: planned from state; real backend: the gold path)."""
        if not self.family:
            raise RuntimeError("call reset() before expert_reply()")
        if self._real is not None:
            return react("I follow the known solution for this task.", self._real.next_gold())
        thought, action = plan(self)
        return react(thought, action)
