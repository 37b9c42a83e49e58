"""BabyAI as AgentGym serves it: the real ``minigrid`` levels behind AgentGym's text view and high-level actions.

Why the real levels: ``minigrid`` runs offline and is what the AgentGym server wraps, so missions, layouts, seeds and
the score (``1 - 0.9 * steps / max_steps`` on success) are what validators see.  Task ``i`` maps over the active level
list ``L`` as AgentGym maps over its 40: level ``L[i % len(L)]``, seed ``i // len(L)``; with ``difficulty=2`` (all 40
in the server's table order, ``AGENTGYM_LEVELS``) task ids equal the server's.  ``GoToObjS6`` is ``-v1`` in minigrid 3
(the server's ``-v0`` id is gone).  The eval split adds ``EVAL_SEED_BASE`` to the seed, so it never meets train.

The agent sees only its 7x7 egocentric view, rendered as AgentGym does ("There is a red ball 1 right in front of you
3 steps away", "You are facing a wall 2 steps away", carrying state, ``Available actions: [...]``).  Each high-level
action expands to primitive minigrid actions by a breadth-first search over poses (cell, heading) of the cells the
agent has *seen so far*, so every listed action executes exactly; an unlisted one gets AgentGym's error text and
changes nothing.  Objects are numbered per name, nearest first, the same way in the text and in action names (the
server numbers reachable objects separately; one numbering is less confusing).  On purpose unlike the server: the
episode ends on any minigrid termination or truncation (the server keeps a success with reward <= 0.5 running).  Like
it: the goal is rewritten "then"/"after you" -> "and", and ``pickup`` is the action name (``pick up`` is accepted).

Shaping (RL signal; the real score stays in ``Step.score``): ``completion`` on success; ``progress`` (+0.15) when a turn
reaches a new best of the expert planner's potential (sub-goals done, plan stage, minus the BFS distance to the current
target), so drop/pick-up loops cannot farm it; ``invalid_penalty`` for an unusable reply; ``timeout_penalty`` when the
turn budget or minigrid's step budget runs out.

The expert plans from the full state (targets from the mission's verifier, keys for locked doors, blockers moved out of
the way, objects put next to others) and acts only through the listed actions, picking the one whose end pose is
nearest its target.  ``SUPPORTED_LEVELS`` (the default, ``difficulty=1``) are the levels it solves >= 95 % of the time
within 20 turns (rates in the comment there); ``difficulty=0`` is a single-room curriculum (``EASY_LEVELS``).
"""

from __future__ import annotations

import contextlib
import heapq
import io
import json
from collections import deque
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import minigrid  # noqa: F401  (registers the BabyAI-* ids)
import numpy as np
from minigrid.envs.babyai.core.verifier import (
    AfterInstr,
    GoToInstr,
    OpenInstr,
    PickupInstr,
    PutNextInstr,
    SeqInstr,
)

from affine.envs.agentgym.react import parse_single, react
from affine.envs.base import Shaping, Step, check_split

