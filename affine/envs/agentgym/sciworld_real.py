"""The real ScienceWorld backend (optional, Java) behind the simulator's episode interface."""

from __future__ import annotations


class RealScienceWorld:
    """The real ScienceWorld (``pip install scienceworld``, Java >= 1.8), mapped like AgentGym's server.

    AgentGym drops 7 long task types; of the remaining 23 we take ``task_id % 23`` as the task and the
    ``task_id // 23``-th variation of ScienceWorld's own train (or test, for ``eval``) variation list, so the splits are
    disjoint as in ScienceWorld.  The expert replays the env's gold action path (valid only when followed from reset).
    """

    EXCLUDED = {"5-1", "5-2", "9-1", "9-2", "9-3", "10-1", "10-2"}
    INVALID = ("No known action matches that input.", "Unknown action.")

    def __init__(self) -> None:
        from scienceworld import ScienceWorldEnv  # optional dependency, imported only when asked for

        self.env = ScienceWorldEnv("", envStepLimit=10_000)
        self.tasks = [name for key, name in self.env.tasks.items() if key not in self.EXCLUDED]
        self._variations: dict[tuple[str, str], list[int]] = {}
        self.gold: list[str] = []

    def reset(self, split: str, task_id: int) -> tuple[str, str, str]:
        name = self.tasks[task_id % len(self.tasks)]
        if (name, split) not in self._variations:
            self.env.load(name, 0, "")
            var = self.env.get_variations_train() if split == "train" else self.env.get_variations_test()
            self._variations[(name, split)] = list(var)
        variations = self._variations[(name, split)]
        self.env.load(name, variations[(task_id // len(self.tasks)) % len(variations)], "", generateGoldPath=True)
        self.gold, self.gold_i = list(self.env.get_gold_action_sequence()), 0
        task = self.env.get_task_description()
        obs, _, _, _ = self.env.step("look around")
        return name, task, f"{task}\n{obs}"

    def step(self, action: str) -> tuple[str, bool, float]:
        if self.gold_i < len(self.gold) and action == self.gold[self.gold_i]:
            self.gold_i += 1
        obs, _, _, info = self.env.step(action)
        return obs, not obs.startswith(self.INVALID), float(info["score"])

    def next_gold(self) -> str:
        return self.gold[self.gold_i] if self.gold_i < len(self.gold) else "look around"

    def close(self) -> None:
        self.env.close()
