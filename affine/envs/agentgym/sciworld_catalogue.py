"""SciWorld's task families as data: their parameter grids (the split cuts these) and the world each lays out.

Kept apart from the rules (:mod:`affine.envs.agentgym.sciworld_world`) so adding a family or an object touches one
file, and the rules never branch on a table they do not own.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from affine.envs.agentgym.sciworld_world import World

NO_MATCH = "No known action matches that input."
AMBIENT = 20.0
ROOMS = ("hallway", "kitchen", "bedroom", "living room", "art studio", "workshop", "greenhouse", "outside")
_LINKS = [("hallway", r) for r in ROOMS[1:7]] + [("kitchen", "outside"), ("greenhouse", "outside")]
DOORS = [frozenset(link) for link in _LINKS]  # a list, not a set: path finding must not depend on hash order
FAMILIES = tuple(
    "boil melt freeze test-conductivity find-living-thing find-non-living-thing find-plant find-animal "
    "chemistry-mix-paint-secondary-color".split()
)
SUBSTANCES = {  # family -> "name/melting point/boiling point/start temperature" entries
    "boil": "water/0/100/20,milk/-1/100/20,orange juice/-2/100/20,apple juice/-2/100/20",
    "melt": "ice/0/100/-15,chocolate/35/400/20,butter/32/400/20,wax/60/400/20",
    "freeze": "water/0/100/20,milk/-1/100/20,orange juice/-2/100/20,lemonade/-2/100/20",
}


def _substance(family: str, index: int) -> tuple[str, tuple[str, str, str], float, float, float]:
    """(name, (solid, liquid, gas) names, melting point, boiling point, start temperature) of a family's substance."""
    name, *nums = SUBSTANCES[family].split(",")[index].split("/")
    mp, bp, temp = map(float, nums)
    if name in ("water", "ice"):
        return name, ("ice", "water", "steam"), mp, bp, temp
    solid = temp < mp
    return (
        name,
        (name if solid else f"frozen {name}", f"liquid {name}" if solid else name, f"{name} vapor"),
        mp,
        bp,
        temp,
    )


_CONTAINERS = ["metal pot", "tin cup", "glass jar", "ceramic cup", "steel bowl"]
_CONDUCTIVE = ["metal fork", "steel spoon", "copper wire", "aluminum foil", "iron nail", "brass key"]
_INSULATING = ["plastic fork", "wooden spoon", "rubber band", "glass marble", "paper cup", "ceramic plate"]
_COLOURS = ["red", "green", "blue", "orange", "yellow", "purple"]
_ANIMALS = ["frog", "turtle", "chipmunk", "parrot", "rabbit", "snail", "beetle", "hamster"]
_PLANTS = ["rose", "fern", "cactus", "pea plant", "tomato plant", "sunflower"]
_NONLIVING = ["book", "baseball", "pencil", "tennis ball", "toy car", "candle", "key", "sock"]
MIXES = {
    "green": ("blue paint", "yellow paint"),
    "orange": ("red paint", "yellow paint"),
    "purple": ("blue paint", "red paint"),
}
FIND = {
    "find-living-thing": ("living thing", ("animal", "plant")),
    "find-non-living-thing": ("non-living thing", ("object", "fixed")),
    "find-plant": ("plant", ("plant",)),
    "find-animal": ("animal", ("animal",)),
}


class Invalid(Exception):
    """An action the world rejects: its message is the feedback, the turn is spent, nothing changes."""


@dataclass
class Thing:
    """One object of the world; a single flat type (rather than a class per kind) keeps the rules in one place."""

    key: str
    loc: str  # a room, "inventory", or the key of the thing holding it
    kind: str = "object"  # object | fixed | substance | animal | plant
    holds: bool = False
    openable: bool = False
    is_open: bool = True
    switch: bool = False
    active: bool = False
    heat: float = 0.0  # degrees per tick given to what it holds while working
    conductive: bool = False
    phases: tuple[str, str, str] | None = None
    mp: float = 0.0
    bp: float = 100.0
    temp: float = AMBIENT

    @property
    def phase(self) -> int:
        return 0 if self.temp < self.mp else 2 if self.temp >= self.bp else 1

    @property
    def label(self) -> str:
        return self.phases[self.phase] if self.phases else self.key

    @property
    def working(self) -> bool:
        return (not self.switch or self.active) and (not self.openable or not self.is_open)


def article(name: str) -> str:
    return f"an {name}" if name[0] in "aeiou" else f"a {name}"


def target_pool(family: str) -> list[str]:
    kinds = FIND[family][1]
    return (
        (_ANIMALS if "animal" in kinds else [])
        + (_PLANTS if "plant" in kinds else [])
        + (_NONLIVING if "object" in kinds else [])
    )


