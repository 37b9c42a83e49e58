"""Benchmark the BabyAI env: expert episodes per second, and the expert's success rate per level.

Why: rollouts for SFT data and RL run this env thousands of times, so its speed matters; the per-level success rates
are what decides ``SUPPORTED_LEVELS`` (the expert must solve >= 95 % of a level's tasks within 20 turns, and >= 98 %
of all supported tasks).  Task ``j`` of a level is the real server's ``data_idx`` ``slot + 40 * j`` (seed ``j``).

    python bench/bench_envs_babyai.py                 # supported levels, 50 train tasks each
    python bench/bench_envs_babyai.py --all --tasks 20    # all 40 AgentGym levels (what the README quotes)

Writes ``bench/results/envs_babyai.json`` and prints one line.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from affine.envs.agentgym.babyai import AGENTGYM_LEVELS, SUPPORTED_LEVELS, BabyAI  # noqa: E402


def run_level(level: str, tasks: int, max_turns: int, split: str) -> dict:
    env = BabyAI(difficulty=2, max_turns=max_turns, split=split)
    slot = AGENTGYM_LEVELS.index(level)
    wins, turns, steps, score = 0, 0, 0, 0.0
    start = time.perf_counter()
    for j in range(tasks):
        env.reset(slot + 40 * j)
        step = None
        while not env.done:
            step = env.step(env.expert_reply())
        assert step is not None
        wins += step.info["success"]
        turns += step.info["turn"]
        steps += step.info["primitive_steps"]
        score += step.score
    seconds = time.perf_counter() - start
    return {"tasks": tasks, "success_rate": wins / tasks, "mean_score": score / tasks, "mean_turns": turns / tasks,
            "mean_primitive_steps": steps / tasks, "seconds": seconds}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=50, help="tasks per level")
    parser.add_argument("--split", default="train", choices=["train", "eval"])
    parser.add_argument("--all", action="store_true", help="all 40 AgentGym levels, not only the supported ones")
    parser.add_argument("--max-turns", type=int, default=20)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "envs_babyai.json"))
    args = parser.parse_args()
    levels = AGENTGYM_LEVELS if args.all else SUPPORTED_LEVELS
    per_level = {level: run_level(level, args.tasks, args.max_turns, args.split) for level in levels}
    episodes = sum(r["tasks"] for r in per_level.values())
    seconds = sum(r["seconds"] for r in per_level.values())
    supported = [per_level[lv] for lv in levels if lv in SUPPORTED_LEVELS]
    supported_tasks = sum(r["tasks"] for r in supported)
    result = {
        "env": "agentgym:babyai",
        "expert_episodes_per_s": episodes / seconds,
        "episodes": episodes,
        "seconds": seconds,
        "supported_success_rate": sum(r["success_rate"] * r["tasks"] for r in supported) / max(1, supported_tasks),
        "min_supported_level_rate": min((r["success_rate"] for r in supported), default=None),
        "max_turns": args.max_turns,
        "split": args.split,
        "levels": per_level,
        "machine": platform.platform(),
        "python": platform.python_version(),
    }  # fmt: skip
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"babyai expert: {result['expert_episodes_per_s']:.1f} episodes/s over {episodes} episodes, supported "
          f"success {result['supported_success_rate']:.3f} (worst level {result['min_supported_level_rate']:.2f}) "
          f"-> {args.out}")  # fmt: skip


if __name__ == "__main__":
    main()
