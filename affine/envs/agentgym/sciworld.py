"""SciWorld on the real ScienceWorld engine, episode by episode as AgentGym's server and client play it.

``reset(task_id)`` starts a JVM (``sciworld_real.Engine``), loads the task variation the id maps to (the real
server's task list and this project's train/eval split are in ``sciworld_real``) and returns what AgentGym's client
shows first: the task description, a newline, and the result of ``look around``.  Each step sends the text after the
reply's last ``Action:`` to the engine, or an empty action when there is none (AgentGym's client does the same, and
the engine answers ``No known action matches that input.``).  The score is the engine's 0..100 (negative when the
agent fails the task, e.g. focuses on the wrong object); the episode ends when the engine says so or at
``max_turns`` (30, the eval round limit), and the JVM is closed then, since each one holds 150-390 MB.

Each episode gets a fresh JVM on purpose: ScienceWorld draws a variation's distractors (other rooms' contents,
paint colours, ...) from a random source that a JVM's earlier loads, and gold-path generation, advance; only the first
load in a fresh JVM is reproducible, and it is what the real server shows on the first reset of a new env.

The expert replays ScienceWorld's own gold action sequence.  Asking the engine for it changes the world it draws, so
``train`` episodes (SFT data, RL) load with the gold path from the start and the world shown is the one the path
solves; ``eval`` episodes load exactly as the real server does, and an expert asked for there reloads the variation
with the gold path and replays the actions taken so far (its world may then differ in distractors from the first
observation).  A gold path longer than ``max_turns`` cannot finish in time; ``expert_covers`` says whether it fits.

Shaping: +``progress`` on each step that raises the score, +``completion`` at 100, ``-completion`` on failure
(Affine maps -100..100 symmetrically, so a failure mirrors success).  ``difficulty`` is accepted for a uniform env
interface and unused: the real tasks have no difficulty knob.
"""

from __future__ import annotations

from affine.envs.agentgym.react import react
from affine.envs.agentgym.sciworld_real import INVALID_PREFIXES, NO_MATCH, Engine, check_available, data_idx, resolve
from affine.envs.base import Shaping, Step, check_split

server_task_id = data_idx  # (split, our task id) -> the AgentGym server's index, for `backend: agentgym`

__all__ = ["NO_MATCH", "SciWorld"]

# The action grammar ScienceWorld's parser accepts, in the forms its gold paths use (checked against the engine:
# ``use OBJ`` without ``on OBJ`` is rejected; ``reset task`` is accepted but left out on purpose).
INSTRUCTIONS = (
    "You are an agent in ScienceWorld, a text world of rooms, objects and simple science. Each turn you get an "
    "observation and reply with one action toward the task.\n"
    "Actions (OBJ and LOC are names as the observations print them; a bare number such as 0 answers a "
    "'Please enter the number' question):\n"
    "open OBJ | close OBJ | activate OBJ | deactivate OBJ | connect OBJ to OBJ | disconnect OBJ | "
    "use OBJ on OBJ | look around | look at OBJ | look in OBJ | read OBJ | move OBJ to OBJ | pick up OBJ | "
    "put down OBJ | pour OBJ into OBJ | dunk OBJ into OBJ | mix OBJ | go to LOC | eat OBJ | flush OBJ | "
    "focus on OBJ | wait (10 time steps) | wait1 (1 time step) | examine OBJ | task (repeat the task) | inventory\n"
    "Doors must be opened before you go through them. Focus only on what the task names: focusing on anything "
    "else fails the task.\n"
    "Reply in this format:\nThought:\n<your reasoning>\n\nAction:\n<one action>"
)


