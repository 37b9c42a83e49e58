"""Stage `rl`: PPO (or GRPO) on the SFT policy over the environments in `rl.environments` → models/rl, metrics/rl/."""

from affine.checkpoints import content_hash, source_hash
from affine.config import load_params
from affine.rl.ppo import train_rl
from affine.sandbox import configure
from affine.stage import run


def main() -> None:
    params = load_params()
    configure(**params.sandbox.model_dump())  # stops here, in one line, if the sandbox can't be set up
    fingerprint = {
        "params": params.model_dump(include={"base", "envs", "rl", "sft"}),
        "policy_sha256": content_hash("models/sft"),
        "code_sha256": source_hash(),
    }
    train_rl(params, "models/sft", "models/rl", "metrics/rl", checkpoint_dir="checkpoints/rl", fingerprint=fingerprint)


if __name__ == "__main__":
    run(main)
