"""Sandbox throughput: executions per second with the thread pool vs one at a time, on the same N programs.

The programs are the first N (program, stdin) test cases of the offline corpus -- what ABD/DED scoring runs.
Writes bench/results/sandbox.json and prints a one-line summary.  ``--baseline`` also times the same runs with
``sandbox.isolation: none`` (Affine's bare rlimits) to show what the isolation costs; ``--python`` picks the
interpreter (default: ``auto``, the validator's 3.12 where installed).

    python bench/bench_sandbox.py [--n 60] [--workers N] [--baseline]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

from affine import sandbox
from affine.envs.programs import generate_corpus


def jobs_for(n: int) -> list[tuple[str, str]]:
    rows = generate_corpus(seed=0, n=max(1, n // 4 + 1))
    cases = [(r["program"], c["input"], c["output"]) for r in rows for c in json.loads(r["test_cases"])["test_cases"]]
    return [(program, stdin) for program, stdin, _ in cases[:n]]


def timed(fn) -> tuple[float, list[sandbox.RunResult]]:
    start = time.perf_counter()
    results = fn()
    return time.perf_counter() - start, results


def measure(jobs: list[tuple[str, str]], isolation: str, python: str, workers: int) -> dict:
    setup = sandbox.configure(isolation=isolation, python=python)  # the one-off probe is not part of the timing
    limits = sandbox.Limits()
    serial_s, serial = timed(lambda: [sandbox.run_program(p, s, limits) for p, s in jobs])
    pool_s, pooled = timed(lambda: sandbox.run_many(jobs, limits, workers=workers))
    assert [r.stdout for r in serial] == [r.stdout for r in pooled], "pool and serial runs disagree"
    failures = sum(bool(r.stderr) or r.returncode != 0 for r in pooled)
    return {
        "isolation": setup.isolation,
        "python": f"{setup.interp.python} ({setup.interp.version})",
        "protections": list(sandbox.protections(setup.isolation)),
        "serial_s": round(serial_s, 3),
        "pool_s": round(pool_s, 3),
        "serial_exec_per_s": round(len(jobs) / serial_s, 2),
        "pool_exec_per_s": round(len(jobs) / pool_s, 2),
        "speedup": round(serial_s / pool_s, 2),
        "failed_runs": failures,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=60, help="number of executions per measurement")
    parser.add_argument("--workers", type=int, default=None, help="pool size (default: one per core)")
    parser.add_argument("--baseline", action="store_true", help="also time sandbox.isolation: none")
    parser.add_argument("--python", default="auto", help="sandbox.python (default: auto)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "sandbox.json"))
    args = parser.parse_args()

    jobs = jobs_for(args.n)
    workers = args.workers or os.cpu_count() or 1
    report = {
        "n": len(jobs),
        "workers": workers,
        "cpu_count": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "isolated": measure(jobs, "namespaces", args.python, workers),
    }
    if args.baseline:
        report["baseline_none"] = measure(jobs, "none", args.python, workers)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    iso = report["isolated"]
    line = (
        f"sandbox[{iso['isolation']}] n={len(jobs)}: pool({workers}) {iso['pool_exec_per_s']}/s vs serial "
        f"{iso['serial_exec_per_s']}/s (x{iso['speedup']}) on {os.cpu_count()} cores, load {report['load_avg_1m']}"
        f", {iso['python']}"
    )
    if args.baseline:
        line += f"; isolation=none serial {report['baseline_none']['serial_exec_per_s']}/s"
    print(line + f" -> {out}")


if __name__ == "__main__":
    main()
