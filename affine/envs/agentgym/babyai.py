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
import io
import json
from typing import Any

import gymnasium as gym
import minigrid  # noqa: F401  (registers the BabyAI-* ids)
import numpy as np

from affine.envs.agentgym import babyai_search as search
from affine.envs.agentgym.babyai_expert import Expert
from affine.envs.agentgym.babyai_search import DROP, FORWARD, LEFT, PICKUP, RIGHT, TOGGLE, VEC, Cell, Pose
from affine.envs.agentgym.react import parse_single
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


class BabyAI(Expert):
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
        (px, py), f, r = pose[0], VEC[pose[1]], VEC[(pose[1] + 1) % 4]
        visible, size = self._visible(pose), u.agent_view_size
        self._known.update(c for _, _, c in visible)
        ok = {c for c in self._known if self._passable(c, strict=True)} | {pose[0]}
        parent = search.bfs(pose, ok)
        lines: list[str] = []
        counts: dict[str, int] = {}
        self._labels: dict[Cell, str] = {}
        moves: dict[str, list[int]] = {"turn left": [LEFT], "turn right": [RIGHT]}
        takes: dict[str, list[int]] = {}
        doors: dict[str, list[int]] = {}
        gotos: dict[str, list[int]] = {}
        errs: dict[str, str] = {}
        front = search.ahead(pose)
        blocked = "There is a barrier in front of you, you can't move forward."
        search.offer(moves, errs, "move forward", [FORWARD] if front in ok else None, blocked)
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
            face = search.path(parent, [((cell[0] - v[0], cell[1] - v[1]), d) for d, v in enumerate(VEC)])
            onto = search.path(parent, [(cell, d) for d in range(4)])
            no_path = ", as there is no path leading to it."
            if obj.type == "goal":
                search.offer(doors, errs, "go to goal", onto, "You cannot go to the goal" + no_path)
                continue
            search.offer(gotos, errs, f"go to {label}", face, f"You cannot go to {label}{no_path}")
            if obj.can_pickup():
                why = ", as you are already carrying something." if carry else no_path
                path = None if carry or face is None else face + [PICKUP]
                search.offer(takes, errs, f"pickup {label}", path, f"You cannot pickup {label}{why}")
            if obj.type == "door":
                through, toggle = f"go through {label}", f"toggle and go through {label}"
                if obj.is_open:
                    search.offer(doors, errs, through, onto, f"You cannot {through}{no_path}")
                    continue
                errs[through] = f"You cannot {through}, as it is closed. You should toggle it first."
                has_key = carry is not None and carry.type == "key" and carry.color == obj.color
                why = no_path if has_key or not obj.is_locked else ", as you are not carrying a key of its color."
                path = None if face is None or (obj.is_locked and not has_key) else face + [TOGGLE, FORWARD]
                search.offer(doors, errs, toggle, path, f"You cannot {toggle}{why}")
                if path is not None and not face:
                    doors["toggle"] = [TOGGLE]
        errs.setdefault("toggle", "There is no door in front of you that you can toggle.")
        why = "there is already an object in front of you" if carry else "you are not carrying anything"
        search.offer(takes, errs, "drop", [DROP] if carry and self._cells.get(front, 1) is None else None,
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
