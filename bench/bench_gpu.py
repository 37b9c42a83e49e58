"""GPU benchmark at the recipe's scale: a random-init Qwen3-4B-shaped model, bf16, LoRA r64, sequences up to 2048.

Two steps, because the GPU machine has no network and none of the environments' packages:

    python bench/bench_gpu.py prepare --out .devcarry       # here: tokenizer, SFT rows, rollout prompts
    python bench/bench_gpu.py run --inputs .devcarry        # on the GPU machine (needs torch, transformers, peft,
                                                            # trl, datasets, pydantic; not affine's env packages)
    python bench/bench_gpu.py run --inputs .devcarry --shape tiny --steps 3 --warmup 1 --n 4 --max-new-tokens 4 \\
        --out /tmp/gpu.json                                 # smoke test on a CPU

``prepare`` writes the SmolLM2 tokenizer (with our generation-marked template), SFT rows built the way the collect
stage builds them -- SAT/ABD/DED examples and AgentGym expert episodes, 2:1 as in the recipe (10,000 and 5,000) --
and the token ids of held-out rollout prompts (half SAT/ABD/DED, half the first turn of AgentGym episodes).  The
model is random (built from the config, no download), so only speed and memory mean anything; its vocabulary is
Qwen3's (151,936) and the SmolLM2 token ids are a subset of it.

SFT: the same rows, model init (seeded) and LoRA (``configs/recipe-4b.yaml``: r 64, alpha 128, all seven projections)
for each side, non-padding tokens/s inside optimizer steps (device-synchronised ``on_step_begin`` -> ``on_step_end``):

* ``ours``       -- ``affine.sft.sft_config`` on the recipe's sft section: batch 2 x accumulation 8, bf16, gradient
  checkpointing, length-grouped batches, max_length 2048, assistant-only loss;
* ``ours_no_gc`` -- the same without gradient checkpointing (what the memory buys);
* ``ours_bs8``   -- the same with batch 8 x accumulation 2 (same 16 rows per optimizer step, fewer launches);
* ``plain``      -- TRL's ``SFTConfig`` defaults with batch 2 and ``max_length=2048`` (the issue's sequence length;
  TRL's default is 1024), run for ``steps x 8`` optimizer steps so that both sides see as many micro-batches;
* ``plain_2048``, ``ours_2048`` -- the same two on the rows joined end to end into conversations of at least 2048
  tokens, so every sequence is exactly max_length (no padding on either side): the pure seq-2048 throughput.

MFU counts the model FLOPs of LoRA training per the convention of the PaLM paper, adapted: the frozen weights need
no weight gradient, so dense layers cost 2N (forward) + 2N (input gradient) per token, N being the matmul
parameters (lm_head included, embedding lookup not); causal attention costs 2·L·H·d_head·s² forward per sequence of
s tokens and twice that backward.  Gradient checkpointing's recomputed forward is not model FLOPs (it is in
``hfu``).  Peak: 989 TFLOP/s dense bf16 (H100 SXM datasheet), whatever the card; the card's name is recorded.

Generation: the rollout prompts, greedy, exactly ``--max-new-tokens`` each (``min_new_tokens`` forced on both
sides), one ``model.generate`` per prompt vs :func:`affine.generation.generate_ids` at each ``--batch-sizes``.

Writes ``--out`` (JSON, rewritten after every measurement so a run cut short keeps what it finished) and prints a
table.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from sft_timing import our_config, plain_config, timed_training  # noqa: E402

from affine.config import load_params  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# our sides: the recipe's sft section with these overrides (what `-S sft.<key>=...` would set)
OURS = {
    "ours": {},
    "ours_no_gc": {"gradient_checkpointing": False},
    "ours_bs8": {"batch_size": 8, "gradient_accumulation_steps": 2},
}
H100_BF16_DENSE = 989e12
SHAPES = {
    # Qwen3-4B's published architecture (config.json of Qwen/Qwen3-4B)
    "qwen3-4b": dict(
        hidden_size=2560,
        intermediate_size=9728,
        num_hidden_layers=36,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=128,
        vocab_size=151936,
        max_position_embeddings=40960,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
    ),
    # the same layout in miniature, for a CPU smoke test
    "tiny": dict(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        vocab_size=49152,
        max_position_embeddings=4096,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
    ),
}


# ----------------------------------------------------------------------------------------------------- prepare (here)
def prepare(args: argparse.Namespace) -> None:
    from affine.chat import render_prompt
    from affine.collect import affine_examples, agentgym_examples, even_split
    from affine.config import AFFINE_ENVS
    from affine.envs.options import build_env
    from affine.model import load_tokenizer
    from affine.rollout import opening

    params = load_params(args.params)
    recipe = load_params(args.recipe)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = load_tokenizer(args.tokenizer)
    tokenizer.save_pretrained(out / "tokenizer")

    agentgym = list(recipe.collect.agentgym.environments)
    rows = []
    for name, count in even_split(args.affine_rows, list(AFFINE_ENVS)).items():
        rows += affine_examples(name, count, params)
    for name, count in even_split(args.agentgym_rows, agentgym).items():
        rows += agentgym_examples(name, count, params)
    with open(out / "rows.jsonl", "w") as handle:
        for row in rows:
            handle.write(json.dumps({"messages": row["messages"], "env": row["env"]}) + "\n")

    prompts = []
    for i in range(args.prompts):
        names = AFFINE_ENVS if i % 2 == 0 else agentgym
        name = names[(i // 2) % len(names)]
        _, messages = opening(build_env(name, params.envs, "eval"), i)
        ids = tokenizer(render_prompt(tokenizer, messages), add_special_tokens=False)["input_ids"]
        prompts.append({"env": name, "ids": ids})
    (out / "prompts.json").write_text(json.dumps(prompts))
    rendered = [tokenizer.apply_chat_template(r["messages"], tokenize=False) for r in rows]
    lengths = [len(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in rendered]
    print(
        f"prepared {len(rows)} SFT rows (tokens: mean {sum(lengths) / len(lengths):.0f}, max {max(lengths)}, "
        f"> 2048: {sum(n > 2048 for n in lengths)}) and {len(prompts)} prompts "
        f"(mean {sum(len(p['ids']) for p in prompts) / len(prompts):.0f} tokens) -> {out}"
    )


# --------------------------------------------------------------------------------------------------- run (on the GPU)
def build_model(shape: str, seed: int, device: str) -> Any:
    from transformers import AutoModelForCausalLM, Qwen3Config

    torch.manual_seed(seed)
    config = Qwen3Config(**SHAPES[shape])
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    return model


def model_flops(config: Any, tokens: int, squares: int) -> tuple[float, float]:
    """(model FLOPs, FLOPs with one recomputed forward) of LoRA training over ``tokens`` with sum of squared lengths."""
    d, layers, heads = config.hidden_size, config.num_hidden_layers, config.num_attention_heads
    head_dim = config.head_dim
    attention = d * heads * head_dim * 2 + d * config.num_key_value_heads * head_dim * 2  # q, o and k, v
    dense = layers * (attention + 3 * d * config.intermediate_size) + d * config.vocab_size  # + lm_head
    forward = 2 * dense * tokens + 2 * layers * heads * head_dim * squares
    return 2 * forward + 2 * layers * heads * head_dim * squares, 3 * forward + 2 * layers * heads * head_dim * squares


class ProfileSteps(TrainerCallback):
    """A TrainerCallback that runs torch.profiler over optimizer steps ``[first, first + count)``.

    ``summary`` says how busy the GPU was (kernel time over wall time) and lists the costliest operators, to tell
    a launch-bound run (GPU idle between small kernels) from a compute-bound one.
    """

    def __init__(self, first: int, count: int) -> None:
        self.first, self.count = first, count
        self.profiler: Any = None
        self.wall = 0.0
        self.summary: dict[str, Any] = {}

    def on_step_begin(self, args, state, control, **kwargs):  # noqa: ANN001
        if state.global_step == self.first:
            from torch.profiler import ProfilerActivity, profile

            activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
            self.profiler = profile(activities=activities)
            self.profiler.start()
            self.wall = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
        if self.profiler is not None and state.global_step == self.first + self.count:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            wall = time.perf_counter() - self.wall
            self.profiler.stop()
            events = self.profiler.key_averages()
            device_us = sum(getattr(e, "self_device_time_total", 0) for e in events)
            sort = "self_cuda_time_total" if torch.cuda.is_available() else "self_cpu_time_total"
            self.summary = {
                "steps": self.count,
                "wall_s": round(wall, 3),
                "kernel_s": round(device_us / 1e6, 3),
                "gpu_busy_fraction": round(device_us / 1e6 / wall, 3),
                "table": events.table(sort_by=sort, row_limit=25, max_name_column_width=60),
            }
            self.profiler = None


def long_rows(rows: list[dict], tokenizer: Any, length: int) -> list[dict]:
    """The same chats joined end to end (each is user ... assistant) into conversations of at least ``length`` tokens.

    The recipe's data averages ~450 tokens a row; these rows fill ``max_length`` so every sequence is full length.
    """
    joined, current = [], []
    for row in rows:
        current += row["messages"]
        text = tokenizer.apply_chat_template(current, tokenize=False)
        if len(tokenizer(text, add_special_tokens=False)["input_ids"]) >= length:
            joined.append({"messages": current})
            current = []
    return joined


def sft_side(side: str, args: argparse.Namespace, recipe: Any, rows: list[dict], tokenizer: Any) -> dict:
    from affine.sft import lora_config

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = build_model(args.shape, recipe.base.seed, device)
    accumulation = recipe.sft.gradient_accumulation_steps
    batch = recipe.sft.batch_size

    def make_config(output_dir: str) -> Any:
        if side.startswith("plain"):
            return plain_config(output_dir, args.steps * accumulation, batch, max_length=recipe.sft.max_length)
        overrides = {"batch_size": batch, **OURS[side.removesuffix("_2048")]}
        return our_config(recipe, output_dir, args.steps, **overrides)

    warmup = args.warmup * (accumulation if side.startswith("plain") else 1)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    eval_rows = None if side.startswith("plain") else rows[:batch]
    profiler = ProfileSteps(warmup, args.profile_steps) if args.profile_steps else None
    extra = [profiler] if profiler else []
    run = timed_training(side, model, tokenizer, rows, make_config, lora_config(recipe.sft), warmup, eval_rows, extra)
    if profiler is not None:
        table = profiler.summary.pop("table", "")
        run["profile"] = profiler.summary
        Path(args.out).with_suffix(f".profile-{side}.txt").write_text(table)
        print(f"[bench_gpu] {side} profile: {profiler.summary}\n{table}", flush=True)
    flops, hardware = model_flops(model.config, run["non_padding_tokens"], run["squared_lengths"])
    seconds = max(run["step_seconds"], 1e-9)
    run["model_tflops_per_s"] = round(flops / seconds / 1e12, 2)
    run["mfu"] = round(flops / seconds / H100_BF16_DENSE, 4)
    done = hardware if run["settings"]["gradient_checkpointing"] else flops
    run["hfu"] = round(done / seconds / H100_BF16_DENSE, 4)
    run["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2) if torch.cuda.is_available() else None
    del model
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return run


def synced_time(fn: Any) -> tuple[float, Any]:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    result = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start, result


def generation(
    args: argparse.Namespace, recipe: Any, prompts: list[list[int]], tokenizer: Any, result: dict, save: Any
) -> None:
    """Fills ``result`` and calls ``save`` after each measurement, so a run cut short keeps what it finished."""
    from affine.generation import generate_ids

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = build_model(args.shape, recipe.base.seed, device).eval()
    model.generation_config.min_new_tokens = args.max_new_tokens  # equal work: EOS is masked until then

    def generate(batch_size: int, subset: list[list[int]]) -> list[list[int]]:
        return generate_ids(
            model, tokenizer, subset, max_new_tokens=args.max_new_tokens, temperature=0.0, batch_size=batch_size
        )

    generate(max(args.batch_sizes), prompts[: max(args.batch_sizes)])  # warm-up: kernels, allocator, cuBLAS handles
    result.update(prompts=len(prompts), max_new_tokens=args.max_new_tokens, batched={})
    serial_s, serial = synced_time(lambda: [generate(1, [p])[0] for p in prompts])
    tokens = sum(len(ids) for ids in serial)
    assert tokens == args.max_new_tokens * len(prompts), tokens
    result["serial"] = {"seconds": round(serial_s, 3), "tokens_per_s": round(tokens / serial_s, 2)}
    save()
    for size in args.batch_sizes:
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        seconds, outputs = synced_time(lambda size=size: generate(size, prompts))
        assert sum(len(ids) for ids in outputs) == tokens
        result["batched"][str(size)] = {
            "seconds": round(seconds, 3),
            "tokens_per_s": round(tokens / seconds, 2),
            "speedup": round(serial_s / seconds, 2),
            "same_tokens_as_serial": sum(a == b for a, b in zip(outputs, serial, strict=True)),
            "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if device == "cuda" else None,
        }
        save()


def machine() -> dict:
    import peft
    import transformers
    import trl

    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "trl": trl.__version__,
        "peft": peft.__version__,
        "cpu_count": os.cpu_count(),
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1), cuda=torch.version.cuda)
    else:
        info["gpu"] = None
    return info


def run(args: argparse.Namespace) -> None:
    from affine.model import load_tokenizer

    inputs = Path(args.inputs)
    recipe = load_params(args.recipe)
    tokenizer = load_tokenizer(str(inputs / "tokenizer"))
    rows = [{"messages": json.loads(line)["messages"]} for line in open(inputs / "rows.jsonl")]
    prompts = [p["ids"] for p in json.loads((inputs / "prompts.json").read_text())][: args.n]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "machine": machine(),
        "shape": args.shape,
        "model_config": SHAPES[args.shape],
        "lora": {"r": recipe.sft.lora_r, "alpha": recipe.sft.lora_alpha, "targets": recipe.sft.lora_target_modules},
        "sft_rows": len(rows),
        "steps": args.steps,
        "warmup_steps_excluded": args.warmup,
        "mfu_peak_flops": H100_BF16_DENSE,
        "sft": {},
    }

    def save() -> None:
        out.write_text(json.dumps(report, indent=2) + "\n")

    save()
    full = long_rows(rows, tokenizer, recipe.sft.max_length)
    report["sft_rows_full_length"] = len(full)
    for side in args.sides:
        print(f"[bench_gpu] sft side {side}", flush=True)
        data = full if side.endswith("_2048") else rows
        report["sft"][side] = sft_side(side, args, recipe, data, tokenizer)
        save()
    report["sft_ratios_over_plain"] = {
        side: round(r["tokens_per_s"] / report["sft"][plain]["tokens_per_s"], 3)
        for side, r in report["sft"].items()
        if (plain := "plain_2048" if side.endswith("_2048") else "plain") in report["sft"]
    }
    save()
    if args.n:
        print("[bench_gpu] generation", flush=True)
        report["generation"] = {}
        generation(args, recipe, prompts, tokenizer, report["generation"], save)
    save()
    print_table(report, out)


def print_table(report: dict, out: Path) -> None:
    gpu = report["machine"].get("gpu") or "CPU"
    print(f"\n{gpu}, {report['shape']} (random init), bf16, LoRA r{report['lora']['r']}")
    print(f"{'side':<12}{'tok/s':>10}{'MFU':>8}{'HFU':>8}{'peak GiB':>10}{'padding':>9}{'vs plain':>10}")
    for side, r in report["sft"].items():
        ratio = report.get("sft_ratios_over_plain", {}).get(side, "")
        print(
            f"{side:<12}{r['tokens_per_s']:>10}{r['mfu']:>8.1%}{r['hfu']:>8.1%}{str(r['peak_memory_gib']):>10}"
            f"{r['padding_fraction']:>9.0%}{str(ratio):>10}"
        )
    g = report.get("generation")
    if g:
        print(f"generation serial {g['serial']['tokens_per_s']} tok/s", end="")
        for size, b in g["batched"].items():
            peak = b["peak_memory_gib"]
            print(f"; batch {size}: {b['tokens_per_s']} tok/s (x{b['speedup']}, peak {peak} GiB)", end="")
        print(f" -> {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare", help="write the tokenizer, SFT rows and prompts (run where affine is installed)")
    prep.add_argument("--out", default=".devcarry")
    prep.add_argument("--tokenizer", default="models/base")
    prep.add_argument("--params", default=str(ROOT / "params.yaml"), help="env settings for the rows and prompts")
    prep.add_argument("--recipe", default=str(ROOT / "configs" / "recipe-4b.yaml"))
    prep.add_argument("--affine-rows", type=int, default=160)
    prep.add_argument("--agentgym-rows", type=int, default=80)
    prep.add_argument("--prompts", type=int, default=32)
    go = sub.add_parser("run", help="time SFT and generation (on the GPU machine)")
    go.add_argument("--inputs", default=".devcarry")
    go.add_argument("--recipe", default=str(ROOT / "configs" / "recipe-4b.yaml"))
    go.add_argument("--shape", choices=sorted(SHAPES), default="qwen3-4b")
    go.add_argument(
        "--sides",
        nargs="*",
        default=["plain", "ours", "ours_no_gc", "ours_bs8", "plain_2048", "ours_2048"],
        choices=["plain", *OURS, "plain_2048", *(f"{side}_2048" for side in OURS)],
        help="*_2048 sides train on the rows joined into full-length (max_length) conversations",
    )
    go.add_argument("--steps", type=int, default=8, help="our optimizer steps (plain runs x accumulation as many)")
    go.add_argument("--warmup", type=int, default=2, help="our steps left out (plain: x accumulation)")
    go.add_argument("--n", type=int, default=16, help="rollout prompts for the generation bench (0 skips it)")
    go.add_argument("--max-new-tokens", type=int, default=64)
    go.add_argument("--batch-sizes", type=int, nargs="+", default=[16])
    go.add_argument("--profile-steps", type=int, default=0, help="torch.profiler over this many steps after warm-up")
    go.add_argument("--out", default=str(Path(__file__).parent / "results" / "gpu.json"))
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.command == "prepare":
        prepare(args)
    else:
        if args.steps <= args.warmup:
            parser.error(f"--steps ({args.steps}) must exceed --warmup ({args.warmup})")
        run(args)


if __name__ == "__main__":
    main()
