"""SciWorld: a fast offline simulator of a few ScienceWorld task families, plus an optional real-ScienceWorld backend.

The real env (``scienceworld`` pip package, Java) is slow to start and has no scripted expert that fits 30 turns, so
RL and SFT data default to this simulator; ``backend="scienceworld"`` drives the real env behind the same interface
for evaluation where Java is present.  What the simulator keeps from the real env: the action grammar, the first
observation (task description + ``look around``), the room/door world (doors start closed, you must open them), the
0..100 progress score with partial credit, ``-100`` and episode end on a wrong ``focus on`` (or the wrong answer box),
success at 100, and the real feedback for unknown input (``No known action matches that input.``).

Families (real ScienceWorld task names): ``boil``, ``melt``, ``freeze`` (heat on the stove / cool in the closed
freezer; 1 tick per action, ``wait`` = 10 ticks, ``wait1`` = 1), ``test-conductivity`` (a simplified circuit: connect
battery, the object and the light bulb in a loop; the bulb lights iff the object conducts), ``find-living-thing``,
``find-non-living-thing``, ``find-plant``, ``find-animal`` and ``chemistry-mix-paint-secondary-color``.

Splits: each family enumerates its key parameters (substance x container, object x box colours, target x box colour,
colour x cup order); every 4th combination is eval-only, so train and eval tasks never coincide (like ScienceWorld's
own variation splits, eval holds unseen combinations).  Shaping: +``progress`` on each step that raises the score,
+``completion`` at 100, ``-completion`` on failure (Affine maps -100..100 symmetrically, so a failure mirrors success).
"""

from __future__ import annotations

import itertools
import random
import re
from collections import deque
from dataclasses import dataclass
from typing import Any

from affine.envs.agentgym.react import parse_last, react
from affine.envs.base import Shaping, Step

NO_MATCH = "No known action matches that input."
AMBIENT = 20.0
ROOMS = ("hallway", "kitchen", "bedroom", "living room", "art studio", "workshop", "greenhouse", "outside")
_LINKS = [("hallway", r) for r in ROOMS[1:7]] + [("kitchen", "outside"), ("greenhouse", "outside")]
DOORS = [frozenset(link) for link in _LINKS]  # a list, not a set: path finding must not depend on hash order
FAMILIES = tuple(
    "boil melt freeze test-conductivity find-living-thing find-non-living-thing find-plant find-animal "
    "chemistry-mix-paint-secondary-color".split()
)
_SUBSTANCES = {  # family -> "name/melting point/boiling point/start temperature" entries
    "boil": "water/0/100/20,milk/-1/100/20,orange juice/-2/100/20,apple juice/-2/100/20",
    "melt": "ice/0/100/-15,chocolate/35/400/20,butter/32/400/20,wax/60/400/20",
    "freeze": "water/0/100/20,milk/-1/100/20,orange juice/-2/100/20,lemonade/-2/100/20",
}


def _substance(family: str, index: int) -> tuple[str, tuple[str, str, str], float, float, float]:
    """(name, (solid, liquid, gas) names, melting point, boiling point, start temperature) of a family's substance."""
    name, *nums = _SUBSTANCES[family].split(",")[index].split("/")
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
_MIXES = {
    "green": ("blue paint", "yellow paint"),
    "orange": ("red paint", "yellow paint"),
    "purple": ("blue paint", "red paint"),
}
_FIND = {
    "find-living-thing": ("living thing", ("animal", "plant")),
    "find-non-living-thing": ("non-living thing", ("object", "fixed")),
    "find-plant": ("plant", ("plant",)),
    "find-animal": ("animal", ("animal",)),
}


class _Invalid(Exception):
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


def _a(name: str) -> str:
    return f"an {name}" if name[0] in "aeiou" else f"a {name}"


