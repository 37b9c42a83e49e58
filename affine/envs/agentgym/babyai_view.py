"""What AgentGym's BabyAI server shows and offers at a state: its view text and its table of high-level actions.

Why a hand-written module: no library renders minigrid the way the AgentGym server does, and a model trained here is
judged by that server, so this module reproduces its rules (measured against transcripts of the real server in
``../shared/agentgym-real``), quirks included, because each quirk changes a byte of the text or what an action does:

* The view is minigrid's own egocentric observation (``gen_obs()["image"]``, its occlusion), scanned row by row from
  the farthest row, left to right; cells at negative coordinates are skipped, the agent's own cell too.  Objects are
  listed nearest first (Manhattan distance, a stable sort, so ties keep scan order), each sentence followed by two
  spaces.  Walls count as "objects" for the header, so a view with walls but no objects still reads
  ``... several objects: The room has walls around you.``; only an empty view says ``You cannot see any objects``.
* The barrier sentence names the nearest wall or box straight ahead; ``move forward`` is offered unless one is
  adjacent (so it is offered while facing a ball, a key or a closed door, and then does nothing).
* Path finding is a breadth-first search over poses inside a window derived from the view (it includes one row behind
  the agent), where only walls, boxes, lava, balls and keys in the current view block: doors (even locked ones), the
  goal and unseen cells are free.  Its visited set holds popped poses only, so a later discovery of a queued pose
  replaces its parent; :func:`find_path` keeps that, since it decides which of two equally short paths is taken.
* Action names number objects per name in list order, but ``pickup``/``go to`` numbers count only objects with a
  path (an unreachable one reuses the next number, and the error text names the number it would have had); door
  actions number doors in list order; the error for a closed door without a path prints the whole door-count dict.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from minigrid.core.constants import IDX_TO_COLOR, IDX_TO_OBJECT

from affine.envs.agentgym.babyai_search import DROP, FORWARD, LEFT, PICKUP, RIGHT, TOGGLE, VEC, Cell, Pose

_STATES = {0: "open", 1: "closed", 2: "locked"}
_LISTED = ("door", "key", "ball", "box", "goal", "lava", "wall")
_BLOCKING = ("wall", "box", "lava", "ball", "key")  # substrings of a name that make its cell an obstacle
NO_PATH = ", as there is no path leading to it."


@dataclass(frozen=True)
class Thing:
    """One listed cell of the view: its server name (``red ball``, ``blue closed door``, ``wall``) and place."""

    name: str
    cell: Cell
    dist: int


@dataclass
class View:
    """The server's description, its action table (name -> primitive actions, in menu order), the object cell each
    object action is about, and the error text of each action it refuses with a reason."""

    text: str
    acts: dict[str, list[int]]
    targets: dict[str, Cell] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


def _blocks(name: str) -> bool:
    return any(word in name for word in _BLOCKING)


def window(pos: Cell, direction: int, size: int) -> tuple[range, range]:
    """The x and y ranges the server's path search may enter, derived from the view's corner as the server does
    (it spans the view plus one row behind the agent on one axis)."""
    f, r = VEC[direction], VEC[(direction + 1) % 4]
    top = (pos[0] + f[0] * (size - 1) - r[0] * (size // 2), pos[1] + f[1] * (size - 1) - r[1] * (size // 2))
    far = (top[0] + size * (r[0] - f[0]), top[1] + size * (r[1] - f[1]))
    xs = range(far[0], top[0] + 1) if far[0] < top[0] else range(top[0], far[0])
    ys = range(far[1], top[1] + 1) if far[1] < top[1] else range(top[1], far[1])
    return xs, ys


def find_path(start: Pose, goal: Cell, blocked: set[Cell], xs: range, ys: range, arrive: bool) -> list[int] | None:
    """Primitive actions from ``start`` to facing ``goal`` (or onto it with ``arrive``), searched as the server does:
    FIFO over (forward, left, right), visited = popped poses, a queued pose's parent overwritten by later finds."""
    graph: dict[Pose, tuple[Pose, int]] = {}
    popped: set[Pose] = set()
    queue = deque([start])
    while queue:
        pose = queue.popleft()
        popped.add(pose)
        (x, y), d = pose
        if (x, y) == goal if arrive else (goal[0] - x, goal[1] - y) == VEC[d]:
            path = []
            while pose != start:
                pose, act = graph[pose]
                path.append(act)
            return path[::-1]
        for act, nxt in ((FORWARD, ((x + VEC[d][0], y + VEC[d][1]), d)), (LEFT, ((x, y), (d - 1) % 4)),
                         (RIGHT, ((x, y), (d + 1) % 4))):  # fmt: skip
            cell = nxt[0]
            if cell[0] not in xs or cell[1] not in ys or nxt in popped or cell in blocked:
                continue
            queue.append(nxt)
            graph[nxt] = (pose, act)
    return None


