"""How many CPU threads torch uses in a stage, chosen on purpose and logged.

Why this exists: torch's default is one intra-op thread per core, and its OpenMP threads wait for each other at the
end of every op.  On a shared 2-core machine, as soon as another process kept a core busy, each of the many small
ops of a 135M model waited for the thread the kernel had just descheduled, and a stage ran ~10x slower (issue 20).
Measured with ``bench/bench_threads.py`` (bench/results/threads.json, SmolLM2-135M, one SFT step / 16 greedy tokens):
on free cores 2 threads beat 1 (SFT step 2.3 s vs 3.5 s, generation 0.9 s vs 3.4 s); with both cores busy 1 thread
kept its pace (2.1 s / 3.6 s) while 2 threads collapsed (24 s / 72 s), and OpenMP's passive wait policy only
softened that (8.8 s / 14.7 s) at a cost on free cores (3.0 s / 1.8 s).  So ``auto`` counts the CPUs that are
actually free when the stage starts and uses that many threads (at least one), with OpenMP's default wait policy.

The count is taken once, at stage start: load that arrives later is not followed (set ``base.num_threads: 1`` on a
machine that is always shared).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

log = logging.getLogger(__name__)

SAMPLE_S = 0.5  # how long /proc/stat is watched at stage start to see which CPUs other processes keep busy
FREE_SHARE = 0.75  # a CPU counts as free when at least this share of it was idle (busy cores cost 10x, free ones 1.5x)


def available_cpus() -> set[int]:
    """CPUs this process may run on (its affinity mask, e.g. under ``taskset`` or a container's cpuset)."""
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # no sched_getaffinity outside Linux
        return set(range(os.cpu_count() or 1))


def cpu_times(stat_text: str) -> dict[int, tuple[int, int]]:
    """Per-CPU ``(idle, total)`` jiffies from the text of /proc/stat (idle includes iowait; steal counts as busy)."""
    times = {}
    for line in stat_text.splitlines():
        name, *fields = line.split()
        if name.startswith("cpu") and name[3:].isdigit():
            values = [int(v) for v in fields[:8]]  # user nice system idle iowait irq softirq steal
            times[int(name[3:])] = (values[3] + values[4], sum(values))
    return times


def free_cpus(cpus: Iterable[int], before: dict[int, tuple[int, int]], after: dict[int, tuple[int, int]]) -> float:
    """How many of ``cpus`` were idle between two :func:`cpu_times` readings (0.0 .. len(cpus))."""
    free = 0.0
    for cpu in cpus:
        if cpu not in before or cpu not in after:
            continue
        idle, total = after[cpu][0] - before[cpu][0], after[cpu][1] - before[cpu][1]
        free += idle / total if total > 0 else 1.0
    return free


def measure_free_cpus(cpus: Iterable[int], seconds: float = SAMPLE_S) -> float | None:
    """Idle CPUs among ``cpus`` over ``seconds`` (this process sleeps meanwhile); None where /proc/stat is absent."""
    try:
        before = cpu_times(Path("/proc/stat").read_text())
        time.sleep(seconds)
        after = cpu_times(Path("/proc/stat").read_text())
    except (OSError, ValueError):
        return None
    return free_cpus(cpus, before, after) if before and after else None


def omp_num_threads(environ: Mapping[str, str]) -> int | None:
    """``OMP_NUM_THREADS`` as a positive int, None when unset; a malformed value is ignored with a warning."""
    raw = environ.get("OMP_NUM_THREADS", "").strip()
    if not raw:
        return None
    try:
        value = int(raw.split(",")[0])  # OpenMP allows a per-nesting-level list; torch uses the first level
    except ValueError:
        value = 0
    if value < 1:
        log.warning("ignoring OMP_NUM_THREADS=%r: not a positive integer", raw)
        return None
    return value


def choose_threads(
    setting: int | str, environ: Mapping[str, str], cpus: int, free: float | None = None
) -> tuple[int, str]:
    """The thread count for ``base.num_threads`` and why.

    An int is used as given.  ``auto``: ``OMP_NUM_THREADS`` when set (capped at ``cpus``, the CPUs allowed);
    otherwise the CPUs that were at least :data:`FREE_SHARE` idle (``free``, summed idle share; None = unknown,
    then all of them), at least 1.
    """
    if setting != "auto":
        if type(setting) is not int or setting < 1:
            raise ValueError(f"base.num_threads must be 'auto' or a positive integer, got {setting!r}")
        note = f" (more than the {cpus} available CPUs: threads will share cores)" if setting > cpus else ""
        return setting, f"base.num_threads={setting}{note}"
    from_env = omp_num_threads(environ)
    if from_env is not None:
        return min(from_env, cpus), f"base.num_threads=auto: OMP_NUM_THREADS={from_env}, {cpus} CPUs allowed"
    if free is None:
        return cpus, f"base.num_threads=auto: {cpus} CPUs allowed, their load unknown"
    chosen = max(1, min(cpus, int(free + (1 - FREE_SHARE))))
    return chosen, f"base.num_threads=auto: {free:.1f} of {cpus} allowed CPUs idle at start"


def configure_threads(setting: int | str) -> int:
    """Set torch's intra-op thread count for this process and log the choice (call once, at stage start)."""
    import torch

    cpus = available_cpus()
    free = measure_free_cpus(cpus) if setting == "auto" else None
    threads, why = choose_threads(setting, os.environ, len(cpus), free)
    torch.set_num_threads(threads)
    log.info("torch threads: %d (%s)", torch.get_num_threads(), why)
    return threads
