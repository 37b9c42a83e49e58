"""SciWorld on the real ScienceWorld: gold-path expert success per task type, coverage, and episodes/s.

Why: collect keeps only the expert's successful episodes and RL/eval reset a JVM per episode, so we need to know
which task types the gold-path expert can finish within the eval round limit (30) and what an episode costs.
"Covered" = the variation's gold path has at most ``max_turns`` actions; success is counted over covered variations
(and reported over all).  Every task type gets ``per_type`` episodes at distinct variations spread evenly over the
split (ids interleave the types: id ``k + 23 * i`` is type ``k``'s ``i``-th variation).  Timings include the JVM
start, the load with the gold path, and every step.  Writes ``bench/results/envs_sciworld.json`` and prints one line.
Usage: ``python bench/bench_envs_sciworld.py [--per-type N] [--split train|eval] [--max-turns 30]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

from affine.envs.agentgym.sciworld import SciWorld
from affine.envs.agentgym.sciworld_real import task_types

RESULTS = Path(__file__).parent / "results" / "envs_sciworld.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-type", type=int, default=6, help="episodes per task type")
    parser.add_argument("--split", choices=("train", "eval"), default="train")
    parser.add_argument("--max-turns", type=int, default=30)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    n_types = len(task_types())
    env = SciWorld(split=args.split, max_turns=args.max_turns)
    per: dict[str, dict[str, Any]] = {
        t.name: {"episodes": 0, "covered": 0, "solved": 0, "solved_covered": 0, "gold_lengths": []}
        for t in task_types()
    }
    turns = 0
    start = time.perf_counter()
    for j in range(args.per_type):
        for k, kind in enumerate(task_types()):
            # type k's j-th episode: distinct variations spread evenly over the split's range
            task_id = k + n_types * (j * len(kind.split_variations(args.split)) // args.per_type)
            env.reset(task_id)
            row = per[env.family]
            covered = env.expert_covers()
            row["gold_lengths"].append(len(env._gold or []))
            row.setdefault("variations", []).append(env.variation)
            while not (step := env.step(env.expert_reply())).done:
                pass
            row["episodes"] += 1
            row["covered"] += covered
            row["solved"] += step.info["success"]
            row["solved_covered"] += step.info["success"] and covered
            turns += step.info["turn"]
    seconds = time.perf_counter() - start
    episodes = sum(r["episodes"] for r in per.values())
    covered = sum(r["covered"] for r in per.values())
    solved_covered = sum(r["solved_covered"] for r in per.values())
    results = {
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_avg": os.getloadavg(),
        "python": platform.python_version(),
        "split": args.split,
        "max_turns": args.max_turns,
        "episodes": episodes,
        "seconds": round(seconds, 1),
        "episodes_per_s": round(episodes / seconds, 3),
        "steps_per_s": round(turns / seconds, 2),
        "covered": covered,
        "success_covered": round(solved_covered / max(covered, 1), 4),
        "success_all": round(sum(r["solved"] for r in per.values()) / episodes, 4),
        "per_type": per,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(
        f"sciworld {args.split}: {episodes} episodes, {covered} covered (gold <= {args.max_turns}), expert "
        f"{results['success_covered']:.1%} of covered, {results['success_all']:.1%} of all; "
        f"{results['episodes_per_s']} ep/s, {results['steps_per_s']} steps/s -> {args.out}"
    )


if __name__ == "__main__":
    main()