_SHORT = (
    "GoToRedBallGrey GoToRedBall GoToRedBallNoDists GoToObjS6 GoToLocalS8N7 GoToObjMazeS7 GoToImpUnlock GoToSeqS5R2 "
    "GoToRedBlueBall GoToDoor GoToObjDoor Open OpenRedDoor OpenDoorLoc OpenRedBlueDoorsDebug OpenDoorsOrderN4Debug "
    "Pickup UnblockPickup PickupLoc PickupDistDebug PickupAbove PutNextLocalS6N4 PutNextS7N4Carrying Unlock "
    "UnlockLocalDist KeyInBox UnlockPickupDist BlockedUnlockPickup UnlockToUnlock ActionObjDoor FindObjS7 "
    "KeyCorridorS6R3 OneRoomS20 MoveTwoAcrossS8N9 SynthS5R2 SynthLoc SynthSeq MiniBossLevel BossLevel BossLevelNoUnlock"
).split()
AGENTGYM_LEVELS: tuple[str, ...] = tuple(f"BabyAI-{s}-{'v1' if s == 'GoToObjS6' else 'v0'}" for s in _SHORT)
EASY_LEVELS: tuple[str, ...] = tuple(
    f"BabyAI-{s}-v{1 if s == 'GoToObjS6' else 0}"
    for s in "GoToRedBallGrey GoToRedBall GoToRedBallNoDists GoToObjS6 GoToLocalS8N7 PickupLoc".split()
)
# Expert success within 20 turns on train tasks 0..199 of each level (`bench/bench_envs_babyai.py --all --tasks 200`):
# 1.00 GoToRedBallGrey GoToRedBall GoToRedBallNoDists GoToObjS6 GoToLocalS8N7 GoToSeqS5R2 GoToRedBlueBall GoToDoor
#      GoToObjDoor Open OpenRedDoor OpenDoorLoc OpenRedBlueDoorsDebug PickupLoc PickupAbove PutNextLocalS6N4
#      BlockedUnlockPickup UnlockToUnlock ActionObjDoor; 0.995 PutNextS7N4Carrying UnlockLocalDist; 0.99 FindObjS7;
# 0.985 GoToObjMazeS7 Pickup PickupDistDebug UnlockPickupDist SynthLoc; 0.98 UnblockPickup OneRoomS20.
# Left out (< 0.95 or too close): SynthS5R2 0.955, MoveTwoAcrossS8N9 0.94, KeyCorridorS6R3 0.935, Unlock 0.925,
# MiniBossLevel 0.91, GoToImpUnlock 0.905 (some keys sit inside their own locked room), BossLevelNoUnlock 0.86,
# SynthSeq 0.855, BossLevel 0.835 (20 turns are too few for their long missions with one-cell "move forward" walks),
# OpenDoorsOrderN4Debug 0.29 (minigrid's strict verifier fails every two-door order mission: the toggle that finishes
# the first door is re-checked against the second), KeyInBox 0.00 (the key is inside a box; AgentGym's actions
# cannot open boxes).
_UNSUPPORTED = "SynthS5R2 KeyCorridorS6R3 MoveTwoAcrossS8N9 Unlock GoToImpUnlock MiniBossLevel BossLevelNoUnlock "
_UNSUPPORTED += "SynthSeq BossLevel OpenDoorsOrderN4Debug KeyInBox"
SUPPORTED_LEVELS: tuple[str, ...] = tuple(lv for lv in AGENTGYM_LEVELS if lv.split("-")[1] not in _UNSUPPORTED.split())
EVAL_SEED_BASE = 1_000_000  # eval seeds live in [1e6, 2e6): disjoint from train's [0, 1e6)
LEFT, RIGHT, FORWARD, PICKUP, DROP, TOGGLE = range(6)
_VEC = ((1, 0), (0, 1), (-1, 0), (0, -1))
_FAR = 10**6
Cell = tuple[int, int]
Pose = tuple[Cell, int]

INSTRUCTIONS = (
    "You are an agent in a grid world made of rooms, and you must accomplish the goal you are given. Every turn I "
    "describe what you can see in front of you and list the actions you can take now; answer with one action.\n\n"
    "Actions:\n- turn left / turn right: rotate in place.\n- move forward: step one cell ahead.\n"
    "- go to <obj> <id>: walk up to an object you can see and face it, e.g. go to red ball 1.\n"
    "- pick up <obj> <id>: walk to an object you can see and pick it up; you can carry one object at a time.\n"
    "- drop: put the object you carry on the free cell in front of you.\n"
    "- go through <door> <id>: walk into an open door you can see.\n"
    "- toggle and go through <door> <id>: open a closed door, or a locked one if you carry a key of its color, and "
    "step into it.\n- toggle: open the closed or locked door right in front of you.\n"
    "- go to goal: walk onto the goal square.\n- check available actions: list what you can do now.\n"
    "Objects are named by color and type plus a number counting objects of that name from the nearest one, e.g. "
    "grey key 1, blue closed door 2.\n\nYour response should use the following format:\n"
    "Thought:\n<your thoughts>\n\nAction:\n<your action>"
)


