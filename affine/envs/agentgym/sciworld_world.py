"""The simulated SciWorld's rules: what an action does to the world, how time heats and cools things, and the score.

The environment protocol (turns, rewards, the ReAct parsing) lives in :mod:`affine.envs.agentgym.sciworld`; the task
families' data in :mod:`affine.envs.agentgym.sciworld_catalogue`; this class is the state they both act on.
"""

from __future__ import annotations

import re
from typing import Any

from affine.envs.agentgym.sciworld_catalogue import (
    AMBIENT,
    DOORS,
    FIND,
    MIXES,
    NO_MATCH,
    ROOMS,
    SUBSTANCES,
    Invalid,
    Thing,
    article,
)


class World:
    """One task's world: rooms and doors, the things in them, the circuit's wires, the focus and the clock.

    Actions are methods picked by ``_GRAMMAR``; a rejected one raises :class:`Invalid` before changing anything.
    ``populate`` (the catalogue) fills the task attributes below.
    """

    family: str
    combo: tuple[Any, ...]
    difficulty: int
    task: str
    room: str
    things: dict[str, Thing]
    open_doors: set[frozenset[str]]
    edges: set[frozenset[str]]
    focus: str | None
    failed: bool
    reached: bool
    bulb_seen: bool
    target: str
    device: str  # boil/melt/freeze: the stove or the freezer
    boxes: tuple[str, str]  # test-conductivity: (right box, wrong box)
    box: str  # find-*: where the found thing goes
    kinds: tuple[str, ...]  # find-*: the kinds that count
    need: tuple[str, str]  # mix-paint: the two paints
    origin: dict[str, str]  # mix-paint: where each paint started

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

    def add(self, key: str, loc: str, **kw: Any) -> Thing:
        self.things[key] = Thing(key, loc, **kw)
        return self.things[key]

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
        raise Invalid(NO_MATCH)

    def room_of(self, key: str) -> str:
        loc = self.things[key].loc
        while loc in self.things:
            loc = self.things[loc].loc
        return self.room if loc == "inventory" else loc

    def inside(self, key: str, holder: str) -> bool:
        loc = self.things[key].loc
        while loc in self.things:
            if loc == holder:
                return True
            loc = self.things[loc].loc
        return False

    def _describe(self, t: Thing) -> str:
        if t.kind == "substance":
            return f"a substance called {t.label}"
        text = article(t.label)
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
                except Invalid as exc:
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
            if self.family in SUBSTANCES and self.focus == self.target:
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
            raise Invalid(f"You can't see inside the {t.label}.")
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
                raise Invalid(f"The door is already {verb}{'ed' if want else 'd'}.")
            (self.open_doors.add if want else self.open_doors.discard)(door)
            return f"The door is now {verb}{'' if want else 'd'}."
        t = self._find(ref)
        if not t.openable or t.is_open == want:
            raise Invalid(f"The {t.label} can't be {verb}{'ed' if want else 'd'}.")
        t.is_open = want
        return f"The {t.label} is now {verb}{'' if want else 'd'}."

    def _switch(self, verb: str, ref: str) -> str:
        t = self._find(ref)
        if not t.switch or t.active == (verb == "activate"):
            raise Invalid(f"The {t.label} can't be {verb}d.")
        t.active = verb == "activate"
        return f"The {t.label} is now {verb}d."

    def _go(self, room: str) -> str:
        room = re.sub(r"^the ", "", room)
        if room not in ROOMS or room == self.room or frozenset((self.room, room)) not in DOORS:
            raise Invalid(NO_MATCH if room not in ROOMS else "It's not clear how to get there from here.")
        if frozenset((self.room, room)) not in self.open_doors:
            raise Invalid("The door is not open.")
        self.room = room
        return f"You move to the {room}."

    def _pick(self, ref: str) -> str:
        t = self._find(ref)
        if t.kind in ("fixed", "substance") or t.loc == "inventory":
            raise Invalid(f"You can't pick up the {t.label}.")
        t.loc = "inventory"
        return f"You move the {t.label} to the inventory."

    def _put_down(self, ref: str) -> str:
        t = self._find(ref)
        if t.loc != "inventory":
            raise Invalid(f"The {t.label} is not in your inventory.")
        t.loc = self.room
        return f"You move the {t.label} to the {self.room}."

    def _move(self, src_ref: str, dst_ref: str) -> str:
        src = self._find(src_ref)
        if dst_ref in (self.room, f"the {self.room}"):
            return self._put_down(src_ref) if src.loc == "inventory" else "It is already here."
        dst = self._find(dst_ref)
        if src.kind == "fixed" or not dst.holds or not dst.is_open or src is dst or self.inside(dst.key, src.key):
            raise Invalid(f"You can't move the {src.label} to the {dst.label}.")
        src.loc = dst.key
        return f"You move the {src.label} to the {dst.label}."

    def _pour(self, src_ref: str, dst_ref: str) -> str:
        src, dst = self._find(src_ref), self._find(dst_ref)
        moving = self._children(src.key) if src.holds else [src] if src.kind == "substance" else []
        if not moving or not dst.holds or not dst.is_open or src is dst or self.inside(dst.key, src.key):
            raise Invalid(f"You can't pour the {src.label} into the {dst.label}.")
        for t in moving:
            t.loc = dst.key
        return f"You pour the {src.label} into the {dst.label}."

    def _mix(self, ref: str) -> str:
        t = self._find(ref)
        paints = sorted(c.key for c in self._children(t.key))
        made = next((c for c, pair in MIXES.items() if sorted(pair) == paints), None)
        if made is None:
            raise Invalid(f"Mixing the {t.label} does not produce anything new.")
        for p in paints:
            del self.things[p]
        self.add(f"{made} paint", t.key, kind="substance")
        return f"{paints[0].capitalize()} and {paints[1]} mix to produce {made} paint."

    def _connect(self, a_ref: str, b_ref: str) -> str:
        a, b = self._find(a_ref), self._find(b_ref)
        if a is b or a.kind == "substance" or b.kind == "substance" or frozenset((a.key, b.key)) in self.edges:
            raise Invalid(f"You can't connect the {a.label} to the {b.label}.")
        self.edges.add(frozenset((a.key, b.key)))
        return f"The {a.label} is now connected to the {b.label}."

    def _disconnect(self, ref: str) -> str:
        t = self._find(ref)
        if not any(t.key in e for e in self.edges):
            raise Invalid(f"The {t.label} is not connected to anything.")
        self.edges = {e for e in self.edges if t.key not in e}
        return f"The {t.label} is now disconnected."

    def _use(self, tool_ref: str, ref: str) -> str:
        tool, t = self._find(tool_ref), self._find(ref)
        if tool.key != "thermometer":
            raise Invalid(f"You can't use the {tool.label} on the {t.label}.")
        subs = [t] if t.phases else [c for c in self._children(t.key) if c.phases]
        return f"the thermometer measures a temperature of {round(subs[0].temp if subs else AMBIENT)} degrees celsius"

    def _focus(self, ref: str) -> str:
        t = self._find(ref)
        if self.family in FIND:
            ok = t.kind in self.kinds
        else:
            ok = t.key == self.target
        self.focus, self.failed = (t.key, False) if ok else (self.focus, True)
        return f"You focus on the {t.label}."

    def _read(self, ref: str) -> str:
        return f"There is nothing written on the {self._find(ref).label}."

    def _eat(self, ref: str) -> str:
        raise Invalid(f"The {self._find(ref).label} is not edible.")

    # -- score ----------------------------------------------------------------------------------------------------
    def _progress(self) -> int:
        """The family's 0..100 progress (monotone via ``max`` in ``step``); may set ``failed``."""
        th, f, focused = self.things, self.family, self.focus is not None
        if f in SUBSTANCES:
            dev = th[self.device]
            on = self.inside(self.target, dev.key)
            return 100 if self.reached else 40 * focused + 20 * on + 10 * (on and dev.working)
        if f == "test-conductivity":
            loc = th[self.target].loc
            self.failed = self.failed or loc == self.boxes[1]
            wires = sum(frozenset(e) in self.edges for e in self.circuit())
            return 100 if focused and loc == self.boxes[0] else 30 * focused + 10 * wires
        if f in FIND:
            if not focused:
                return 0
            loc = th[self.focus].loc  # type: ignore[index]
            return 100 if loc == self.box else 75 if loc == "inventory" else 50
        if focused:
            return 100
        moved = [p for p in self.need if p in th and th[p].loc != self.origin[p]]
        together = len(moved) == 2 and th[moved[0]].loc == th[moved[1]].loc
        return 75 if self.target in th else 50 if together else 25 * bool(moved)

    def circuit(self) -> list[tuple[str, str]]:
        return [("battery", self.target), (self.target, "light bulb"), ("light bulb", "battery")]
