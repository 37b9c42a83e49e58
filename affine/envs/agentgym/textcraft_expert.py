"""The scripted TextCraft expert: plans over the real engine's crafting tree with the real rules.

Hand-written because no library plans in this engine.  The rules it plans for are the engine's: ``get`` only works
for items no recipe makes (and not for tags), and a craft must give one recipe's exact ingredient counts, so making
more means repeating the recipe, never multiplying it; a tag ingredient (``planks``) is satisfied by any item whose
recipe belongs to that tag (``oak planks``), and the command must name that item.

Each turn the plan is rebuilt from the current inventory, so the expert also recovers from a detour:

1. Per item, the recipe with the fewest actions (gets + crafts, each ingredient counted once; a fixed point over the
   tree, so recipes the engine kept in a cycle are never chosen) and per tag the cheapest member (ties: one already
   held).  Costs fall strictly along chosen edges, so the chosen graph is acyclic.
2. Total demand per item, products before ingredients: what the inventory lacks becomes ``ceil(lack / output)``
   crafts of the item's recipe, which in turn demand its ingredients; for base items the lack is one ``get``.
3. The first action: the next missing base item (fetched in one ``get``), else the deepest craft whose ingredients
   are all held.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from affine.envs.agentgym.textcraft_tasks import item_name, tree

INF = math.inf


@dataclass(frozen=True)
class Action:
    command: str
    thought: str


def _name(ingredient: Any) -> str:
    return ingredient.item_tag.name


def fetchable(name: str) -> bool:
    """What the engine lets ``get`` fetch: a valid item that no recipe makes and that is not a tag."""
    t = tree()
    return not t.is_craftable(name) and not t.is_tag(name) and t.is_valid_item(name)


@lru_cache(maxsize=1)
def members() -> dict[str, tuple[str, ...]]:
    """Tag -> the items the engine accepts for it (their recipe's group is the tag)."""
    out: dict[str, list[str]] = {}
    for item, tag in tree().item_id_to_tag.items():
        out.setdefault(tag, []).append(item)
    return {tag: tuple(items) for tag, items in out.items()}


@lru_cache(maxsize=1)
def costs() -> dict[str, float]:
    """Actions to obtain one unit of every item and tag (1 per get or craft), INF when unobtainable."""
    t = tree()
    names = set(t.itemid_set) | set(t.tag_set) | set(t.itemid_recipes)
    for recipes in t.itemid_recipes.values():
        names |= {_name(i) for r in recipes for i in r.input_items}
    cost = {n: (1.0 if fetchable(n) else INF) for n in names}
    changed = True
    while changed:
        changed = False
        for name in names:
            if name in t.itemid_recipes:
                best = min(1 + sum(cost[_name(i)] for i in r.input_items) for r in t.itemid_recipes[name])
            elif t.is_tag(name):
                best = min((cost[m] for m in members().get(name, ())), default=INF)
            else:
                continue
            if best < cost[name]:
                cost[name], changed = best, True
    return cost


def _cheapest_recipe(item: str) -> int:
    c = costs()
    recipes = tree().itemid_recipes.get(item, [])
    scored = [(1 + sum(c[_name(i)] for i in r.input_items), k) for k, r in enumerate(recipes)]
    return min(scored, default=(INF, -1))[1]


def _member_options(tag: str) -> list[str]:
    return sorted((m for m in members().get(tag, ()) if costs()[m] < INF), key=lambda m: costs()[m])


def _closure(goal: str) -> tuple[list[str], list[str]]:
    """The craftable items and the tags reachable from ``goal`` under any choice of recipes and members."""
    t, items, tags, todo = tree(), set(), set(), [goal]
    while todo:
        item = todo.pop()
        if item in items or fetchable(item) or costs().get(item, INF) == INF:
            continue
        items.add(item)
        for recipe in t.itemid_recipes.get(item, []):
            for ingredient in recipe.input_items:
                if ingredient.item_tag.item_id is None:
                    tags.add(ingredient.item_tag.tag)
                    todo += _member_options(ingredient.item_tag.tag)
                else:
                    todo.append(ingredient.item_tag.item_id)
    return sorted(items), sorted(tags)


Choice = dict[str, Any]  # craftable item -> recipe index; ("tag", tag) -> member item id


@dataclass
class Plan:
    order: list[str]  # postorder: ingredients before products
    steps: dict[str, tuple[Any, list[tuple[str, int]]] | None]  # item -> (recipe, inputs); None = fetched
    crafts: dict[str, int]  # item -> crafts still needed (base items: the count still to get)

    @property
    def actions(self) -> int:
        return sum(n if self.steps[i] is not None else int(n > 0) for i, n in self.crafts.items())


def make_plan(goal: str, choice: Choice, inventory: Mapping[str, int]) -> Plan | None:
    """The plan under ``choice`` from ``inventory``; None when the choice cannot reach the goal."""
    t = tree()
    steps: dict[str, tuple[Any, list[tuple[str, int]]] | None] = {}
    order: list[str] = []

    def visit(item: str, path: frozenset[str]) -> bool:
        if item in steps:
            return True
        if item in path or (not fetchable(item) and item not in choice):
            return False
        if fetchable(item):
            steps[item] = None
        else:
            recipe = t.itemid_recipes[item][choice[item]]
            inputs = [(i.item_tag.item_id or choice.get(("tag", i.item_tag.tag)), i.count) for i in recipe.input_items]
            if any(i is None for i, _ in inputs) or not all(visit(i, path | {item}) for i, _ in inputs):
                return False
            steps[item] = (recipe, inputs)
        order.append(item)
        return True

    if not visit(goal, frozenset()):
        return None
    demand = dict.fromkeys(order, 0)
    demand[goal] = inventory.get(goal, 0) + 1  # one more than held: the goal scores only when crafted
    crafts: dict[str, int] = {}
    for item in reversed(order):  # products first: an item's demand is complete before it is expanded
        lack = max(0, demand[item] - inventory.get(item, 0))
        step = steps[item]
        crafts[item] = lack if step is None else math.ceil(lack / step[0].output_item.count)
        for i, k in step[1] if step is not None else ():
            demand[i] += k * crafts[item]
    return Plan(order, steps, crafts)


@lru_cache(maxsize=1024)
def _best_choice(goal: str) -> tuple[tuple[Any, Any], ...]:
    """Recipes and members for ``goal``: the cheapest per unit, then improved one key at a time while the whole
    plan (from an empty inventory) gets shorter.  Per-unit costs miss recipes that make several items per craft."""
    items, tags = _closure(goal)
    choice: Choice = {item: _cheapest_recipe(item) for item in items}
    choice.update({("tag", tag): _member_options(tag)[0] for tag in tags if _member_options(tag)})
    alternatives = [(i, range(len(tree().itemid_recipes[i]))) for i in items]
    alternatives += [(("tag", g), _member_options(g)) for g in tags]

    def score(c: Choice) -> float:
        plan = make_plan(goal, c, {})
        return INF if plan is None else plan.actions

    best = score(choice)
    for _ in range(4):  # a few passes suffice: each pass tries every single change
        improved = False
        for key, values in alternatives:
            for value in values:
                if value == choice.get(key):
                    continue
                trial = {**choice, key: value}
                if (s := score(trial)) < best:
                    choice, best, improved = trial, s, True
        if not improved:
            break
    return tuple(choice.items())


def next_action(goal: str, inventory: Mapping[str, int]) -> Action | None:
    """The expert's next action towards one ``goal`` (item id) from ``inventory`` (item id -> count); None if the
    goal cannot be obtained at all."""
    plan = make_plan(goal, dict(_best_choice(goal)), inventory)
    if plan is None:
        return None
    for item in plan.order:
        if plan.steps[item] is None and plan.crafts[item]:
            n, why = plan.crafts[item], "the goal" if item == goal else "the recipes I will use"
            return Action(f"get {n} {item_name(item)}", f"I need {n} {item_name(item)} for {why}; it is a base item.")
    for item in plan.order:
        step = plan.steps[item]
        if step is not None and plan.crafts[item]:
            recipe, inputs = step
            left = plan.crafts[item]
            more = f" ({left - 1} more times after this)" if left > 1 else ""
            what = "my goal" if item == goal else f"an ingredient I need, {item_name(item)}"
            thought = f"I hold the ingredients for {what}. I craft it with the listed recipe{more}."
            return Action(command(item, recipe, inputs), thought)
    return None


def command(item: str, recipe: Any, inputs: list[tuple[str, int]]) -> str:
    using = ", ".join(f"{k} {item_name(i)}" for i, k in inputs)
    return f"craft {recipe.output_item.count} {item_name(item)} using {using}"


def fewest_actions(goal: str, limit: int = 20000) -> int | None:
    """The shortest plan from an empty inventory over *every* combination of recipe and tag-member choices: a lower
    bound on the turns any agent needs (one recipe per item; None when there are more than ``limit`` combinations)."""
    items, tags = _closure(goal)
    keys = [(i, range(len(tree().itemid_recipes[i]))) for i in items] + [(("tag", g), _member_options(g)) for g in tags]
    if not keys or any(not values for _, values in keys) or math.prod(len(v) for _, v in keys) > limit:
        return None
    best = None
    for values in itertools.product(*(v for _, v in keys)):
        plan = make_plan(goal, dict(zip((k for k, _ in keys), values, strict=True)), {})
        if plan is not None and (best is None or plan.actions < best):
            best = plan.actions
    return best
