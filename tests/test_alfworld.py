"""ALFWorld simulator: expert quality, TextWorld feedback, shaping arithmetic, determinism, split disjointness."""

from __future__ import annotations

import math
import random

import pytest

from affine.envs.agentgym.alfworld import NOTHING, TASK_TYPES, ALFWorld, combos
from affine.envs.agentgym.react import INVALID_ACTION, react
from affine.envs.base import MultiTurnEnv, Shaping, make


def act(action: str) -> str:
    return react("thinking", action)


def play_expert(env: ALFWorld, task_id: int) -> list:
    env.reset(task_id)
    steps = []
    while not steps or not steps[-1].done:
        steps.append(env.step(env.expert_reply()))
    return steps


@pytest.mark.parametrize("split", ["train", "eval"])
@pytest.mark.parametrize(("difficulty", "floor"), [(1, 95), (3, 90)])
def test_expert_solves(split: str, difficulty: int, floor: int) -> None:
    env = ALFWorld(split=split, difficulty=difficulty)
    solved = sum(play_expert(env, t)[-1].score == 1.0 for t in range(100))
    assert solved >= floor


def test_expert_shaping_counts_each_subgoal_once() -> None:
    """Expert episodes pay 0.2 per subgoal (found, holding, [transformed], at destination) and 1.0 at the end."""
    expected = {"pick_and_place": 3, "pick_clean_then_place": 4, "pick_heat_then_place": 4, "pick_cool_then_place": 4}
    expected["pick_two_obj_and_place"] = 7  # 3 for the first object, placing it, then 3 for the second
    env = ALFWorld()
    for tid in range(60):
        steps = play_expert(env, tid)
        if steps[-1].score != 1.0:
            continue
        paid = [s.reward for s in steps]
        assert paid[-1] == pytest.approx(1.0) and all(r in (0.0, pytest.approx(0.2)) for r in paid[:-1])
        n = sum(s.info["progress"] for s in steps)
        assert sum(paid) == pytest.approx(0.2 * n + 1.0)
        if env.task.kind in expected:
            assert n == expected[env.task.kind], env.task
        else:  # look: taking the object where the lamp stands meets two subgoals in one step
            assert n in (2, 3)


def test_first_observation() -> None:
    env = ALFWorld()
    obs = env.reset(3)
    assert obs.startswith("You are in the middle of a room. Looking quickly around you, you see a ")
    assert "Welcome" not in obs and "\n\n" not in obs
    assert obs.split("\n")[1] == f"Your task is to: {env.task.text}"
    actions = obs.split("AVAILABLE ACTIONS: ")[1].split(",")
    assert actions[-2:] == ["inventory", "look"] and all(a.startswith("go to ") for a in actions[:-2])
    assert [a[6:] for a in actions[:-2]] == env.recs
    while not (step := env.step(env.expert_reply())).done:  # later turns show feedback only, like the real server
        assert "AVAILABLE ACTIONS" not in step.observation and "Welcome" not in step.observation


def test_same_task_id_same_task() -> None:
    a, b = ALFWorld(split="eval", difficulty=2), ALFWorld(split="eval", difficulty=2)
    assert a.reset(42) == b.reset(42) and a.contents == b.contents
    assert len({a.reset(t) for t in range(20)}) == 20


def test_splits_disjoint_and_cover_every_task_type() -> None:
    c = combos()
    train = {x for kind in TASK_TYPES for x in c["train"][kind]}
    evals = {x for kind in TASK_TYPES for x in c["eval"][kind]}
    assert not train & evals and all(c["train"][k] and c["eval"][k] for k in TASK_TYPES)
    seen = {s: set() for s in ("train", "eval")}
    for split in seen:
        env = ALFWorld(split=split)
        for t in range(100):
            env.reset(t)
            seen[split].add(env.task.combo)
    assert not seen["train"] & seen["eval"]
    assert {k for k, *_ in seen["eval"]} == set(TASK_TYPES)


