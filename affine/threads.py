"""How many CPU threads torch uses in a stage, and how its OpenMP threads wait: chosen on purpose, fixed, logged.

Why a fixed count: torch's fp32 reductions (matmul blocking, ``sum``, softmax) split their work by thread count, so
1 and 2 threads round differently in the last bits.  Last round's ``auto`` counted the CPUs idle at stage start; on
a shared machine that was 1 in one run and 2 in the next, and two ``dvc repro`` runs of one commit trained SFT
adapters that differed (eval loss 0.2636 vs 0.2639).  So ``auto`` now depends only on the machine and the
environment: ``OMP_NUM_THREADS`` when set, else every CPU of the process's affinity mask (``taskset``, a
container's cpuset).  Results are bit-identical run to run on one machine; another machine (another CPU count)
may differ in the last bits, as any fp32 run does.

Why a passive wait: libgomp's default is to spin-wait at the end of every parallel region.  When another process
keeps the cores busy, the spinning thread burns the timeslice its descheduled sibling needs, and the many small ops
of a 135M model ran ~10x slower on 2 threads than on 1 (issue 20).  ``OMP_WAIT_POLICY=PASSIVE`` makes a waiting
thread sleep instead (see ``bench/bench_threads.py``, bench/results/threads.json for the measured effect).  libgomp
reads the variable once, when torch loads it, so :func:`set_openmp_defaults` runs from ``affine/__init__.py``, before
any ``affine`` module imports torch; a value already in the environment is kept.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import MutableMapping
from pathlib import Path

log = logging.getLogger(__name__)

# /proc/cpuinfo flags of CPUs that run bf16 matmuls natively (elsewhere CPU bf16 is emulated and slower than fp32)
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})

# libgomp reads its wait policy when torch loads it, before a stage has parsed params.yaml, so this is not a param:
# the environment overrides it (OMP_WAIT_POLICY=ACTIVE, or a GOMP_SPINCOUNT, keeps libgomp's spinning)
WAIT_POLICY = "PASSIVE"
_set_too_late = False  # set_openmp_defaults ran after torch had loaded libgomp: the default did not take effect


def set_openmp_defaults(environ: MutableMapping[str, str] | None = None) -> None:
    """Default ``OMP_WAIT_POLICY`` to :data:`WAIT_POLICY` unless the user chose a policy or a spin count.

    Called from ``affine/__init__.py``; when torch was imported before ``affine``, libgomp has already read its
    environment, and :func:`configure_threads` says so with a warning.
    """
    global _set_too_late
    target = os.environ if environ is None else environ
    if "OMP_WAIT_POLICY" not in target and "GOMP_SPINCOUNT" not in target:
        target["OMP_WAIT_POLICY"] = WAIT_POLICY
        _set_too_late = _set_too_late or (environ is None and "torch" in sys.modules)


def available_cpus() -> set[int]:
    """CPUs this process may run on (its affinity mask, e.g. under ``taskset`` or a container's cpuset)."""
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # no sched_getaffinity outside Linux
        return set(range(os.cpu_count() or 1))


def omp_num_threads(environ: MutableMapping[str, str] | dict[str, str]) -> int | None:
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
    setting: int | str, environ: MutableMapping[str, str] | dict[str, str], cpus: int
) -> tuple[int, str]:
    """The thread count for ``base.num_threads`` and why: a function of the setting, the environment and ``cpus``
    (the size of the affinity mask) only, never of the load, so every run on a machine uses the same count.

    An int is used as given.  ``auto``: ``OMP_NUM_THREADS`` when set (capped at ``cpus``), else ``cpus``.
    """
    if setting != "auto":
        if type(setting) is not int or setting < 1:
            raise ValueError(f"base.num_threads must be 'auto' or a positive integer, got {setting!r}")
        note = f" (more than the {cpus} available CPUs: threads will share cores)" if setting > cpus else ""
        return setting, f"base.num_threads={setting}{note}"
    from_env = omp_num_threads(environ)
    if from_env is not None:
        return min(from_env, cpus), f"base.num_threads=auto: OMP_NUM_THREADS={from_env}, {cpus} CPUs allowed"
    return cpus, f"base.num_threads=auto: the {cpus} CPUs of the affinity mask"


def wait_policy(environ: MutableMapping[str, str] | dict[str, str]) -> str:
    """The OpenMP wait setting libgomp was given, in words, for the stage-start log line."""
    if "GOMP_SPINCOUNT" in environ:
        return f"GOMP_SPINCOUNT={environ['GOMP_SPINCOUNT']}"
    return f"OpenMP wait {environ.get('OMP_WAIT_POLICY', 'default (spin, then sleep)')}"


def configure_threads(setting: int | str) -> int:
    """Set torch's intra-op thread count for this process and log the choice (call once, at stage start)."""
    import torch

    threads, why = choose_threads(setting, os.environ, len(available_cpus()))
    torch.set_num_threads(threads)
    log.info("torch threads: %d (%s; %s)", torch.get_num_threads(), why, wait_policy(os.environ))
    if _set_too_late:
        log.warning("torch was imported before affine: OpenMP kept its default wait policy, not %s", WAIT_POLICY)
    return threads


def thread_record() -> dict[str, object]:
    """What a stage's bookkeeping JSON records: the thread count changes fp32 rounding, so results depend on it."""
    import torch

    return {"torch_threads": torch.get_num_threads(), "omp_wait": wait_policy(os.environ), "cpu": cpu_record()}


def cpu_record(cpuinfo: str | None = None) -> dict[str, object]:
    """The CPU a result was computed on: its kernels (torch's ISA level, native bf16) round differently.

    Measured: one commit's SFT (bf16 autocast) on two machines gave eval losses 1.72101 and 1.72227, while two runs
    on one machine were bit-identical; the record says which case a comparison is.  Read from the first processor
    block of ``/proc/cpuinfo`` (all blocks describe one CPU model here).
    """
    import torch

    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8")
        except OSError:
            cpuinfo = ""
    block = cpuinfo.strip().split("\n\n", 1)[0]
    first = {
        key.strip(): value.strip() for key, sep, value in (line.partition(":") for line in block.splitlines()) if sep
    }
    flags = set(first.get("flags", "").split())
    return {
        "model": first.get("model name", "unknown"),
        "family": first.get("cpu family"),
        "model_id": first.get("model"),
        "native_bf16": bool(flags & NATIVE_BF16_FLAGS),
        "torch_isa": torch.backends.cpu.get_cpu_capability(),
    }
