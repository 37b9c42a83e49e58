"""SciWorld simulator (and the optional real ScienceWorld backend): expert quality, real feedback texts, the 0..100
score with -100 on failure, shaping arithmetic, determinism, split disjointness, robustness."""

from __future__ import annotations

import importlib.util
import random
import shutil

import pytest

from affine.envs.agentgym.react import INVALID_ACTION, react
from affine.envs.agentgym.sciworld import FAMILIES, NO_MATCH, SciWorld
from affine.envs.base import MultiTurnEnv, Shaping, make

SH = Shaping()


def act(action: str) -> str:
    return react("thinking", action)


def play_expert(env: SciWorld, task_id: int):
    env.reset(task_id)
    while True:
        step = env.step(env.expert_reply())
        if step.done:
            return step


def run(env: SciWorld, actions: list[str]) -> list[tuple[float, float]]:
    out = []
    for a in actions:
        step = env.step(act(a))
        assert step.info["valid"], (a, step.observation)
        out.append((step.score, round(step.reward, 6)))
    return out


@pytest.mark.parametrize("split", ["train", "eval"])
def test_expert_reaches_100(split: str) -> None:
    env = SciWorld(split=split)
    steps = [play_expert(env, t) for t in range(100)]
    assert sum(s.score == 100 for s in steps) >= 95
    assert all(s.info["success"] == (s.score == 100) for s in steps)
    assert max(s.info["turn"] for s in steps) <= env.max_turns


@pytest.mark.parametrize("difficulty", [2, 3])
def test_expert_harder_difficulties(difficulty: int) -> None:
    env = SciWorld(difficulty=difficulty)
    assert sum(play_expert(env, t).score == 100 for t in range(45)) >= 43


def test_registry_protocol_and_first_observation() -> None:
    env = make("agentgym:sciworld", split="eval")
    assert isinstance(env, MultiTurnEnv) and env.name == "agentgym:sciworld" and env.max_turns == 30
    assert "focus on OBJ" in env.instructions and "Thought:\n" in env.instructions
    obs = env.reset(0)
    task, look = obs.split("\n", 1)
    assert task.startswith("Your task is to boil") and env.family == "boil"
    assert look.startswith("This room is called the hallway. In it, you see: \n\tthe agent\n\ta substance called air")
    assert "\tA door to the kitchen (that is closed)" in look
    families = set()
    for t in range(len(FAMILIES)):
        env.reset(t)
        families.add(env.family)
    assert families == set(FAMILIES)


def test_scripted_boil_scores_and_shaping() -> None:
    env = SciWorld()
    env.reset(0)  # boil water in a metal pot on the kitchen table
    p, c = SH.progress, SH.completion
    got = run(
        env,
        [
            "open door to kitchen",
            "go to kitchen",
            "focus on water",
            "pick up metal pot",
            "move metal pot to stove",
            "activate stove",
            "wait",
        ],
    )
    assert got == [(0, 0), (0, 0), (40, p), (40, 0), (60, p), (70, p), (100, round(p + c, 6))]
    assert env.things["water"].label == "steam"


def test_wrong_focus_fails_with_minus_100() -> None:
    env = SciWorld()
    env.reset(0)
    env.step(act("open door to kitchen"))
    env.step(act("go to kitchen"))
    step = env.step(act("focus on stove"))
    assert step.observation == "You focus on the stove."
    assert step.done and step.score == -100 and not step.info["success"]
    assert step.reward == pytest.approx(-SH.completion)


def test_conductivity_wrong_box_fails() -> None:
    env = SciWorld()
    env.reset(3)  # metal fork in the workshop: conductive -> red box, else green box
    assert env.family == "test-conductivity" and "place it in the red box" in env.task
    got = run(env, ["open door to workshop", "go to workshop", "focus on metal fork", "connect battery to metal fork"])
    assert got[-2:] == [(30, SH.progress), (40, SH.progress)]
    step = env.step(act("move metal fork to green box"))
    assert step.done and step.score == -100


def test_paint_partial_progress_then_wrong_focus() -> None:
    env = SciWorld()
    env.reset(8)
    assert env.family == "chemistry-mix-paint-secondary-color"
    first, _ = env.need
    got = run(env, ["open door to art studio", "go to art studio", f"pour {first} into mixing bowl"])
    assert got[-1] == (25, SH.progress)
    step = env.step(act(f"focus on {first}"))
    assert step.done and step.score == -100


