"""Pipeline timing: wall time per stage from a ``dvc repro`` log, and the time of a no-op ``dvc repro``.

Runs nothing expensive itself.  Three modes, combinable; each writes its section into bench/results/pipeline.json
(sections from earlier runs are kept) and prints a one-line summary:

``--log FILE``   parse the output of a ``dvc repro`` run.  dvc prints ``Running stage '<name>':`` before each stage it
                 runs and ``Stage '<name>' didn't change, skipping`` for the others; our stages log at INFO with
                 ``%(asctime)s ...`` (``2025-01-31 12:00:00,123 INFO ...``).  A stage's section is the lines from its
                 marker to the next marker.  When the marker lines carry timestamps themselves (a log written by
                 ``--tee``), a stage's time is exact: its marker to the next marker (or the end of the log).  On a
                 plain log, only the stages' own lines are timed, so the time runs from the first to the last
                 timestamp in the section ("logged" method) and misses interpreter start-up and imports before
                 the first log line, dvc's hashing and lock update after the last one: a lower bound.
``--tee FILE``   read a ``dvc repro`` output on stdin, echo it, and write it to FILE with every line prefixed by its
                 arrival time (same asctime format), then parse FILE as ``--log`` does -- exact stage boundaries:
                     dvc repro 2>&1 | python bench/bench_pipeline.py --tee repro.log
``--noop``       time ``dvc repro`` when everything is up to date (target <= 10 s), ``--repeats`` times in
                 ``--repo``.  It first runs ``dvc status`` and refuses (exit 1) when anything changed, since the
                 repro would then really train; ``--force`` skips that check.  The run must print no
                 ``Running stage`` line, or it is reported as not a no-op.

The dvc.lock of ``--repo`` (if any) is read for the stage list and the recorded output sizes.

    dvc repro 2>&1 | tee repro.log; python bench/bench_pipeline.py --log repro.log   # approximate per-stage times
    dvc repro 2>&1 | python bench/bench_pipeline.py --tee repro.log                  # exact per-stage times
    python bench/bench_pipeline.py --noop                                            # no-op repro, 3 runs
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
TIMESTAMP = re.compile(r"^(\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2})(?:[,.](\d{1,6}))?")
RUNNING = re.compile(r"Running stage '([^']+)':")
SKIPPED = re.compile(r"(?:Stage )?'([^']+)' didn't change, skipping")
CACHED = re.compile(r"Stage '([^']+)' is cached - skipping run")
NOOP_TARGET_S = 10.0


def parse_time(line: str) -> datetime | None:
    match = TIMESTAMP.match(line)
    if not match:
        return None
    moment = datetime.strptime(match.group(1).replace("T", " "), "%Y-%m-%d %H:%M:%S")
    fraction = match.group(2)
    if fraction:
        moment = moment.replace(microsecond=int(fraction.ljust(6, "0")))
    return moment


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%S,") + f"{moment.microsecond // 1000:03d}"


def marker(line: str) -> tuple[str, str] | None:
    for kind, pattern in (("ran", RUNNING), ("cached", CACHED), ("skipped", SKIPPED)):
        match = pattern.search(line)
        if match:
            return kind, match.group(1)
    return None


def parse_log(text: str) -> dict:
    """Per-stage wall times from a ``dvc repro`` log (see the module docstring for the two methods)."""
    lines = [ANSI.sub("", raw) for raw in text.splitlines()]
    times = [parse_time(line) for line in lines]
    marks = [(i, *m) for i, line in enumerate(lines) if (m := marker(line))]
    stages: dict[str, dict[str, Any]] = {}
    for n, (index, kind, name) in enumerate(marks):
        end_index = marks[n + 1][0] if n + 1 < len(marks) else len(lines)
        section = [t for t in times[index:end_index] if t is not None]
        entry: dict[str, Any] = {"status": kind}
        if kind == "ran" and section:
            start = times[index] or section[0]
            if times[index] is not None:  # timestamped markers (--tee): up to the next marker or the log's last line
                following = [t for t in times[end_index:] if t is not None][:1] or section[-1:]
                end, method = following[0], "exact"
            else:
                end, method = section[-1], "logged"
            entry.update({"seconds": round((end - start).total_seconds(), 3), "method": method, "start": stamp(start)})
            entry["end"] = stamp(end)
            later = [t for t in times[end_index:] if t is not None][:1]
            if method == "logged" and later:
                # first line of this stage -> first timestamped line after it: adds dvc's lock update and the next
                # stage's start-up, drops this one's; an estimate of the same size, not a bound
                entry["to_next_timestamp_s"] = round((later[0] - start).total_seconds(), 3)
        elif kind == "ran":
            entry.update({"seconds": None, "method": "no timestamps in this stage's lines"})
        key, k = name, 1
        while key in stages:  # a log of several repro runs: later runs of a stage become name#2, name#3, ...
            k += 1
            key = f"{name}#{k}"
        stages[key] = entry
    ran = [s["seconds"] for s in stages.values() if s.get("seconds") is not None]
    known = [t for t in times if t is not None]
    return {
        "stages": stages,
        "ran": [name for name, s in stages.items() if s["status"] == "ran"],
        "skipped": [name for name, s in stages.items() if s["status"] != "ran"],
        "sum_of_stage_seconds": round(sum(ran), 3),
        "first_to_last_timestamp_s": round((known[-1] - known[0]).total_seconds(), 3) if len(known) > 1 else None,
    }


def tee(path: Path) -> None:
    """stdin -> stdout and ``path``, each line prefixed with its arrival time; a final line closes the last stage."""
    with open(path, "w") as handle:
        for line in sys.stdin:
            sys.stdout.write(line)
            sys.stdout.flush()
            handle.write(f"{stamp(datetime.now())} | {line}")
            handle.flush()
        handle.write(f"{stamp(datetime.now())} | [bench_pipeline] end of input\n")


def dvc_command() -> list[str]:
    found = shutil.which("dvc")
    return [found] if found else [sys.executable, "-m", "dvc"]


def lock_summary(repo: Path) -> dict | None:
    lock = repo / "dvc.lock"
    if not lock.is_file():
        return None
    stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {})
    summary = {}
    for name, stage in stages.items():
        outs = stage.get("outs", []) or []
        summary[name] = {
            "outs": [o.get("path") for o in outs],
            "out_bytes": sum(int(o.get("size", 0) or 0) for o in outs),
            "out_files": sum(int(o.get("nfiles", 1) or 1) for o in outs),
        }
    return summary


def noop(repo: Path, repeats: int, force: bool) -> dict:
    dvc = dvc_command()
    if not force:
        start = time.perf_counter()
        status = subprocess.run([*dvc, "status", "--json"], cwd=repo, capture_output=True, text=True)
        status_s = time.perf_counter() - start
        if status.returncode != 0:
            sys.exit(f"dvc status failed (rc {status.returncode}): {status.stderr.strip() or status.stdout.strip()}")
        changed = json.loads(status.stdout or "{}")
        if changed:
            sys.exit(
                "not up to date, so `dvc repro` would really run stages: "
                + ", ".join(sorted(changed))
                + " changed (run the pipeline first, or --force)"
            )
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        proc = subprocess.run([*dvc, "repro"], cwd=repo, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        output = proc.stdout + proc.stderr
        ran = RUNNING.findall(output)
        runs.append(
            {
                "seconds": round(seconds, 3),
                "returncode": proc.returncode,
                "stages_skipped": len(SKIPPED.findall(output)),
                "stages_run": ran,
                "noop": proc.returncode == 0 and not ran,
            }
        )
        if proc.returncode != 0:
            print(output, file=sys.stderr)
            break
    seconds = [r["seconds"] for r in runs]
    return {
        "repo": str(repo),
        "command": " ".join(dvc) + " repro",
        "status_check_s": None if force else round(status_s, 3),
        "runs": runs,
        "min_s": min(seconds),
        "median_s": round(statistics.median(seconds), 3),
        "target_s": NOOP_TARGET_S,
        "meets_target": all(r["noop"] for r in runs) and statistics.median(seconds) <= NOOP_TARGET_S,
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "cpu_count": os.cpu_count(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log", help="a saved `dvc repro` output to parse")
    parser.add_argument("--tee", help="read `dvc repro` output on stdin, write it timestamped here, then parse it")
    parser.add_argument("--noop", action="store_true", help="time `dvc repro` with everything up to date")
    parser.add_argument("--repeats", type=int, default=3, help="no-op runs")
    parser.add_argument("--force", action="store_true", help="--noop without the `dvc status` safety check")
    parser.add_argument("--repo", default=str(ROOT), help="the DVC repository (default: this one)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "pipeline.json"))
    args = parser.parse_args()
    if not (args.log or args.tee or args.noop):
        parser.error("give --log FILE, --tee FILE and/or --noop")

    repo = Path(args.repo).resolve()
    out = Path(args.out)
    report = json.loads(out.read_text()) if out.is_file() else {}
    report["lock"] = lock_summary(repo)
    summary = []
    if args.tee:
        tee(Path(args.tee))
    log = args.tee or args.log
    if log:
        parsed = parse_log(Path(log).read_text(errors="replace"))
        report["stages"] = {"log": str(Path(log).resolve()), **parsed}
        timed = ", ".join(
            f"{name} {s['seconds']}s" for name, s in parsed["stages"].items() if s.get("seconds") is not None
        )
        method = {s.get("method") for s in parsed["stages"].values() if s.get("method")}
        summary.append(
            f"stages ({'/'.join(sorted(method)) or 'none ran'}): {timed or '-'}; skipped {len(parsed['skipped'])}"
        )
    if args.noop:
        result = noop(repo, args.repeats, args.force)
        report["noop"] = result
        summary.append(
            f"no-op dvc repro median {result['median_s']}s (min {result['min_s']}s, target <= {NOOP_TARGET_S}s: "
            f"{'met' if result['meets_target'] else 'NOT met'})"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print("pipeline: " + " | ".join(summary) + f" -> {out}")


if __name__ == "__main__":
    main()
