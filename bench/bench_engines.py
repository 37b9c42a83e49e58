"""Generation engines side by side, on the same prompts in one run: vLLM vs the HF fallback vs one at a time.

* single-turn: ``--n`` held-out SAT/ABD/DED prompts (bench_generation's ``held_out_prompts``) x ``--max-new-tokens``;
* multi-turn: ``--episodes`` held-out episodes, half TextCraft and half BabyAI (real engines), of ``--turns`` turns
  through :func:`affine.rollout.play` (what evaluate and RL run).

Sides (``--sides`` picks some):

* ``vllm``: :class:`affine.engine.VLLMEngine`, automatic prefix caching on (KV reused across an episode's turns);
* ``vllm_reprefill`` (multi-turn only): the same engine with its prefix cache emptied before every turn, so each turn
  re-prefills the whole conversation -- the cross-turn reuse's own gain is ``vllm / vllm_reprefill``;
* ``hf``: :func:`affine.generation.generate_ids`, batched, plain KV-cached ``generate`` (the fallback engine);
* ``one_at_a_time``: the naive loop (one ``generate`` per prompt; ``play`` with ``batch_size=1``), on the first
  ``--serial-n`` prompts / every k-th of the episodes (both envs): a one-stream rate does not depend on how many
  streams run one after another, and the full set would take most of a round.

Every reply is forced to exactly ``--max-new-tokens`` / ``--turn-tokens`` tokens (vLLM ``min_tokens``, HF
``min_new_tokens``), so every side does the same work per token.  Each round runs every side once, interleaved;
tokens/s come from the median of ``--rounds`` rounds.  The machine is shared: load averages are recorded at the start
and after each round.  vLLM's load time (eager, or ``--compile``), its block size, its prefix-cache hit rate per side
(hit tokens / queried prompt tokens, from vLLM's own counters) and peak RSS (this process + the EngineCore tree) are
recorded.  The JSON is rewritten after every round, so a cut run keeps its rounds.

    python bench/bench_engines.py                                           # 64 x 64, 16 episodes x 8 turns, 3 rounds
    python bench/bench_engines.py --n 4 --episodes 2 --turns 2 --rounds 1 --serial-n 2   # smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
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
from affine.stage import KNOWN_ERRORS  # noqa: E402
from affine.threads import cpu_record  # noqa: E402

MULTI_TURN_ENVS = ("agentgym:textcraft", "agentgym:babyai")
SIDES = ("vllm", "vllm_reprefill", "hf", "one_at_a_time")
PAIRS = [("vllm", "hf"), ("vllm", "one_at_a_time"),
         ("hf", "one_at_a_time"), ("vllm", "vllm_reprefill"), ("vllm_reprefill", "one_at_a_time")]  # fmt: skip


class Reprefill:
    """The vLLM engine with no KV kept between turns: its prefix cache is emptied before every generate call."""

    def __init__(self, engine: VLLMEngine) -> None:
        self.engine = engine

    def generate_token_ids(self, prompts: list[list[int]], **kwargs: Any) -> list[list[int]]:
        self.engine.llm.reset_prefix_cache()
        return self.engine.generate_token_ids(prompts, **kwargs)


def prefix_counters(engine: VLLMEngine) -> tuple[int, int]:
    """(queried, hit) prompt tokens of vLLM's prefix cache so far."""
    values = {m.name: getattr(m, "value", 0) for m in engine.llm.get_metrics()}
    return int(values.get("vllm:prefix_cache_queries", 0)), int(values.get("vllm:prefix_cache_hits", 0))


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


