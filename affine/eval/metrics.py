"""Pure evaluation statistics: score normalisation, Jeffreys intervals, per-env metrics, Pareto dominance.

No model, no I/O: everything here takes plain numbers and dicts and returns plain numbers and dicts, so the
formulas are unit-tested on their own and the file format of ``metrics/eval/<model>.json`` is built in one place
(:func:`build_results`).

Decisions (each one tested):

- Scores entering :func:`env_metrics` are already normalised to [0, 1]; :func:`build_results` normalises raw
  validator scores with :func:`normalise_score` first (SciWorld's -100..100 becomes (s + 100) / 200).
- ``accuracy`` is the share of *full* successes (score == 1) for every env, binary or not, so that
  ``weighted_accuracy`` mixes like with like.  For a binary env it equals ``mean``.  ``binary=True`` only adds a
  check that every score is exactly 0 or 1, which catches an env wired with the wrong flag.
- ``std`` is the *population* standard deviation (ddof = 0): it describes the scores that were observed, and it is
  0.0 rather than NaN for n = 1, so the JSON stays valid.
- ``success_rate`` is the share of non-zero scores (the recipe's definition).
- The 80 % interval is the validators' Jeffreys interval: Beta(0.5 + s, 0.5 + n - s) with s = sum of scores
  (fractional scores allowed), quantiles 0.10 and 0.90.  Like the validators we do *not* pin the lower bound to 0
  when s = 0 or the upper bound to 1 when s = n.
- n = 0 is a ``ValueError`` everywhere: an env without samples has no score, and silently reporting the prior would
  let an env that never ran look like an interval.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping
from typing import Any

from scipy.stats import beta as beta_dist

RULES = ("mean", "interval")

# Envs whose validator score is always exactly 0 or 1 (see shared/affine-tasks.md and agentgym-envs.md).
BINARY_ENVS = frozenset({"affine:sat", "affine:abd", "affine:ded", "agentgym:alfworld", "agentgym:textcraft"})

# Float noise below this is a tie for the mean rule (means of identical scores summed in another order).
TIE_EPS = 1e-12

ENV_KEYS = ("n", "accuracy", "mean", "std", "median", "ci80_lower", "ci80_upper", "success_rate")
AGGREGATE_KEYS = ("weighted_accuracy", "weighted_mean", "overall_success_rate")


def _short(env: str) -> str:
    """``agentgym:sciworld`` -> ``sciworld``; a bare name stays as is."""
    return env.rsplit(":", 1)[-1].lower()


def normalise_score(env: str, score: float) -> float:
    """Map a raw validator score to [0, 1]: SciWorld (-100..100) -> (s + 100) / 200, others unchanged; then clamp."""
    score = float(score)
    if math.isnan(score):
        raise ValueError(f"{env}: score is NaN")
    if _short(env) == "sciworld":
        score = (score + 100.0) / 200.0
    return min(1.0, max(0.0, score))


def jeffreys_interval(successes: float, n: int, level: float = 0.8) -> tuple[float, float]:
    """Equal-tailed Jeffreys interval for a success share: Beta(0.5 + s, 0.5 + n - s) at (1 -/+ level) / 2.

    ``successes`` may be fractional (the validators use the sum of scores); it must lie in [0, n].
    """
    if n < 1:
        raise ValueError(f"jeffreys_interval needs n >= 1 samples, got n={n}")
    if not 0.0 <= successes <= n:
        raise ValueError(f"successes must lie in [0, n={n}], got {successes}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    a, b = 0.5 + successes, 0.5 + (n - successes)
    tail = (1.0 - level) / 2.0
    return float(beta_dist.ppf(tail, a, b)), float(beta_dist.ppf(1.0 - tail, a, b))


def env_metrics(scores: Iterable[float], binary: bool = False) -> dict[str, Any]:
    """Per-env statistics of normalised scores in [0, 1], with the keys of :data:`ENV_KEYS`."""
    xs = [float(s) for s in scores]
    n = len(xs)
    if n == 0:
        raise ValueError("env_metrics needs at least one score (n=0)")
    bad = [s for s in xs if not 0.0 <= s <= 1.0]  # also catches NaN
    if bad:
        raise ValueError(f"scores must be normalised to [0, 1]; got {bad[:5]}")
    if binary and any(s not in (0.0, 1.0) for s in xs):
        raise ValueError("binary env has scores other than 0 and 1")
    total = math.fsum(xs)
    lower, upper = jeffreys_interval(total, n)
    return {
        "n": n,
        "accuracy": sum(s == 1.0 for s in xs) / n,
        "mean": total / n,
        "std": statistics.pstdev(xs),
        "median": float(statistics.median(xs)),
        "ci80_lower": lower,
        "ci80_upper": upper,
        "success_rate": sum(s > 0.0 for s in xs) / n,
    }


def aggregate(envs: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Across envs: accuracy and mean weighted by n, success rate averaged over envs (each env counts once).

    An env whose ``accuracy`` is ``None`` (older files) is left out of ``weighted_accuracy`` only; if none has one,
    ``weighted_accuracy`` is ``None``.
    """
    if not envs:
        raise ValueError("aggregate needs at least one env")
    total_n = sum(int(e["n"]) for e in envs.values())
    if total_n < 1:
        raise ValueError("aggregate needs at least one sample")
    with_acc = [e for e in envs.values() if e.get("accuracy") is not None]
    acc_n = sum(int(e["n"]) for e in with_acc)
    return {
        "weighted_accuracy": math.fsum(e["n"] * e["accuracy"] for e in with_acc) / acc_n if acc_n else None,
        "weighted_mean": math.fsum(e["n"] * e["mean"] for e in envs.values()) / total_n,
        "overall_success_rate": math.fsum(e["success_rate"] for e in envs.values()) / len(envs),
    }


