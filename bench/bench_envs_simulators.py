"""Expert episodes per second for the offline WebShop, ALFWorld and TextCraft simulators.

Why: the collect stage plays thousands of expert episodes and RL resets these envs every rollout, so the simulators
must cost far less than the model's turns.  Writes ``bench/results/envs_simulators.json`` and prints one line.
Usage: ``python bench/bench_envs_simulators.py [--episodes N]`` (BabyAI has its own bench on the real minigrid levels,
SciWorld runs the real ScienceWorld: ``bench_envs_sciworld.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

from affine.envs.agentgym.alfworld import ALFWorld
from affine.envs.agentgym.textcraft import TextCraft
from affine.envs.agentgym.webshop import WebShop

RESULTS = Path(__file__).parent / "results" / "envs_simulators.json"
# env -> (class, difficulties benchmarked)
SIMULATORS = {
    "agentgym:webshop": (WebShop, (1, 2, 3)),
    "agentgym:alfworld": (ALFWorld, (1, 2, 3)),
    "agentgym:textcraft": (TextCraft, (1, 2, 3, 4)),
}


def bench(env_cls: type, episodes: int, difficulty: int) -> dict[str, Any]:
    """Play ``episodes`` expert episodes per split; time everything (reset, expert, step)."""
    solved = turns = 0
    start = time.perf_counter()
    for split in ("train", "eval"):
        env = env_cls(split=split, difficulty=difficulty)
        for task_id in range(episodes):
            env.reset(task_id)
            while True:
                step = env.step(env.expert_reply())
                if step.done:
                    break
            solved += bool(step.info["success"])
            turns += step.info["turn"]
    seconds = time.perf_counter() - start
    n = 2 * episodes
    return {
        "difficulty": difficulty,
        "episodes": n,
        "seconds": round(seconds, 4),
        "episodes_per_s": round(n / seconds, 1),
        "steps_per_s": round(turns / seconds, 1),
        "expert_success": solved / n,
        "mean_turns": round(turns / n, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=500, help="episodes per split and difficulty")
    args = parser.parse_args()
    results: dict[str, Any] = {
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }
    results["envs"] = {}
    for name, (cls, difficulties) in SIMULATORS.items():
        results["envs"][name] = {str(d): bench(cls, args.episodes, d) for d in difficulties}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    parts = []
    for name, by_d in results["envs"].items():
        d1 = by_d["1"]
        parts.append(f"{name} {d1['episodes_per_s']:.0f} ep/s success {d1['expert_success']:.1%} (difficulty 1)")
    print("; ".join(parts) + f" -> {RESULTS}")


if __name__ == "__main__":
    main()
