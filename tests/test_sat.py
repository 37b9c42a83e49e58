"""SAT: planted generation, the validator's parser and scorer, checked against a real solver (pycosat)."""

import pycosat
import pytest

from affine.envs.sat import SAT, formula_text, parse_assignment, satisfies

CLAUSES = [[1, -2, 3], [-1, 4, 2]]


def test_formula_text_matches_reference_format():
    assert formula_text(CLAUSES) == "(x1 ∨ ¬x2 ∨ x3) ∧ (¬x1 ∨ x4 ∨ x2)"


def test_same_seed_same_instance_and_splits_disjoint():
    env = SAT(n_vars=[4, 6], k=[3, 3], clause_ratio=2.0)
    assert env.sample(7) == env.sample(7)
    assert env.sample(7)["clauses"] != env.sample(8)["clauses"]
    train = {SAT(split="train").sample(s)["prompt"] for s in range(200)}
    held_out = {SAT(split="eval").sample(s)["prompt"] for s in range(200)}
    assert not train & held_out


@pytest.mark.parametrize("seed", range(30))
def test_planted_instances_are_satisfiable_and_solution_scores(seed):
    env = SAT(n_vars=[10, 20], k=[3, 5], clause_ratio=4.2)
    challenge = env.sample(seed)
    n = challenge["n_vars"]
    assert all(1 <= abs(x) <= n for clause in challenge["clauses"] for x in clause)
    assert len(challenge["clauses"]) == int(4.2 * n)
    assert pycosat.solve(challenge["clauses"]) != "UNSAT"
    assert env.score(challenge, env.solution(challenge)) == 1.0


def test_scorer_accepts_any_satisfying_assignment():
    env = SAT(n_vars=[8, 8], k=[3, 3], clause_ratio=2.0)
    challenge = env.sample(3)
    solutions = list(pycosat.itersolve(challenge["clauses"]))
    assert len(solutions) > 1
    for solution in solutions[:20]:
        reply = ", ".join(f"x{abs(v)}={v > 0}" for v in solution)
        assert env.score(challenge, reply) == 1.0


def test_affine_setting_is_one_param_away():
    challenge = SAT(n_vars=[15, 15], k=[10, 10], clause_ratio=4.26).sample(0)
    assert challenge["n_vars"] == 15 and len(challenge["clauses"]) == int(4.26 * 15)
    assert all(len(set(map(abs, clause))) == 10 for clause in challenge["clauses"])


def test_parser_reference_semantics():
    # later duplicates win; 1/0 allowed; spaces around '=' and lowercase values are not matches
    assert parse_assignment("x1=True, x1=False") == {1: False}
    assert parse_assignment("x2=1 x3=0") == {2: True, 3: False}
    assert parse_assignment("x1 = True, x2=true, x3=TRUE") == {}
    assert parse_assignment("reasoning x1=False ... final: x1=True") == {1: True}


def test_missing_variable_makes_its_literals_false():
    assert not satisfies([[1, -2]], {})
    assert satisfies([[1, -2]], {2: False})
    assert not satisfies([[-2]], {1: True})


@pytest.mark.parametrize("reply", ["", "UNSAT", "x1=True, x2=False, ...", "🙂" * 50, "x99999999999=True"])
def test_malformed_replies_score_zero_without_raising(reply):
    env = SAT(n_vars=[5, 5], k=[3, 3], clause_ratio=4.2)
    assert env.score(env.sample(1), reply) == 0.0


def test_non_string_reply_scores_zero():
    env = SAT(n_vars=[5, 5], k=[3, 3], clause_ratio=4.2)
    assert env.score(env.sample(1), None) == 0.0  # type: ignore[arg-type]


def test_bad_split_rejected():
    with pytest.raises(ValueError, match="split"):
        SAT(split="test")
