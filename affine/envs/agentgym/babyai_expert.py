"""The BabyAI expert planner.  It plans from the full state, which the agent never sees, so it lives apart from the
env (whose job is the agent's view and the listed actions); the env still needs it every turn for the shaping
potential and ``expert_reply``, so it is a mixin that ``BabyAI`` inherits and it reads the env's live state."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from minigrid.envs.babyai.core.verifier import (
    AfterInstr,
    GoToInstr,
    OpenInstr,
    PickupInstr,
    PutNextInstr,
    SeqInstr,
)

from affine.envs.agentgym import babyai_search as search
from affine.envs.agentgym.babyai_search import FAR, VEC, Cell, Pose
from affine.envs.agentgym.react import react


def _leaf(instr: Any) -> Any:
    """The sub-instruction to work on now: walks Before/After/And nodes using the verifier's own done flags."""
    while isinstance(instr, SeqInstr):
        if isinstance(instr, AfterInstr):
            instr = instr.instr_a if instr.b_done == "success" else instr.instr_b
        else:
            instr = instr.instr_b if instr.a_done == "success" else instr.instr_a
    return instr


def _done_leaves(instr: Any) -> int:
    def size(node: Any) -> int:
        return size(node.instr_a) + size(node.instr_b) if isinstance(node, SeqInstr) else 1

    if not isinstance(instr, SeqInstr):
        return 0
    parts = ((instr.instr_a, instr.a_done), (instr.instr_b, instr.b_done))
    return sum(size(n) if flag == "success" else _done_leaves(n) for n, flag in parts)


@dataclass
class _Plan:
    """The expert's current sub-goal: face one of ``targets`` then do ``finish`` (goto/pickup/toggle/drop)."""

    finish: str
    targets: set[Cell]
    stage: int
    note: str
    dist: dict[Pose, int]