def level_id(level: int | str) -> str:
    """Accept an AgentGym level number (1..40), a short name (``GoToRedBall``) or a gym id (``-v0`` of a level that
    minigrid 3 only has as ``-v1``, like the server's ``BabyAI-GoToObjS6-v0``, maps to it)."""
    if isinstance(level, int):
        if not 1 <= level <= len(AGENTGYM_LEVELS):
            raise ValueError(f"AgentGym BabyAI levels are numbered 1..{len(AGENTGYM_LEVELS)}, got {level}")
        return AGENTGYM_LEVELS[level - 1]
    name = level if level.startswith("BabyAI-") else f"BabyAI-{level}-v0"
    if name not in gym.registry and name.endswith("-v0"):
        name = name[:-1] + "1"
    if name not in gym.registry:
        raise ValueError(f"unknown BabyAI level {level!r}")
    return name


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


def _ahead(pose: Pose) -> Cell:
    (x, y), d = pose
    return x + _VEC[d][0], y + _VEC[d][1]


def _end_pose(pose: Pose, path: list[int]) -> Pose:
    for a in path:
        if a == LEFT:
            pose = (pose[0], (pose[1] - 1) % 4)
        elif a == RIGHT:
            pose = (pose[0], (pose[1] + 1) % 4)
        elif a == FORWARD:
            pose = (_ahead(pose), pose[1])
    return pose


def _bfs(start: Pose, ok: set[Cell]) -> dict[Pose, tuple[Pose, int, int] | None]:
    """Forward BFS over poses through passable cells; value = (parent pose, action, depth) for path rebuilding."""
    parent: dict[Pose, tuple[Pose, int, int] | None] = {start: None}
    queue = deque([(start, 0)])
    while queue:
        pose, depth = queue.popleft()
        for act, nxt in ((FORWARD, (_ahead(pose), pose[1])), (LEFT, (pose[0], (pose[1] - 1) % 4)),
                         (RIGHT, (pose[0], (pose[1] + 1) % 4))):  # fmt: skip
            if nxt not in parent and nxt[0] in ok:
                parent[nxt] = (pose, act, depth + 1)
                queue.append((nxt, depth + 1))
    return parent


def _depth(parent: dict[Pose, tuple[Pose, int, int] | None], pose: Pose) -> int:
    step = parent[pose]
    return 0 if step is None else step[2]


def _path(parent: dict[Pose, tuple[Pose, int, int] | None], goals: list[Pose]) -> list[int] | None:
    """Shortest primitive path to the nearest of ``goals`` (None if none is reachable)."""
    found = [g for g in goals if g in parent]
    if not found:
        return None
    goal = min(found, key=lambda g: _depth(parent, g))
    path: list[int] = []
    while (step := parent[goal]) is not None:
        goal, act, _ = step
        path.append(act)
    return path[::-1]


def _offer(acts: dict[str, list[int]], errs: dict[str, str], key: str, path: list[int] | None, err: str) -> None:
    if path is None:
        errs[key] = err
    else:
        acts[key] = path


def _field(goals: list[Pose], ok: set[Cell], cost: dict[Cell, int]) -> dict[Pose, int]:
    """Reverse search: primitive steps from every pose to the nearest goal pose (the expert's metric).  Entering a
    cell in ``cost`` costs extra (Dijkstra), so detours through locked doors or blockers are taken only when needed;
    without costs a plain BFS is several times faster."""
    dist = {g: 0 for g in goals}
    frontier: Any = [(0, g) for g in goals] if cost else deque(goals)
    while frontier:
        if cost:
            k, pose = heapq.heappop(frontier)
            if k > dist[pose]:
                continue
        else:
            pose = frontier.popleft()
            k = dist[pose]
        (x, y), d = pose
        for prev, step in (((pose[0], (d - 1) % 4), 1), ((pose[0], (d + 1) % 4), 1),
                           (((x - _VEC[d][0], y - _VEC[d][1]), d), 1 + cost.get(pose[0], 0))):  # fmt: skip
            if prev[0] in ok and k + step < dist.get(prev, _FAR):
                dist[prev] = k + step
                if cost:
                    heapq.heappush(frontier, (k + step, prev))
                else:
                    frontier.append(prev)
    return dist


