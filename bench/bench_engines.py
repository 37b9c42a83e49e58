"""Generation engines side by side: vLLM (``base.engine: vllm``) vs the HF engine vs one prompt at a time.

Same prompts on every side, in one run, so the ratios do not mix machine states:

* single-turn: ``--n`` held-out SAT/ABD/DED prompts (bench_generation's ``held_out_prompts``) x ``--max-new-tokens``;
  vLLM (:class:`affine.engine.VLLMEngine`), the HF engine (:func:`affine.generation.generate_ids`, batched, grouped
  prefill of ``base.prefill_tokens``: ``hf_prefill_tokens`` in the JSON) and the naive loop (one
  ``model.generate`` per prompt);
* multi-turn: ``--episodes`` held-out TextCraft episodes x ``--turns`` turns through :func:`affine.rollout.play` (what
  evaluate and RL run), on vLLM (prefix caching on), on the HF engine, and one episode at a time on the HF engine.

Every reply is forced to exactly ``--max-new-tokens`` / ``--turn-tokens`` tokens (vLLM ``min_tokens``, HF
``min_new_tokens``), so each side does the same work.  Each round runs every side once, sides interleaved; ratios come
from the median time of ``--rounds`` rounds.  The machine is shared: load averages are recorded at the start and
after each round, with the torch threads and the cores vLLM binds (both follow ``torch.get_num_threads()``).
vLLM's load time (``--compile`` for torch.compile instead of eager) and peak RSS (this process + the EngineCore tree,
sampled after each phase) are recorded too.  The JSON is rewritten after every round, so a cut run keeps its rounds.

    python bench/bench_engines.py --model models/base                       # 64 x 64, 16 episodes x 8 turns, 3 rounds
    python bench/bench_engines.py --n 4 --episodes 2 --turns 2 --rounds 1   # smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from bench_generation import forced_length, held_out_prompts, serial_generate  # noqa: E402

from affine.config import load_params  # noqa: E402
from affine.engine import VLLMEngine, thread_binding  # noqa: E402
from affine.envs.options import build_env  # noqa: E402
from affine.generation import generate_ids  # noqa: E402
from affine.model import load_model  # noqa: E402
from affine.rollout import play  # noqa: E402

MULTI_TURN_ENV = "agentgym:textcraft"


def tree_rss_gb() -> float:
    """Resident memory of this process and all its children (vLLM's EngineCore and worker), in GB."""
    import psutil

    me = psutil.Process()
    total = me.memory_info().rss
    for child in me.children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return round(total / 1e9, 2)


def timed(fn: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def episodes(model: Any, tokenizer: Any, params: Any, args: argparse.Namespace, batch_size: int | None) -> list:
    envs = [build_env(MULTI_TURN_ENV, params.envs, "eval") for _ in range(args.episodes)]
    return play(
        model,
        tokenizer,
        [(env, i) for i, env in enumerate(envs)],
        max_new_tokens=args.turn_tokens,
        temperature=0.0,
        max_turns=args.turns,
        batch_size=batch_size,
        max_context=2048,
        prefill_tokens=args.hf_prefill,
    )


def summarize(times: dict[str, list[float]], tokens: dict[str, int]) -> dict:
    out = {}
    for side, runs in times.items():
        median = statistics.median(runs)
        out[side] = {"runs_s": [round(t, 2) for t in runs], "new_tokens": tokens[side]}
        out[side]["tokens_per_s"] = round(tokens[side] / median, 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "models" / "base"))
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--episodes", type=int, default=16)
    parser.add_argument("--turns", type=int, default=8)
    parser.add_argument("--turn-tokens", type=int, default=32, help="new tokens per multi-turn reply")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64, help="HF engine's batch size")
    parser.add_argument("--compile", action="store_true", help="vLLM with torch.compile (default: enforce_eager)")
    parser.add_argument("--skip-serial", action="store_true", help="leave out the one-at-a-time sides")
    parser.add_argument("--params", default=str(ROOT / "params.yaml"))
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "engines.json"))
    args = parser.parse_args()
    if min(args.n, args.rounds, args.episodes, args.turns, args.max_new_tokens, args.turn_tokens) < 1:
        parser.error("--n, --rounds, --episodes, --turns, --max-new-tokens and --turn-tokens must be at least 1")

    params = load_params(args.params)
    report: dict[str, Any] = {
        "model": args.model,
        "dtype": args.dtype,
        "single_turn": {"prompts": args.n, "new_tokens_each": args.max_new_tokens},
        "multi_turn": {"env": MULTI_TURN_ENV, "episodes": args.episodes, "turns": args.turns},
        "multi_turn_tokens_per_reply": args.turn_tokens,
        "rounds": args.rounds,
        "torch_threads": torch.get_num_threads(),
        "vllm_threads_bind": thread_binding(),
        "cpu_count": os.cpu_count(),
        "load_avg_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "torch": torch.__version__,
        "note": "shared 2-core machine: other engineers' jobs ran during the rounds (see load averages)",
    }
    model, tokenizer = load_model(args.model, dtype=args.dtype)
    model.eval()
    _, texts = held_out_prompts(tokenizer, params, args.n)
    prompts = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    report["single_turn"]["prompt_tokens"] = sum(len(p) for p in prompts)
    load_s, engine = timed(
        lambda: VLLMEngine(
            args.model, tokenizer, dtype=args.dtype, seed=0, kv_cache_gib=2, enforce_eager=not args.compile
        )
    )
    report["vllm"] = {"load_s": round(load_s, 1), "enforce_eager": not args.compile, "rss_after_load_gb": tree_rss_gb()}
    single: dict[str, list[float]] = {"vllm": [], "hf": [], "one_at_a_time": []}
    multi: dict[str, list[float]] = {"vllm": [], "hf": [], "one_at_a_time": []}
    if args.skip_serial:
        del single["one_at_a_time"], multi["one_at_a_time"]
    single_tokens, multi_tokens, same, loads, peak = {}, {}, {}, [], 0.0
    common = {"max_new_tokens": args.max_new_tokens, "temperature": 0.0}
    size, group = args.batch_size, params.base.prefill_tokens
    report["hf_prefill_tokens"] = args.hf_prefill = group
    try:
        with forced_length(model, args.max_new_tokens):
            engine.min_tokens = args.max_new_tokens
            # warm-ups: one-off costs out of the timings
            generate_ids(engine, tokenizer, prompts[:2], batch_size=2, **common)
            generate_ids(model, tokenizer, prompts[:2], batch_size=2, **common)
        for _ in range(args.rounds):
            with forced_length(model, args.max_new_tokens):
                engine.min_tokens = args.max_new_tokens
                t, v_out = timed(lambda: generate_ids(engine, tokenizer, prompts, batch_size=args.n, **common))
                single["vllm"].append(t)
                t, h_out = timed(
                    lambda: generate_ids(model, tokenizer, prompts, batch_size=size, prefill_tokens=group, **common)
                )
                single["hf"].append(t)
                if "one_at_a_time" in single:
                    t, s_out = timed(lambda: serial_generate(model, tokenizer, texts, args.max_new_tokens))
                    single["one_at_a_time"].append(t)
                    single_tokens["one_at_a_time"] = sum(len(o) for o in s_out)
            single_tokens.update(vllm=sum(len(o) for o in v_out), hf=sum(len(o) for o in h_out))
            same["single_turn_vllm_vs_hf"] = sum(a == b for a, b in zip(v_out, h_out, strict=True))
            peak = max(peak, tree_rss_gb())
            with forced_length(model, args.turn_tokens):
                engine.min_tokens = args.turn_tokens
                t, v_eps = timed(lambda: episodes(engine, tokenizer, params, args, None))
                multi["vllm"].append(t)
                t, h_eps = timed(lambda: episodes(model, tokenizer, params, args, None))
                multi["hf"].append(t)
                if "one_at_a_time" in multi:
                    t, s_eps = timed(lambda: episodes(model, tokenizer, params, args, 1))
                    multi["one_at_a_time"].append(t)
                    multi_tokens["one_at_a_time"] = sum(e.new_tokens for e in s_eps)
            multi_tokens.update(vllm=sum(e.new_tokens for e in v_eps), hf=sum(e.new_tokens for e in h_eps))
            same["multi_turn_vllm_vs_hf"] = sum(
                torch.equal(a.token_ids, b.token_ids) for a, b in zip(v_eps, h_eps, strict=True)
            )
            report["multi_turn"]["turns_played"] = sum(e.turns for e in v_eps)
            peak = max(peak, tree_rss_gb())
            loads.append([round(x, 2) for x in os.getloadavg()])
            write(args.out, report, single, single_tokens, multi, multi_tokens, same, loads, peak)
    finally:
        engine.close()
    print(json.dumps({k: report[k] for k in ("single_turn", "multi_turn", "ratios", "vllm")}, indent=1))


def write(out: str, report: dict, single: dict, single_tokens: dict, multi: dict, multi_tokens: dict, same: dict,
          loads: list, peak: float) -> None:  # fmt: skip
    report["single_turn"]["results"] = summarize(single, single_tokens)
    report["multi_turn"]["results"] = summarize(multi, multi_tokens)
    report["identical_outputs"] = same
    report["load_avg_after_each_round"] = loads
    report["vllm"]["peak_tree_rss_gb"] = peak
    ratios = {}
    for name in ("single_turn", "multi_turn"):
        rates = {side: r["tokens_per_s"] for side, r in report[name]["results"].items()}
        ratios[f"{name}_vllm_over_hf"] = round(rates["vllm"] / rates["hf"], 2)
        if "one_at_a_time" in rates:
            ratios[f"{name}_vllm_over_one_at_a_time"] = round(rates["vllm"] / rates["one_at_a_time"], 2)
            ratios[f"{name}_hf_over_one_at_a_time"] = round(rates["hf"] / rates["one_at_a_time"], 2)
    report["ratios"] = ratios
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
