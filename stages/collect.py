"""Stage `collect`: Affine task solutions + expert AgentGym episodes → data/sft/examples.jsonl."""

import json
from pathlib import Path

from affine.collect import collect
from affine.config import Params
from affine.sandbox import configure
from affine.stage import run


def main(params: Params) -> None:
    configure(**params.sandbox.model_dump())  # stops here, in one line, if the sandbox can't be set up
    counts = collect(params, "data/sft/examples.jsonl")
    Path("metrics").mkdir(exist_ok=True)
    Path("metrics/collect.json").write_text(json.dumps({"examples": counts, "total": sum(counts.values())}, indent=2))


if __name__ == "__main__":
    run(main, "base", "envs", "collect", "sandbox")
