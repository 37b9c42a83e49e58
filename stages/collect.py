"""Stage `collect`: Affine task solutions + expert AgentGym episodes → data/sft/examples.jsonl."""

import json
from pathlib import Path

from affine.collect import collect
from affine.stage import run, stage_params


def main() -> None:
    counts = collect(stage_params("base", "envs", "collect"), "data/sft/examples.jsonl")
    Path("metrics").mkdir(exist_ok=True)
    Path("metrics/collect.json").write_text(json.dumps({"examples": counts, "total": sum(counts.values())}, indent=2))


if __name__ == "__main__":
    run(main)