def _find(env: ALFWorld, want) -> int:
    return next(t for t in range(1000) if (env.reset(t) or True) and want(env))


def test_scripted_pick_and_place_rewards() -> None:
    env = ALFWorld()

    def simple(e: ALFWorld) -> bool:
        targets = [o for o, r in e.where.items() if o.startswith(e.task.obj + " ") and r not in e.closed]
        goal = next(r for r in e.recs if e.rtype[r] == e.task.goal)
        return e.task.kind == "pick_and_place" and bool(targets) and goal not in e.closed

    env.reset(_find(env, simple))
    o = next(o for o, r in env.where.items() if o.startswith(env.task.obj + " ") and r not in env.closed)
    src, dst = env.where[o], next(r for r in env.recs if env.rtype[r] == env.task.goal)
    script = [
        ("look", 0.0, "You are in the middle of a room. Looking quickly around you, you see"),
        (f"take {o} from {src}", -0.05, NOTHING),  # not there yet
        (f"go to {src}", 0.2, f"You arrive at {src}. On the {src}, you see"),
        (f"go to {src}", -0.05, NOTHING),  # already there
        (f"take {o} from {src}", 0.2, f"You pick up the {o} from the {src}."),
        ("inventory", 0.0, f"You are carrying: a {o}."),
        (f"go to {dst}", 0.2, f"You arrive at {dst}. On the {dst}, you see"),
        (f"put {o} on {dst}", -0.05, NOTHING),  # ALFWorld's command is "put X in/on Y"
        (f"put {o} in {dst}", -0.05, NOTHING),
        (f"put {o} in/on {dst}", 1.0, f"You put the {o} in/on the {dst}."),
    ]
    for i, (action, reward, text) in enumerate(script):
        step = env.step(act(action))
        assert step.observation.startswith(text), (action, step.observation)
        assert step.reward == pytest.approx(reward), action
        assert step.done == (i == len(script) - 1) and step.score == float(i == len(script) - 1)
        assert step.info["valid"] == (reward != -0.05)
    assert step.info["success"] and env.step(act("look")).reward == 0.0


def test_heat_clean_cool_need_the_right_appliance() -> None:
    env = ALFWorld()
    env.reset(_find(env, lambda e: e.task.kind == "pick_heat_then_place"))
    o = next(o for o in env.where if o.startswith(env.task.obj + " "))
    env.loc, env.held, env.where[o] = None, o, None  # put the object in hand to test the appliance rules alone
    for rec in env.contents:
        if o in env.contents[rec]:
            env.contents[rec].remove(o)
    fridge, micro = "fridge 1", "microwave 1"
    assert env.step(act(f"heat {o} with {micro}")).observation == NOTHING  # not at the microwave
    env.step(act(f"go to {fridge}"))
    assert env.step(act(f"heat {o} with {fridge}")).observation == NOTHING
    assert env.step(act(f"cool {o} with {fridge}")).observation == f"You cool the {o} using the {fridge}."
    env.step(act(f"go to {micro}"))
    step = env.step(act(f"heat {o} with {micro}"))
    assert step.observation == f"You heat the {o} using the {micro}." and env.flags[o] == {"hot"}
    assert env.step(act(f"examine {o}")).observation == f"The {o} is hot."


def test_open_close_and_containers() -> None:
    env = ALFWorld()
    env.reset(0)
    box = next(r for r in env.recs if r in env.closed)
    assert env.step(act(f"open {box}")).observation == NOTHING  # must be there
    assert env.step(act(f"go to {box}")).observation == f"You arrive at {box}. The {box} is closed."
    assert env.step(act(f"open {box}")).observation.startswith(f"You open the {box}. The {box} is open. In it, you see")
    assert env.step(act(f"open {box}")).observation == NOTHING
    assert env.step(act(f"close {box}")).observation == f"You close the {box}."
    inside = env.contents[box]
    if inside:
        assert env.step(act(f"take {inside[0]} from {box}")).observation == NOTHING  # closed
    assert env.step(act(f"examine {box}")).observation == f"The {box} is closed."