def tasks(params: Any, episodes: int) -> list[tuple[Any, int]]:
    """``episodes`` held-out tasks, alternating envs; fresh env objects every call (an env holds one episode)."""
    return [(build_env(MULTI_TURN_ENVS[i % 2], params.envs, "eval"), i // 2) for i in range(episodes)]


def play_all(model: Any, tokenizer: Any, chosen: list, args: Any, batch: int | None) -> list:
    return play(
        model,
        tokenizer,
        chosen,
        max_new_tokens=args.turn_tokens,
        temperature=0.0,
        max_turns=args.turns,
        batch_size=batch,
        max_context=2048,
    )


def median_rate(runs: list[float], tokens: int) -> dict:
    rate = round(tokens / statistics.median(runs), 2)
    return {"runs_s": [round(t, 2) for t in runs], "new_tokens": tokens, "tokens_per_s": rate}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "models" / "base"))
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--serial-n", type=int, default=16, help="prompts / episodes the one-at-a-time side plays")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--episodes", type=int, default=16)
    parser.add_argument("--turns", type=int, default=8)
    parser.add_argument("--turn-tokens", type=int, default=16, help="new tokens per multi-turn reply")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64, help="HF engine's batch size")
    parser.add_argument("--compile", action="store_true", help="vLLM with torch.compile (default: enforce_eager)")
    parser.add_argument("--block-size", type=int, default=None, help="vLLM KV block size (default: vLLM's, 128 on CPU)")
    parser.add_argument("--sides", default=",".join(SIDES), help="comma-separated subset of " + ",".join(SIDES))
    parser.add_argument("--skip-single", action="store_true")
    parser.add_argument("--skip-multi", action="store_true")
    parser.add_argument("--params", default=str(ROOT / "params.yaml"))
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "engines.json"))
    args = parser.parse_args()
    sides = [s for s in args.sides.split(",") if s]
    if unknown := set(sides) - set(SIDES):
        parser.error(f"unknown sides {sorted(unknown)}; choose from {','.join(SIDES)}")
    if min(args.n, args.serial_n, args.rounds, args.episodes, args.turns, args.max_new_tokens, args.turn_tokens) < 1:
        parser.error("--n, --serial-n, --rounds, --episodes, --turns and the token counts must be at least 1")

    params = load_params(args.params)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    report: dict[str, Any] = {
        "model": args.model,
        "dtype": args.dtype,
        "commit": commit.stdout.strip(),
        "single_turn": {"prompts": args.n, "new_tokens_each": args.max_new_tokens, "serial_prompts": args.serial_n},
        "multi_turn": {
            "envs": MULTI_TURN_ENVS,
            "episodes": args.episodes,
            "turns": args.turns,
            "tokens_per_reply": args.turn_tokens,
        },  # fmt: skip
        "rounds": args.rounds,
        "torch_threads": torch.get_num_threads(),
        "vllm_threads_bind": thread_binding(),
        "cpu_count": os.cpu_count(),
        "cpu": cpu_record(),
        "load_avg_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "torch": torch.__version__,
        "note": "2-core machine, possibly shared: other jobs may run during the rounds (see load averages)",
    }
    model, tokenizer = load_model(args.model, dtype=args.dtype)
    model.eval()
    _, texts = held_out_prompts(tokenizer, params, args.n)
    prompts = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    report["single_turn"]["prompt_tokens"] = sum(len(p) for p in prompts)
    engine = None
    if {"vllm", "vllm_reprefill"} & set(sides):
        load_s, engine = timed(
            lambda: VLLMEngine(
                args.model,
                tokenizer,
                dtype=args.dtype,
                seed=0,
                kv_cache_gib=2,
                enforce_eager=not args.compile,
                block_size=args.block_size,
                log_stats=True,
            )  # fmt: skip
        )
        block = engine.llm.llm_engine.vllm_config.cache_config.block_size
        report["vllm"] = {"load_s": round(load_s, 1), "enforce_eager": not args.compile, "block_size": block,
                          "rss_after_load_gb": tree_rss_gb()}  # fmt: skip
    every = max(1, args.episodes // args.serial_n)
    runs: dict[str, dict[str, list[float]]] = {"single_turn": {}, "multi_turn": {}}
    tokens: dict[str, dict[str, int]] = {"single_turn": {}, "multi_turn": {}}
    outputs: dict[str, Any] = {}
    hits: dict[str, list[int]] = {}
    state = {"loads": [], "peak": 0.0}

    def run(kind: str, side: str, fn: Any, count: Any) -> None:
        before = prefix_counters(engine) if engine is not None and side.startswith("vllm") else None
        t, out = timed(fn)
        runs[kind].setdefault(side, []).append(t)
        tokens[kind][side] = count(out)
        outputs[f"{kind}:{side}"] = out
        if before is not None:
            queried, hit = prefix_counters(engine)
            total = hits.setdefault(f"{kind}:{side}", [0, 0])
            total[0], total[1] = total[0] + queried - before[0], total[1] + hit - before[1]

    common = {"max_new_tokens": args.max_new_tokens, "temperature": 0.0}
    single = {
        "vllm": lambda: generate_ids(engine, tokenizer, prompts, batch_size=args.n, **common),
        "hf": lambda: generate_ids(model, tokenizer, prompts, batch_size=args.batch_size, **common),
        "one_at_a_time": lambda: serial_generate(model, tokenizer, texts[: args.serial_n], args.max_new_tokens),
    }
    multi = {
        "vllm": lambda: play_all(engine, tokenizer, tasks(params, args.episodes), args, None),
        "vllm_reprefill": lambda: play_all(Reprefill(engine), tokenizer, tasks(params, args.episodes), args, None),
        "hf": lambda: play_all(model, tokenizer, tasks(params, args.episodes), args, None),
        "one_at_a_time": lambda: play_all(model, tokenizer, tasks(params, args.episodes)[::every], args, 1),
    }
    try:
        if engine is not None:  # warm-up: one-off costs out of the timings
            engine.min_tokens = 2
            generate_ids(engine, tokenizer, prompts[:2], batch_size=2, max_new_tokens=2, temperature=0.0)
        for _ in range(args.rounds):
            if not args.skip_single:
                with forced_length(model, args.max_new_tokens):
                    if engine is not None:
                        engine.min_tokens = args.max_new_tokens
                    for side in (s for s in sides if s in single):
                        run("single_turn", side, single[side], lambda out: sum(len(o) for o in out))
                state["peak"] = max(state["peak"], tree_rss_gb())
            if not args.skip_multi:
                with forced_length(model, args.turn_tokens):
                    if engine is not None:
                        engine.min_tokens = args.turn_tokens
                    for side in (s for s in sides if s in multi):
                        run("multi_turn", side, multi[side], lambda eps: sum(e.new_tokens for e in eps))
                state["peak"] = max(state["peak"], tree_rss_gb())
            state["loads"].append([round(x, 2) for x in os.getloadavg()])
            write(args.out, report, runs, tokens, outputs, hits, state)
    finally:
        if engine is not None:
            engine.close()
    print(json.dumps({k: report.get(k) for k in ("ratios", "identical_outputs", "prefix_cache_hit_rate", "vllm")}))


def write(out: str, report: dict, runs: dict, tokens: dict, outputs: dict, hits: dict, state: dict) -> None:
    ratios, same = {}, {}
    for kind in ("single_turn", "multi_turn"):
        results = {side: median_rate(times, tokens[kind][side]) for side, times in runs[kind].items()}
        report[kind]["results"] = results
        rates = {side: r["tokens_per_s"] for side, r in results.items()}
        for a, b in PAIRS:
            if a in rates and b in rates:
                ratios[f"{kind}_{a}_over_{b}"] = round(rates[a] / rates[b], 2)
        for side in ("vllm", "vllm_reprefill"):
            if f"{kind}:{side}" in outputs and f"{kind}:hf" in outputs:
                mine, theirs = outputs[f"{kind}:{side}"], outputs[f"{kind}:hf"]
                if kind == "multi_turn":
                    mine, theirs = [e.token_ids.tolist() for e in mine], [e.token_ids.tolist() for e in theirs]
                same[f"{kind}_{side}_vs_hf"] = f"{sum(a == b for a, b in zip(mine, theirs, strict=True))}/{len(mine)}"
        if f"{kind}:vllm" in outputs and kind == "multi_turn":
            report[kind]["turns_played"] = sum(e.turns for e in outputs[f"{kind}:vllm"])
    report["ratios"] = ratios
    report["identical_outputs"] = same
    report["prefix_cache_hit_rate"] = {k: round(h / q, 3) if q else None for k, (q, h) in hits.items()}
    report["load_avg_after_each_round"] = state["loads"]
    if "vllm" in report:
        report["vllm"]["peak_tree_rss_gb"] = state["peak"]
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    try:
        main()
    except KNOWN_ERRORS as error:  # e.g. models/base before `dvc repro prepare`: one line, as a stage gives
        raise SystemExit(f"{Path(__file__).name}: error: {error}") from None
