"""Torch intra-op threads on a shared CPU: 1 vs 2 threads, idle and with every core kept busy by another process.

Why: issue 20 saw two torch threads on two busy cores run ~10x slower than one, so ``base.num_threads: auto`` must be
picked by measurement, not by habit.  Each configuration runs in a fresh worker process (the thread count and
``OMP_WAIT_POLICY`` are fixed when OpenMP starts), which loads the model and times

* ``sft_step``: forward + backward of a causal-LM loss on a fixed seeded batch (``--batch`` rows x ``--tokens``);
* ``generate``: greedy ``model.generate`` of ``--new-tokens`` tokens for ``--batch`` seeded prompts,

reporting the median of ``--steps`` repetitions after one warm-up.  "busy" starts one pure-Python spin loop per
available core (``while 1: pass``, the same load another engineer's test run puts on this machine) and always kills
them afterwards.  The 1-minute load average is recorded at the start and end: "idle" is only as idle as the machine.

    python bench/bench_threads.py                        # models/base, writes bench/results/threads.json
    python bench/bench_threads.py --model tiny --steps 2 --out /tmp/threads.json   # smoke test (random 2-layer model)
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from affine.threads import available_cpus, choose_threads, measure_free_cpus  # noqa: E402

# (label, torch threads, OMP_WAIT_POLICY or None)
VARIANTS = (("1 thread", 1, None), ("2 threads", 2, None), ("2 threads, passive wait", 2, "PASSIVE"))


def worker(args: argparse.Namespace) -> dict:
    """One configuration in this process: load the model, time the two workloads, return medians in seconds."""
    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.model == "tiny":
        from transformers import LlamaConfig, LlamaForCausalLM

        config = LlamaConfig(vocab_size=1000, hidden_size=64, intermediate_size=128, num_hidden_layers=2)
        model = LlamaForCausalLM(config)
    else:
        from affine.model import load_model

        model, _ = load_model(args.model)
    vocab = model.config.vocab_size
    ids = torch.randint(3, vocab, (args.batch, args.tokens))
    prompt = ids[:, : args.tokens // 2]
    model.train()

    def sft_step() -> None:
        model.zero_grad(set_to_none=True)
        model(input_ids=ids, labels=ids).loss.backward()

    def generate() -> None:
        with torch.no_grad():
            model.generate(
                input_ids=prompt,
                attention_mask=torch.ones_like(prompt),
                max_new_tokens=args.new_tokens,
                min_new_tokens=args.new_tokens,
                do_sample=False,
                pad_token_id=0,
            )

    timings = {}
    for name, fn in (("sft_step", sft_step), ("generate", generate)):
        if name == "generate":
            model.eval()
        fn()  # warm-up
        seconds = []
        for _ in range(args.steps):
            start = time.perf_counter()
            fn()
            seconds.append(time.perf_counter() - start)
        timings[name] = {"median_s": round(statistics.median(seconds), 4), "runs_s": [round(s, 4) for s in seconds]}
    return {"torch_threads": torch.get_num_threads(), **timings}


def run_variant(args: argparse.Namespace, threads: int, wait_policy: str | None) -> dict:
    env = {key: value for key, value in os.environ.items() if key not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    env["OMP_NUM_THREADS"] = str(threads)
    if wait_policy:
        env["OMP_WAIT_POLICY"] = wait_policy
    cmd = [sys.executable, __file__, "--worker", "--threads", str(threads)]
    cmd += ["--model", args.model, "--steps", str(args.steps), "--batch", str(args.batch)]
    cmd += ["--tokens", str(args.tokens), "--new-tokens", str(args.new_tokens)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"worker failed ({threads} threads): {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def start_burners(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while 1: pass"], start_new_session=True) for _ in range(n)]


def stop_burners(burners: list[subprocess.Popen]) -> None:
    for burner in burners:
        burner.kill()
        burner.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/base", help="model dir for affine.model.load_model, or 'tiny'")
    parser.add_argument("--steps", type=int, default=3, help="timed repetitions per workload (median reported)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=64, help="tokens per SFT row; prompts are half as long")
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--timeout", type=int, default=600, help="hang guard per worker, seconds")
    parser.add_argument("--out", default=str(ROOT / "bench/results/threads.json"))
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return

    cpus = len(os.sched_getaffinity(0))
    results: dict[str, dict] = {}
    for load in ("idle", "busy"):
        burners = start_burners(cpus) if load == "busy" else []
        try:
            time.sleep(1.0 if burners else 0.0)
            results[load] = {"load_avg_1m_start": round(os.getloadavg()[0], 2)}
            free = measure_free_cpus(available_cpus())
            # what a stage starting now would pick with base.num_threads: auto (OMP_NUM_THREADS aside)
            results[load]["auto"] = {"free_cpus": free, "threads": choose_threads("auto", {}, cpus, free)[0]}
            for label, threads, policy in VARIANTS:
                results[load][label] = run_variant(args, threads, policy)
            results[load]["load_avg_1m_end"] = round(os.getloadavg()[0], 2)
        finally:
            stop_burners(burners)

    import torch

    report = {
        "model": args.model,
        "workloads": {
            "sft_step": f"forward+backward, {args.batch} rows x {args.tokens} tokens",
            "generate": f"greedy, {args.batch} prompts x {args.tokens // 2} tokens, {args.new_tokens} new tokens",
        },
        "busy": f"{cpus} x `python -c 'while 1: pass'` (one per available core)",
        "steps": args.steps,
        "cpus_available": cpus,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "processor": platform.processor() or platform.machine(),
        "results": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    line = []
    for load in ("idle", "busy"):
        for label, _, _ in VARIANTS:
            r = results[load][label]
            line.append(f"{load}/{label}: sft {r['sft_step']['median_s']}s gen {r['generate']['median_s']}s")
    print("; ".join(line))


if __name__ == "__main__":
    main()
