"""Stage `rl`: PPO (or GRPO) on the SFT policy over the environments in `rl.environments` → models/rl, metrics/rl/."""

import logging
import shutil
from pathlib import Path

from affine.checkpoints import content_hash, source_hash
from affine.config import Params
from affine.rl.ppo import train_rl
from affine.sandbox import configure
from affine.stage import run

CHECKPOINTS = Path("checkpoints/rl")


def main(params: Params) -> None:
    configure(**params.sandbox.model_dump())  # stops here, in one line, if the sandbox can't be set up
    fingerprint = {
        "params": params.model_dump(include={"base", "envs", "rl", "sft", "sandbox"}),
        "policy_sha256": content_hash("models/sft"),
        "code_sha256": source_hash(),
    }
    train_rl(params, "models/sft", "models/rl", "metrics/rl", checkpoint_dir=CHECKPOINTS, fingerprint=fingerprint)
    # Crash-resume state only (adapter + optimizer per kept iteration, ~117 MB on the CPU profile): once models/rl
    # is written nothing reads it, and DVC does not track it, so it would linger outside the cache for good.
    shutil.rmtree(CHECKPOINTS, ignore_errors=True)
    logging.getLogger(__name__).info("rl finished: removed the crash-resume checkpoints in %s", CHECKPOINTS)


if __name__ == "__main__":
    run(main, "base", "envs", "rl", "sft", "sandbox")
