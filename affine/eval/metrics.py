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
- Four named rules decide who beats whom on an env (:data:`RULES`).  ``mean`` and ``interval`` are symmetric.
  ``threshold`` (the validator's, December 2025) and ``challenger`` (affine-cortex, 2026) give the *earlier* model
  seniority, so they need to know which of two models came first (``a_first``; an ``order`` of names for many):

  * ``threshold``: on an env the later model wins only above ``prior + clamp((1 - prior) * 0.2, 0.02, 0.10)``
    (capped at 1) of the earlier one's mean, else the earlier keeps it; one model dominates the other on a set of
    envs when it wins every env of the set; the Pareto filter runs on every non-empty subset of the shared envs.
  * ``challenger``: the later model (challenger) is *dominant* on an env above champion + 0.03 and *not worse* at
    >= 0.98 x champion; it wins (takes all) when dominant on at least one env and not worse on every env.  Means are
    taken over the tasks both completed when both results carry per-task scores (``tasks``), else over each one's
    own tasks (the pipeline evaluates every model on the same task ids, so those agree).
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Iterable, Mapping
from typing import Any

RULES = ("mean", "interval", "threshold", "challenger")
ORDERED_RULES = ("threshold", "challenger")  # the earlier model has seniority

# The validator's December-2025 threshold rule (AffineFoundation/affine scorer config) and the 2026 challenger rule.
ERROR_RATE_REDUCTION, MIN_IMPROVEMENT, MAX_IMPROVEMENT = 0.2, 0.02, 0.10
THRESHOLD_EPS = 1e-9  # the validator's float guard on "later > threshold"
CHALLENGER_MARGIN, NOT_WORSE_RATIO = 0.03, 0.98

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
    from scipy.stats import beta as beta_dist  # here, not at the top: the CLI imports this module for RULES

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


def threshold_required(prior: float) -> float:
    """The mean a later model must exceed to beat an earlier one whose mean is ``prior`` (the threshold rule)."""
    gain = min(max((1.0 - prior) * ERROR_RATE_REDUCTION, MIN_IMPROVEMENT), MAX_IMPROVEMENT)
    return min(prior + gain, 1.0)


def _task_means(ea: Mapping[str, Any], eb: Mapping[str, Any]) -> tuple[float, float, int]:
    """``(mean A, mean B, n)`` over the tasks both completed when both carry per-task ``tasks``; else their means."""
    ta, tb = ea.get("tasks"), eb.get("tasks")
    if not (isinstance(ta, Mapping) and isinstance(tb, Mapping)):
        return float(ea["mean"]), float(eb["mean"]), min(int(ea["n"]), int(eb["n"]))
    both = [t for t in ta if t in tb]
    if not both:
        return math.nan, math.nan, 0
    return math.fsum(ta[t] for t in both) / len(both), math.fsum(tb[t] for t in both) / len(both), len(both)


def challenger_env(champion: Mapping[str, Any], challenger: Mapping[str, Any]) -> tuple[bool, bool]:
    """``(dominant, not_worse)`` of the challenger on one env; an env with no task both completed is neither."""
    old, new, n = _task_means(champion, challenger)
    if n == 0:
        return False, False
    return new > old + CHALLENGER_MARGIN, new >= NOT_WORSE_RATIO * old


def env_winner(ea: Mapping[str, Any], eb: Mapping[str, Any], rule: str = "mean", a_first: bool = True) -> int:
    """+1 if A wins this env, -1 if B wins, 0 if neither (tie, or overlapping intervals).

    ``a_first`` matters only to the ordered rules: under ``threshold`` every env has a winner (the earlier model keeps
    it unless the later one clears the threshold); ``challenger`` has no per-env winner (see :func:`challenge`).
    """
    if rule == "mean":
        diff = float(ea["mean"]) - float(eb["mean"])
        return 0 if abs(diff) <= TIE_EPS else (1 if diff > 0 else -1)
    if rule == "interval":
        if float(ea["ci80_lower"]) > float(eb["ci80_upper"]):
            return 1
        if float(eb["ci80_lower"]) > float(ea["ci80_upper"]):
            return -1
        return 0
    if rule == "threshold":
        earlier, later = (ea, eb) if a_first else (eb, ea)
        later_wins = float(later["mean"]) > threshold_required(float(earlier["mean"])) + THRESHOLD_EPS
        return (-1 if later_wins else 1) if a_first else (1 if later_wins else -1)
    if rule == "challenger":
        raise ValueError("the challenger rule has no per-env winner: use challenge() or dominates()")
    raise ValueError(f"unknown rule {rule!r}; expected one of {RULES}")


def challenge(champion: Mapping[str, Any], challenger: Mapping[str, Any], envs: Iterable[str] | None = None) -> dict:
    """The challenger rule on the envs both have: ``{"dominant": [...], "worse": [...], "wins": bool}``."""
    ec, en = _envs_of(champion), _envs_of(challenger)
    dominant, worse = [], []
    for env in common_envs(champion, challenger, envs):
        is_dominant, not_worse = challenger_env(ec[env], en[env])
        dominant += [env] if is_dominant else []
        worse += [] if not_worse else [env]
    shared = bool(common_envs(champion, challenger, envs))
    return {"dominant": dominant, "worse": worse, "wins": shared and bool(dominant) and not worse}


def dominates(
    a: Mapping[str, Any],
    b: Mapping[str, Any],
    envs: Iterable[str] | None = None,
    rule: str = "mean",
    a_first: bool = True,
) -> bool:
    """Does A Pareto-dominate B on the envs both have?

    ``rule="mean"`` (the recipe's): A >= B on every env and A > B on at least one.
    ``rule="interval"`` (the validators' until 2025-11): on an env, X beats Y when X's 80 % lower bound exceeds Y's
    upper bound; A dominates B when B wins no env and A wins at least one.  Symmetric: neither model has seniority.
    ``rule="threshold"``: A wins every shared env under the threshold rule (``a_first``: A is the earlier model).
    ``rule="challenger"``: as challenger (A later) A wins; as champion (A earlier) B's challenge fails.
    No common env -> False.
    """
    if rule not in RULES:
        raise ValueError(f"unknown rule {rule!r}; expected one of {RULES}")
    if not common_envs(a, b, envs):
        return False
    if rule == "challenger":
        return challenge(b, a, envs)["wins"] if not a_first else not challenge(a, b, envs)["wins"]
    ea, eb = _envs_of(a), _envs_of(b)
    outcomes = [env_winner(ea[e], eb[e], rule, a_first) for e in common_envs(a, b, envs)]
    return -1 not in outcomes and 1 in outcomes


def seniority(results: Mapping[str, Any], order: Iterable[str] | None) -> dict[str, int]:
    """Each name's place in ``order`` (earliest first); the input order when ``order`` is None."""
    names = list(results) if order is None else list(order)
    unknown = sorted(set(names) - set(results))
    missing = [n for n in results if n not in names]
    if unknown or missing or len(set(names)) != len(names):
        raise ValueError(f"order must name every model once: unknown {unknown}, missing {missing}, given {names}")
    return {name: i for i, name in enumerate(names)}


def champion(results: Mapping[str, Mapping[str, Any]], order: Iterable[str] | None = None) -> tuple[str, list[dict]]:
    """The challenger rule over many models: the earliest is champion, each later one challenges the reigning one.

    Returns the final champion's name and one record per bout (``champion``, ``challenger`` and :func:`challenge`'s
    fields).  Winner takes all, so there is one champion, not a frontier.
    """
    if not results:
        raise ValueError("champion needs at least one result")
    rank = seniority(results, order)
    names = sorted(results, key=rank.__getitem__)
    reigning, bouts = names[0], []
    for name in names[1:]:
        bout = {"champion": reigning, "challenger": name, **challenge(results[reigning], results[name])}
        bouts.append(bout)
        reigning = name if bout["wins"] else reigning
    return reigning, bouts


def pareto_frontier(
    results: Mapping[str, Mapping[str, Any]],
    rule: str = "mean",
    envs: Iterable[str] | None = None,
    order: Iterable[str] | None = None,
) -> list[str]:
    """Names of the results no other result dominates on ``envs`` (default: all shared), in input order.

    Under ``challenger`` it is the one final champion (:func:`champion`).
    """
    if rule == "challenger":
        return [champion(results, order)[0]] if results else []
    rank = seniority(results, order) if rule in ORDERED_RULES else {n: 0 for n in results}
    return [
        name
        for name, r in results.items()
        if not any(
            dominates(other, r, envs, rule, a_first=rank[o] < rank[name]) for o, other in results.items() if o != name
        )
    ]


def subset_survival(
    results: Mapping[str, Mapping[str, Any]], order: Iterable[str] | None = None, max_envs: int = 10
) -> dict[str, tuple[int, int]]:
    """The threshold rule's Pareto filter on every non-empty subset of the envs all results share.

    ``{name: (subsets where nobody dominates it, subsets)}``.  ``max_envs`` bounds the 2**k - 1 subsets.
    """
    names = list(results)
    shared = (
        [e for e in _envs_of(results[names[0]]) if all(e in _envs_of(r) for r in results.values())] if names else []
    )
    if len(shared) > max_envs:
        raise ValueError(f"{len(shared)} shared envs make {2 ** len(shared) - 1} subsets; at most {max_envs} envs")
    subsets = [c for k in range(1, len(shared) + 1) for c in itertools.combinations(shared, k)]
    alive = dict.fromkeys(names, 0)
    for subset in subsets:
        for name in pareto_frontier(results, "threshold", subset, order):
            alive[name] += 1
    return {name: (alive[name], len(subsets)) for name in names}


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
