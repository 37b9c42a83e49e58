"""Torch intra-op threads on a shared CPU: 1 vs 2 threads and OpenMP wait policies, idle and with every core busy.

Why: issue 20 saw two torch threads on two busy cores run ~10x slower than one, and a load-dependent choice made two
runs of one commit differ in the last bits (fp32 reductions depend on the thread count).  ``base.num_threads: auto``
must be a fixed count per machine, so this measures what that count costs under load and whether OpenMP's wait
policy (``OMP_WAIT_POLICY``, ``GOMP_SPINCOUNT``) removes the collapse.  Each configuration runs in a fresh worker
process that sets those variables in ``os.environ`` *before* ``import torch`` (as :mod:`affine` does for a stage)
and asks libgomp to print what it read (``OMP_DISPLAY_ENV``), so the report shows the setting took effect (read
its ``GOMP_SPINCOUNT``: libgomp prints ``PASSIVE`` for an unset policy too, which spins 300000 times; PASSIVE is
0).  The worker loads the model and times

* ``sft_step``: forward + backward of a causal-LM loss on a fixed seeded batch (``--batch`` rows x ``--tokens``);
* ``generate``: greedy ``model.generate`` of ``--new-tokens`` tokens for ``--batch`` seeded prompts,

after one warm-up, ``--steps`` times or until ``--budget-s`` is spent (at least once).  Rounds are interleaved
(every variant, idle then busy, per round) so drifting load from other jobs hits all variants alike; the report
gives the median over all rounds' runs.  "busy" starts one pure-Python spin loop per available core (``while 1:
pass``, the load another engineer's test run puts on this machine) and always kills them afterwards.  The 1-minute
load average is recorded per phase: "idle" is only as idle as the machine.

    python bench/bench_threads.py                        # models/base, writes bench/results/threads.json
    python bench/bench_threads.py --model tiny --steps 2 --rounds 1 --out /tmp/threads.json   # smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# (label, torch threads, OpenMP variables set before torch loads)
VARIANTS: tuple[tuple[str, int, dict[str, str]], ...] = (
    ("1 thread", 1, {}),
    ("2 threads", 2, {}),
    ("2 threads, passive", 2, {"OMP_WAIT_POLICY": "PASSIVE"}),
    ("2 threads, spin 10k", 2, {"GOMP_SPINCOUNT": "10000"}),
)
OMP_VARS = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_DISPLAY_ENV")


def worker(args: argparse.Namespace) -> dict:
    """One configuration in this process: load the model, time the two workloads, return seconds per run."""
    os.environ.update(json.loads(args.omp_env))  # before torch loads libgomp, which reads them once at load
    os.environ["OMP_DISPLAY_ENV"] = "VERBOSE"  # VERBOSE also prints GOMP_SPINCOUNT
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

    def sft_step() -> None:
        model.zero_grad(set_to_none=True)
        model(input_ids=ids, labels=ids).loss.backward()

    def generate(new_tokens: int) -> None:
        with torch.no_grad():
            model.generate(
                input_ids=prompt,
                attention_mask=torch.ones_like(prompt),
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                do_sample=False,
                pad_token_id=0,
            )

    timings = {}
    for name, fn, warm in (
        ("sft_step", sft_step, sft_step),
        ("generate", lambda: generate(args.new_tokens), lambda: generate(2)),
    ):
        model.train(name == "sft_step")
        warm()
        seconds: list[float] = []
        started = time.perf_counter()
        while len(seconds) < args.steps and (not seconds or time.perf_counter() - started < args.budget_s):
            start = time.perf_counter()
            fn()
            seconds.append(round(time.perf_counter() - start, 4))
        timings[name] = seconds
    return {"torch_threads": torch.get_num_threads(), **timings}


def omp_seen(stderr: str) -> dict[str, str]:
    """What libgomp printed it read (``OMP_DISPLAY_ENV``): wait policy, spin count, thread count."""
    seen = {}
    for key in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS"):
        found = re.search(rf"{key} = '?([^'\n]+)'?", stderr)
        if found:
            seen[key] = found.group(1).strip()
    return seen


def run_variant(args: argparse.Namespace, threads: int, omp_env: dict[str, str]) -> dict:
    env = {key: value for key, value in os.environ.items() if key not in OMP_VARS}
    cmd = [sys.executable, __file__, "--worker", "--threads", str(threads), "--omp-env", json.dumps(omp_env)]
    cmd += ["--model", args.model, "--steps", str(args.steps), "--batch", str(args.batch), "--budget-s"]
    cmd += [str(args.budget_s), "--tokens", str(args.tokens), "--new-tokens", str(args.new_tokens)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.timeout, cwd=ROOT)
    if done.returncode != 0:
        raise SystemExit(f"worker failed ({threads} threads): {done.stderr.strip().splitlines()[-1:]}")
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "libgomp_read": omp_seen(done.stderr)}


def start_burners(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while 1: pass"], start_new_session=True) for _ in range(n)]


def stop_burners(burners: list[subprocess.Popen]) -> None:
    for burner in burners:
        burner.kill()
        burner.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/base", help="model dir for affine.model.load_model, or 'tiny'")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds over all variants and loads")
    parser.add_argument("--steps", type=int, default=3, help="timed repetitions per workload and round")
    parser.add_argument("--budget-s", type=float, default=20.0, help="stop repeating a workload after this long")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=64, help="tokens per SFT row; prompts are half as long")
    parser.add_argument("--new-tokens", type=int, default=8)
    parser.add_argument("--timeout", type=int, default=900, help="hang guard per worker, seconds")
    parser.add_argument("--out", default=str(ROOT / "bench/results/threads.json"))
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--omp-env", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return

    cpus = len(os.sched_getaffinity(0))
    runs: dict[str, dict[str, list[dict]]] = {"idle": {}, "busy": {}}
    loads: dict[str, list[list[float]]] = {"idle": [], "busy": []}
    for _ in range(args.rounds):
        for load in ("idle", "busy"):
            burners = start_burners(cpus) if load == "busy" else []
            try:
                time.sleep(1.0 if burners else 0.0)
                loads[load].append([round(os.getloadavg()[0], 2)])
                for label, threads, omp_env in VARIANTS:
                    runs[load].setdefault(label, []).append(run_variant(args, threads, omp_env))
                    write_report(args, cpus, runs, loads)  # after every worker: a long run can be stopped any time
                loads[load][-1].append(round(os.getloadavg()[0], 2))
            finally:
                stop_burners(burners)
    report = write_report(args, cpus, runs, loads)
    line = []
    for load, by_label in report["results"].items():
        for label in by_label:
            if label in dict((v[0], v) for v in VARIANTS):
                r = by_label[label]
                line.append(f"{load}/{label}: sft {r['sft_step']['median_s']}s gen {r['generate']['median_s']}s")
    print("\n".join(line))


def write_report(args: argparse.Namespace, cpus: int, runs: dict, loads: dict) -> dict:
    """The JSON report of the runs so far: per load and variant, the median over every round's runs."""
    import torch

    results: dict[str, dict] = {}
    for load, by_label in runs.items():
        results[load] = {"load_avg_1m_start_end_per_round": loads[load]}
        for label, worker_runs in by_label.items():
            first = worker_runs[0]
            entry: dict = {"torch_threads": first["torch_threads"], "libgomp_read": first["libgomp_read"]}
            entry["rounds"] = len(worker_runs)
            for name in ("sft_step", "generate"):
                seconds = [s for run in worker_runs for s in run[name]]
                entry[name] = {"median_s": round(statistics.median(seconds), 4), "runs_s": seconds}
            results[load][label] = entry
    report = {
        "model": args.model,
        "workloads": {
            "sft_step": f"forward+backward, {args.batch} rows x {args.tokens} tokens",
            "generate": f"greedy, {args.batch} prompts x {args.tokens // 2} tokens, {args.new_tokens} new tokens",
        },
        "busy": f"{cpus} x `python -c 'while 1: pass'` (one per available core)",
        "rounds": args.rounds,
        "steps_per_round": args.steps,
        "budget_s": args.budget_s,
        "cpus_available": cpus,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "processor": platform.processor() or platform.machine(),
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "results": results,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