class SciWorld:
    """AgentGym SciWorld behind the ``MultiTurnEnv`` interface (see the module docstring)."""

    name = "agentgym:sciworld"
    success_score = 100.0
    instructions = INSTRUCTIONS

    def __init__(
        self,
        split: str = "train",
        max_turns: int = 30,
        difficulty: int = 1,
        shaping: Shaping | None = None,
        seed: int = 0,
        backend: str = "scienceworld",
    ) -> None:
        check_split(split)
        if backend != "scienceworld":
            raise ValueError(
                f"agentgym:sciworld backend must be 'scienceworld' (or 'agentgym' via params), got {backend!r}"
            )
        if max_turns < 1:
            raise ValueError(f"max_turns must be >= 1, got {max_turns}")
        check_available()
        self.split, self.max_turns, self.difficulty, self.seed = split, max_turns, difficulty, seed
        self.shaping, self.backend = shaping or Shaping(), backend
        self.engine: Engine | None = None
        self.family = self.task = ""
        self._done, self.turn, self.score = True, 0, 0.0
        self.history: list[str] = []
        self._gold: list[str] | None = None

    # -- episode --------------------------------------------------------------------------------------------------
    def reset(self, task_id: int) -> str:
        kind, self.variation = resolve(self.split, task_id)
        self.task_id, self.family, self.data_idx = task_id, kind.name, data_idx(self.split, task_id)
        self.close()  # an episode left unfinished (e.g. cut at the model's context) still holds its JVM
        self.engine = Engine()
        gold = self.split == "train"
        self.task, look = self.engine.load(kind.name, self.variation, gold=gold)
        self.turn, self.score, self._done, self.history, self._gold_i = 0, 0.0, False, [], 0
        self._gold = self.engine.gold() if gold else None
        return f"{self.task}\n{look}"

    def step(self, reply: str) -> Step:
        if self._done or self.engine is None:
            info = {"action": None, "valid": False, "success": self.score >= 100, "truncated": False, "progress": False}
            return Step("The episode is over; call reset().", 0.0, True, self.score, info)
        self.turn += 1
        action = reply.rsplit("Action:", 1)[1].strip() if "Action:" in reply else ""
        if self._gold is not None and self._gold_i < len(self._gold) and action == self._gold[self._gold_i]:
            self._gold_i += 1
        self.history.append(action)
        obs, new, ended = self.engine.step(action)
        valid = bool(action) and not obs.startswith(INVALID_PREFIXES)
        reward = 0.0 if valid else self.shaping.invalid_penalty
        failed, improved = new < 0, new > max(self.score, 0.0)
        reward += -self.shaping.completion if failed else 0.0
        reward += (self.shaping.progress + (self.shaping.completion if new >= 100 else 0.0)) if improved else 0.0
        self.score = float(new)
        truncated = not ended and self.turn >= self.max_turns
        reward += self.shaping.timeout_penalty if truncated else 0.0
        self._done = ended or truncated
        if self._done:
            self.close()
        info = {"action": action, "valid": valid, "success": new >= 100, "truncated": truncated}
        info.update(progress=improved, turn=self.turn, task=self.family, data_idx=self.data_idx)
        return Step(obs, reward, self._done, self.score, info)

    def close(self) -> None:
        """End the JVM (also called when an episode ends); the next ``reset`` starts a fresh one."""
        engine = getattr(self, "engine", None)  # absent when __init__ stopped early
        if engine is not None:
            engine.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # at interpreter exit py4j may already be gone; its JVM dies with this process anyway
            pass

    # -- expert ---------------------------------------------------------------------------------------------------
    def _load_gold(self) -> list[str]:
        if self._gold is None:
            assert self.engine is not None
            self.engine.load(self.family, self.variation, gold=True)
            for action in self.history:
                self.engine.step(action)
            self._gold, self._gold_i = self.engine.gold(), 0
            for action in self.history:  # how far the actions taken so far already follow the gold path
                if self._gold_i < len(self._gold) and action == self._gold[self._gold_i]:
                    self._gold_i += 1
        return self._gold

    def expert_covers(self) -> bool:
        """Whether the gold path fits in ``max_turns`` (only then can the expert finish in time)."""
        if not self.family or self._done:
            raise RuntimeError("call expert_covers() during an episode")
        return len(self._load_gold()) <= self.max_turns

    def expert_reply(self) -> str:
        """The next gold action (valid as a solution only when followed from reset) as a ReAct reply."""
        if not self.family:
            raise RuntimeError("call reset() before expert_reply()")
        if self._done:
            return react("The episode is over.", "look around")
        gold = self._load_gold()
        if self._gold_i >= len(gold):
            return react("I have done every step of the known solution; I look around.", "look around")
        step = self._gold_i + 1
        return react(
            f"Step {step} of {len(gold)} of the known solution for this {self.family} task.", gold[self._gold_i]
        )
