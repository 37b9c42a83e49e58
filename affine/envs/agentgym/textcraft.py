"""TextCraft offline: Minecraft-like crafting from a shipped recipe book, matching AgentGym's TextCraft protocol.

The real env needs Minecraft's recipe JSONs and a server; the crafting rules themselves are simple, so this module
re-creates them from a small recipe book (``data/textcraft_recipes.json``, written by :func:`write_recipes` from the
templates below) and keeps the real action grammar and failure texts, so a model trained here meets the same
observations on the real server.

Rules: ``get <n> <item>`` works only for base items (never the result of a recipe); ``craft <n> <item> using <k> <a>,
<m> <b>`` needs the item's recipe scaled by a whole number of batches (``n`` a multiple of the recipe's output, every
ingredient count scaled alike) and the ingredients in the inventory.  A recipe may name a *generic* ingredient
(``planks``, ``logs``, ``wooden slab``): any member of that tag (``oak planks``, …) satisfies it.  The craft command
must name the concrete item: naming the tag itself matches the recipe, but no inventory ever holds ``planks``, so a
copied generic command fails with "Could not find enough items to craft …" and the agent learns to be specific.

Shaping (recipe: +0.15 per step of progress, +1.0 on completion).  The goal's tree is a set of *requirements*: every
ingredient named in it (a tag counts as one requirement, satisfied by any member) and, for tags, the member the task
resolved them to together with that member's own subtree.  A step is *progress* when a successful ``get``/``craft``
obtains an item that meets a requirement not met before; each requirement pays once, so repeating or splitting
fetches cannot farm reward.  The goal itself pays the completion bonus instead.
"""

from __future__ import annotations

import json
import math
import random
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from affine.envs.agentgym.react import parse_single, react
from affine.envs.base import Shaping, Step, check_split

DATA_PATH = Path(__file__).parent / "data" / "textcraft_recipes.json"

_WOODS = ("oak", "birch", "spruce")
_WOOD_RECIPES = (
    "4 {w} planks = 1 {w} log",
    "6 {w} slab = 3 {w} planks",
    "4 {w} stairs = 6 {w} planks",
    "3 {w} fence = 4 {w} planks, 2 stick",
    "3 {w} door = 6 {w} planks",
    "1 {w} boat = 5 {w} planks",
    "3 {w} sign = 6 {w} planks, 1 stick",
)
_TAG_PATTERNS = {"planks": "{w} planks", "logs": "{w} log", "wooden slab": "{w} slab"}
_RECIPES = """
4 stick = 2 planks
1 crafting table = 4 planks
1 chest = 8 planks
1 bowl = 3 planks
1 barrel = 6 planks, 2 wooden slab
4 torch = 1 coal, 1 stick
1 campfire = 3 stick, 1 coal, 3 logs
3 ladder = 7 stick
1 iron pickaxe = 3 iron ingot, 2 stick
1 iron sword = 2 iron ingot, 1 stick
1 stone pickaxe = 3 cobblestone, 2 stick
1 diamond pickaxe = 3 diamond, 2 stick
2 tripwire hook = 1 iron ingot, 1 stick, 1 planks
1 iron block = 9 iron ingot
1 bucket = 3 iron ingot
1 cauldron = 7 iron ingot
16 iron bars = 6 iron ingot
1 anvil = 3 iron block, 4 iron ingot
1 shears = 2 iron ingot
1 compass = 4 iron ingot, 1 redstone
1 clock = 4 gold ingot, 1 redstone
1 furnace = 8 cobblestone
4 stone bricks = 4 stone
6 stone brick slab = 3 stone bricks
1 blue dye = 1 lapis lazuli
1 red dye = 1 poppy
1 yellow dye = 1 dandelion
3 bone meal = 1 bone
1 white dye = 1 bone meal
2 pink dye = 1 red dye, 1 white dye
2 purple dye = 1 blue dye, 1 red dye
2 orange dye = 1 red dye, 1 yellow dye
2 light blue dye = 1 blue dye, 1 white dye
2 magenta dye = 1 purple dye, 1 pink dye
1 white wool = 4 string
1 blue wool = 1 blue dye, 1 white wool
1 red wool = 1 red dye, 1 white wool
1 purple wool = 1 purple dye, 1 white wool
1 pink wool = 1 pink dye, 1 white wool
3 white carpet = 2 white wool
3 blue carpet = 2 blue wool
3 purple carpet = 2 purple wool
1 white bed = 3 white wool, 3 planks
1 red bed = 3 red wool, 3 planks
1 purple bed = 3 purple wool, 3 planks
1 white banner = 6 white wool, 1 stick
1 painting = 8 stick, 1 white wool
1 item frame = 8 stick, 1 leather
3 paper = 3 sugar cane
1 sugar = 1 sugar cane
1 book = 3 paper, 1 leather
1 bookshelf = 6 planks, 3 book
1 lectern = 4 wooden slab, 1 bookshelf
1 enchanting table = 1 book, 2 diamond, 4 obsidian
1 cake = 3 milk bucket, 2 sugar, 1 egg, 3 wheat
1 pumpkin pie = 1 pumpkin, 1 sugar, 1 egg
1 bread = 3 wheat
1 golden apple = 8 gold ingot, 1 apple
"""


