"""affine.eval.metrics against scipy and hand-computed values."""

import math

import pytest
from scipy.stats import beta

from affine.eval.metrics import (
    AGGREGATE_KEYS,
    ENV_KEYS,
    aggregate,
    build_results,
    dominates,
    env_metrics,
    jeffreys_interval,
    normalise_score,
    pareto_frontier,
)


def result(**means_or_scores):
    """A result from per-env scores; a float m stands for 20 scores with mean m (binary 0/1 pattern not needed)."""
    per_env = {env.replace("_", ":", 1): (v if isinstance(v, list) else [v] * 20) for env, v in means_or_scores.items()}
    return build_results("m", None, per_env, binary_envs=())


# --- normalise_score ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "env, raw, want",
    [
        ("agentgym:sciworld", -100, 0.0),
        ("agentgym:sciworld", 0, 0.5),
        ("agentgym:sciworld", 100, 1.0),
        ("agentgym:sciworld", 50, 0.75),
        ("agentgym:sciworld", 150, 1.0),  # clamped
        ("sciworld", -100, 0.0),  # bare name
        ("agentgym:webshop", 0.3, 0.3),
        ("affine:sat", 1, 1.0),
        ("affine:sat", -0.2, 0.0),
        ("agentgym:babyai", 1.5, 1.0),
    ],
)
def test_normalise_score(env, raw, want):
    assert normalise_score(env, raw) == pytest.approx(want)


def test_normalise_score_rejects_nan():
    with pytest.raises(ValueError, match="NaN"):
        normalise_score("affine:sat", float("nan"))


# --- jeffreys_interval -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("s, n", [(0, 10), (10, 10), (3, 10), (3.5, 7), (0, 1), (1, 1), (123.25, 400)])
def test_jeffreys_matches_scipy(s, n):
    lo, hi = jeffreys_interval(s, n)
    assert lo == pytest.approx(beta.ppf(0.10, 0.5 + s, 0.5 + n - s), abs=1e-12)
    assert hi == pytest.approx(beta.ppf(0.90, 0.5 + s, 0.5 + n - s), abs=1e-12)
    assert 0.0 < lo < hi < 1.0  # never pinned to 0 or 1, like the validators


def test_jeffreys_hand_computed():
    # s=0.5, n=1 -> Beta(1, 1), the uniform: quantiles are the levels themselves.
    assert jeffreys_interval(0.5, 1) == pytest.approx((0.1, 0.9))
    # s=1.5, n=2 -> Beta(2, 1) with CDF x^2: ppf(q) = sqrt(q).
    assert jeffreys_interval(1.5, 2) == pytest.approx((math.sqrt(0.1), math.sqrt(0.9)))
    # Beta(a, 1) again at level 0.5: quantiles 0.25 and 0.75.
    assert jeffreys_interval(1.5, 2, level=0.5) == pytest.approx((0.5, math.sqrt(0.75)))


def test_jeffreys_symmetry_and_width():
    lo, hi = jeffreys_interval(3, 10)
    lo2, hi2 = jeffreys_interval(7, 10)
    assert (lo, hi) == pytest.approx((1 - hi2, 1 - lo2))
    wide = jeffreys_interval(3, 10, level=0.95)
    assert wide[0] < lo and wide[1] > hi
    narrow = jeffreys_interval(30, 100)
    assert narrow[1] - narrow[0] < hi - lo


@pytest.mark.parametrize("s, n, level", [(0, 0, 0.8), (2, 1, 0.8), (-0.1, 5, 0.8), (1, 5, 1.0), (1, 5, 0.0)])
def test_jeffreys_rejects_bad_input(s, n, level):
    with pytest.raises(ValueError):
        jeffreys_interval(s, n, level)


# --- env_metrics ---------------------------------------------------------------------------------------------------


def test_env_metrics_hand_computed():
    m = env_metrics([0.0, 0.5, 1.0, 1.0])
    assert list(m) == list(ENV_KEYS)
    assert m["n"] == 4
    assert m["accuracy"] == 0.5  # full successes only
    assert m["mean"] == 0.625
    assert m["std"] == pytest.approx(math.sqrt(0.171875))  # population: sum of squared deviations 0.6875 / 4
    assert m["median"] == 0.75
    assert m["success_rate"] == 0.75
    assert (m["ci80_lower"], m["ci80_upper"]) == pytest.approx(jeffreys_interval(2.5, 4))