class SciWorld:
    """AgentGym SciWorld behind the ``MultiTurnEnv`` interface (see the module docstring)."""

    name = "agentgym:sciworld"
    success_score = 100.0
    instructions = (
        "You are an agent in a science lab world. Each turn you get an observation and reply with one action that "
        "brings you closer to finishing the task.\nActions: open/close OBJ, activate/deactivate OBJ, "
        "connect OBJ to OBJ, disconnect OBJ, use OBJ [on OBJ], look around, look at OBJ, look in OBJ, read OBJ, "
        "move OBJ to OBJ, pick up OBJ, put down OBJ, pour OBJ into OBJ, dunk OBJ into OBJ, mix OBJ, go to LOC, "
        "eat OBJ, focus on OBJ, wait (10 steps), wait1 (1 step), examine OBJ, task (repeat the task), inventory.\n"
        "Focus only on the object the task names: focusing on a wrong one fails the task. Doors between rooms "
        "must be opened before you can go through them.\n"
        "Reply in this format:\nThought:\n<your reasoning>\n\nAction:\n<one action>"
    )
    _GRAMMAR = [  # "regex => handler" rules, tried in order against the normalised command
        tuple(rule.split(" => "))
        for rule in (
            "look around|look => _look; (?:look at|examine) (.+) => _look_at; look in (.+) => _look_in; "
            "inventory => _inventory; task => _task; wait ?1 => _wait1; wait => _wait; "
            "(open|close) (.+) => _open_close; (activate|deactivate) (.+) => _switch; go to (.+) => _go; "
            "(?:pick up|take) (.+) => _pick; "
            "put down (.+) => _put_down; (?:move|put) (.+?) (?:to|in|into|on) (.+) => _move; "
            "(?:pour|dunk) (.+?) (?:into|in) (.+) => _pour; mix (.+) => _mix; connect (.+?) to (.+) => _connect; "
            "disconnect (.+) => _disconnect; use (.+?) on (.+) => _use; focus on (.+) => _focus; read (.+) => _read; "
            "eat (.+) => _eat"
        ).split("; ")
    ]

    def __init__(
        self,
        split: str = "train",
        max_turns: int = 30,
        difficulty: int = 1,
        shaping: Shaping | None = None,
        seed: int = 0,
        backend: str = "sim",
    ) -> None:
        if split not in ("train", "eval") or backend not in ("sim", "scienceworld"):
            raise ValueError(f"bad split {split!r} or backend {backend!r}")
        self.split, self.max_turns, self.difficulty, self.seed = split, max_turns, max(1, difficulty), seed
        self.shaping, self.backend = shaping or Shaping(), backend
        self.fail_penalty = -self.shaping.completion
        self._real = RealScienceWorld() if backend == "scienceworld" else None
        self._done, self.turn, self.score, self.family = True, 0, 0.0, ""

    # -- episode --------------------------------------------------------------------------------------------------
    def reset(self, task_id: int) -> str:
        self.task_id, self.turn, self.score, self._done = task_id, 0, 0.0, False
        if self._real is not None:
            self.family, self.task, obs = self._real.reset(self.split, task_id)
            return obs
        self.family = FAMILIES[task_id % len(FAMILIES)]
        rng = random.Random(f"sciworld:{self.seed}:{self.split}:{task_id}:{self.difficulty}")
        combos = self._combos(self.family)
        pool = [c for i, c in enumerate(combos) if (i % 4 == 3) == (self.split == "eval")]
        self.combo = pool[(task_id // len(FAMILIES)) % len(pool)]
        self._build(rng)
        return f"{self.task}\n{self._look()}"

    def step(self, reply: str) -> Step:
        if self._done:
            info = {"action": None, "valid": False, "success": self.score >= 100, "truncated": False, "progress": False}
            return Step("The episode is over; call reset().", 0.0, True, self.score, info)
        self.turn += 1
        parsed = parse_last(reply)
        action = parsed.action
        if action is None:
            obs, valid, new = parsed.error or "Invalid Action.", False, self.score
        elif self._real is not None:
            obs, valid, new = self._real.step(action)
        else:
            obs, valid = self._act(action)
            progress = float(self._progress())  # may set ``failed``
            new = -100.0 if self.failed else max(self.score, progress)
        reward = 0.0 if valid else self.shaping.invalid_penalty
        failed, improved = new < 0, new > max(self.score, 0.0)
        reward += self.fail_penalty if failed else 0.0
        reward += (self.shaping.progress + (self.shaping.completion if new >= 100 else 0.0)) if improved else 0.0
        self.score = new
        truncated = not (failed or new >= 100) and self.turn >= self.max_turns
        reward += self.shaping.timeout_penalty if truncated else 0.0
        self._done = failed or new >= 100 or truncated
        info = {"action": action, "valid": valid, "success": new >= 100, "truncated": truncated}
        info.update(progress=improved, turn=self.turn, task=self.family)
        return Step(obs, reward, self._done, self.score, info)

    def close(self) -> None:
        if self._real is not None:
            self._real.close()

    # -- world building -------------------------------------------------------------------------------------------
    @staticmethod
    def _combos(family: str) -> list[tuple[Any, ...]]:
        if family in _SUBSTANCES:
            return list(itertools.product(range(4), _CONTAINERS))
        if family == "test-conductivity":
            return list(itertools.product(_CONDUCTIVE + _INSULATING, itertools.permutations(_COLOURS, 2)))
        if family in _FIND:
            return list(itertools.product(_target_pool(family), _COLOURS))
        return list(itertools.product(sorted(_MIXES), itertools.permutations(["red", "blue", "yellow"])))

    def _add(self, key: str, loc: str, **kw: Any) -> Thing:
        self.things[key] = Thing(key, loc, **kw)
        return self.things[key]

    def _build(self, rng: random.Random) -> None:
        self.things: dict[str, Thing] = {}
        self.open_doors: set[frozenset[str]] = set()
        self.edges: set[frozenset[str]] = set()
        self.focus: str | None = None
        self.failed = self.reached = self.bulb_seen = False
        hard = self.difficulty >= 2
        self.room = rng.choice(ROOMS[:7]) if hard else "hallway"
        fixed = {"kind": "fixed"}
        self._add("stove", "kitchen", holds=True, switch=True, heat=25, **fixed)
        self._add("freezer", "kitchen", holds=True, openable=True, is_open=False, heat=-10, **fixed)
        self._add("cupboard", "kitchen", holds=True, openable=True, is_open=False, **fixed)
        self._add("kitchen table", "kitchen", holds=True, **fixed)
        self._add("thermometer", "kitchen", conductive=True)
        for key, room in [
            ("picture", "hallway"),
            ("bed", "bedroom"),
            ("couch", "living room"),
            ("easel", "art studio"),
        ]:
            self._add(key, room, **fixed)
        self._add("workbench", "workshop", holds=True, **fixed)
        self._add("battery", "workshop", conductive=True, **fixed)
        self._add("light bulb", "workshop", conductive=True, **fixed)
        self._add("shovel", "greenhouse", conductive=True)
        self._add("mixing bowl", "art studio", holds=True)
        self._add("jug", "art studio", holds=True)
        family, combo = self.family, self.combo
        clutter, self.target = list(_NONLIVING), ""
        if family in _SUBSTANCES:
            key, phases, mp, bp, temp = _substance(family, combo[0])
            where = "freezer" if key == "ice" else rng.choice(["cupboard", *ROOMS[1:]]) if hard else "kitchen table"
            self._add(combo[1], where, holds=True)
            self._add(key, combo[1], kind="substance", phases=phases, mp=mp, bp=bp, temp=temp)
            self.target, self.device = key, "freezer" if family == "freeze" else "stove"
            self.task = (
                f"Your task is to {family} {key}. First, focus on the substance. Then, take actions that will "
                "cause it to change its state of matter."
            )
        elif family == "test-conductivity":
            obj, (yes, no) = combo
            room = rng.choice(ROOMS) if hard else "workshop"
            self._add(obj, room, conductive=obj in _CONDUCTIVE)
            self._add(f"{yes} box", "workshop", holds=True)
            self._add(f"{no} box", "workshop", holds=True)
            self.target, self.boxes = (
                obj,
                (f"{yes} box", f"{no} box") if obj in _CONDUCTIVE else (f"{no} box", f"{yes} box"),
            )
            self.task = (
                f"Your task is to determine if {obj} is electrically conductive. The {obj} is located around "
                f"the {room}. First, focus on the {obj}. If it is electrically conductive, place it in the "
                f"{yes} box. If it is electrically nonconductive, place it in the {no} box."
            )
        elif family in _FIND:
            what, kinds = _FIND[family]
            first, colour = combo
            targets = [first] + rng.sample([n for n in _target_pool(family) if n != first], rng.randint(0, 1))
            others = [n for n in _ANIMALS + _PLANTS + _NONLIVING if n not in _target_pool(family)]
            for name in targets + rng.sample(others, 1 + self.difficulty):
                kind = "animal" if name in _ANIMALS else "plant" if name in _PLANTS else "object"
                rooms = {"animal": ROOMS[2:] if hard else ["outside", "greenhouse"], "plant": ["greenhouse", "outside"]}
                self._add(name, rng.choice(rooms.get(kind, ROOMS)), kind=kind)
            box_room = rng.choice(["kitchen", "bedroom", "living room", "workshop"])
            self.box, self.kinds = self._add(f"{colour} box", box_room, holds=True).key, kinds
            self.task = (
                f"Your task is to find a(n) {what}. First, focus on the thing. Then, move it to the {colour} "
                f"box in the {box_room}."
            )
            clutter = []
        else:
            colour, order = combo
            for i, paint in enumerate(order, 1):
                self._add(f"wood cup {i}", "art studio", holds=True)
                self._add(f"{paint} paint", f"wood cup {i}", kind="substance")
            self.target, self.need = f"{colour} paint", _MIXES[colour]
            self.origin = {p: self.things[p].loc for p in self.need}
            self.task = (
                f"Your task is to use chemistry to create {colour} paint. When you are done, focus on the "
                f"{colour} paint."
            )
        free = [n for n in clutter if n not in self.things]
        for name in rng.sample(free, min(len(free), 2 * self.difficulty - 1)):
            self._add(name, rng.choice(ROOMS))

    # -- world queries --------------------------------------------------------------------------------------------
    def _children(self, holder: str) -> list[Thing]:
        return [t for t in self.things.values() if t.loc == holder]

    def _visible(self) -> dict[str, Thing]:
        out: dict[str, Thing] = {}
        stack = [self.room, "inventory"]
        while stack:
            for t in self._children(stack.pop()):
                out.setdefault(t.label, t)
                if t.holds and t.is_open:
                    stack.append(t.key)
        return out

    def _find(self, ref: str) -> Thing:
        ref = re.sub(r"^(the|a|an) ", "", ref.strip())
        visible = self._visible()
        if ref in visible:
            return visible[ref]
        if " in " in ref:
            inner, outer = ref.rsplit(" in ", 1)
            holder = self._find(outer) if outer != "inventory" else None
            for t in self._children(holder.key if holder else "inventory"):
                if (t.label == inner or (inner == "substance" and t.kind == "substance")) and (
                    not holder or holder.is_open
                ):
                    return t
        raise _Invalid(NO_MATCH)

    def _room_of(self, key: str) -> str:
        loc = self.things[key].loc
        while loc in self.things:
            loc = self.things[loc].loc
        return self.room if loc == "inventory" else loc

    def _inside(self, key: str, holder: str) -> bool:
        loc = self.things[key].loc
        while loc in self.things:
            if loc == holder:
                return True
            loc = self.things[loc].loc
        return False

    def _describe(self, t: Thing) -> str:
        if t.kind == "substance":
            return f"a substance called {t.label}"
        text = _a(t.label)
        if t.switch or t.key == "light bulb":
            text += f", which is {'on' if (t.active if t.switch else self._bulb_on()) else 'off'}"
        if t.openable and not t.is_open:
            return f"{text} (closed)"
        if t.holds:
            inside = ", ".join(self._describe(c) for c in self._children(t.key)) or "nothing"
            text += f" (containing {inside})"
        return text

    def _bulb_on(self) -> bool:
        """Lit iff the bulb closes a loop with the battery through conductive things (the direct edge excluded)."""
        if frozenset(("battery", "light bulb")) not in self.edges:
            return False
        seen, frontier = {"battery"}, ["battery"]
        while frontier:
            node = frontier.pop()
            for edge in self.edges:
                if node in edge and edge != frozenset(("battery", "light bulb")):
                    (other,) = edge - {node}
                    if other == "light bulb":
                        return True
                    if other not in seen and self.things[other].conductive:
                        seen.add(other)
                        frontier.append(other)
        return False

    def _door(self, ref: str) -> str | None:
        m = re.fullmatch(r"(?:door to (?:the )?(.+)|(.+) door)", ref)
        room = m and (m.group(1) or m.group(2))
        return room if room and frozenset((self.room, room)) in DOORS else None

    # -- actions --------------------------------------------------------------------------------------------------
    def _act(self, action: str) -> tuple[str, bool]:
        cmd = " ".join(action.lower().split()).rstrip(".")
        for pattern, handler in self._GRAMMAR:
            m = re.fullmatch(pattern, cmd)
            if m:
                try:
                    msg = getattr(self, handler)(*m.groups())
                except _Invalid as exc:
                    return str(exc), False
                self._tick(1)
                return msg, True
        return NO_MATCH, False

    def _tick(self, n: int) -> None:
        for _ in range(n):
            for t in self.things.values():
                if t.phases is None:
                    continue
                loc, heat = t.loc, 0.0
                while loc in self.things and not heat:
                    holder = self.things[loc]
                    heat, loc = (holder.heat if holder.working else 0.0), holder.loc
                t.temp = (
                    max(-30.0, min(300.0, t.temp + heat)) if heat else t.temp + max(-1.0, min(1.0, AMBIENT - t.temp))
                )
            if self.family in _SUBSTANCES and self.focus == self.target:
                goal = {"boil": 2, "melt": 1, "freeze": 0}[self.family]
                self.reached = self.reached or self.things[self.target].phase == goal

    def _look(self) -> str:
        lines = [f"This room is called the {self.room}. In it, you see: ", "\tthe agent", "\ta substance called air"]
        lines += [f"\t{self._describe(t)}" for t in self._children(self.room)] + ["You also see:"]
        for door in sorted(DOORS, key=sorted):
            if self.room in door:
                (other,) = door - {self.room}
                lines.append(f"\tA door to the {other} (that is {'open' if door in self.open_doors else 'closed'})")
        return "\n".join(lines)

    def _look_at(self, ref: str) -> str:
        if (room := self._door(ref)) is not None:
            state = "open" if frozenset((self.room, room)) in self.open_doors else "closed"
            return f"A door to the {room} (that is {state})"
        t = self._find(ref)
        self.bulb_seen = self.bulb_seen or (t.key == "light bulb" and self.target in {n for e in self.edges for n in e})
        return self._describe(t)

    def _look_in(self, ref: str) -> str:
        t = self._find(ref)
        if not t.holds or not t.is_open:
            raise _Invalid(f"You can't see inside the {t.label}.")
        return f"Inside the {t.label} is: " + (", ".join(self._describe(c) for c in self._children(t.key)) or "nothing")

    def _inventory(self) -> str:
        return "In your inventory, you see:\n\t" + (
            "\n\t".join(self._describe(t) for t in self._children("inventory")) or "nothing"
        )

    def _task(self) -> str:
        return self.task

    def _wait(self) -> str:
        self._tick(9)
        return "You decide to wait for 10 iterations."

    def _wait1(self) -> str:
        return "You decide to wait for 1 iterations."

    def _open_close(self, verb: str, ref: str) -> str:
        want = verb == "open"
        if (room := self._door(ref)) is not None:
            door = frozenset((self.room, room))
            if (door in self.open_doors) == want:
                raise _Invalid(f"The door is already {verb}{'ed' if want else 'd'}.")
            (self.open_doors.add if want else self.open_doors.discard)(door)
            return f"The door is now {verb}{'' if want else 'd'}."
        t = self._find(ref)
        if not t.openable or t.is_open == want:
            raise _Invalid(f"The {t.label} can't be {verb}{'ed' if want else 'd'}.")
        t.is_open = want
        return f"The {t.label} is now {verb}{'' if want else 'd'}."

    def _switch(self, verb: str, ref: str) -> str:
        t = self._find(ref)
        if not t.switch or t.active == (verb == "activate"):
            raise _Invalid(f"The {t.label} can't be {verb}d.")
        t.active = verb == "activate"
        return f"The {t.label} is now {verb}d."

    def _go(self, room: str) -> str:
        room = re.sub(r"^the ", "", room)
        if room not in ROOMS or room == self.room or frozenset((self.room, room)) not in DOORS:
            raise _Invalid(NO_MATCH if room not in ROOMS else "It's not clear how to get there from here.")
        if frozenset((self.room, room)) not in self.open_doors:
            raise _Invalid("The door is not open.")
        self.room = room
        return f"You move to the {room}."

    def _pick(self, ref: str) -> str:
        t = self._find(ref)
        if t.kind in ("fixed", "substance") or t.loc == "inventory":
            raise _Invalid(f"You can't pick up the {t.label}.")
        t.loc = "inventory"
        return f"You move the {t.label} to the inventory."

    def _put_down(self, ref: str) -> str:
        t = self._find(ref)
        if t.loc != "inventory":
            raise _Invalid(f"The {t.label} is not in your inventory.")
        t.loc = self.room
        return f"You move the {t.label} to the {self.room}."

    def _move(self, src_ref: str, dst_ref: str) -> str:
        src = self._find(src_ref)
        if dst_ref in (self.room, f"the {self.room}"):
            return self._put_down(src_ref) if src.loc == "inventory" else "It is already here."
        dst = self._find(dst_ref)
        if src.kind == "fixed" or not dst.holds or not dst.is_open or src is dst or self._inside(dst.key, src.key):
            raise _Invalid(f"You can't move the {src.label} to the {dst.label}.")
        src.loc = dst.key
        return f"You move the {src.label} to the {dst.label}."

    def _pour(self, src_ref: str, dst_ref: str) -> str:
        src, dst = self._find(src_ref), self._find(dst_ref)
        moving = self._children(src.key) if src.holds else [src] if src.kind == "substance" else []
        if not moving or not dst.holds or not dst.is_open or src is dst or self._inside(dst.key, src.key):
            raise _Invalid(f"You can't pour the {src.label} into the {dst.label}.")
        for t in moving:
            t.loc = dst.key
        return f"You pour the {src.label} into the {dst.label}."

    def _mix(self, ref: str) -> str:
        t = self._find(ref)
        paints = sorted(c.key for c in self._children(t.key))
        made = next((c for c, pair in _MIXES.items() if sorted(pair) == paints), None)
        if made is None:
            raise _Invalid(f"Mixing the {t.label} does not produce anything new.")
        for p in paints:
            del self.things[p]
        self._add(f"{made} paint", t.key, kind="substance")
        return f"{paints[0].capitalize()} and {paints[1]} mix to produce {made} paint."

    def _connect(self, a_ref: str, b_ref: str) -> str:
        a, b = self._find(a_ref), self._find(b_ref)
        if a is b or a.kind == "substance" or b.kind == "substance" or frozenset((a.key, b.key)) in self.edges:
            raise _Invalid(f"You can't connect the {a.label} to the {b.label}.")
        self.edges.add(frozenset((a.key, b.key)))
        return f"The {a.label} is now connected to the {b.label}."

    def _disconnect(self, ref: str) -> str:
        t = self._find(ref)
        if not any(t.key in e for e in self.edges):
            raise _Invalid(f"The {t.label} is not connected to anything.")
        self.edges = {e for e in self.edges if t.key not in e}
        return f"The {t.label} is now disconnected."

    def _use(self, tool_ref: str, ref: str) -> str:
        tool, t = self._find(tool_ref), self._find(ref)
        if tool.key != "thermometer":
            raise _Invalid(f"You can't use the {tool.label} on the {t.label}.")
        subs = [t] if t.phases else [c for c in self._children(t.key) if c.phases]
        return f"the thermometer measures a temperature of {round(subs[0].temp if subs else AMBIENT)} degrees celsius"

    def _focus(self, ref: str) -> str:
        t = self._find(ref)
        if self.family in _FIND:
            ok = t.kind in self.kinds
        else:
            ok = t.key == self.target
        self.focus, self.failed = (t.key, False) if ok else (self.focus, True)
        return f"You focus on the {t.label}."

    def _read(self, ref: str) -> str:
        return f"There is nothing written on the {self._find(ref).label}."

    def _eat(self, ref: str) -> str:
        raise _Invalid(f"The {self._find(ref).label} is not edible.")

    # -- score ----------------------------------------------------------------------------------------------------
    def _progress(self) -> int:
        """The family's 0..100 progress (monotone via ``max`` in ``step``); may set ``failed``."""
        th, f, focused = self.things, self.family, self.focus is not None
        if f in _SUBSTANCES:
            dev = th[self.device]
            on = self._inside(self.target, dev.key)
            return 100 if self.reached else 40 * focused + 20 * on + 10 * (on and dev.working)
        if f == "test-conductivity":
            loc = th[self.target].loc
            self.failed = self.failed or loc == self.boxes[1]
            wires = sum(frozenset(e) in self.edges for e in self._circuit())
            return 100 if focused and loc == self.boxes[0] else 30 * focused + 10 * wires
        if f in _FIND:
            if not focused:
                return 0
            loc = th[self.focus].loc  # type: ignore[index]
            return 100 if loc == self.box else 75 if loc == "inventory" else 50
        if focused:
            return 100
        moved = [p for p in self.need if p in th and th[p].loc != self.origin[p]]
        together = len(moved) == 2 and th[moved[0]].loc == th[moved[1]].loc
        return 75 if self.target in th else 50 if together else 25 * bool(moved)

    def _circuit(self) -> list[tuple[str, str]]:
        return [("battery", self.target), (self.target, "light bulb"), ("light bulb", "battery")]

    # -- expert ---------------------------------------------------------------------------------------------------
    def _route(self, dest: str) -> tuple[str, str] | None:
        if self.room == dest:
            return None
        prev: dict[str, str] = {self.room: self.room}
        queue = deque([self.room])
        while queue:
            node = queue.popleft()
            for door in DOORS:
                if node in door and (nxt := next(iter(door - {node}))) not in prev:
                    prev[nxt] = node
                    queue.append(nxt)
        step = dest
        while prev[step] != self.room:
            step = prev[step]
        if frozenset((self.room, step)) not in self.open_doors:
            return (
                f"I need to get to the {dest}; the door to the {step} is closed, so I open it.",
                f"open door to {step}",
            )
        return f"I need to get to the {dest}, so I go to the {step}.", f"go to {step}"

    def _reach(self, key: str) -> tuple[str, str] | None:
        if (r := self._route(self._room_of(key))) is not None:
            return r
        loc, closed = self.things[key].loc, None
        while loc in self.things:
            closed = loc if not self.things[loc].is_open else closed
            loc = self.things[loc].loc
        return (
            (f"The {self.things[key].label} is inside the closed {closed}; I open it.", f"open {closed}")
            if closed
            else None
        )

    def _expert(self) -> tuple[str, str]:
        th, f = self.things, self.family
        if f in _SUBSTANCES:
            s, dev = th[self.target], th[self.device]
            if self.focus != s.key:
                return self._reach(s.key) or (
                    f"The {s.label} is here; the task says to focus on it first.",
                    f"focus on {s.label}",
                )
            cup = s.loc
            if not self._inside(s.key, dev.key):
                if th[cup].loc != "inventory":
                    return self._reach(cup) or (f"I pick up the {cup} holding the {s.label}.", f"pick up {cup}")
                if (r := self._route("kitchen")) is not None:
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
            o = th[self.target]
            if self.focus != o.key:
                return self._reach(o.key) or (
                    f"I found the {o.key}; the task says to focus on it first.",
                    f"focus on {o.key}",
                )
            if o.loc != "inventory" and self._room_of(o.key) != "workshop":
                return self._reach(o.key) or (f"I take the {o.key} to the workshop.", f"pick up {o.key}")
            if (r := self._route("workshop")) is not None:
                return r
            for a, b in self._circuit():
                if frozenset((a, b)) not in self.edges:
                    return f"I build a circuit through the {o.key}: {a} to {b}.", f"connect {a} to {b}"
            if not self.bulb_seen:
                return "The circuit is closed; I check whether the light bulb is on.", "look at light bulb"
            state = "on, so it conducts" if o.conductive else "off, so it does not conduct"
            return (
                f"The light bulb is {state}; the {o.key} goes in the {self.boxes[0]}.",
                f"move {o.key} to {self.boxes[0]}",
            )
        if f in _FIND:
            options = [
                t for t in th.values() if t.kind in self.kinds and t.kind != "fixed" and self.box not in (t.key, t.loc)
            ]
            if self.focus is None and not options:
                return "Nothing I can still move fits the task; I look around.", "look around"
            key = self.focus or min(options, key=lambda t: (self._distance(self._room_of(t.key)), t.key)).key
            if self.focus is None:
                return self._reach(key) or (f"The {key} is a {_FIND[f][0]}; I focus on it.", f"focus on {key}")
            if th[key].loc not in ("inventory", self.box):
                return self._reach(key) or (f"I pick up the {key}.", f"pick up {key}")
            return self._reach(self.box) or (f"I put the {key} in the {self.box}.", f"move {key} to {self.box}")
        if (r := self._route("art studio")) is not None:
            return r
        for p in self.need:
            if p in th and th[p].loc != "mixing bowl":
                return (
                    f"{self.target.capitalize()} is made from {' and '.join(self.need)}; I add the {p}.",
                    f"pour {p} into mixing bowl",
                )
        if self.target not in th:
            return "Both paints are in the bowl; I mix them.", "mix mixing bowl"
        return f"I made {self.target}; the task says to focus on it.", f"focus on {self.target}"

    def _distance(self, room: str) -> int:
        seen, frontier, d = {self.room}, [self.room], 0
        while room not in seen:
            frontier = [n for r in frontier for door in DOORS if r in door for n in door - {r} if n not in seen]
            seen.update(frontier)
            d += 1
        return d

    def expert_reply(self) -> str:
        """The scripted planner's next ReAct reply (simulator: planned from state; real backend: the gold path)."""
        if not self.family:
            raise RuntimeError("call reset() before expert_reply()")
        if self._real is not None:
            return react("I follow the known solution for this task.", self._real.next_gold())
        thought, action = self._expert()
        return react(thought, action)


def _target_pool(family: str) -> list[str]:
    kinds = _FIND[family][1]
    return (
        (_ANIMALS if "animal" in kinds else [])
        + (_PLANTS if "plant" in kinds else [])
        + (_NONLIVING if "object" in kinds else [])
    )


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
