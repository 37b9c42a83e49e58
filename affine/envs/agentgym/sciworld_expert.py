"""The scripted SciWorld expert: the next (thought, action) planned from the simulator's full state.

SFT data and the expert-success benchmark need a teacher that solves every family within the turn budget; it reads
the world directly (not the observation text), so it lives apart from the rules the agent plays by.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from affine.envs.agentgym.sciworld_catalogue import DOORS, FIND, SUBSTANCES

if TYPE_CHECKING:
    from affine.envs.agentgym.sciworld_world import World


def _route(world: World, dest: str) -> tuple[str, str] | None:
    if world.room == dest:
        return None
    prev: dict[str, str] = {world.room: world.room}
    queue = deque([world.room])
    while queue:
        node = queue.popleft()
        for door in DOORS:
            if node in door and (nxt := next(iter(door - {node}))) not in prev:
                prev[nxt] = node
                queue.append(nxt)
    step = dest
    while prev[step] != world.room:
        step = prev[step]
    if frozenset((world.room, step)) not in world.open_doors:
        return (
            f"I need to get to the {dest}; the door to the {step} is closed, so I open it.",
            f"open door to {step}",
        )
    return f"I need to get to the {dest}, so I go to the {step}.", f"go to {step}"


def _reach(world: World, key: str) -> tuple[str, str] | None:
    if (r := _route(world, world.room_of(key))) is not None:
        return r
    loc, closed = world.things[key].loc, None
    while loc in world.things:
        closed = loc if not world.things[loc].is_open else closed
        loc = world.things[loc].loc
    return (
        (f"The {world.things[key].label} is inside the closed {closed}; I open it.", f"open {closed}")
        if closed
        else None
    )


def plan(world: World) -> tuple[str, str]:
    """The next step towards the task of ``world.family``, as (thought, action)."""
    th, f = world.things, world.family
    if f in SUBSTANCES:
        s, dev = th[world.target], th[world.device]
        if world.focus != s.key:
            return _reach(world, s.key) or (
                f"The {s.label} is here; the task says to focus on it first.",
                f"focus on {s.label}",
            )
        cup = s.loc
        if not world.inside(s.key, dev.key):
            if th[cup].loc != "inventory":
                return _reach(world, cup) or (f"I pick up the {cup} holding the {s.label}.", f"pick up {cup}")
            if (r := _route(world, "kitchen")) is not None:
                return r
            if not dev.is_open:
                return f"I open the {dev.key} to put the {cup} in it.", f"open {dev.key}"
            return (
                f"The {dev.key} will change the {s.label}'s temperature, so I put the {cup} there.",
                f"move {cup} to {dev.key}",
            )
        if not dev.working:
            return (
                (f"I turn on the {dev.key}.", f"activate {dev.key}")
                if dev.switch
                else (f"I close the {dev.key} so it keeps cold.", f"close {dev.key}")
            )
        return f"The {s.label} is at {round(s.temp)} degrees; I wait for its state to change.", "wait"
    if f == "test-conductivity":
        o = th[world.target]
        if world.focus != o.key:
            return _reach(world, o.key) or (
                f"I found the {o.key}; the task says to focus on it first.",
                f"focus on {o.key}",
            )
        if o.loc != "inventory" and world.room_of(o.key) != "workshop":
            return _reach(world, o.key) or (f"I take the {o.key} to the workshop.", f"pick up {o.key}")
        if (r := _route(world, "workshop")) is not None:
            return r
        for a, b in world.circuit():
            if frozenset((a, b)) not in world.edges:
                return f"I build a circuit through the {o.key}: {a} to {b}.", f"connect {a} to {b}"
        if not world.bulb_seen:
            return "The circuit is closed; I check whether the light bulb is on.", "look at light bulb"
        state = "on, so it conducts" if o.conductive else "off, so it does not conduct"
        return (
            f"The light bulb is {state}; the {o.key} goes in the {world.boxes[0]}.",
            f"move {o.key} to {world.boxes[0]}",
        )
    if f in FIND:
        options = [
            t for t in th.values() if t.kind in world.kinds and t.kind != "fixed" and world.box not in (t.key, t.loc)
        ]
        if world.focus is None and not options:
            return "Nothing I can still move fits the task; I look around.", "look around"
        key = world.focus or min(options, key=lambda t: (_distance(world, world.room_of(t.key)), t.key)).key
        if world.focus is None:
            return _reach(world, key) or (f"The {key} is a {FIND[f][0]}; I focus on it.", f"focus on {key}")
        if th[key].loc not in ("inventory", world.box):
            return _reach(world, key) or (f"I pick up the {key}.", f"pick up {key}")
        return _reach(world, world.box) or (f"I put the {key} in the {world.box}.", f"move {key} to {world.box}")
    if (r := _route(world, "art studio")) is not None:
        return r
    for p in world.need:
        if p in th and th[p].loc != "mixing bowl":
            return (
                f"{world.target.capitalize()} is made from {' and '.join(world.need)}; I add the {p}.",
                f"pour {p} into mixing bowl",
            )
    if world.target not in th:
        return "Both paints are in the bowl; I mix them.", "mix mixing bowl"
    return f"I made {world.target}; the task says to focus on it.", f"focus on {world.target}"


def _distance(world: World, room: str) -> int:
    seen, frontier, d = {world.room}, [world.room], 0
    while room not in seen:
        frontier = [n for r in frontier for door in DOORS if r in door for n in door - {r} if n not in seen]
        seen.update(frontier)
        d += 1
    return d