def combos(family: str) -> list[tuple[Any, ...]]:
    """Every parameter combination of ``family`` in a fixed order (the env makes every 4th one eval-only)."""
    if family in SUBSTANCES:
        return list(itertools.product(range(4), _CONTAINERS))
    if family == "test-conductivity":
        return list(itertools.product(_CONDUCTIVE + _INSULATING, itertools.permutations(_COLOURS, 2)))
    if family in FIND:
        return list(itertools.product(target_pool(family), _COLOURS))
    return list(itertools.product(sorted(MIXES), itertools.permutations(["red", "blue", "yellow"])))


def populate(world: World, rng: random.Random) -> None:
    """Lay out ``world.family``'s task ``world.combo``: rooms, fixtures, the task's objects and text, clutter."""
    world.things = {}
    world.open_doors = set()
    world.edges = set()
    world.focus = None
    world.failed = world.reached = world.bulb_seen = False
    hard = world.difficulty >= 2
    world.room = rng.choice(ROOMS[:7]) if hard else "hallway"
    fixed = {"kind": "fixed"}
    world.add("stove", "kitchen", holds=True, switch=True, heat=25, **fixed)
    world.add("freezer", "kitchen", holds=True, openable=True, is_open=False, heat=-10, **fixed)
    world.add("cupboard", "kitchen", holds=True, openable=True, is_open=False, **fixed)
    world.add("kitchen table", "kitchen", holds=True, **fixed)
    world.add("thermometer", "kitchen", conductive=True)
    for key, room in [
        ("picture", "hallway"),
        ("bed", "bedroom"),
        ("couch", "living room"),
        ("easel", "art studio"),
    ]:
        world.add(key, room, **fixed)
    world.add("workbench", "workshop", holds=True, **fixed)
    world.add("battery", "workshop", conductive=True, **fixed)
    world.add("light bulb", "workshop", conductive=True, **fixed)
    world.add("shovel", "greenhouse", conductive=True)
    world.add("mixing bowl", "art studio", holds=True)
    world.add("jug", "art studio", holds=True)
    family, combo = world.family, world.combo
    clutter, world.target = list(_NONLIVING), ""
    if family in SUBSTANCES:
        key, phases, mp, bp, temp = _substance(family, combo[0])
        where = "freezer" if key == "ice" else rng.choice(["cupboard", *ROOMS[1:]]) if hard else "kitchen table"
        world.add(combo[1], where, holds=True)
        world.add(key, combo[1], kind="substance", phases=phases, mp=mp, bp=bp, temp=temp)
        world.target, world.device = key, "freezer" if family == "freeze" else "stove"
        world.task = (
            f"Your task is to {family} {key}. First, focus on the substance. Then, take actions that will "
            "cause it to change its state of matter."
        )
    elif family == "test-conductivity":
        obj, (yes, no) = combo
        room = rng.choice(ROOMS) if hard else "workshop"
        world.add(obj, room, conductive=obj in _CONDUCTIVE)
        world.add(f"{yes} box", "workshop", holds=True)
        world.add(f"{no} box", "workshop", holds=True)
        world.target, world.boxes = (
            obj,
            (f"{yes} box", f"{no} box") if obj in _CONDUCTIVE else (f"{no} box", f"{yes} box"),
        )
        world.task = (
            f"Your task is to determine if {obj} is electrically conductive. The {obj} is located around "
            f"the {room}. First, focus on the {obj}. If it is electrically conductive, place it in the "
            f"{yes} box. If it is electrically nonconductive, place it in the {no} box."
        )
    elif family in FIND:
        what, kinds = FIND[family]
        first, colour = combo
        targets = [first] + rng.sample([n for n in target_pool(family) if n != first], rng.randint(0, 1))
        others = [n for n in _ANIMALS + _PLANTS + _NONLIVING if n not in target_pool(family)]
        for name in targets + rng.sample(others, 1 + world.difficulty):
            kind = "animal" if name in _ANIMALS else "plant" if name in _PLANTS else "object"
            rooms = {"animal": ROOMS[2:] if hard else ["outside", "greenhouse"], "plant": ["greenhouse", "outside"]}
            world.add(name, rng.choice(rooms.get(kind, ROOMS)), kind=kind)
        box_room = rng.choice(["kitchen", "bedroom", "living room", "workshop"])
        world.box, world.kinds = world.add(f"{colour} box", box_room, holds=True).key, kinds
        world.task = (
            f"Your task is to find a(n) {what}. First, focus on the thing. Then, move it to the {colour} "
            f"box in the {box_room}."
        )
        clutter = []
    else:
        colour, order = combo
        for i, paint in enumerate(order, 1):
            world.add(f"wood cup {i}", "art studio", holds=True)
            world.add(f"{paint} paint", f"wood cup {i}", kind="substance")
        world.target, world.need = f"{colour} paint", MIXES[colour]
        world.origin = {p: world.things[p].loc for p in world.need}
        world.task = (
            f"Your task is to use chemistry to create {colour} paint. When you are done, focus on the {colour} paint."
        )
    free = [n for n in clutter if n not in world.things]
    for name in rng.sample(free, min(len(free), 2 * world.difficulty - 1)):
        world.add(name, rng.choice(ROOMS))
