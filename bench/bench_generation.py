"""Generation throughput: one prompt at a time vs our batched engine, single-turn and multi-turn, in tokens/s.

(a) serial: plain ``model.generate`` on one prompt at a time (no padding, KV cache on, transformers' ``sdpa``
    attention -- the usual naive loop);
(b) batched: :func:`affine.generation.generate_texts` at each ``--batch-sizes`` (16, 32 and 64 by default): sorted by
    length, left-padded, one KV-cached ``generate`` per chunk -- what ``base.engine: hf`` runs;
(c) multi-turn: ``--episodes`` held-out TextCraft episodes played by :func:`affine.rollout.play` with all live
    episodes in one ``generate`` call per turn, vs the very same episodes (fresh env objects, same task ids) played
    with ``batch_size=1``.  Its tokens/s is ``play``'s real rate: env steps, tokenisation and the growing prompts'
    prefill are included, as in RL and evaluation.

Prompts for (a)/(b) are the held-out (``split="eval"``) SAT / ABD / DED prompts, round-robin over the three envs
(seed ``i // 3``), built from ``params.yaml``'s ``envs`` section and rendered with :func:`affine.chat.render_prompt`
exactly as evaluation renders them.  Decoding is greedy under ``torch.inference_mode()``.

Equal work: ``model.generation_config.min_new_tokens`` is set to ``--max-new-tokens`` for every run (``generate``
reads it for both our engine and the baseline), which masks EOS until ``max_new_tokens`` tokens exist, so every
prompt (and every multi-turn reply) gets exactly ``max_new_tokens`` new tokens on both sides.  The script asserts the
single-turn token counts are equal (``n * max_new_tokens``); for (c) equal counts also need equal turn counts, so it
records ``equal_work`` (false only if a greedy tie flipped how an episode ended).  It reports how many outputs are
identical too (left padding may flip a greedy tie now and then, more often in bfloat16).  ``--free-length`` lets EOS
stop replies instead (then counts may differ; tokens/s stays comparable).  Each timing is preceded by a short warm-up
``generate`` on the same model.

Prefill split (on by default, ``--no-split-prefill`` skips it): the same prompts are also run with 1 new token, serial
and at the largest batch size, giving the serial time's prefill share and the decode-only speedup.  Prefill is
compute-bound: one forward over the whole padded batch was slower than serial prefill here (5.5 s vs 3.2 s for 32
prompts in bf16); with ~200-token prompts and 64 new tokens prefill caps the end-to-end ratio below the decode ratio
(Amdahl).

    python bench/bench_generation.py                                  # models/base, float32 and bfloat16
    python bench/bench_generation.py --n 32 --batch-sizes 16 32 --repeats 5 --episodes 8   # the smaller set
    python bench/bench_generation.py --n 2 --max-new-tokens 4 --episodes 2 --turns 2 --dtype float32  # smoke test

Run it on an otherwise idle machine: with another process busy on one of 2 cores, torch's default 2 threads spin at
their barriers and a 135M forward gets >10x slower (fp32 prefill measured 9.1 s with 2 threads vs 0.7 s with
``--threads 1`` under such load), which swamps any batching effect.  The JSON records threads and load averages.

Target: batched >= 8x the serial tokens/s on this CPU with models/base.  Writes bench/results/generation.json and
prints a one-line summary.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from affine.chat import render_prompt  # noqa: E402
from affine.config import AFFINE_ENVS, load_params  # noqa: E402
from affine.envs.options import build_env  # noqa: E402
from affine.generation import generate_texts  # noqa: E402
from affine.model import load_model  # noqa: E402
from affine.rollout import play  # noqa: E402
from affine.stage import KNOWN_ERRORS  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MULTI_TURN_ENV = "agentgym:textcraft"


@contextlib.contextmanager
def forced_length(model: Any, tokens: int | None) -> Iterator[None]:
    """Every ``generate`` on ``model`` produces at least ``tokens`` new tokens (None: leave EOS alone)."""
    config = model.generation_config
    previous = config.min_new_tokens
    config.min_new_tokens = tokens
    try:
        yield
    finally:
        config.min_new_tokens = previous


def held_out_prompts(tokenizer: Any, params: Any, n: int) -> tuple[list[str], list[str]]:
    envs = {name: build_env(name, params.envs, "eval") for name in AFFINE_ENVS}
    names, prompts = [], []
    for i in range(n):
        name = AFFINE_ENVS[i % len(AFFINE_ENVS)]
        challenge = envs[name].sample(i // len(AFFINE_ENVS))
        names.append(name)
        prompts.append(render_prompt(tokenizer, [{"role": "user", "content": challenge["prompt"]}]))
    return names, prompts


def timed(fn: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


@torch.inference_mode()
def serial_generate(model: Any, tokenizer: Any, prompts: list[str], max_new_tokens: int) -> list[list[int]]:
    """The naive loop: one ``model.generate`` per prompt, greedy, KV cache on, no padding."""
    device = next(model.parameters()).device
    outputs = []
    for prompt in prompts:
        ids = torch.tensor([tokenizer(prompt, add_special_tokens=False)["input_ids"]], device=device)
        out = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        tokens = out[0, ids.shape[1] :].tolist()
        length = next((k + 1 for k, t in enumerate(tokens) if t == tokenizer.eos_token_id), len(tokens))
        outputs.append(tokens[:length])
    return outputs


def rate(tokens: int, seconds: float | list[float]) -> dict:
    """Tokens/s of the median time; a list of repeated times is kept in the result as ``runs_s``."""
    runs = seconds if isinstance(seconds, list) else [seconds]
    median = statistics.median(runs)
    result = {"seconds": round(median, 3), "new_tokens": tokens, "tokens_per_s": round(tokens / max(median, 1e-9), 2)}
    if len(runs) > 1:
        result["runs_s"] = [round(t, 3) for t in runs]
    return result


def single_turn(model: Any, tokenizer: Any, prompts: list[str], args: argparse.Namespace) -> dict:
    """Serial and batched runs interleaved ``--repeats`` times; each side's median time gives its tokens/s.

    Why interleaved medians: on this shared 2-core VM the same batched run took 9.6-13.4 s within minutes, so one
    serial run then one batched run can catch different moments; rounds of (serial, batched...) let both sides see
    the same conditions.
    """
    m = args.max_new_tokens
    sides = ["serial"] + list(map(str, args.batch_sizes))
    times: dict[str, list[float]] = {side: [] for side in sides}
    for _ in range(args.repeats):
        seconds, serial = timed(lambda: serial_generate(model, tokenizer, prompts, m))
        times["serial"].append(seconds)
        completions: dict[str, list] = {}
        for size in args.batch_sizes:
            seconds, completions[str(size)] = timed(
                lambda size=size: generate_texts(model, tokenizer, prompts, max_new_tokens=m, batch_size=size)
            )
            times[str(size)].append(seconds)
    serial_texts = [tokenizer.decode(ids, skip_special_tokens=True) for ids in serial]
    serial_tokens = sum(len(ids) for ids in serial)
    result: dict[str, Any] = {"serial": rate(serial_tokens, times["serial"]), "batched": {}}
    for size, outputs in completions.items():
        tokens = sum(c.new_tokens for c in outputs)
        if not args.free_length:
            assert tokens == serial_tokens == m * len(prompts), (tokens, serial_tokens, m * len(prompts))
        entry = rate(tokens, times[size])
        entry["speedup"] = round(entry["tokens_per_s"] / result["serial"]["tokens_per_s"], 2)
        entry["same_text_as_serial"] = sum(c.text == t for c, t in zip(outputs, serial_texts, strict=True))
        result["batched"][size] = entry
    if args.split_prefill:
        result["prefill"] = prefill_split(model, tokenizer, prompts, result, max(args.batch_sizes))
    return result


def prefill_split(model: Any, tokenizer: Any, prompts: list[str], result: dict, size: int) -> dict:
    """Time the same prompts with 1 new token (prefill + one step) to split each run into prefill and decode.

    Prefill is compute-bound and costs about the same batched or not, so it caps the end-to-end speedup (Amdahl);
    ``decode_speedup`` is the gain on the part batching can speed up.
    """
    with forced_length(model, None):
        serial_s, _ = timed(lambda: serial_generate(model, tokenizer, prompts, 1))
        batched_s, _ = timed(lambda: generate_texts(model, tokenizer, prompts, max_new_tokens=1, batch_size=size))
    serial_decode = result["serial"]["seconds"] - serial_s
    batched_decode = result["batched"][str(size)]["seconds"] - batched_s
    return {
        "batch_size": size,
        "serial_prefill_s": round(serial_s, 3),
        "batched_prefill_s": round(batched_s, 3),
        "serial_prefill_share": round(serial_s / result["serial"]["seconds"], 3),
        "decode_speedup": round(serial_decode / batched_decode, 2) if batched_decode > 0 else None,
    }


def multi_turn(model: Any, tokenizer: Any, params: Any, args: argparse.Namespace) -> dict:
    turns = min(args.turns, build_env(MULTI_TURN_ENV, params.envs, "eval").max_turns)

    def episodes(batch_size: int | None) -> tuple[float, list]:
        envs = [build_env(MULTI_TURN_ENV, params.envs, "eval") for _ in range(args.episodes)]
        pairs = [(env, task_id) for task_id, env in enumerate(envs)]
        return timed(
            lambda: play(
                model,
                tokenizer,
                pairs,
                max_new_tokens=args.max_new_tokens,
                temperature=0.0,
                max_turns=turns,
                batch_size=batch_size,
                max_context=getattr(model.config, "max_position_embeddings", None),
            )
        )

    serial_s, serial = episodes(1)
    batched_s, batched = episodes(args.episode_batch_size)
    serial_tokens, batched_tokens = sum(e.new_tokens for e in serial), sum(e.new_tokens for e in batched)
    result = {
        "env": MULTI_TURN_ENV,
        # every reply is forced to max_new_tokens, so the work differs only if a greedy tie flipped an episode's end
        "equal_work": serial_tokens == batched_tokens,
        "episodes": args.episodes,
        "max_turns": turns,
        "turns_played": sum(e.turns for e in batched),
        "mean_context_tokens": round(sum(len(e.token_ids) for e in batched) / len(batched), 1),
        "serial": rate(serial_tokens, serial_s),
        "batched": rate(batched_tokens, batched_s),
        "same_episodes_as_serial": sum(
            torch.equal(a.token_ids, b.token_ids) for a, b in zip(serial, batched, strict=True)
        ),
    }
    result["batched"]["batch_size"] = args.episode_batch_size or args.episodes
    result["speedup"] = round(result["batched"]["tokens_per_s"] / result["serial"]["tokens_per_s"], 2)
    return result


def warm_up(model: Any, tokenizer: Any, prompt: str) -> None:
    """One-off costs (kernel selection, allocator growth) paid before any timing; outside ``forced_length``."""
    generate_texts(model, tokenizer, [prompt, prompt], max_new_tokens=2, batch_size=2)
    serial_generate(model, tokenizer, [prompt], 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/base", help="model dir or spec for affine.model.load_model")
    parser.add_argument("--n", type=int, default=64, help="single-turn prompts (round-robin SAT/ABD/DED)")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--dtype", nargs="+", default=["float32", "bfloat16"], choices=["float32", "bfloat16"])
    parser.add_argument("--episodes", type=int, default=16, help="TextCraft episodes for (c); 0 skips it")
    parser.add_argument("--turns", type=int, default=3, help="max turns per TextCraft episode")
    parser.add_argument("--episode-batch-size", type=int, default=None, help="play() batch size (default: all)")
    parser.add_argument(
        "--split-prefill",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time 1-token runs to split serial/batched time into prefill and decode",
    )
    parser.add_argument("--repeats", type=int, default=1, help="interleaved serial/batched rounds (median time)")
    parser.add_argument("--free-length", action="store_true", help="let EOS end replies (no forced equal length)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    parser.add_argument("--params", default=str(ROOT / "params.yaml"))
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "generation.json"))
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    if args.threads:
        torch.set_num_threads(args.threads)

    params = load_params(args.params)
    forced = None if args.free_length else args.max_new_tokens
    report: dict[str, Any] = {
        "model": args.model,
        "n": args.n,
        "max_new_tokens": args.max_new_tokens,
        "batch_sizes": args.batch_sizes,
        "repeats": args.repeats,
        "equal_work": "free length (EOS may stop early)"
        if args.free_length
        else "generation_config.min_new_tokens = max_new_tokens on both sides: every reply is exactly "
        "max_new_tokens tokens",
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_avg_1m_start": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "prompts": {},
        "results": {},
    }
    summary = []
    for dtype in args.dtype:
        model, tokenizer = load_model(args.model, dtype=dtype)
        model.eval()
        names, prompts = held_out_prompts(tokenizer, params, args.n)
        lengths = [len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
        report["prompts"] = {
            "envs": {name: names.count(name) for name in AFFINE_ENVS},
            "mean_tokens": round(sum(lengths) / len(lengths), 1),
            "min_tokens": min(lengths),
            "max_tokens": max(lengths),
        }
        entry: dict[str, Any] = {}
        warm_up(model, tokenizer, min(prompts, key=len))
        with forced_length(model, forced):
            entry["single_turn"] = single_turn(model, tokenizer, prompts, args)
            if args.episodes > 0:
                entry["multi_turn"] = multi_turn(model, tokenizer, params, args)
        report["results"][dtype] = entry
        st = entry["single_turn"]
        part = f"{dtype}: serial {st['serial']['tokens_per_s']} tok/s, " + ", ".join(
            f"batch {size} {b['tokens_per_s']} (x{b['speedup']})" for size, b in st["batched"].items()
        )
        if "serial_our_attention" in st:
            best = max(st["batched"].values(), key=lambda b: b["tokens_per_s"])
            part += f" [x{best['speedup_vs_serial_our_attention']} vs serial with our attention]"
        if "prefill" in st:
            pre = st["prefill"]
            part += f" [prefill {pre['serial_prefill_share']:.0%} of serial time, decode x{pre['decode_speedup']}]"
        if "multi_turn" in entry:
            mt = entry["multi_turn"]
            part += f"; textcraft x{mt['speedup']} ({mt['serial']['tokens_per_s']} -> {mt['batched']['tokens_per_s']})"
        summary.append(part)
        del model
        gc.collect()
    report["load_avg_1m_end"] = round(os.getloadavg()[0], 2)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"generation n={args.n} new={args.max_new_tokens} on {os.cpu_count()} cores "
        f"(load {report['load_avg_1m_start']}): " + " | ".join(summary) + f" -> {out}"
    )


if __name__ == "__main__":
    try:
        main()
    except KNOWN_ERRORS as error:  # e.g. models/base before `dvc repro prepare`: one line, as a stage gives
        raise SystemExit(f"{Path(__file__).name}: error: {error}") from None
