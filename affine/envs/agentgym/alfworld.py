"""ALFWorld offline: procedurally generated TextWorld households with ALFWorld's six task types and command set.

The real env needs the ALFWorld game files (an internet download), so this simulator rebuilds the part a text agent
sees: a room of numbered receptacles (some openable) holding numbered objects, the TextWorld commands and feedback
texts, ``Nothing happened.`` for anything invalid, and score 1 exactly when the goal holds.

Tasks are drawn from (task type, room, object type, goal receptacle type) combinations; a fixed hash of that
combination puts it in ``train`` or ``eval`` (about one in five), so the splits share no combination — like ALFWorld's
"unseen" evaluation.  ``difficulty`` grows the room (more receptacle instances) and the number of distractor objects.

Shaping (recipe: +0.2 per useful step, +1.0 on completion).  Every task is a list of subgoals per target object —
*found* (a target object is visible where the agent stands), *holding* it, *transformed* (clean/hot/cool, for those
tasks), *at the destination* while holding a qualifying object (the goal receptacle, or the lit lamp's place) — and
``pick_two`` repeats the list for the second object after the first is placed.  The agent's stage is its position in
that list; a step is *useful* when it takes the stage above the best reached so far, so undoing and redoing a subgoal
never pays twice.  The step that meets the goal pays the completion bonus instead.

The expert plays like a person who knows where things usually are: it searches receptacles in the object's
commonsense order (the same table the generator places objects by, with a 20 % chance of an odd place), remembers
what it has seen, and never looks at hidden state.
"""

from __future__ import annotations

import random
import re

from affine.envs.agentgym.alfworld_tasks import (
    BY_VERB,
    CHANGE,
    LAMP,
    LAMP_PLACES,
    LAMP_ROOMS,
    ROOMS,
    TASK_TYPES,
    TEXTS,
    Task,
    combos,
)
from affine.envs.agentgym.react import parse_last, react
from affine.envs.base import Shaping, Step, check_split

NOTHING = "Nothing happened."
_COMMANDS = [
    (re.compile(r"^go to (.+)$"), "go"),
    (re.compile(r"^take (.+?) from (.+)$"), "take"),
    (re.compile(r"^put (.+?) in/on (.+)$"), "put"),  # ALFWorld's only put command; "put x in y" does nothing
    (re.compile(r"^(?:open|close) (.+)$"), "open"),
    (re.compile(r"^(?:heat|cool|clean) (.+?) with (.+)$"), "change"),
    (re.compile(r"^(?:toggle|use) (.+)$"), "use"),
    (re.compile(r"^examine (.+)$"), "examine"),
]
INSTRUCTIONS = (
    "You are an agent in a household. Each turn you get an observation and take one action toward your task; the "
    "first observation describes the room and the task and lists the actions available at the start.\n"
    "Actions (use the exact numbered names you see):\n"
    "go to <recep> | take <obj> from <recep> | put <obj> in/on <recep> | open <recep> | close <recep> | "
    "toggle <obj> | use <obj> | heat <obj> with <recep> | cool <obj> with <recep> | clean <obj> with <recep> | "
    "examine <something> | inventory | look\n"
    "You can hold one object at a time and must be at a receptacle (and have it open) to take from it or put into "
    "it. Heat with a microwave, cool with a fridge, clean with a sinkbasin. An invalid action gives 'Nothing "
    "happened.'\n"
    "Reply in exactly this format:\nThought:\n<your reasoning>\n\nAction:\n<one action>"
)


