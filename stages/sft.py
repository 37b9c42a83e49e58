"""Stage `sft`: LoRA SFT of models/base on data/sft → models/sft (best by eval loss), metrics/sft/."""

from affine.config import load_params
from affine.sft import train_sft
from affine.stage import run


def main() -> None:
    params = load_params()
    train_sft(params, "models/base", "data/sft/examples.jsonl", "models/sft", "checkpoints/sft", "metrics/sft")


if __name__ == "__main__":
    run(main)
