"""One SFT micro-batch's forward + backward on the CPU: TRL's fused LM head over every position vs the labelled ones.

Why: TRL 1.16 projects every position through the 49,152-wide head off CUDA, while assistant-only loss reads 13 % of
the default data's tokens; ``affine.sft.compact_lm_head`` makes it project the labelled rows only. Whole training
steps (``bench_sft.py --variants ours_full_head``) vary by +-30 % between runs on a shared 2-core machine, too
much to see a ~20 % change, so this times the part that changes in one process, sides interleaved:

* ``full``: TRL as it is on the CPU (what the sft stage did before ``compact_lm_head``);
* ``compact``: under ``compact_lm_head`` (what the sft stage does now);
* ``compact_no_dropout``: as compact, with the LoRA dropout modules replaced by identities, as
  ``sft.lora_dropout: 0`` builds them (the bernoulli masks were 13.7 % of an fp32 step in a round-13 profile).

The model is ``--model`` with the sft stage's LoRA (``lora_config(params.sft)``) inside a real ``SFTTrainer``; the
micro-batches are the first ``--microbatches`` its train dataloader yields (length-grouped, seeded, from
data/sft/examples.jsonl), so the rows and padding are those the stage trains on first. Each round runs every
micro-batch once per side (side order rotated per round); the medians over rounds and the 1-minute load average of
each round are written.

    python bench/bench_sft_head.py                      # writes bench/results/sft_head.json
    python bench/bench_sft_head.py --rounds 1 --microbatches 1 --out /tmp/head.json   # smoke
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from affine.config import load_params  # noqa: E402
from affine.model import load_model  # noqa: E402
from affine.sft import compact_lm_head, lora_config, read_jsonl, sft_config, split_examples  # noqa: E402
from affine.stage import KNOWN_ERRORS  # noqa: E402

SIDES = ("full", "compact", "compact_no_dropout")


@contextlib.contextmanager
def no_lora_dropout(model: torch.nn.Module):
    """Swap every LoRA dropout for an identity (what peft builds at ``lora_dropout=0``), then put them back."""
    swapped = []
    for module in model.modules():
        dropouts = getattr(module, "lora_dropout", None)
        if isinstance(dropouts, torch.nn.ModuleDict):
            for key, layer in dropouts.items():
                swapped.append((dropouts, key, layer))
                dropouts[key] = torch.nn.Identity()
    try:
        yield len(swapped)
    finally:
        for dropouts, key, layer in swapped:
            dropouts[key] = layer


def side_context(side: str, model: torch.nn.Module) -> contextlib.ExitStack:
    stack = contextlib.ExitStack()
    if side.startswith("compact"):
        stack.enter_context(compact_lm_head())
    if side == "compact_no_dropout":
        stack.enter_context(no_lora_dropout(model))
    return stack


def one_pass(trainer, batches: list[dict]) -> tuple[float, float]:
    """Seconds for forward + backward over ``batches`` (gradients dropped afterwards), and the summed loss."""
    model = trainer.model
    started = time.perf_counter()
    total = 0.0
    for batch in batches:
        loss = trainer.compute_loss(model, dict(batch))
        loss.backward()
        total += float(loss.detach())
    seconds = time.perf_counter() - started
    model.zero_grad(set_to_none=True)
    return seconds, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/base")
    parser.add_argument("--data", default=str(ROOT / "data" / "sft" / "examples.jsonl"))
    parser.add_argument("--microbatches", type=int, default=4, help="the first N train micro-batches (4 = one step)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--params", default=str(ROOT / "params.yaml"))
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "sft_head.json"))
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    from datasets import Dataset
    from trl import SFTTrainer

    params = load_params(args.params)
    if not Path(args.data).is_file():
        raise SystemExit(f"{Path(__file__).name}: error: {args.data} is missing: run `dvc repro collect` first")
    train, val = split_examples(read_jsonl(args.data), params.sft.val_fraction, params.base.seed)
    torch.manual_seed(params.base.seed)
    model, tokenizer = load_model(args.model, dtype=params.base.dtype)
    with tempfile.TemporaryDirectory(prefix="bench_sft_head_") as output_dir:
        trainer = SFTTrainer(
            model=model,
            args=sft_config(params.sft, params.base.seed, output_dir),
            train_dataset=Dataset.from_list([{"messages": r["messages"]} for r in train]),
            eval_dataset=Dataset.from_list([{"messages": r["messages"]} for r in val]),  # sft_config evaluates by steps
            processing_class=tokenizer,
            peft_config=lora_config(params.sft),
        )
        loader = iter(trainer.get_train_dataloader())
        batches = [trainer._prepare_inputs(next(loader)) for _ in range(args.microbatches)]
        trainer.model.train()
        shapes = [list(b["input_ids"].shape) for b in batches]
        labelled = sum(int((b["labels"][:, 1:] != -100).sum()) for b in batches)
        positions = sum(b["input_ids"][:, 1:].numel() for b in batches)
        one_pass(trainer, batches[:1])  # warm-up: allocator, first-call dispatch
        rounds = []
        for index in range(args.rounds):
            order = SIDES[index % len(SIDES) :] + SIDES[: index % len(SIDES)]
            record: dict = {"order": list(order)}
            for side in order:
                with side_context(side, trainer.model):
                    seconds, loss = one_pass(trainer, batches)
                record[side] = {"seconds": round(seconds, 3), "loss": round(loss, 6)}
            record["load_avg_1m"] = round(os.getloadavg()[0], 2)
            rounds.append(record)
            print(json.dumps(record), flush=True)
    medians = {side: round(statistics.median(r[side]["seconds"] for r in rounds), 3) for side in SIDES}
    report = {
        "model": args.model,
        "data": args.data,
        "microbatch_shapes": shapes,
        "labelled_positions": labelled,
        "positions": positions,
        "labelled_fraction": round(labelled / positions, 4),
        "measured": "forward + backward of SFTTrainer.compute_loss over the micro-batches, per side per round",
        "lora": {"r": params.sft.lora_r, "dropout": params.sft.lora_dropout},
        "dtype": str(next(trainer.model.parameters()).dtype),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "rounds": rounds,
        "median_seconds": medians,
        "speedup_over_full": {side: round(medians["full"] / medians[side], 3) for side in SIDES},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"sft head, {args.microbatches} micro-batches {shapes}, {labelled}/{positions} positions labelled: "
        + ", ".join(f"{s} {medians[s]} s (x{report['speedup_over_full'][s]})" for s in SIDES)
        + f" -> {out}"
    )


if __name__ == "__main__":
    try:
        main()
    except KNOWN_ERRORS as error:
        raise SystemExit(f"{Path(__file__).name}: error: {error}") from None
