"""The validator's ordered aggregation rules (threshold, Dec 2025; challenger, 2026) beside mean and interval.

Two hand-made pairs, an earlier ``champ`` and a later ``chall``, on which the four rules give four different
verdict patterns; plus seniority (``order``), per-task intersections, env subsets and the CLI.
"""

import json

import pytest

from affine.cli import main
from affine.eval.compare import compare, load_results
from affine.eval.metrics import (
    RULES,
    build_results,
    challenge,
    champion,
    dominates,
    pareto_frontier,
    subset_survival,
    threshold_required,
)


def model(name: str, n: int, **hits: int) -> dict:
    """Binary scores: ``hits[env]`` successes out of ``n`` on each env (``sat=55`` -> affine:sat 55/n)."""
    return build_results(name, None, {f"affine:{env}": [1.0] * k + [0.0] * (n - k) for env, k in hits.items()})


# Small gain on both envs: the mean rule and the challenger rule crown the later model, the intervals overlap, and
# under the threshold rule (0.55 < 0.5 + 0.1) the earlier model keeps both envs.
SMALL_GAIN = {"champ": model("champ", 100, sat=50, abd=50), "chall": model("chall", 100, sat=55, abd=55)}
# A big gain on SAT for a hair less on ABD (0.495 >= 0.98 x 0.5): only the mean rule sees a trade-off as a draw, the
# intervals separate SAT and overlap on ABD, the threshold rule splits the envs, the challenger wins.
TRADE = {"champ": model("champ", 200, sat=100, abd=100), "chall": model("chall", 200, sat=124, abd=99)}


def verdict(results: dict, rule: str, order: list[str] | None = None) -> str:
    order = order or list(results)
    first = {name: i for i, name in enumerate(order)}
    a, b = results["champ"], results["chall"]
    if dominates(b, a, rule=rule, a_first=first["chall"] < first["champ"]):
        return "chall"
    if dominates(a, b, rule=rule, a_first=first["champ"] < first["chall"]):
        return "champ"
    return "neither"


@pytest.mark.parametrize(
    ("rule", "small_gain", "trade"),
    [
        ("mean", "chall", "neither"),
        ("interval", "neither", "chall"),
        ("threshold", "champ", "neither"),
        ("challenger", "chall", "chall"),
    ],
)
def test_each_rule_gives_its_own_verdict(rule, small_gain, trade):
    assert (verdict(SMALL_GAIN, rule), verdict(TRADE, rule)) == (small_gain, trade)


def test_the_four_rules_disagree_pairwise():
    patterns = {rule: (verdict(SMALL_GAIN, rule), verdict(TRADE, rule)) for rule in RULES}
    assert len(set(patterns.values())) == len(RULES) == 4


@pytest.mark.parametrize(
    ("prior", "required"),
    [(0.5, 0.6), (0.0, 0.1), (0.9, 0.92), (0.95, 0.97), (0.7, 0.76), (0.99, 1.0), (1.0, 1.0)],
)
def test_threshold_is_prior_plus_a_clamped_error_reduction(prior, required):
    assert threshold_required(prior) == pytest.approx(required)


def test_threshold_rule_gives_the_earlier_model_seniority():
    # the same numbers with the roles swapped: the 0.55 model came first, so 0.50 cannot beat it
    assert verdict(SMALL_GAIN, "threshold", order=["chall", "champ"]) == "chall"
    exact = {"champ": model("champ", 100, sat=50), "chall": model("chall", 100, sat=60)}
    assert verdict(exact, "threshold") == "champ"  # 0.60 is not above the 0.60 threshold
    above = {"champ": model("champ", 100, sat=50), "chall": model("chall", 100, sat=61)}
    assert verdict(above, "threshold") == "chall"


def test_threshold_rule_runs_the_pareto_filter_on_every_env_subset():
    # TRADE: on {sat} the later model dominates, on {abd} the earlier one, on {sat, abd} neither
    assert subset_survival(TRADE) == {"champ": (2, 3), "chall": (2, 3)}
    assert pareto_frontier(TRADE, "threshold", envs=["affine:sat"]) == ["chall"]
    assert pareto_frontier(TRADE, "threshold", envs=["affine:abd"]) == ["champ"]
    assert pareto_frontier(TRADE, "threshold") == ["champ", "chall"]
    assert subset_survival(SMALL_GAIN) == {"champ": (3, 3), "chall": (0, 3)}