class Expert:
    """The expert: plans from the full state, acts through the listed actions.  Mixed into ``BabyAI``: it uses the
    env's ``_u``, ``_cells``, ``_pose``, ``_acts``, ``_targets``, ``goal`` and ``done``."""

    def _visible(self, pose: Pose) -> list[tuple[int, int, Cell]]:
        """(distance, scan order, cell) of the cells seen from ``pose``, nearest first (minigrid's own occlusion)."""
        u, (px, py), f, r = self._u, pose[0], VEC[pose[1]], VEC[(pose[1] + 1) % 4]
        saved = u.agent_pos, u.agent_dir
        u.agent_pos, u.agent_dir = np.array(pose[0]), pose[1]
        try:
            _, vis = u.gen_obs_grid()
        finally:
            u.agent_pos, u.agent_dir = saved
        size, half = u.agent_view_size, u.agent_view_size // 2
        seen = []
        for vy in range(size):
            for vx in range(size):
                ahead, side = size - 1 - vy, vx - half
                cell = (px + f[0] * ahead + r[0] * side, py + f[1] * ahead + r[1] * side)
                if vis[vx, vy] and cell in self._cells:
                    seen.append((abs(cell[0] - px) + abs(cell[1] - py), len(seen), cell))
        return sorted(seen)

    def _passable(
        self, cell: Cell, strict: bool = False, locked: bool = False, movable: bool = False, nokey: bool = False
    ) -> bool:
        """Strict: walkable now.  Otherwise the expert's view: closed doors count, locked ones if the carried key fits
        (not with ``nokey``) or with ``locked``, objects that could be carried away with ``movable``."""
        if cell not in self._cells:
            return False
        obj = self._cells[cell]
        if obj is None or obj.type in ("goal", "floor"):
            return True
        if obj.type == "door":
            if strict or obj.is_open or self._strict:
                return obj.is_open
            carry = self._u.carrying
            fits = not nokey and carry is not None and carry.type == "key" and carry.color == obj.color
            return not obj.is_locked or locked or fits
        return movable and obj.can_pickup()

    def _field_to(self, targets: set[Cell], mode: dict[str, bool]) -> tuple[dict[Pose, int], dict[Cell, int]]:
        """Distance field to the poses facing ``targets`` under a passability ``mode``, and its cell costs."""
        ok = {c for c in self._cells if self._passable(c, **mode)}
        ok.add(self._pose[0])
        cost = {c: 30 for c in ok if mode and not self._passable(c)} if mode.keys() & {"locked", "movable"} else {}
        goals = [((t[0] - v[0], t[1] - v[1]), d) for t in targets for d, v in enumerate(VEC)]
        return search.field([g for g in goals if g[0] in ok], ok, cost), cost

    def _walk(self, dist: dict[Pose, int], cost: dict[Cell, int]) -> list[Cell]:
        """Cells entered along a cheapest path from the agent down the field."""
        pose, cells = self._pose, []
        while dist.get(pose, 0) > 0:
            ahead = (search.ahead(pose), pose[1])
            if dist.get(ahead, FAR) + 1 + cost.get(ahead[0], 0) == dist[pose]:
                pose = ahead
                cells.append(pose[0])
            else:
                pose = next(p for p in ((pose[0], (pose[1] + k) % 4) for k in (1, 3)) if dist.get(p) == dist[pose] - 1)
        return cells

    def _where(self, objs: list[Any], carriable: bool = False) -> set[Cell]:
        """Cells of these objects (a colour-only description also matches walls: never pick-up targets)."""
        ids = {id(o) for o in objs if o.can_pickup() or not carriable}
        return {c for c, o in self._cells.items() if o is not None and id(o) in ids}

    def _main(self) -> _Plan:
        """The current leaf instruction as a face-then-act sub-goal."""
        leaf, carry = _leaf(self._u.instrs), self._u.carrying

        def say(desc: Any) -> str:
            return f"the {desc.color + ' ' if desc.color else ''}{desc.type or 'object'}"

        if isinstance(leaf, GoToInstr):
            return _Plan("goto", {tuple(p) for p in leaf.desc.obj_poss}, 2, f"go to {say(leaf.desc)}", {})
        if isinstance(leaf, OpenInstr):
            doors = {c for c in self._where(leaf.desc.obj_set) if not self._cells[c].is_open}
            return _Plan("toggle", doors, 2, f"open {say(leaf.desc)}", {})
        if isinstance(leaf, PickupInstr):
            return _Plan("pickup", self._where(leaf.desc.obj_set, True), 2, f"pick up {say(leaf.desc)}", {})
        assert isinstance(leaf, PutNextInstr), f"unhandled instruction {leaf!r}"
        if carry is not None and any(carry is o for o in leaf.desc_move.obj_set):
            spots = self._next_to(leaf.desc_fixed.obj_poss)
            return _Plan("drop", spots, 3, f"put {say(leaf.desc_move)} next to {say(leaf.desc_fixed)}", {})
        return _Plan("pickup", self._where(leaf.desc_move.obj_set, True), 2, f"pick up {say(leaf.desc_move)}", {})

    def _dispose(self, wanted: set[Cell]) -> _Plan:
        """Put the carried object down off the paths still to walk, preferring open floor away from doors so it does
        not become the next blocker.  The spots are kept while the same object is carried: recomputing them from
        every new pose could make the planner oscillate."""
        carry = self._u.carrying
        cached = self._drop_spots.get(id(carry), set())
        spots = {c for c in cached if self._cells.get(c, 1) is None}
        if not spots:
            avoid = set()
            for targets in self._keep_clear:
                avoid |= set(self._walk(*self._field_to(targets, {"locked": True, "movable": True})))
                avoid |= {(x + dx, y + dy) for x, y in targets for dx, dy in ((0, 0), *VEC)}
            ok = {c for c in self._cells if self._passable(c)} | {self._pose[0]}
            reach = {cell for cell, _ in search.bfs(self._pose, ok)}
            free = {c for c in reach if self._cells.get(c) is None} - avoid - {self._pose[0]}
            for x, y in free:
                around = [self._cells.get((x + dx, y + dy), 1) for dx, dy in VEC]
                if sum(o is None for o in around) >= 3 and not any(getattr(o, "type", "") == "door" for o in around):
                    spots.add((x, y))
            # boxed in (every free cell is on a path still to walk): any reachable free cell beats holding on
            spots = spots or free or {c for c in reach if self._cells.get(c) is None} - {self._pose[0]}
            # never wall the agent off from what it must reach next (a drop spot that is the only way through)
            through = {c for c in self._cells if self._passable(c, locked=True)} | {self._pose[0]}
            spots = {c for c in spots if self._keeps_way(through - {c}, [wanted, *self._keep_clear])} or spots
            self._drop_spots = {id(carry): spots}
        note = f"put down the {carry.color} {carry.type} out of the way"
        return _Plan("drop", spots, 0, note, self._field_to(spots, {})[0])

    def _keeps_way(self, ok: set[Cell], targets: list[set[Cell]]) -> bool:
        """Whether every target still to reach has a neighbour the agent can walk to through ``ok``."""
        seen, todo = {self._pose[0]}, [self._pose[0]]
        while todo:
            x, y = todo.pop()
            for dx, dy in VEC:
                if (nxt := (x + dx, y + dy)) in ok and nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return all(any((x + dx, y + dy) in seen for dx, dy in VEC) for t in targets for x, y in t)

    def _make_plan(self) -> _Plan:
        # strict levels (the *Debug ones) fail on toggling a wrong door / picking up a wrong object: never do either
        leaf = _leaf(self._u.instrs)
        self._strict, main = getattr(leaf, "strict", False), self._main()
        self._keep_clear = [main.targets]
        if isinstance(leaf, PutNextInstr) and main.finish == "pickup":
            # clear the way to the drop spots before picking the object up, or we would drop it again to clear it
            spots = self._next_to(leaf.desc_fixed.obj_poss)
            self._keep_clear.append(spots)
            pre = _Plan("drop", spots, 2, main.note, {})
            if (plan := self._achieve(pre, 0)) is not pre:
                return plan
        return self._achieve(main, 0)

    def _next_to(self, cells: list[Any]) -> set[Cell]:
        spots = {(x + dx, y + dy) for x, y in cells for dx, dy in VEC}
        return {c for c in spots if c in self._cells and self._cells[c] is None}

    def _achieve(self, goal: _Plan, depth: int) -> _Plan:
        """Turn a sub-goal into the first thing to do for it: clear hands, fetch a key, unlock a door or move a
        blocker, recursively (a key can sit behind another locked door)."""
        carry, pose = self._u.carrying, self._pose
        goal.dist = self._field_to(goal.targets, {})[0]
        if pose in goal.dist:
            if goal.finish == "pickup" and carry is not None:
                if pose in self._field_to(goal.targets, {"nokey": True})[0]:
                    return self._dispose(goal.targets)
                return goal  # the carried key opens the way: keep it until the door is open
            locked = {
                self._cells[c].color for c in goal.targets if goal.finish == "toggle" and self._cells[c].is_locked
            }
            if locked and not (carry is not None and carry.type == "key" and carry.color in locked) and depth < 4:
                keys = self._best_key(locked, goal.targets)
                note = f"fetch a {'/'.join(sorted(locked))} key to unlock the door"
                return self._achieve(_Plan("pickup", keys, 1, note, {}), depth + 1)
            return goal
        for mode in ({"locked": True}, {"locked": True, "movable": True})[: 1 if self._strict else 2]:
            dist, cost = self._field_to(goal.targets, mode)
            if pose not in dist or depth >= 4:
                continue
            block = next((c for c in self._walk(dist, cost) if not self._passable(c, nokey=True)), None)
            if block is None:
                continue
            obj = self._cells[block]
            if obj.type != "door":
                sub = _Plan("pickup", {block}, 1, f"move the {obj.color} {obj.type} that blocks the way", {})
            elif carry is not None and carry.type == "key" and carry.color == obj.color:
                sub = _Plan("toggle", {block}, 1, f"unlock the {obj.color} door", {})
            else:
                keys = self._best_key({obj.color}, goal.targets)
                sub = _Plan("pickup", keys, 1, f"fetch the {obj.color} key to unlock the {obj.color} door", {})
            return self._achieve(sub, depth + 1)
        return goal

    def _best_key(self, colors: set[str], then: set[Cell]) -> set[Cell]:
        """The key of one of ``colors`` that minimises the walk to it plus the walk on from it to ``then``."""
        keys = {c for c, o in self._cells.items() if o is not None and o.type == "key" and o.color in colors}
        if len(keys) < 2:
            return keys
        parent = search.bfs(self._pose, {c for c in self._cells if self._passable(c)} | {self._pose[0]})
        onward = self._field_to(then, {"locked": True, "movable": True})[0]

        def cost(key: Cell) -> int:
            poses = [p for p in (((key[0] - v[0], key[1] - v[1]), d) for d, v in enumerate(VEC)) if p in parent]
            return min((search.depth(parent, p) + onward.get(p, FAR) for p in poses), default=2 * FAR)

        return {min(sorted(keys), key=cost)}

    def _sees(self, pose: Pose, targets: set[Cell]) -> bool:
        return any(cell in targets for _, _, cell in self._visible(pose))

    def _potential(self) -> tuple[int, int, int]:
        """Progress for the shaped reward: sub-goals done, plan stage, minus the steps left from the agent's *cell*.

        The distance is the best over the four headings, so turning in place never changes it: with the pose's own
        distance a turn toward the target was a new best, and RL on SFT policies whose "go to" replies the server did
        not recognise learned to turn in place (456 of 640 BabyAI actions, success 3/64 -> 0/64, round 6).
        """
        plan, (cell, _) = self._plan, self._pose
        steps = min(plan.dist.get((cell, heading), FAR) for heading in range(4))
        return _done_leaves(self._u.instrs), plan.stage, -steps

    def _simulate(self, prims: list[int]) -> Pose:
        """The pose after ``prims`` on the true grid, stopping where the server stops (a step that changes nothing:
        a forward into a wall, an object or a closed door); toggles open the door ahead if they can."""
        pose, opened, carry = self._pose, set(), self._u.carrying
        for act in prims:
            if act in (search.LEFT, search.RIGHT):
                pose = (pose[0], (pose[1] + (1 if act == search.RIGHT else -1)) % 4)
                continue
            front = search.ahead(pose)
            obj = self._cells.get(front, 1)
            if act == search.FORWARD:
                if not (obj is None or front in opened or (obj != 1 and obj.can_overlap())):
                    break
                pose = (front, pose[1])
            elif act == search.TOGGLE and obj not in (None, 1) and obj.type == "door" and not obj.is_open:
                if obj.is_locked and not (carry is not None and carry.type == "key" and carry.color == obj.color):
                    break
                opened.add(front)
            else:
                break
        return pose

    def _macro(self, verb: str, targets: set[Cell]) -> str | None:
        """The nearest listed ``verb`` action about one of ``targets`` that really ends facing it."""
        best: tuple[int, str] | None = None
        for act, cell in self._targets.items():
            if act.startswith(verb) and cell in targets:
                end = self._simulate(self._acts[act])
                if search.ahead(end) == cell and (best is None or len(self._acts[act]) < best[0]):
                    best = (len(self._acts[act]), act)
        return best[1] if best else None

    def expert_reply(self) -> str:
        """One ReAct reply of the planner; uses only actions listed in the current observation."""
        if self._u is None or self.done:
            return react("The episode is over.", "check available actions")
        plan, pose, acts = self._plan, self._pose, self._acts
        head = f"My goal is to {self.goal}. Right now I need to {plan.note}."
        front = search.ahead(pose)
        if front in plan.targets:
            act, why = {
                "pickup": (self._macro("pickup ", {front}), "It is right in front of me, so I pick it up."),
                "toggle": ("toggle", "The door is right in front of me, so I toggle it."),
                "drop": ("drop", "The free cell in front of me is a good place, so I drop what I carry."),
            }.get(plan.finish, ("turn left", "It is right in front of me; I turn away and back to face it again."))
            if act in acts:
                return react(f"{head} {why} The listed action is '{act}'.", act)
        verb = {"pickup": "pickup ", "goto": "go to ", "toggle": "go to "}.get(plan.finish)
        if verb and (act := self._macro(verb, plan.targets)):
            return react(f"{head} I can see it and there is a path to it: the listed action '{act}'.", act)
        keep = plan.targets if plan.finish == "toggle" else set()  # opening the goal door must end on the toggle
        moves = [a for a in acts if not a.startswith(("pickup", "check", "drop")) and a != "toggle"
                 and not (self._strict and a.startswith("toggle")) and self._targets.get(a) not in keep]  # fmt: skip
        ends = {a: self._simulate(acts[a]) for a in moves}
        act = min(moves, key=lambda a: (plan.dist.get(ends[a], FAR), len(acts[a])))
        if verb:  # among moves that make progress, prefer one after which a target is in sight (one macro ends it)
            here = plan.dist.get(pose, FAR)
            sights = [a for a in moves if plan.dist.get(ends[a], FAR) < here and self._sees(ends[a], plan.targets)]
            act = min(sights, key=lambda a: (plan.dist.get(ends[a], FAR), len(acts[a])), default=act)
        if plan.dist.get(ends[act], FAR) >= FAR:
            return react(f"{head} I see no way there yet, so I look around.", "turn left")
        return react(f"{head} It is not within reach yet; '{act}' brings me closest to it.", act)