def scan(u: Any, image: Any) -> tuple[list[Thing], list[tuple[int, str]]]:
    """The listed cells of the view, nearest first, and the walls/boxes straight ahead as (distance, type)."""
    size, (px, py), d = u.agent_view_size, (int(u.agent_pos[0]), int(u.agent_pos[1])), int(u.agent_dir)
    f, r = VEC[d], VEC[(d + 1) % 4]
    top = (px + f[0] * (size - 1) - r[0] * (size // 2), py + f[1] * (size - 1) - r[1] * (size // 2))
    things, barriers = [], []
    for vj in range(size):
        for vi in range(size):
            x, y = top[0] - f[0] * vj + r[0] * vi, top[1] - f[1] * vj + r[1] * vi
            dist = abs(px - x) + abs(py - y)
            if x < 0 or y < 0 or dist == 0:
                continue
            kind, color, state = (int(v) for v in image[vi, vj])
            kind_name = IDX_TO_OBJECT[kind]
            if kind_name in _LISTED:
                colour = IDX_TO_COLOR[color]
                name = f"{colour} {_STATES[state]} door" if kind_name == "door" else f"{colour} {kind_name}"
                things.append(Thing(name, (x, y), dist))
            rel = (x - px, y - py)
            if kind_name in ("box", "wall") and f[0] * rel[1] - f[1] * rel[0] == 0:
                barriers.append((f[0] * rel[0] + f[1] * rel[1], kind_name))
    things.sort(key=lambda t: t.dist)
    barriers.sort(key=lambda b: b[0])
    return things, barriers


def describe(u: Any, things: list[Thing], barriers: list[tuple[int, str]]) -> str:
    """The server's description: object sentences, the barrier ahead, what the agent carries."""
    (px, py), d = (int(u.agent_pos[0]), int(u.agent_pos[1])), int(u.agent_dir)
    f, r = VEC[d], VEC[(d + 1) % 4]
    if things:
        text, counts = "In front of you in this room, you can see several objects: ", {}
        for t in things:
            if "wall" in t.name:
                continue
            rel = (t.cell[0] - px, t.cell[1] - py)
            ahead, right = f[0] * rel[0] + f[1] * rel[1], r[0] * rel[0] + r[1] * rel[1]
            side = "right" if right > 0 else "left"
            where = f"{ahead} steps in front of you and {abs(right)} steps to your {side}. "
            where = f"right in front of you {ahead} steps away. " if right == 0 else where
            counts[t.name] = counts.get(t.name, 0) + 1
            text += f"There is a {t.name} {counts[t.name]} {where} "
    else:
        text = "You cannot see any objects within sight."
    text += "The room has walls around you. "
    if barriers:
        text += f"You are facing a {barriers[0][1]} {barriers[0][0]} steps away. "
    carry = u.carrying
    return text + (f"You are carrying a {carry.color} {carry.type}." if carry else "You are not carrying anything.")


def _numbered(view: View, verb: str, things: list[Thing], plan: Any, suffix: list[int]) -> None:
    """``pickup``/``go to`` actions: numbers count only the objects that have a path (the server's counting)."""
    count: dict[str, int] = {}
    for t in things:
        path = plan(t.cell, False)
        first = f"{verb} {t.name} 1"
        if path is not None:
            count[t.name] = 1 if first not in view.acts else count[t.name] + 1
            key = f"{verb} {t.name} {count[t.name]}"
            view.acts[key], view.targets[key] = path + suffix, t.cell
        else:
            key = first if first not in view.acts else f"{verb} {t.name} {count[t.name] + 1}"
            view.errors[key] = f"You cannot {key}{NO_PATH}"


def _doors(view: View, things: list[Thing], plan: Any, carry: Any) -> None:
    """``go through``, ``toggle and go through`` and ``toggle``, with the server's error texts."""
    count: dict[str, int] = {}
    for t in things:
        if "door" not in t.name:
            continue
        count[t.name] = count.get(t.name, 0) + 1
        label = f"{t.name} {count[t.name]}"
        through, toggle = f"go through {label}", f"toggle and go through {label}"
        if "open door" in t.name:
            path = plan(t.cell, True)
            if path is None:
                view.errors[through] = f"You cannot {through}{NO_PATH}"
            else:
                view.acts[through], view.targets[through] = path, t.cell
            continue
        if "locked door" in t.name:
            if carry is None or carry.type != "key":
                view.errors[toggle] = f"You cannot {toggle}, as you are not carrying a key."
                continue
            if carry.color != t.name.split(" ")[0]:
                view.errors[toggle] = f"You cannot {toggle}, as the color of the key you are carrying does not match "
                view.errors[toggle] += "the color of door."
                continue
        path = plan(t.cell, False)
        if path is None:
            view.errors[toggle] = f"You cannot toggle and go through {t.name} {count}{NO_PATH}"
        else:
            view.acts[toggle], view.targets[toggle] = path + [TOGGLE, FORWARD], t.cell
            if not path:
                view.acts["toggle"], view.targets["toggle"] = [TOGGLE], t.cell
        if "closed door" in t.name:
            view.errors[through] = f"You cannot {through}, as it is closed. You should toggle it first."


def render(u: Any, image: Any) -> View:
    """The server's view of minigrid env ``u`` whose current observation image is ``image``."""
    things, barriers = scan(u, image)
    pos, d, carry = (int(u.agent_pos[0]), int(u.agent_pos[1])), int(u.agent_dir), u.carrying
    xs, ys = window(pos, d, u.agent_view_size)
    blocked = {t.cell for t in things if _blocks(t.name)}

    def plan(cell: Cell, arrive: bool) -> list[int] | None:
        return find_path((pos, d), cell, blocked, xs, ys, arrive)

    view = View(describe(u, things, barriers), {"turn left": [LEFT], "turn right": [RIGHT]})
    if not barriers or barriers[0][0] > 1:
        view.acts["move forward"] = [FORWARD]
    else:
        view.errors["move forward"] = "There is a barrier in front of you, you can't move forward."
    if carry is None:
        takeable = [t for t in things if not any(w in t.name for w in ("wall", "door", "goal"))]
        _numbered(view, "pickup", takeable, plan, [PICKUP])
        view.errors["drop"] = "You cannot drop the object, as you are not carrying anything."
    else:
        front = (pos[0] + VEC[d][0], pos[1] + VEC[d][1])
        if any(t.cell == front and _blocks(t.name) for t in things):
            view.errors["drop"] = "You cannot drop the object, as there is already an object in front of you."
        else:
            view.acts["drop"] = [DROP]
    _doors(view, things, plan, carry)
    for t in things:
        if "goal" in t.name:
            path = plan(t.cell, True)
            if path is None:
                view.errors["go to goal"] = "You cannot go to the goal" + NO_PATH
            else:
                view.acts["go to goal"], view.targets["go to goal"] = path, t.cell
    _numbered(view, "go to", [t for t in things if "wall" not in t.name and "goal" not in t.name], plan, [])
    view.acts["check available actions"] = []
    return view