@dataclass
class _Plan:
    """The expert's current sub-goal: face one of ``targets`` then do ``finish`` (goto/pickup/toggle/drop)."""

    finish: str
    targets: set[Cell]
    stage: int
    note: str
    dist: dict[Pose, int]


class BabyAI:
    """AgentGym's BabyAI over real minigrid levels (see the module docstring for the why of each choice)."""

    name = "agentgym:babyai"

    def __init__(
        self,
        split: str = "train",
        max_turns: int = 20,
        difficulty: int = 1,
        shaping: Shaping | None = None,
        seed: int = 0,
        levels: list[int | str] | None = None,
    ) -> None:
        check_split(split)
        self.split, self.max_turns, self.seed = split, max_turns, seed
        self.difficulty = difficulty
        self.shaping = shaping or Shaping()
        if levels is None:
            levels = list((EASY_LEVELS, SUPPORTED_LEVELS, AGENTGYM_LEVELS)[max(0, min(difficulty, 2))])
        self.levels = [level_id(lv) for lv in levels]
        if not self.levels:
            raise ValueError("levels must not be empty")
        self.instructions = INSTRUCTIONS
        self._envs: dict[str, Any] = {}
        self._u: Any = None
        self._strict = False
        self.done = True

    # ---- episode -------------------------------------------------------------------------------------------------
    def task(self, task_id: int) -> tuple[str, int]:
        """(gym level id, minigrid seed) of ``task_id`` in this split."""
        n = len(self.levels)
        base = EVAL_SEED_BASE if self.split == "eval" else 0
        return self.levels[task_id % n], base + (self.seed + task_id // n) % EVAL_SEED_BASE

    def reset(self, task_id: int) -> str:
        level, seed = self.task(task_id)
        if level not in self._envs:
            self._envs[level] = gym.make(level).unwrapped
        self._u = self._envs[level]
        with contextlib.redirect_stdout(io.StringIO()):  # minigrid prints its rejection sampling
            self._u.reset(seed=seed)
        self.task_id, self.level, self.level_seed = task_id, level, seed
        self.turns, self.score, self.done, self._known = 0, 0.0, False, set()
        self._drop_spots: dict[int, set[Cell]] = {}
        goal = self._u.mission.replace("then", "and").replace("after you", "and")
        self.goal = goal
        self._refresh()
        self._best = self._potential()
        return f"Your goal: {goal}\n{self._text}\n{self._menu()}"

    def step(self, reply: str) -> Step:
        if self._u is None or self.done:
            raise RuntimeError("call reset() before step(); the episode is over")
        self.turns += 1
        parsed = parse_single(reply)
        action = (parsed.action or "").lower().replace("pick up", "pickup").strip()
        valid, success, reward, failed = parsed.action is not None, False, 0.0, False
        if not valid:
            feedback = parsed.error or "Invalid Action."
        elif action.startswith("check"):
            feedback = "You can take the following actions: " + ", ".join(self._acts)
        elif action not in self._acts:
            valid = False
            feedback = self._errs.get(action, "The action is not recognized. Please check valid actions.")
        else:
            r, term, trunc = 0.0, False, False
            for prim in self._acts[action]:
                _, r, term, trunc, _ = self._u.step(prim)
                if term or trunc:
                    break
            success = bool(term and r > 0)
            failed = bool((term or trunc) and not success)
            self.score = float(r) if success else 0.0
            self._refresh()
            feedback = self._text + (" The task is completed." if success else "")
            if not success and not failed and (pot := self._potential()) > self._best:
                self._best, reward = pot, self.shaping.progress
        timeout = not success and (failed or self.turns >= self.max_turns)
        self.done = success or timeout
        reward += self.shaping.completion if success else 0.0
        reward += 0.0 if valid else self.shaping.invalid_penalty
        reward += self.shaping.timeout_penalty if timeout else 0.0
        info = {"action": action, "valid": valid, "success": success, "level": self.level, "seed": self.level_seed,
                "turn": self.turns, "primitive_steps": self._u.step_count, "max_steps": self._u.max_steps}  # fmt: skip
        return Step(f"{feedback}\n{self._menu()}", reward, self.done, self.score, info)

    @property
    def minigrid(self) -> Any:
        """The live minigrid level (unwrapped): for tests and tools that build or inspect states."""
        return self._u

    def observe(self) -> str:
        """The current view and action list (what the last observation showed), recomputed from the live state."""
        self._refresh()
        return f"{self._text}\n{self._menu()}"

    # ---- the agent's view and its action set -----------------------------------------------------------------------
    def _menu(self) -> str:
        return "Available actions: " + json.dumps(list(self._acts))

    def _refresh(self) -> None:
        """Recompute what the agent sees, the text, the listed actions and the expert's plan."""
        u, carry = self._u, self._u.carrying
        self._cells = {(x, y): u.grid.get(x, y) for x in range(u.width) for y in range(u.height)}
        self._pose = pose = ((int(u.agent_pos[0]), int(u.agent_pos[1])), int(u.agent_dir))
        (px, py), f, r = pose[0], _VEC[pose[1]], _VEC[(pose[1] + 1) % 4]
        visible, size = self._visible(pose), u.agent_view_size
        self._known.update(c for _, _, c in visible)
        ok = {c for c in self._known if self._passable(c, strict=True)} | {pose[0]}
        parent = _bfs(pose, ok)
        lines: list[str] = []
        counts: dict[str, int] = {}
        self._labels: dict[Cell, str] = {}
        moves: dict[str, list[int]] = {"turn left": [LEFT], "turn right": [RIGHT]}
        takes: dict[str, list[int]] = {}
        doors: dict[str, list[int]] = {}
        gotos: dict[str, list[int]] = {}
        errs: dict[str, str] = {}
        front = _ahead(pose)
        blocked = "There is a barrier in front of you, you can't move forward."
        _offer(moves, errs, "move forward", [FORWARD] if front in ok else None, blocked)
        for dist, _, cell in visible:
            obj = self._cells[cell]
            if obj is None or obj.type in ("wall", "floor") or dist == 0:
                continue
            state = ("open" if obj.is_open else "locked" if obj.is_locked else "closed") if obj.type == "door" else ""
            name = f"{obj.color} {state} door" if state else f"{obj.color} {obj.type}"
            counts[name] = counts.get(name, 0) + 1
            label = self._labels[cell] = f"{name} {counts[name]}"
            ahead = (cell[0] - px) * f[0] + (cell[1] - py) * f[1]
            side = (cell[0] - px) * r[0] + (cell[1] - py) * r[1]
            where = f"{ahead} steps in front of you and {abs(side)} steps to your {'right' if side > 0 else 'left'}"
            lines.append(f"There is a {label} {where if side else f'right in front of you {ahead} steps away'}.")
            face = _path(parent, [((cell[0] - v[0], cell[1] - v[1]), d) for d, v in enumerate(_VEC)])
            onto = _path(parent, [(cell, d) for d in range(4)])
            no_path = ", as there is no path leading to it."
            if obj.type == "goal":
                _offer(doors, errs, "go to goal", onto, "You cannot go to the goal" + no_path)
                continue
            _offer(gotos, errs, f"go to {label}", face, f"You cannot go to {label}{no_path}")
            if obj.can_pickup():
                why = ", as you are already carrying something." if carry else no_path
                path = None if carry or face is None else face + [PICKUP]
                _offer(takes, errs, f"pickup {label}", path, f"You cannot pickup {label}{why}")
            if obj.type == "door":
                through, toggle = f"go through {label}", f"toggle and go through {label}"
                if obj.is_open:
                    _offer(doors, errs, through, onto, f"You cannot {through}{no_path}")
                    continue
                errs[through] = f"You cannot {through}, as it is closed. You should toggle it first."
                has_key = carry is not None and carry.type == "key" and carry.color == obj.color
                why = no_path if has_key or not obj.is_locked else ", as you are not carrying a key of its color."
                path = None if face is None or (obj.is_locked and not has_key) else face + [TOGGLE, FORWARD]
                _offer(doors, errs, toggle, path, f"You cannot {toggle}{why}")
                if path is not None and not face:
                    doors["toggle"] = [TOGGLE]
        errs.setdefault("toggle", "There is no door in front of you that you can toggle.")
        why = "there is already an object in front of you" if carry else "you are not carrying anything"
        _offer(takes, errs, "drop", [DROP] if carry and self._cells.get(front, 1) is None else None,
               f"You cannot drop the object, as {why}.")  # fmt: skip
        self._acts = {**moves, **takes, **doors, **gotos, "check available actions": []}
        self._errs = errs
        wall = ""
        for k in range(1, size):  # the nearest wall (or box) straight ahead, as far as the agent can see
            obj = self._cells.get((px + f[0] * k, py + f[1] * k))
            if obj is not None and obj.type in ("wall", "box"):
                wall = f"You are facing a {obj.type} {k} steps away. "
                break
            if obj is not None and not obj.see_behind():
                break
        seen = "In front of you in this room, you can see several objects: " + " ".join(lines) if lines else (
            "You cannot see any objects within sight.")  # fmt: skip
        holding = f"carrying a {carry.color} {carry.type}." if carry else "not carrying anything."
        self._text = f"{seen} The room has walls around you. {wall}You are {holding}"
        self._plan = self._make_plan()

    def _visible(self, pose: Pose) -> list[tuple[int, int, Cell]]:
        """(distance, scan order, cell) of the cells seen from ``pose``, nearest first (minigrid's own occlusion)."""
        u, (px, py), f, r = self._u, pose[0], _VEC[pose[1]], _VEC[(pose[1] + 1) % 4]
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

    # ---- the expert: plans from the full state, acts through the listed actions -------------------------------------
    def _field_to(self, targets: set[Cell], mode: dict[str, bool]) -> tuple[dict[Pose, int], dict[Cell, int]]:
        """Distance field to the poses facing ``targets`` under a passability ``mode``, and its cell costs."""
        ok = {c for c in self._cells if self._passable(c, **mode)}
        ok.add(self._pose[0])
        cost = {c: 30 for c in ok if mode and not self._passable(c)} if mode.keys() & {"locked", "movable"} else {}
        goals = [((t[0] - v[0], t[1] - v[1]), d) for t in targets for d, v in enumerate(_VEC)]
        return _field([g for g in goals if g[0] in ok], ok, cost), cost

    def _walk(self, dist: dict[Pose, int], cost: dict[Cell, int]) -> list[Cell]:
        """Cells entered along a cheapest path from the agent down the field."""
        pose, cells = self._pose, []
        while dist.get(pose, 0) > 0:
            ahead = (_ahead(pose), pose[1])
            if dist.get(ahead, _FAR) + 1 + cost.get(ahead[0], 0) == dist[pose]:
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

    def _dispose(self) -> _Plan:
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
                avoid |= {(x + dx, y + dy) for x, y in targets for dx, dy in ((0, 0), *_VEC)}
            ok = {c for c in self._cells if self._passable(c)} | {self._pose[0]}
            reach = {cell for cell, _ in _bfs(self._pose, ok)}
            free = {c for c in reach if self._cells.get(c) is None} - avoid - {self._pose[0]}
            for x, y in free:
                around = [self._cells.get((x + dx, y + dy), 1) for dx, dy in _VEC]
                if sum(o is None for o in around) >= 3 and not any(getattr(o, "type", "") == "door" for o in around):
                    spots.add((x, y))
            spots = spots or free
            self._drop_spots = {id(carry): spots}
        note = f"put down the {carry.color} {carry.type} out of the way"
        return _Plan("drop", spots, 0, note, self._field_to(spots, {})[0])

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
        spots = {(x + dx, y + dy) for x, y in cells for dx, dy in _VEC}
        return {c for c in spots if c in self._cells and self._cells[c] is None}

    def _achieve(self, goal: _Plan, depth: int) -> _Plan:
        """Turn a sub-goal into the first thing to do for it: clear hands, fetch a key, unlock a door or move a
        blocker, recursively (a key can sit behind another locked door)."""
        carry, pose = self._u.carrying, self._pose
        goal.dist = self._field_to(goal.targets, {})[0]
        if pose in goal.dist:
            if goal.finish == "pickup" and carry is not None:
                if pose in self._field_to(goal.targets, {"nokey": True})[0]:
                    return self._dispose()
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
        parent = _bfs(self._pose, {c for c in self._cells if self._passable(c)} | {self._pose[0]})
        onward = self._field_to(then, {"locked": True, "movable": True})[0]

        def cost(key: Cell) -> int:
            poses = [p for p in (((key[0] - v[0], key[1] - v[1]), d) for d, v in enumerate(_VEC)) if p in parent]
            return min((_depth(parent, p) + onward.get(p, _FAR) for p in poses), default=2 * _FAR)

        return {min(sorted(keys), key=cost)}

    def _sees(self, pose: Pose, targets: set[Cell]) -> bool:
        return any(cell in targets for _, _, cell in self._visible(pose))

    def _potential(self) -> tuple[int, int, int]:
        plan = self._plan
        return _done_leaves(self._u.instrs), plan.stage, -plan.dist.get(self._pose, _FAR)

    def expert_reply(self) -> str:
        """One ReAct reply of the planner; uses only actions listed in the current observation."""
        if self._u is None or self.done:
            return react("The episode is over.", "check available actions")
        plan, pose, acts = self._plan, self._pose, self._acts
        head = f"My goal is to {self.goal}. Right now I need to {plan.note}."
        front = _ahead(pose)
        if front in plan.targets:
            label = self._labels.get(front, "object")
            act, why = {
                "pickup": (f"pickup {label}", f"The {label} is right in front of me, so I pick it up."),
                "toggle": ("toggle", f"The {label} is right in front of me, so I toggle it."),
                "drop": ("drop", "The free cell in front of me is a good place, so I drop what I carry."),
            }.get(plan.finish, ("turn left", f"The {label} is right in front of me; I turn away and back to confirm."))
            if act in acts:
                return react(f"{head} {why}", act)
        verb = {"pickup": "pickup {}", "goto": "go to {}", "toggle": "toggle and go through {}"}.get(plan.finish)
        visible = sorted(
            plan.targets & self._labels.keys(), key=lambda c: abs(c[0] - pose[0][0]) + abs(c[1] - pose[0][1])
        )
        for cell in visible if verb else []:
            if (act := verb.format(self._labels[cell])) in acts:  # type: ignore[union-attr]
                return react(f"{head} I can see the {self._labels[cell]} and there is a path to it.", act)
        moves = [a for a in acts if not a.startswith(("pickup", "check", "drop")) and a != "toggle"]
        ends = {a: _end_pose(pose, acts[a]) for a in moves}
        act = min(moves, key=lambda a: (plan.dist.get(ends[a], _FAR), len(acts[a])))
        if verb:  # among moves that make progress, prefer one after which a target is in sight (one macro ends it)
            here = plan.dist.get(pose, _FAR)
            sights = [a for a in moves if plan.dist.get(ends[a], _FAR) < here and self._sees(ends[a], plan.targets)]
            act = min(sights, key=lambda a: (plan.dist.get(ends[a], _FAR), len(acts[a])), default=act)
        if plan.dist.get(_end_pose(pose, acts[act]), _FAR) >= _FAR:
            return react(f"{head} I see no way there yet, so I look around.", "turn left")
        return react(f"{head} It is not within reach yet; '{act}' brings me closest to it.", act)