class ALFWorld:
    """AgentGym ALFWorld on procedural households; deterministic in (split, seed, difficulty, task_id)."""

    name = "agentgym:alfworld"

    def __init__(
        self,
        split: str = "train",
        max_turns: int = 30,
        difficulty: int = 1,
        shaping: Shaping | None = None,
        seed: int = 0,
    ):
        check_split(split)
        self.split, self.max_turns, self.seed, self.difficulty = split, max_turns, seed, max(1, difficulty)
        self.shaping = shaping or Shaping(progress=0.2, completion=1.0)
        self.instructions = INSTRUCTIONS
        self.task: Task | None = None

    # ---- generation ---------------------------------------------------------------------------------------------
    def reset(self, task_id: int) -> str:
        rng = random.Random(f"alfworld|{self.split}|{self.seed}|{self.difficulty}|{task_id}")
        kind, room, obj, goal = rng.choice(combos()[self.split][rng.choice(TASK_TYPES)])
        self.task = Task(kind, room, obj, goal, rng.choice(TEXTS[kind]).format(o=obj, r=goal))
        spec, objects = ROOMS[room]
        self._flag = CHANGE[kind][2] if kind in CHANGE else None
        self.rtype: dict[str, str] = {}
        self.closed: dict[str, bool] = {}  # openable receptacles only
        scale = min(self.difficulty, 3) / 3
        for part in spec.split():
            rtype, counts = part.split(":")
            lo, _, hi = counts.partition("-")
            n = int(lo) + rng.randint(0, round((int(hi or lo) - int(lo)) * scale))
            n = max(n, 1 if rtype.rstrip("*") == goal else 0)
            for i in range(1, n + 1):
                name = f"{rtype.rstrip('*')} {i}"
                self.rtype[name] = rtype.rstrip("*")
                if rtype.endswith("*"):
                    self.closed[name] = True
        self.recs = sorted(self.rtype, key=lambda r: (self.rtype[r], int(r.rsplit(" ", 1)[1])))
        self.contents: dict[str, list[str]] = {r: [] for r in self.recs}
        self.where: dict[str, str | None] = {}
        self.flags: dict[str, set[str]] = {}
        count: dict[str, int] = {}

        def place(otype: str, avoid: str | None, odd: float) -> None:
            likely = [r for r in self.recs if self.rtype[r] in objects.get(otype, []) and self.rtype[r] != avoid]
            anywhere = [r for r in self.recs if self.rtype[r] != avoid and self.rtype[r] not in ("toaster",)]
            rec = rng.choice(likely if likely and rng.random() >= odd else anywhere)
            count[otype] = count.get(otype, 0) + 1
            name = f"{otype} {count[otype]}"
            self.contents[rec].append(name)
            self.where[name], self.flags[name] = rec, set()

        n_targets = (2 if kind.startswith("pick_two") else 1) + (rng.random() < 0.3)
        for _ in range(n_targets):
            place(obj, goal, 0.2)
        if room in LAMP_ROOMS:
            lamp_place = rng.choice([r for r in self.recs if self.rtype[r] in LAMP_PLACES])
            self.contents[lamp_place].append(f"{LAMP} 1")
            self.where[f"{LAMP} 1"], self.flags[f"{LAMP} 1"] = lamp_place, set()
        others = [o for o in objects if o != obj]
        for _ in range(2 + 2 * self.difficulty):
            place(rng.choice(others), None, 0.1)
        for rec in self.recs:
            rng.shuffle(self.contents[rec])
        self.loc: str | None = None
        self.held: str | None = None
        self.explored: set[str] = set()
        self._turns, self._done, self._success, self._best = 0, False, False, 0
        # AgentGym's server drops TextWorld's welcome banner and joins the rest with single newlines; its client adds
        # the admissible commands to this first observation only (later turns show the feedback alone).
        return (
            f"You are in the middle of a room. Looking quickly around you, you see {self._list(self.recs)}.\n"
            f"Your task is to: {self.task.text}\n"
            f"AVAILABLE ACTIONS: {','.join(f'go to {r}' for r in self.recs)},inventory,look"
        )

    # ---- world ---------------------------------------------------------------------------------------------------
    @staticmethod
    def _list(names: list[str]) -> str:
        if not names:
            return "nothing"
        items = [f"a {n}" for n in names]
        return items[0] if len(items) == 1 else ", ".join(items[:-1]) + f", and {items[-1]}"

    def _visible(self, rec: str | None) -> bool:
        return rec is not None and not self.closed.get(rec, False)

    def _describe(self, rec: str) -> str:
        if self.closed.get(rec):
            return f"The {rec} is closed."
        self.explored.add(rec)
        if rec in self.closed:
            return f"The {rec} is open. In it, you see {self._list(self.contents[rec])}."
        return f"On the {rec}, you see {self._list(self.contents[rec])}."

    def _qualifies(self, o: str) -> bool:
        flag = self._flag
        return o.rsplit(" ", 1)[0] == self.task.obj and (flag is None or flag in self.flags[o])

    def _placed(self) -> list[str]:
        return [o for o, r in self.where.items() if r and self.rtype[r] == self.task.goal and self._qualifies(o)]

    def _lamp_here(self) -> bool:
        return any(o.startswith(LAMP) and "on" in self.flags[o] for o in self.contents.get(self.loc, []))

    def _goal_met(self) -> bool:
        if self.task.kind.startswith("look"):
            return self.held is not None and self._qualifies(self.held) and self._lamp_here()
        return len(self._placed()) >= (2 if self.task.kind.startswith("pick_two") else 1)

    def _stage(self) -> int:
        placed = 0 if self.task.kind.startswith("look") else len(self._placed())
        flag = self._flag
        if self.held and self.held.rsplit(" ", 1)[0] == self.task.obj:
            if flag and flag not in self.flags[self.held]:
                return 5 * placed + 2
            at_goal = self.loc is not None and (
                any(o.startswith(LAMP) for o in self.contents[self.loc])
                if self.task.kind.startswith("look")
                else self.rtype[self.loc] == self.task.goal
            )
            return 5 * placed + 2 + bool(flag) + at_goal
        seen = self._visible(self.loc) and any(
            o.rsplit(" ", 1)[0] == self.task.obj and o not in self._placed() for o in self.contents[self.loc]
        )
        return 5 * placed + seen

    def _apply(self, action: str) -> str:
        """Run one TextWorld command; returns the feedback (``Nothing happened.`` when it does not apply)."""
        if action == "inventory":
            return f"You are carrying: a {self.held}." if self.held else "You are not carrying anything."
        if action == "look":
            if self.loc is None:
                return f"You are in the middle of a room. Looking quickly around you, you see {self._list(self.recs)}."
            return f"You are facing the {self.loc}. Next to it, you see nothing."
        for pattern, verb in _COMMANDS:
            if m := pattern.match(action):
                return getattr(self, f"_do_{verb}")(action, *m.groups()) or NOTHING
        return NOTHING

    def _do_go(self, action: str, rec: str) -> str | None:
        if rec in self.rtype and rec != self.loc:
            self.loc = rec
            return f"You arrive at {rec}. {self._describe(rec)}"
        return None

    def _do_take(self, action: str, o: str, rec: str) -> str | None:
        if self.held is None and rec == self.loc and self._visible(rec) and o in self.contents[rec] and LAMP not in o:
            self.contents[rec].remove(o)
            self.held, self.where[o] = o, None
            return f"You pick up the {o} from the {rec}."
        return None

    def _do_put(self, action: str, o: str, rec: str) -> str | None:
        if self.held == o and rec == self.loc and self._visible(rec):
            self.contents[rec].append(o)
            self.held, self.where[o] = None, rec
            return f"You put the {o} in/on the {rec}."
        return None

    def _do_open(self, action: str, rec: str) -> str | None:
        opening = action.startswith("open")
        if rec == self.loc and rec in self.closed and self.closed[rec] == opening:
            self.closed[rec] = not opening
            return f"You open the {rec}. {self._describe(rec)}" if opening else f"You close the {rec}."
        return None

    def _do_change(self, action: str, o: str, rec: str) -> str | None:
        verb = action.split(" ", 1)[0]
        appliance, flag = BY_VERB[verb]
        if self.held == o and rec == self.loc and self.rtype[rec] == appliance:
            self.flags[o] = (self.flags[o] - {"hot", "cool"}) | {flag}
            return f"You {verb} the {o} using the {rec}."
        return None

    def _do_use(self, action: str, o: str) -> str | None:
        if o.startswith(LAMP) and self._visible(self.loc) and o in self.contents[self.loc]:
            on = "on" not in self.flags[o] or action.startswith("use")
            self.flags[o] = {"on"} if on else set()
            return f"You turn {'on' if on else 'off'} the {o}."
        return None

    def _do_examine(self, action: str, thing: str) -> str | None:
        if thing == self.loc:
            return self._describe(thing)
        if thing == self.held or (self._visible(self.loc) and thing in self.contents[self.loc]):
            states = sorted(self.flags[thing] - {"on"})
            if thing.startswith(LAMP):
                return f"The {thing} is {'on' if 'on' in self.flags[thing] else 'off'}."
            return f"The {thing} is {' and '.join(states)}." if states else f"There's nothing special about {thing}."
        return None

    # ---- stepping -------------------------------------------------------------------------------------------------
    def step(self, reply: str) -> Step:
        if self.task is None:
            raise RuntimeError("call reset() before step()")
        if self._done:
            info = {"action": None, "valid": False, "success": self._success, "truncated": False, "progress": False}
            return Step("The episode is over.", 0.0, True, float(self._success), info)
        self._turns += 1
        parsed = parse_last(reply)
        action = " ".join(parsed.action.lower().split()).rstrip(".") if parsed.action else None
        observation = self._apply(action) if action else parsed.error or "Invalid Action."
        valid = action is not None and observation != NOTHING
        self._success = self._goal_met()
        stage = self._stage()
        progress = stage > self._best and not self._success
        self._best = max(self._best, stage)
        reward = self.shaping.progress * progress + (0.0 if valid else self.shaping.invalid_penalty)
        reward += self.shaping.completion if self._success else 0.0
        truncated = not self._success and self._turns >= self.max_turns
        reward += self.shaping.timeout_penalty if truncated else 0.0
        self._done = self._success or truncated
        info = {"action": action, "valid": valid, "success": self._success, "truncated": truncated}
        info.update(progress=progress, turn=self._turns)
        return Step(observation, reward, self._done, float(self._success), info)

    # ---- expert ---------------------------------------------------------------------------------------------------
    def expert_reply(self) -> str:
        if self.task is None:
            raise RuntimeError("call reset() before expert_reply()")
        if self._success:
            return react("The task is complete.", "look")
        return react(*self._expert())

    def _search(self, what: str, prior: list[str]) -> tuple[str, str]:
        """Go to (or open) the first unexplored receptacle in commonsense order."""
        rank = {t: i for i, t in enumerate(prior)}
        order = sorted(self.recs, key=lambda r: (rank.get(self.rtype[r], len(rank)), self.recs.index(r)))
        rec = next((r for r in order if r not in self.explored), order[0])
        if rec == self.loc and self.closed.get(rec):
            return f"The {rec} is closed. I open it to look for {what}.", f"open {rec}"
        where = ", ".join(t for t in prior if t in self.rtype.values()) or "any receptacle"
        return f"I need to find {what}. It is most likely in: {where}. I have not checked {rec} yet.", f"go to {rec}"

    def _nearest(self, rtype: str) -> str:
        """Where the agent stands if that is a ``rtype``, else the first one: the expert never wanders."""
        if self.loc and self.rtype[self.loc] == rtype:
            return self.loc
        return next(r for r in self.recs if self.rtype[r] == rtype)

    def _go_then(self, rec: str, why: str) -> tuple[str, str] | None:
        if self.loc != rec:
            return f"{why} I go to {rec}.", f"go to {rec}"
        if self.closed.get(rec):
            return f"The {rec} is closed, so I open it first.", f"open {rec}"
        return None

    def _expert(self) -> tuple[str, str]:
        t, held = self.task, self.held
        if held and held.rsplit(" ", 1)[0] != t.obj:
            if self._visible(self.loc):
                return f"The {held} is not what I need; I put it down here.", f"put {held} in/on {self.loc}"
            spot = next(r for r in self.recs if r not in self.closed)
            return f"The {held} is not what I need; I will put it down on {spot}.", f"go to {spot}"
        if held:
            verb, appliance, flag = CHANGE.get(t.kind, (None, None, None))
            if flag and flag not in self.flags[held]:
                app = self._nearest(appliance)
                step = self._go_then(app, f"I have the {held}; now I need to {verb} it with a {appliance}.")
                return step or (f"I am at the {app}, so I {verb} the {held}.", f"{verb} {held} with {app}")
            if t.kind.startswith("look"):
                lamp = f"{LAMP} 1"
                if self.where[lamp] not in self.explored:
                    return self._search(f"the {LAMP}", list(LAMP_PLACES))
                step = self._go_then(self.where[lamp], f"I have the {held}; the {lamp} is on {self.where[lamp]}.")
                return step or (f"I turn on the {lamp} to look at the {held} under it.", f"use {lamp}")
            dest = self._nearest(t.goal)
            step = self._go_then(dest, f"I have the {held}; next I put it in/on a {t.goal}.")
            return step or (f"I am at the {dest}, so I put the {held} there.", f"put {held} in/on {dest}")
        placed = self._placed()
        known = [
            o for o, r in self.where.items() if r in self.explored and o.rsplit(" ", 1)[0] == t.obj and o not in placed
        ]
        if known:
            here = [o for o in known if self.where[o] == self.loc]
            o = (here or known)[0]
            step = self._go_then(self.where[o], f"I saw a {t.obj} ({o}) in/on {self.where[o]}.")
            return step or (f"The {o} is here; I take it.", f"take {o} from {self.where[o]}")
        return self._search(f"a {t.obj}", ROOMS[t.room][1][t.obj])
