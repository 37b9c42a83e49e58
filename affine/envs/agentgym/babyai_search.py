"""Pose and grid search for the BabyAI expert: searches over poses (cell, heading) of the full grid, and the primitive
action ids and headings the env and its view share.  (The server's own path search, over the current view only, is
``babyai_view.find_path``: the expert plans with more than the agent sees, but acts only through listed actions.)"""

from __future__ import annotations

import heapq
from collections import deque
from typing import Any

LEFT, RIGHT, FORWARD, PICKUP, DROP, TOGGLE = range(6)
VEC = ((1, 0), (0, 1), (-1, 0), (0, -1))
FAR = 10**6
Cell = tuple[int, int]
Pose = tuple[Cell, int]


def ahead(pose: Pose) -> Cell:
    (x, y), d = pose
    return x + VEC[d][0], y + VEC[d][1]


def bfs(start: Pose, ok: set[Cell]) -> dict[Pose, tuple[Pose, int, int] | None]:
    """Forward BFS over poses through passable cells; value = (parent pose, action, depth) for path rebuilding."""
    parent: dict[Pose, tuple[Pose, int, int] | None] = {start: None}
    queue = deque([(start, 0)])
    while queue:
        pose, depth = queue.popleft()
        for act, nxt in ((FORWARD, (ahead(pose), pose[1])), (LEFT, (pose[0], (pose[1] - 1) % 4)),
                         (RIGHT, (pose[0], (pose[1] + 1) % 4))):  # fmt: skip
            if nxt not in parent and nxt[0] in ok:
                parent[nxt] = (pose, act, depth + 1)
                queue.append((nxt, depth + 1))
    return parent


def depth(parent: dict[Pose, tuple[Pose, int, int] | None], pose: Pose) -> int:
    step = parent[pose]
    return 0 if step is None else step[2]


def field(goals: list[Pose], ok: set[Cell], cost: dict[Cell, int]) -> dict[Pose, int]:
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
                           (((x - VEC[d][0], y - VEC[d][1]), d), 1 + cost.get(pose[0], 0))):  # fmt: skip
            if prev[0] in ok and k + step < dist.get(prev, FAR):
                dist[prev] = k + step
                if cost:
                    heapq.heappush(frontier, (k + step, prev))
                else:
                    frontier.append(prev)
    return dist