def test_challenger_needs_dominance_somewhere_and_no_env_worse():
    bout = challenge(TRADE["champ"], TRADE["chall"])
    assert bout == {"dominant": ["affine:sat"], "worse": [], "wins": True}
    worse = model("chall", 200, sat=124, abd=97)  # 0.485 < 0.98 x 0.5
    assert challenge(TRADE["champ"], worse) == {"dominant": ["affine:sat"], "worse": ["affine:abd"], "wins": False}
    level = model("chall", 200, sat=106, abd=100)  # 0.53 is not above 0.5 + 0.03
    assert challenge(TRADE["champ"], level)["wins"] is False
    assert challenge(TRADE["champ"], model("x", 10, ded=9))["wins"] is False  # no shared env


def test_champion_is_decided_bout_by_bout_in_order():
    results = {"a": model("a", 100, sat=50), "b": model("b", 100, sat=60), "c": model("c", 100, sat=61)}
    final, bouts = champion(results)
    assert final == "b" and [(x["champion"], x["challenger"], x["wins"]) for x in bouts] == [
        ("a", "b", True),
        ("b", "c", False),  # 0.61 is not above 0.60 + 0.03
    ]
    assert champion(results, order=["c", "a", "b"])[0] == "c"  # b (0.60) is worse than 0.98 x 0.61
    assert pareto_frontier(results, "challenger") == ["b"]
    with pytest.raises(ValueError, match="order"):
        champion(results, order=["a", "b"])


def sample_rows(env: str, scores: dict[int, float]) -> str:
    return "".join(json.dumps({"env": env, "task_id": f"sat-eval-{t}", "score": s}) + "\n" for t, s in scores.items())


def test_challenger_compares_only_tasks_both_completed(tmp_path):
    (tmp_path / "champ.jsonl").write_text(sample_rows("affine:sat", {t: float(t < 5) for t in range(10)}))
    # the challenger finished only tasks 0-4 (4 of 5 solved): 0.8 on its own, but 0.8 < 0.98 x 1.0 on shared tasks
    (tmp_path / "chall.jsonl").write_text(sample_rows("affine:sat", {t: float(t < 4) for t in range(5)}))
    results = load_results([tmp_path / "champ.jsonl", tmp_path / "chall.jsonl"])
    assert results["chall"]["envs"]["affine:sat"]["mean"] == pytest.approx(0.8)
    assert challenge(results["champ"], results["chall"]) == {"dominant": [], "worse": ["affine:sat"], "wins": False}
    without_tasks = {name: {**r, "envs": {"affine:sat": dict(r["envs"]["affine:sat"])}} for name, r in results.items()}
    for r in without_tasks.values():
        del r["envs"]["affine:sat"]["tasks"]
    assert challenge(without_tasks["champ"], without_tasks["chall"])["wins"] is True  # means of their own tasks
    (tmp_path / "bad.jsonl").write_text('{"env": "affine:sat"}\n')
    with pytest.raises(ValueError, match="bad.jsonl:1"):
        load_results([tmp_path / "bad.jsonl"])


def test_compare_text_per_rule():
    assert "champ dominates chall" in compare(SMALL_GAIN, "threshold") and "earliest first: champ, chall" in (
        compare(SMALL_GAIN, "threshold")
    )
    text = compare(TRADE, "challenger")
    assert "chall challenges champ: dominant on affine:sat; worse on —; wins" in text and "Champion: chall" in text
    assert "chall is undominated in 2 of 3 env subsets" in compare(TRADE, "threshold")
    with pytest.raises(ValueError, match="order"):
        compare(TRADE, "threshold", order=["champ", "nobody"])


def test_cli_compare_rules_and_order(capsys, tmp_path):
    paths = []
    for name, result in SMALL_GAIN.items():
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(result))
    files = [str(p) for p in paths]
    outputs = {}
    for rule in ("threshold", "challenger"):
        assert main(["compare", *files, "--rule", rule]) == 0
        outputs[rule] = capsys.readouterr().out
    assert "champ dominates chall" in outputs["threshold"] and "Pareto frontier: champ\n" in outputs["threshold"]
    assert "chall dominates champ" in outputs["challenger"] and "Champion: chall" in outputs["challenger"]
    assert main(["compare", *files, "--rule", "threshold", "--order", "chall,champ"]) == 0
    assert (
        "chall dominates champ (better on 2 of 2 shared envs, worse on none) (earlier model)" in capsys.readouterr().out
    )
    assert main(["compare", *files, "--rule", "threshold", "--order", "champ"]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("error: order must name every model once: unknown [], missing ['chall']")
        and err.count("\n") == 1
    )