def test_std_is_population():
    assert env_metrics([0.0, 1.0])["std"] == 0.5  # the sample std would be 0.7071


def test_env_metrics_n1():
    m = env_metrics([1.0], binary=True)
    assert (m["n"], m["mean"], m["std"], m["median"], m["accuracy"], m["success_rate"]) == (1, 1.0, 0.0, 1.0, 1.0, 1.0)
    assert m["ci80_lower"] == pytest.approx(beta.ppf(0.1, 1.5, 0.5))


def test_env_metrics_all_zeros_and_all_ones():
    z = env_metrics([0.0] * 8, binary=True)
    assert (z["mean"], z["accuracy"], z["success_rate"], z["std"], z["median"]) == (0.0, 0.0, 0.0, 0.0, 0.0)
    assert 0.0 < z["ci80_lower"] < z["ci80_upper"] < 0.3
    o = env_metrics([1.0] * 8, binary=True)
    assert (o["mean"], o["accuracy"], o["success_rate"], o["std"]) == (1.0, 1.0, 1.0, 0.0)
    assert (o["ci80_lower"], o["ci80_upper"]) == pytest.approx((1 - z["ci80_upper"], 1 - z["ci80_lower"]))


def test_env_metrics_fractional_scores():
    m = env_metrics([0.2, 0.4, 0.9])
    assert m["accuracy"] == 0.0 and m["success_rate"] == 1.0
    assert m["mean"] == pytest.approx(0.5)
    assert m["median"] == 0.4
    assert (m["ci80_lower"], m["ci80_upper"]) == pytest.approx(jeffreys_interval(1.5, 3))


@pytest.mark.parametrize("scores, binary", [([], False), ([0.5], True), ([1.2], False), ([float("nan")], False)])
def test_env_metrics_rejects(scores, binary):
    with pytest.raises(ValueError):
        env_metrics(scores, binary=binary)


# --- aggregate and build_results ---------------------------------------------------------------------------------


def test_aggregate_weights_by_n():
    envs = {
        "a": {"n": 10, "accuracy": 0.1, "mean": 0.2, "success_rate": 0.3},
        "b": {"n": 30, "accuracy": 0.5, "mean": 0.6, "success_rate": 0.9},
    }
    agg = aggregate(envs)
    assert list(agg) == list(AGGREGATE_KEYS)
    assert agg["weighted_mean"] == pytest.approx(0.5)
    assert agg["weighted_accuracy"] == pytest.approx(0.4)
    assert agg["overall_success_rate"] == pytest.approx(0.6)  # plain mean over envs, not weighted


def test_aggregate_one_env_and_missing_accuracy():
    e = env_metrics([0.0, 1.0, 0.5])
    agg = aggregate({"x": e})
    assert agg == pytest.approx(
        {"weighted_accuracy": e["accuracy"], "weighted_mean": e["mean"], "overall_success_rate": e["success_rate"]}
    )
    agg = aggregate({"x": {**e, "accuracy": None}, "y": {"n": 1, "accuracy": 1.0, "mean": 1.0, "success_rate": 1.0}})
    assert agg["weighted_accuracy"] == 1.0
    assert aggregate({"x": {**e, "accuracy": None}})["weighted_accuracy"] is None
    with pytest.raises(ValueError):
        aggregate({})


def test_build_results_format_and_normalisation():
    r = build_results(
        "sft",
        "models/sft",
        {"affine:sat": [1, 0, 1, 1], "agentgym:sciworld": [-100, 0, 100]},
        seed=3,
    )
    assert set(r) == {"model", "model_path", "envs", "aggregate", "seed"}
    assert (r["model"], r["model_path"], r["seed"]) == ("sft", "models/sft", 3)
    assert list(r["envs"]) == ["affine:sat", "agentgym:sciworld"]
    sci = r["envs"]["agentgym:sciworld"]
    assert sci["mean"] == pytest.approx(0.5) and sci["accuracy"] == pytest.approx(1 / 3)
    assert sci["success_rate"] == pytest.approx(2 / 3)  # a raw 0 normalises to 0.5: non-zero
    assert r["aggregate"]["weighted_mean"] == pytest.approx((3 + 1.5) / 7)
    with pytest.raises(ValueError, match="binary"):
        build_results("x", None, {"affine:sat": [0.5]})
    with pytest.raises(ValueError, match="clash"):
        build_results("x", None, {"affine:sat": [1]}, envs={})


