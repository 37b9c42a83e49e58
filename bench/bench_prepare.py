"""The prepare stage's GGUF conversion (``affine.model.prepare_base``): one shared GGUF parse vs one per load.

Why: transformers builds a new ``gguf.GGUFReader`` for the config, the weights and the tokenizer of the embedded
model, and each parses the whole header again; ``affine.model.gguf_parsed_once`` shares one. Each side runs in a
fresh process (same imports, same page cache after the first round), rounds interleaved, and records the seconds of
``prepare_base`` and how many readers were built:

* ``per_load``: transformers as it is (``gguf_parsed_once`` replaced by a no-op);
* ``shared``: what the prepare stage does.

    python bench/bench_prepare.py                       # writes bench/results/prepare.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SIDES = ("per_load", "shared")


def worker(side: str, spec: str) -> dict:
    import gguf

    import affine.model as model_module

    built = []
    original = gguf.GGUFReader

    def counting(*args, **kwargs):
        built.append(1)
        return original(*args, **kwargs)

    gguf.GGUFReader = counting
    if side == "per_load":
        model_module.gguf_parsed_once = contextlib.nullcontext
    with tempfile.TemporaryDirectory(prefix="bench_prepare_") as out:
        started = time.perf_counter()
        model_module.prepare_base(spec, out)
        seconds = time.perf_counter() - started
    return {"side": side, "seconds": round(seconds, 2), "readers_built": len(built)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="embedded:smollm2-135m-instruct")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--worker", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "prepare.json"))
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.model)))
        return
    runs = []
    for index in range(args.rounds):
        for side in SIDES if index % 2 == 0 else SIDES[::-1]:
            load = round(os.getloadavg()[0], 2)
            done = subprocess.run(
                [sys.executable, __file__, "--worker", side, "--model", args.model],
                capture_output=True,
                text=True,
                check=True,
            )
            runs.append({**json.loads(done.stdout.strip().splitlines()[-1]), "round": index, "load_avg_1m": load})
            print(json.dumps(runs[-1]), flush=True)
    medians = {side: round(statistics.median(r["seconds"] for r in runs if r["side"] == side), 2) for side in SIDES}
    report = {
        "model": args.model,
        "measured": "seconds of affine.model.prepare_base in a fresh process, and gguf.GGUFReader instances built",
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "runs": runs,
        "median_seconds": medians,
        "speedup_shared": round(medians["per_load"] / medians["shared"], 3),
    }
    summary = (
        f"prepare_base {args.model}: per_load {medians['per_load']} s, shared {medians['shared']} s "
        f"(x{report['speedup_shared']})"
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{summary} -> {out}")


if __name__ == "__main__":
    main()
