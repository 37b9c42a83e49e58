"""SFT training throughput: our setup (``affine.sft.sft_config``) vs plain TRL ``SFTTrainer`` defaults, in tokens/s.

Both sides train the same model (a fresh ``affine.model.load_model(--model)`` each, dtype ``base.dtype`` from
params.yaml) with the same LoRA config (``affine.sft.lora_config(params.sft)``) on the same training rows
(``split_examples`` of data/sft/examples.jsonl with the stage's seed and val fraction; if that file is missing,
SAT/ABD/DED examples are generated the way the collect stage does) for ``--steps`` optimizer steps of
``--batch-size`` examples:

* ours  -- ``sft_config(params.sft with max_steps/batch_size overridden, eval/save pushed past the run)``: what the
  sft stage trains with (length-grouped batches, assistant-only loss, no gradient checkpointing on CPU, fp32 on CPU,
  gradient accumulation from params.yaml);
* plain -- ``SFTConfig(output_dir=..., max_steps=K, per_device_train_batch_size=B, report_to=[])``, i.e. TRL's
  defaults (random batches, gradient checkpointing on, bf16 autocast, loss on the *whole* sequence), plus
  ``use_cpu=True`` when there is no GPU: transformers refuses TRL's default ``bf16=True`` on CPU without it.

The tokenizer is the one ``load_model`` returns, whose chat template is our generation-marked ChatML (affine.chat); it
renders byte-identically to SmolLM2's own template, so both sides see the same token sequences.  The only loss-side
difference: ours sets ``assistant_only_loss=True`` (loss on the assistant reply only), plain TRL trains on every
token -- the forward/backward work is the same, only which labels count differs.

What is timed: only the optimizer steps, with a ``TrainerCallback`` from ``on_step_begin`` to ``on_step_end``
(forward, backward, clipping, optimizer and scheduler step; batches are prefetched before ``on_step_begin``, and
logging, evaluation and checkpointing happen after ``on_step_end``).  What is counted: the non-padding tokens
(``attention_mask`` sum) and the padded tokens (``input_ids`` numel) of every micro-batch, read from the batches
themselves by the same wrapper on both sides (so plain TRL keeps ``include_num_input_tokens_seen`` at its default).
The first ``--warmup`` steps of each run are excluded from both.  With ``--repeats R`` the runs alternate
(plain, ours, plain, ours, ...) and the totals are summed.

    python bench/bench_sft.py                                # models/base, 20 steps of batch 8
    python bench/bench_sft.py --steps 30 --batch-size 8 --repeats 2
    python bench/bench_sft.py --steps 2 --batch-size 2 --warmup 1  # smoke test

``--variants ours_bf16 plain_fp32`` adds diagnostic sides with only ``bf16`` flipped (``dataclasses.replace`` of the
same configs), to tell how much of the gap is bf16 autocast (on by default in TRL, off in ``sft_config`` on CPU)
versus gradient checkpointing / length grouping. ``ours_full_head`` trains as ours without
``affine.sft.compact_lm_head`` (TRL's fused head over every position on the CPU), ``ours_no_lora_dropout`` with
``sft.lora_dropout: 0``; ``--no-plain`` leaves plain TRL out (slow where bf16 is emulated) and every ratio is then
over ours.  Run on an otherwise idle machine (see bench_generation.py on thread
contention); ``--threads`` sets torch's thread count.

Target: ours >= 1.0x plain TRL's non-padding tokens/s.  Writes bench/results/sft.json and prints a one-line summary.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from sft_timing import our_config, plain_config, timed_training  # noqa: E402

from affine.collect import affine_examples, even_split  # noqa: E402
from affine.config import AFFINE_ENVS, Params, load_params  # noqa: E402
from affine.model import load_model  # noqa: E402
from affine.sft import compact_lm_head, lora_config, read_jsonl, split_examples  # noqa: E402
from affine.stage import KNOWN_ERRORS  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# diagnostic extra sides (--variants): one thing changed, to tell which difference the throughput comes from:
# a config field, an sft param (lora), or the compact LM head left off
VARIANTS: dict[str, dict[str, Any]] = {
    "ours_bf16": {"config": {"bf16": True}},
    "plain_fp32": {"config": {"bf16": False}},
    "ours_full_head": {"compact_head": False},
    "ours_no_lora_dropout": {"sft": {"lora_dropout": 0.0}},
}


def training_rows(params: Params, data: Path, count: int) -> tuple[list[dict], str]:
    if data.is_file():
        rows, source = read_jsonl(data), str(data)
    else:
        split = even_split(count, list(AFFINE_ENVS))
        rows = [row for name in AFFINE_ENVS for row in affine_examples(name, split[name], params)]
        source = f"generated: {count} SAT/ABD/DED examples ({data} is missing)"
    train, _ = split_examples(rows, params.sft.val_fraction, params.base.seed)
    return [{"messages": r["messages"]} for r in train], source


def train_once(side: str, params: Params, args: argparse.Namespace, rows: list[dict]) -> dict:
    variant = VARIANTS.get(side, {})
    if "sft" in variant:
        params = params.model_copy(update={"sft": params.sft.model_copy(update=variant["sft"])})
    model, tokenizer = load_model(args.model, dtype=params.base.dtype)

    def make_config(output_dir: str) -> Any:
        if side.startswith("ours"):
            config = our_config(params, output_dir, args.steps, args.batch_size)
        else:
            config = plain_config(output_dir, args.steps, args.batch_size)
        return dataclasses.replace(config, **variant.get("config", {}))

    # ours evaluates by steps (never reached within the run) and so needs an eval set; plain TRL does not
    eval_rows = rows[: max(1, args.batch_size)] if side.startswith("ours") else None
    compact = side.startswith("ours") and variant.get("compact_head", True)  # as the sft stage trains
    with compact_lm_head() if compact else contextlib.nullcontext():
        run = timed_training(
            side, model, tokenizer, rows, make_config, lora_config(params.sft), args.warmup, eval_rows=eval_rows
        )
    run["compact_lm_head"] = compact
    del model
    gc.collect()
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/base", help="model dir or spec for affine.model.load_model")
    parser.add_argument("--data", default=str(ROOT / "data" / "sft" / "examples.jsonl"))
    parser.add_argument("--examples", type=int, default=180, help="examples to generate when --data is missing")
    parser.add_argument("--steps", type=int, default=20, help="optimizer steps per run")
    parser.add_argument("--batch-size", type=int, default=8, help="per-device train batch size (both sides)")
    parser.add_argument("--warmup", type=int, default=2, help="first steps of each run left out of the measurement")
    parser.add_argument("--repeats", type=int, default=1, help="runs per side, alternating plain/ours")
    parser.add_argument(
        "--variants",
        nargs="*",
        default=[],
        choices=sorted(VARIANTS),
        help="extra diagnostic sides, each one change from ours or plain (VARIANTS)",
    )
    parser.add_argument("--no-plain", action="store_true", help="leave plain TRL out; ratios are then over ours")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--params", default=str(ROOT / "params.yaml"))
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "sft.json"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.steps <= args.warmup:
        parser.error(f"--steps ({args.steps}) must exceed --warmup ({args.warmup})")

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    params = load_params(args.params)
    rows, source = training_rows(params, Path(args.data), args.examples)
    load_start = round(os.getloadavg()[0], 2)
    sides = ["ours", *args.variants] if args.no_plain else ["plain", "ours", *args.variants]
    reference = sides[0]
    runs = [train_once(side, params, args, rows) for _ in range(args.repeats) for side in sides]

    totals = {}
    for side in sides:
        mine = [r for r in runs if r["side"] == side]
        seconds = sum(r["step_seconds"] for r in mine)
        tokens = sum(r["non_padding_tokens"] for r in mine)
        totals[side] = {
            "step_seconds": round(seconds, 3),
            "non_padding_tokens": tokens,
            "tokens_per_s": round(tokens / seconds, 2) if seconds else 0.0,
            "padding_fraction": round(1 - tokens / max(1, sum(r["padded_tokens"] for r in mine)), 4),
        }
    ratios = {
        side: round(totals[side]["tokens_per_s"] / max(totals[reference]["tokens_per_s"], 1e-9), 3) for side in sides
    }
    report = {
        "model": args.model,
        "data": source,
        "train_rows": len(rows),
        "steps": args.steps,
        "batch_size": args.batch_size,
        "warmup_steps_excluded": args.warmup,
        "repeats": args.repeats,
        "dtype": params.base.dtype,
        "lora": {"r": params.sft.lora_r, "alpha": params.sft.lora_alpha, "targets": params.sft.lora_target_modules},
        "measured": "non-padding tokens / seconds inside optimizer steps (on_step_begin -> on_step_end)",
        "loss_difference": "ours: assistant-only loss (generation-marked template); plain TRL: loss on all tokens",
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_avg_1m_start": load_start,
        "load_avg_1m_end": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "totals": totals,
        f"ratios_over_{reference}": ratios,
        "runs": runs,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"sft {args.steps} steps x batch {args.batch_size} ({len(rows)} rows), {os.cpu_count()} cores, "
        f"load {load_start}: "
        + "; ".join(
            f"{side} {totals[side]['tokens_per_s']} tok/s (padding {totals[side]['padding_fraction']:.0%}, "
            f"x{ratios[side]} over {reference})"
            for side in sides
        )
        + f" -> {out}"
    )


if __name__ == "__main__":
    try:
        main()
    except KNOWN_ERRORS as error:  # e.g. models/base before `dvc repro prepare`: one line, as a stage gives
        raise SystemExit(f"{Path(__file__).name}: error: {error}") from None