def test_find_task_scores() -> None:
    env = SciWorld()
    env.reset(4)
    assert env.family == "find-living-thing"
    scores = []
    while True:
        step = env.step(env.expert_reply())
        scores.append(step.score)
        if step.done:
            break
    assert [s for i, s in enumerate(scores) if i == 0 or s != scores[i - 1]][-4:] == [0, 50, 75, 100]


def test_invalid_and_malformed_replies() -> None:
    env = SciWorld()
    env.reset(0)
    cases = [
        ("hello", INVALID_ACTION),
        ("Thought:\nI am lost", INVALID_ACTION),
        ("Action:", INVALID_ACTION),
        (act("fly to the moon"), NO_MATCH),
        (act("focus on"), NO_MATCH),
        (act("open unicorn"), NO_MATCH),
        (act("3"), NO_MATCH),
        (act("go to kitchen"), "The door is not open."),
        (act("go to outside"), "It's not clear how to get there from here."),
        (act("pick up picture"), "You can't pick up the picture."),
        (act("open picture"), "The picture can't be opened."),
    ]
    for reply, text in cases:
        step = env.step(reply)
        assert step.observation == text and not step.info["valid"] and step.reward == pytest.approx(SH.invalid_penalty)
    assert env.turn == len(cases) and env.score == 0


def test_truncation_and_penalties() -> None:
    env = SciWorld(max_turns=2)
    env.reset(1)
    assert env.step(act("look around")).reward == 0.0
    step = env.step("garbage")
    assert step.done and step.info["truncated"] and not step.info["success"] and step.score == 0
    assert step.reward == pytest.approx(SH.invalid_penalty + SH.timeout_penalty)
    after = env.step(act("look around"))
    assert after.done and after.reward == 0.0


def test_deterministic_in_split_and_task_id() -> None:
    a, b = SciWorld(difficulty=2), SciWorld(difficulty=2)
    assert a.reset(31) == b.reset(31)
    while True:
        ra, rb = a.expert_reply(), b.expert_reply()
        assert ra == rb
        sa, sb = a.step(ra), b.step(rb)
        assert sa.observation == sb.observation and sa.score == sb.score
        if sa.done:
            break


def test_train_eval_disjoint() -> None:
    def keys(split: str) -> set[tuple]:
        env = SciWorld(split=split)
        found = set()
        for t in range(900):
            env.reset(t)
            found.add((env.family, env.combo))
        return found

    train, evals = keys("train"), keys("eval")
    assert len(train) > 300 and len(evals) > 100 and not train & evals


def test_random_replies_never_crash() -> None:
    rng = random.Random(0)
    verbs = ["open {}", "close {}", "activate {}", "deactivate {}", "connect {} to {}", "disconnect {}", "use {} on {}"]
    verbs += ["look around", "look at {}", "look in {}", "read {}", "move {} to {}", "pick up {}", "put down {}"]
    verbs += ["pour {} into {}", "dunk {} into {}", "mix {}", "go to {}", "eat {}", "focus on {}", "wait", "wait1"]
    verbs += ["examine {}", "task", "inventory", "", "   ", "?!", "move to", "use thermometer on {} in {}"]
    for task_id in range(60):
        env = SciWorld(difficulty=1 + task_id % 3)
        env.reset(task_id)
        while True:
            names = list(env._visible()) + ["kitchen", "outside", "door to kitchen", "substance in metal pot", "x"]
            action = rng.choice(verbs).format(*(rng.choice(names) for _ in range(2)))
            step = env.step(rng.choice([act(action), action, f"Action: {action}"]))
            assert isinstance(step.observation, str) and -100 <= step.score <= 100
            if step.done:
                break


_REAL = importlib.util.find_spec("scienceworld") is not None and shutil.which("java") is not None


@pytest.mark.skipif(not _REAL, reason="real backend needs the scienceworld package and a Java runtime")
def test_real_scienceworld_backend() -> None:
    """Drives the real env (JVM start ~1-2 s); the gold-path expert solves a short task within 30 turns."""
    env = SciWorld(backend="scienceworld")
    try:
        obs = env.reset(11)
        assert env.family == "find-living-thing" and obs.startswith("Your task is to find a(n) living thing")
        assert "This room is called" in obs
        bad = env.step(act("fly to the moon"))
        assert bad.observation == NO_MATCH and not bad.info["valid"] and bad.reward == pytest.approx(SH.invalid_penalty)
        while not (step := env.step(env.expert_reply())).done:
            pass
        assert step.score == 100 and step.info["success"] and step.info["turn"] <= 30
    finally:
        env.close()


def test_before_reset() -> None:
    env = SciWorld()
    assert env.step(act("look around")).done
    with pytest.raises(RuntimeError):
        env.expert_reply()