def test_invalid_and_garbage_replies() -> None:
    env = ALFWorld(max_turns=100)
    env.reset(5)
    for reply in ["", "I will go to the fridge", "Thought: hmm\nAction:   \n"]:
        step = env.step(reply)
        assert step.observation == INVALID_ACTION and step.reward == pytest.approx(-0.05) and not step.info["valid"]
    for action in [
        "fly away",
        "go to moon 1",
        "take unicorn 1 from cabinet 1",
        "put mug 1 in sink",
        "use table",
        "toggle desklamp 9",
        "clean cup 1 with toilet 1",
        "examine ghost 1",
        "close door 1",
    ]:
        step = env.step(act(action))
        assert step.observation == NOTHING and step.reward == pytest.approx(-0.05) and not step.done
    step = env.step("Thought: x\nAction: go to cabinet 1\nAction: INVENTORY.")  # the last Action: wins
    assert step.info["action"] == "inventory" and step.observation == "You are not carrying anything."


def test_truncation_and_timeout_penalty() -> None:
    shaping = Shaping(progress=0.3, completion=2.0, invalid_penalty=-0.1, timeout_penalty=-0.5)
    env = ALFWorld(max_turns=2, shaping=shaping)
    env.reset(1)
    first = env.step(act("inventory"))
    assert first.reward == 0.0 and not first.done
    last = env.step(act("jump"))
    assert last.done and last.info["truncated"] and last.score == 0.0
    assert last.reward == pytest.approx(-0.1 - 0.5)
    after = env.step(act("look"))
    assert after.done and after.reward == 0.0


def test_random_replies_never_crash() -> None:
    rng = random.Random(0)
    env = ALFWorld(difficulty=2)
    verbs = [
        "go to {r}",
        "take {o} from {r}",
        "put {o} in/on {r}",
        "open {r}",
        "close {r}",
        "toggle {o}",
        "use {o}",
        "heat {o} with {r}",
        "cool {o} with {r}",
        "clean {o} with {r}",
        "examine {r}",
        "examine {o}",
        "inventory",
        "look",
    ]
    for tid in range(30):
        env.reset(tid)
        objs = list(env.where)
        for _ in range(env.max_turns):
            if rng.random() < 0.15:
                reply = "".join(chr(rng.randint(0, 0x2FF)) for _ in range(rng.randint(0, 40)))
            else:
                reply = act(rng.choice(verbs).format(r=rng.choice(env.recs), o=rng.choice(objs)))
            step = env.step(reply)
            assert isinstance(step.observation, str) and math.isfinite(step.reward)
            assert {"action", "valid", "success"} <= set(step.info)
            if step.done:
                break
        assert step.done


def test_expert_recovers_from_detours() -> None:
    env = ALFWorld()
    solved = 0
    for tid in range(40):
        env.reset(tid)
        other = next(
            (
                o
                for o, r in env.where.items()
                if r in env.recs and not o.startswith(env.task.obj) and r not in env.closed and "desklamp" not in o
            ),
            None,
        )
        if other:  # pick up something useless first: the expert must put it down and carry on
            env.step(act(f"go to {env.where[other]}"))
            env.step(act(f"take {other} from {env.where[other]}"))
        while True:
            step = env.step(env.expert_reply())
            if step.done:
                break
        solved += step.score == 1.0
    assert solved >= 36


def test_registry_and_protocol() -> None:
    env = make("agentgym:alfworld", split="eval")
    assert isinstance(env, MultiTurnEnv) and env.name == "agentgym:alfworld" and env.max_turns == 30
    assert "Thought:\n" in env.instructions and "Action:\n" in env.instructions
    with pytest.raises(RuntimeError):
        ALFWorld().step("Action: look")
