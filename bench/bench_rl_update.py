"""The PPO update's cost on the CPU profile: fp32 vs bf16 autocast, with and without activation recompute.

Why: in the first AgentGym default run (issue 19) one PPO update of 32 episodes took 11 min 37 s at minibatch 2,
and minibatch 8 was OOM-killed at 19 GB.  The lm_head already sees only action positions (``ActorCritic``), so the
remaining cost is the trunk over ~1k-token episodes: its saved activations (memory) and its matmuls (time).  This
times one optimizer step of the real :class:`affine.rl.actor.ActorCritic` (policy = the SFT LoRA on the embedded
model, value head on) on seeded ``--rows`` x ``--tokens`` rows whose last turns are action tokens, per variant:

* ``fp32``: what the update did;
* ``bf16``: ``torch.autocast("cpu", bfloat16)`` around the forward (``rl.bf16``); native on avx512_bf16/AMX CPUs;
* ``*_ckpt``: gradient checkpointing of the trunk (``rl.gradient_checkpointing``): activations recomputed in backward.

Each variant runs in its own process (peak RSS is that process's ``ru_maxrss``), rounds interleaved, medians
reported with the 1-minute load average per run.

    python bench/bench_rl_update.py                      # writes bench/results/rl_update.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VARIANTS = {"fp32": (False, False), "bf16": (True, False), "fp32_ckpt": (False, True), "bf16_ckpt": (True, True)}


def worker(variant: str, policy: str, rows: int, tokens: int, steps: int) -> dict:
    """One variant in this process: seconds per update step and peak RSS."""
    import torch

    from affine.config import load_params
    from affine.rl.actor import ActorCritic, load_policy, without_dropout
    from affine.rl.value_head import ValueHead

    bf16, ckpt = VARIANTS[variant]
    params = load_params(ROOT / "params.yaml")
    params = params.model_copy(update={"rl": params.rl.model_copy(update={"gradient_checkpointing": ckpt})})
    torch.manual_seed(0)
    model, _ = load_policy(params, policy)  # recompute on exactly as the rl stage turns it on
    head = ValueHead(model.config.hidden_size, 256)
    actor = without_dropout(ActorCritic(model, head, torch.bfloat16 if bf16 else None))
    optimizer = torch.optim.AdamW([p for p in actor.parameters() if p.requires_grad], lr=1e-5)
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (rows, tokens), generator=generator)
    attention = torch.ones_like(ids)
    mask = torch.zeros_like(ids, dtype=torch.bool)
    for start in range(tokens // 4, tokens, tokens // 4):  # four turns, 48 action tokens at the end of each
        mask[:, max(start - 48, 0) : start] = True
    times = []
    for step in range(steps + 1):  # the first step warms up
        began = time.perf_counter()
        logprobs, entropy, values, _ = actor(ids, attention, mask, 0.7)
        loss = -(logprobs * mask).sum() / mask.sum() + 0.5 * (values**2 * mask).sum() / mask.sum() - 0.01 * entropy
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if step:
            times.append(time.perf_counter() - began)
    return {
        "s_per_step": statistics.median(times),
        "tokens_per_s": rows * tokens / statistics.median(times),
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "load_1min": os.getloadavg()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--policy", default=str(ROOT / "models/sft"))
    parser.add_argument("--rows", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--out", default=str(ROOT / "bench/results/rl_update.json"))
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.policy, args.rows, args.tokens, args.steps)))
        return
    runs: dict[str, list[dict]] = {v: [] for v in args.variants.split(",")}
    for round_ in range(args.rounds):
        for variant in runs:
            command = [sys.executable, __file__, "--worker", variant, "--policy", args.policy]
            command += ["--rows", str(args.rows), "--tokens", str(args.tokens), "--steps", str(args.steps)]
            out = subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
            runs[variant].append(json.loads(out))
            print(f"round {round_ + 1} {variant}: {runs[variant][-1]}", flush=True)
    summary = {
        v: {key: statistics.median(r[key] for r in rs) for key in ("s_per_step", "tokens_per_s", "peak_rss_gb")}
        for v, rs in runs.items()
    }
    base = summary.get("fp32", {}).get("s_per_step")
    for values in summary.values():
        if base:
            values["speedup_vs_fp32"] = base / values["s_per_step"]
    result = {"rows": args.rows, "tokens": args.tokens, "steps": args.steps, "rounds": args.rounds}
    result |= {"summary": summary, "runs": runs, "cpu_count": os.cpu_count()}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