def _parse_recipe_line(line: str) -> dict[str, Any]:
    out, ingredients = line.split(" = ")
    count, result = out.split(" ", 1)
    pairs = [part.strip().split(" ", 1) for part in ingredients.split(",")]
    return {"result": result, "count": int(count), "ingredients": [[name, int(k)] for k, name in pairs]}


def build_recipes() -> dict[str, Any]:
    """The recipe book as JSON-ready data: per-wood templates expanded, then the generic recipes, then the tags."""
    lines = [t.format(w=w) for w in _WOODS for t in _WOOD_RECIPES]
    lines += [line for line in _RECIPES.strip().splitlines() if line.strip()]
    tags = {tag: [pattern.format(w=w) for w in _WOODS] for tag, pattern in _TAG_PATTERNS.items()}
    return {"recipes": [_parse_recipe_line(line) for line in lines], "tags": tags}


def write_recipes(path: Path = DATA_PATH) -> Path:
    """(Re)write the shipped data file; run ``python -m affine.envs.agentgym.textcraft`` after editing the tables."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = build_recipes()  # one recipe per line: readable diffs when the tables change
    recipes = ",\n".join(f"  {json.dumps(r)}" for r in data["recipes"])
    path.write_text(f'{{\n "recipes": [\n{recipes}\n ],\n "tags": {json.dumps(data["tags"])}\n}}\n')
    return path


@dataclass(frozen=True)
class Recipe:
    result: str
    count: int
    ingredients: tuple[tuple[str, int], ...]

    def command(self) -> str:
        using = ", ".join(f"{k} {name}" for name, k in self.ingredients)
        return f"craft {self.count} {self.result} using {using}"


class RecipeBook:
    """Recipes by result, tags, base items, and tree depth (base items 0; a tag is as deep as its deepest member)."""

    def __init__(self, data: dict[str, Any]):
        self.recipes = {
            r["result"]: Recipe(r["result"], r["count"], tuple((n, k) for n, k in r["ingredients"]))
            for r in data["recipes"]
        }
        self.tags: dict[str, tuple[str, ...]] = {t: tuple(m) for t, m in data["tags"].items()}
        names = {n for r in self.recipes.values() for n, _ in r.ingredients} | {
            m for ms in self.tags.values() for m in ms
        }
        self.base = frozenset(n for n in names if n not in self.recipes and n not in self.tags)
        self.tags_of: dict[str, tuple[str, ...]] = {}
        for tag, members in self.tags.items():
            for m in members:
                self.tags_of[m] = self.tags_of.get(m, ()) + (tag,)
        self.depth: dict[str, int] = {}
        for item in sorted(self.recipes):
            self._depth(item)

    def _depth(self, name: str) -> int:
        if name not in self.depth:
            if name in self.tags:
                self.depth[name] = max(self._depth(m) for m in self.tags[name])
            elif name in self.recipes:
                self.depth[name] = 1 + max(self._depth(n) for n, _ in self.recipes[name].ingredients)
            else:
                self.depth[name] = 0
        return self.depth[name]

    def goals(self, split: str, depth: int) -> list[str]:
        """Craftable items of exactly ``depth``; every third (sorted) is held out for eval: splits share no goal."""
        items = sorted(i for i in self.recipes if self.depth[i] == depth)
        return [g for i, g in enumerate(items) if (i % 3 == 1) == (split == "eval")]


@lru_cache(maxsize=1)
def recipe_book() -> RecipeBook:
    return RecipeBook(json.loads(DATA_PATH.read_text()))


@dataclass(frozen=True)
class Task:
    goal: str
    commands: tuple[str, ...]  # the crafting commands shown, tree + distractors, shuffled
    resolved: dict[str, str]  # tag -> the member the tree (and the expert, by default) uses
    requirements: frozenset[str]  # the shaping requirements (see the module docstring)


_GET = re.compile(r"^get (\d+) ([a-z][a-z ]*)$")
_CRAFT = re.compile(r"^craft (\d+) ([a-z][a-z ]*?) using (.+)$")
_AMOUNT = re.compile(r"^(\d+) ([a-z][a-z ]*)$")

INSTRUCTIONS = (
    "You are given a few useful crafting commands and a goal item to craft, as in Minecraft. Each turn you take one "
    "action, and I tell you what happened.\n"
    "Actions:\n"
    "- get <count> <item>: fetch a base item from the environment (crafted items cannot be fetched).\n"
    "- craft <count> <item> using <count> <ingredient>, <count> <ingredient>: craft with the ingredients in your "
    "inventory; counts must follow a listed recipe (or whole multiples of it).\n"
    "- inventory: show what you are carrying.\n"
    "A generic ingredient such as 'planks' can be any kind of planks (e.g. 'oak planks'), but a craft command must "
    "name the exact item you use.\n"
    "Reply in exactly this format, with one action:\n"
    "Thought:\n<your reasoning>\n\nAction:\n<one action>"
)


class TextCraft:
    """AgentGym TextCraft on a procedural task set; deterministic in (split, seed, difficulty, task_id)."""

    name = "agentgym:textcraft"

    def __init__(
        self,
        split: str = "train",
        max_turns: int = 20,
        difficulty: int = 1,
        shaping: Shaping | None = None,
        seed: int = 0,
    ):
        check_split(split)
        self.split, self.max_turns, self.seed, self.difficulty = split, max_turns, seed, difficulty
        self.book = recipe_book()
        self.depth = min(max(1, difficulty), max(self.book.depth.values()))
        self.shaping = shaping or Shaping(progress=0.15, completion=1.0)
        self.instructions = INSTRUCTIONS
        self.task: Task | None = None
        self.inventory: dict[str, int] = {}
        self._met: set[str] = set()
        self._turns, self._done, self._success = 0, False, False

    # ---- tasks -------------------------------------------------------------------------------------------------
    def make_task(self, task_id: int) -> Task:
        rng = random.Random(f"textcraft|{self.split}|{self.seed}|{self.depth}|{task_id}")
        goal = rng.choice(self.book.goals(self.split, self.depth))
        resolved = {tag: rng.choice(members) for tag, members in sorted(self.book.tags.items())}
        tree: list[str] = []
        requirements: set[str] = set()

        def visit(item: str) -> None:
            recipe = self.book.recipes.get(item)
            if recipe is None or recipe.command() in tree:
                return
            tree.append(recipe.command())
            for name, _ in recipe.ingredients:
                requirements.add(name)
                if name in self.book.tags:
                    requirements.add(resolved[name])
                    visit(resolved[name])
                else:
                    visit(name)

        visit(goal)
        others = sorted(r.command() for r in self.book.recipes.values() if r.command() not in tree)
        distractors = rng.sample(others, min(len(others), rng.randint(4, 10)))
        commands = tree + distractors
        rng.shuffle(commands)
        return Task(goal, tuple(commands), resolved, frozenset(requirements))

    def reset(self, task_id: int) -> str:
        self.task = self.make_task(task_id)
        self.inventory, self._met = {}, set()
        self._turns, self._done, self._success = 0, False, False
        return "Crafting commands:\n" + "\n".join(self.task.commands) + f"\n\nGoal: craft {self.task.goal}."

    # ---- stepping ----------------------------------------------------------------------------------------------
    def step(self, reply: str) -> Step:
        if self.task is None:
            raise RuntimeError("call reset() before step()")
        if self._done:
            info = {"action": None, "valid": False, "success": self._success, "truncated": False, "progress": False}
            return Step("The episode is over.", 0.0, True, float(self._success), info)
        self._turns += 1
        parsed = parse_single(reply)
        action = parsed.action.lower() if parsed.action is not None else None
        if action is None:
            observation, valid, progress = parsed.error or "Invalid Action.", False, False
        else:
            observation, valid, progress = self._apply(action)
        reward = self.shaping.progress * progress + (0.0 if valid else self.shaping.invalid_penalty)
        if self._success:
            reward += self.shaping.completion
        truncated = not self._success and self._turns >= self.max_turns
        if truncated:
            reward += self.shaping.timeout_penalty
        self._done = self._success or truncated
        info = {"action": action, "valid": valid, "success": self._success, "truncated": truncated}
        info.update(progress=progress, turn=self._turns)
        return Step(observation, reward, self._done, float(self._success), info)

    def _apply(self, action: str) -> tuple[str, bool, bool]:
        """Apply one action: (observation, valid, progress)."""
        if action == "inventory":
            if not self.inventory:
                return "Inventory: You are not carrying anything.", True, False
            return "Inventory: " + " ".join(f"[{i}] ({n})" for i, n in self.inventory.items()), True, False
        if m := _GET.match(action):
            count, item = int(m.group(1)), m.group(2).strip()
            if count < 1:
                return f"Could not execute {action}", False, False
            if item not in self.book.base:
                return f"Could not find {item}", False, False
            return f"Got {count} {item}", True, self._obtain(item, count)
        if m := _CRAFT.match(action):
            return self._craft(action, int(m.group(1)), m.group(2).strip(), m.group(3))
        return f"Could not execute {action}", False, False

    def _craft(self, action: str, count: int, item: str, using: str) -> tuple[str, bool, bool]:
        recipe = self.book.recipes.get(item)
        if recipe is None:
            return f"Could not find a valid recipe for {item}", False, False
        given: dict[str, int] = {}
        for part in using.split(","):
            m = _AMOUNT.match(part.strip())
            if m is None:
                return f"Could not execute {action}", False, False
            given[m.group(2).strip()] = given.get(m.group(2).strip(), 0) + int(m.group(1))
        batches = count // recipe.count
        if count < 1 or count % recipe.count or len(given) != len(recipe.ingredients):
            return f"Could not find a valid recipe for {item}", False, False
        for name, k in recipe.ingredients:
            match = [g for g in given if g == name or name in self.book.tags_of.get(g, ())]
            if len(match) != 1 or given[match[0]] != k * batches:
                return f"Could not find a valid recipe for {item}", False, False
        if any(self.inventory.get(g, 0) < k for g, k in given.items()):
            return f"Could not find enough items to craft {count} {item}", False, False
        for g, k in given.items():
            self.inventory[g] -= k
            if not self.inventory[g]:
                del self.inventory[g]
        progress = self._obtain(item, count)
        if item == self.task.goal:
            self._success = True
            progress = False  # the goal pays the completion bonus, not progress
        return f"Crafted {count} {item}", True, progress

    def _obtain(self, item: str, count: int) -> bool:
        self.inventory[item] = self.inventory.get(item, 0) + count
        new = ({item, *self.book.tags_of.get(item, ())} & self.task.requirements) - self._met
        self._met |= new
        return bool(new)

    # ---- expert ------------------------------------------------------------------------------------------------
    def expert_reply(self) -> str:
        """Depth-first from the goal over the *current* inventory: fetch or craft the first missing thing."""
        if self.task is None:
            raise RuntimeError("call reset() before expert_reply()")
        if self._success:
            return react("I have crafted the goal item; the task is complete.", "inventory")
        goal = self.task.goal
        thought, action = self._plan(goal, self.inventory.get(goal, 0) + 1, dict(self.inventory), "my goal")
        return react(thought, action)

    def _plan(self, item: str, qty: int, inv: dict[str, int], why: str) -> tuple[str, str] | None:
        """(thought, action) for the first step towards holding ``qty`` of ``item``; ``inv`` is reserved as we go."""
        have = inv.get(item, 0)
        if have >= qty:
            inv[item] = have - qty
            return None
        missing, inv[item] = qty - have, 0
        if item in self.book.base:
            return (
                f"I need {missing} {item} for {why}. It is a base item, so I can get it directly.",
                f"get {missing} {item}",
            )
        recipe = self.book.recipes[item]
        batches = math.ceil(missing / recipe.count)
        parts = []
        for name, k in recipe.ingredients:
            concrete = name
            if name in self.book.tags:
                members = self.book.tags[name]
                concrete = max(members, key=lambda m: (inv.get(m, 0), m == self.task.resolved[name]))
            reason = f"crafting {item}" + (f" (any {name} will do)" if concrete != name else "")
            step = self._plan(concrete, k * batches, inv, reason)
            if step is not None:
                return step
            parts.append(f"{k * batches} {concrete}")
        n = recipe.count * batches
        thought = f"I have everything needed to craft {item} for {why}: {', '.join(parts)}."
        return thought, f"craft {n} {item} using {', '.join(parts)}"


if __name__ == "__main__":
    print(f"wrote {write_recipes()}")