def _envs_of(result: Mapping[str, Any]) -> Mapping[str, Mapping[str, Any]]:
    """Accept a whole result file (``{"envs": {...}}``) or its ``envs`` mapping."""
    return result.get("envs", result)


def common_envs(a: Mapping[str, Any], b: Mapping[str, Any], envs: Iterable[str] | None = None) -> list[str]:
    """Envs both results have (restricted to ``envs`` when given), in ``a``'s order."""
    ea, eb = _envs_of(a), _envs_of(b)
    keep = None if envs is None else set(envs)
    return [e for e in ea if e in eb and (keep is None or e in keep)]


def env_winner(ea: Mapping[str, Any], eb: Mapping[str, Any], rule: str = "mean") -> int:
    """+1 if A wins this env, -1 if B wins, 0 if neither (tie, or overlapping intervals)."""
    if rule == "mean":
        diff = float(ea["mean"]) - float(eb["mean"])
        return 0 if abs(diff) <= TIE_EPS else (1 if diff > 0 else -1)
    if rule == "interval":
        if float(ea["ci80_lower"]) > float(eb["ci80_upper"]):
            return 1
        if float(eb["ci80_lower"]) > float(ea["ci80_upper"]):
            return -1
        return 0
    raise ValueError(f"unknown rule {rule!r}; expected one of {RULES}")


def dominates(
    a: Mapping[str, Any], b: Mapping[str, Any], envs: Iterable[str] | None = None, rule: str = "mean"
) -> bool:
    """Does A Pareto-dominate B on the envs both have?

    ``rule="mean"`` (the recipe's): A >= B on every env and A > B on at least one.
    ``rule="interval"`` (the validators'): on an env, X beats Y when X's 80 % lower bound exceeds Y's upper bound;
    A dominates B when B wins no env and A wins at least one.  Unlike the validators (where the earlier miner keeps
    ties), this is symmetric: neither model has seniority.  No common env -> False.
    """
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}; expected one of {RULES}")
    ea, eb = _envs_of(a), _envs_of(b)
    outcomes = [env_winner(ea[e], eb[e], rule) for e in common_envs(a, b, envs)]
    return -1 not in outcomes and 1 in outcomes


def pareto_frontier(results: Mapping[str, Mapping[str, Any]], rule: str = "mean") -> list[str]:
    """Names of the results no other result dominates, in input order."""
    return [
        name
        for name, r in results.items()
        if not any(dominates(other, r, rule=rule) for o, other in results.items() if o != name)
    ]


def build_results(
    model: str,
    model_path: str | None,
    per_env_scores: Mapping[str, Iterable[float]],
    *,
    binary_envs: Iterable[str] = BINARY_ENVS,
    **extra: Any,
) -> dict[str, Any]:
    """The ``metrics/eval/<model>.json`` document from *raw* validator scores per env.

    Scores are normalised with :func:`normalise_score` here, so callers pass what the env returned (SciWorld in
    -100..100).  Envs keep the order given.  ``extra`` keys are added at the top level (e.g. ``seed``, ``n_tasks``).
    """
    clash = {"model", "model_path", "envs", "aggregate"} & set(extra)
    if clash:
        raise ValueError(f"extra keys clash with the result format: {sorted(clash)}")
    binary = set(binary_envs)
    envs = {
        env: env_metrics([normalise_score(env, s) for s in scores], binary=env in binary)
        for env, scores in per_env_scores.items()
    }
    return {"model": model, "model_path": model_path, "envs": envs, "aggregate": aggregate(envs), **extra}