# --- dominance and the Pareto frontier ---------------------------------------------------------------------------


def test_dominates_mean_rule():
    a, b = result(affine_sat=0.6, affine_abd=0.5), result(affine_sat=0.4, affine_abd=0.5)
    assert dominates(a, b) and not dominates(b, a)
    assert dominates(a["envs"], b["envs"])  # the envs mapping alone works too
    assert not dominates(a, a)  # ties everywhere: nobody dominates
    c = result(affine_sat=0.7, affine_abd=0.4)  # a trade-off with a
    assert not dominates(a, c) and not dominates(c, a)
    assert dominates(c, b, envs=["affine:sat"]) and not dominates(c, b, envs=["affine:abd"])


def test_dominates_only_shared_envs_and_float_ties():
    a = result(affine_sat=0.6)
    b = result(affine_sat=0.4, affine_ded=0.9)  # b's extra env is ignored
    assert dominates(a, b)
    assert not dominates(a, result(affine_ded=0.1))  # nothing shared
    x = {"e": {"mean": 0.1 + 0.2, "ci80_lower": 0, "ci80_upper": 1}}
    y = {"e": {"mean": 0.3, "ci80_lower": 0, "ci80_upper": 1}}
    assert not dominates(x, y) and not dominates(y, x)
    with pytest.raises(ValueError, match="rule"):
        dominates(a, b, rule="median")


def test_dominates_interval_rule():
    lo = result(affine_sat=[0.0] * 15 + [1.0] * 5, affine_abd=[1.0] * 10 + [0.0] * 10)  # 0.25, 0.5
    hi = result(affine_sat=[0.0] * 5 + [1.0] * 15, affine_abd=[1.0] * 11 + [0.0] * 9)  # 0.75, 0.55
    assert dominates(hi, lo, rule="interval") and not dominates(lo, hi, rule="interval")
    near = result(affine_sat=[0.0] * 14 + [1.0] * 6, affine_abd=[1.0] * 10 + [0.0] * 10)  # 0.30: overlaps lo
    assert dominates(near, lo) and not dominates(near, lo, rule="interval")
    tradeoff = result(affine_sat=[1.0] * 20, affine_abd=[0.0] * 20)
    assert not dominates(tradeoff, lo, rule="interval") and not dominates(lo, tradeoff, rule="interval")


def test_pareto_frontier_three_models():
    base = result(affine_sat=0.2, affine_abd=0.2, agentgym_webshop=0.3)
    sft = result(affine_sat=0.5, affine_abd=0.4, agentgym_webshop=0.3)
    rl = result(affine_sat=0.6, affine_abd=0.5, agentgym_webshop=0.4)
    assert pareto_frontier({"base": base, "sft": sft, "rl": rl}) == ["rl"]
    trade = result(affine_sat=0.9, affine_abd=0.1, agentgym_webshop=0.1)
    assert pareto_frontier({"base": base, "rl": rl, "trade": trade}) == ["rl", "trade"]
    assert pareto_frontier({"a": sft, "b": sft, "base": base}) == ["a", "b"]  # exact ties both stay
    assert pareto_frontier({}) == []


def test_pareto_frontier_interval_rule():
    n = 20
    base = result(affine_sat=[1.0] * 2 + [0.0] * (n - 2))
    sft = result(affine_sat=[1.0] * 3 + [0.0] * (n - 3))  # overlaps base
    rl = result(affine_sat=[1.0] * 15 + [0.0] * (n - 15))  # clear of both
    models = {"base": base, "sft": sft, "rl": rl}
    assert pareto_frontier(models, rule="interval") == ["rl"]
    assert pareto_frontier({"base": base, "sft": sft}, rule="interval") == ["base", "sft"]
    assert pareto_frontier({"base": base, "sft": sft}, rule="mean") == ["sft"]
