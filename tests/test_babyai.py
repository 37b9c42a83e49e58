"""BabyAI on real minigrid levels: the expert, AgentGym's text view, reply parsing, determinism, splits, truncation."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("minigrid")

from minigrid.core.grid import Grid  # noqa: E402
from minigrid.core.world_object import Ball, Door, Key  # noqa: E402

from affine.envs.agentgym.babyai import (  # noqa: E402
    AGENTGYM_LEVELS,
    EASY_LEVELS,
    EVAL_SEED_BASE,
    SUPPORTED_LEVELS,
    BabyAI,
    level_id,
)
from affine.envs.agentgym.react import MULTIPLE_ACTIONS  # noqa: E402
from affine.envs.base import Shaping, make  # noqa: E402


def play_expert(env: BabyAI, task_id: int) -> tuple[bool, list[str]]:
    env.reset(task_id)
    replies, step = [], None
    while not env.done:
        replies.append(env.expert_reply())
        step = env.step(replies[-1])
        assert step.info["valid"], step.observation  # the expert only uses listed actions
    assert step is not None
    return step.info["success"], replies


def test_expert_solves_supported_levels_on_unseen_tasks() -> None:
    # eval split = seeds never used for training; 10 tasks per supported level (290 episodes, ~2 s)
    env = BabyAI(split="eval")
    assert env.levels == list(SUPPORTED_LEVELS)
    n = 10 * len(env.levels)
    wins = sum(play_expert(env, task_id)[0] for task_id in range(n))
    assert wins / n >= 0.95


def test_expert_solves_easy_curriculum() -> None:
    env = BabyAI(difficulty=0)
    assert env.levels == list(EASY_LEVELS)
    results = [play_expert(env, task_id)[0] for task_id in range(60)]
    assert sum(results) / len(results) >= 0.95


def test_expert_replies_are_react() -> None:
    env = BabyAI(levels=["GoToRedBall"])
    env.reset(3)
    reply = env.expert_reply()
    assert reply.startswith("Thought:\n") and "\n\nAction:\n" in reply


def _hand_built(carrying: object = None) -> BabyAI:
    """An empty 8x8 room: agent at (1, 3) facing east, a red ball ahead, a grey key ahead-left, a red ball further."""
    env = BabyAI(levels=["GoToRedBallNoDists"])
    env.reset(0)
    u = env.minigrid
    u.grid = Grid(8, 8)
    u.grid.wall_rect(0, 0, 8, 8)
    u.grid.set(4, 3, Ball("red"))
    u.grid.set(3, 2, Key("grey"))
    u.grid.set(5, 4, Ball("red"))
    u.agent_pos, u.agent_dir, u.carrying = np.array((1, 3)), 0, carrying
    return env


def test_rendering_of_a_hand_built_state() -> None:
    text = _hand_built().observe()
    view, menu = text.split("\n")
    assert view == (
        "In front of you in this room, you can see several objects: "
        "There is a red ball 1 right in front of you 3 steps away. "
        "There is a grey key 1 2 steps in front of you and 1 steps to your left. "
        "There is a red ball 2 4 steps in front of you and 1 steps to your right. "
        "The room has walls around you. You are facing a wall 6 steps away. You are not carrying anything."
    )
    assert menu == (
        'Available actions: ["turn left", "turn right", "move forward", "pickup red ball 1", "pickup grey key 1", '
        '"pickup red ball 2", "go to red ball 1", "go to grey key 1", "go to red ball 2", "check available actions"]'
    )


def test_rendering_carrying_and_doors() -> None:
    env = _hand_built(carrying=Key("blue"))
    u = env.minigrid
    u.grid.set(7, 3, Door("yellow", is_open=False))
    u.agent_pos = np.array((6, 3))
    text = env.observe()
    assert "There is a yellow closed door 1 right in front of you 1 steps away." in text
    assert "You are carrying a blue key." in text
    assert "You are facing a wall" not in text  # a closed door is not a wall, and nothing is seen through it
    assert '"toggle and go through yellow closed door 1"' in text and '"toggle"' in text
    assert '"drop"' not in text  # the door fills the cell in front
    assert "pickup" not in text.split("Available actions")[1]  # hands are full
    step = env.step("Thought:\nOpen it.\n\nAction:\ntoggle")
    assert (
        step.info["valid"] and "There is a yellow open door 1 right in front of you 1 steps away." in step.observation
    )
    assert '"go through yellow open door 1"' in step.observation


def test_locked_door_needs_a_matching_key() -> None:
    env = _hand_built()
    u = env.minigrid
    u.grid.set(7, 3, Door("purple", is_locked=True))
    u.agent_pos = np.array((6, 3))
    env.observe()
    step = env.step("Action: toggle and go through purple locked door 1")
    assert not step.info["valid"] and step.observation.startswith(
        "You cannot toggle and go through purple locked door 1, as you are not carrying a key of its color."
    )
    u.carrying = Key("purple")
    env.observe()
    step = env.step("Action: toggle and go through purple locked door 1")
    assert step.info["valid"] and tuple(u.agent_pos) == (7, 3) and u.grid.get(7, 3).is_open


def test_bad_replies_give_error_text_and_change_nothing() -> None:
    shaping = Shaping()
    env = BabyAI(levels=["GoToRedBall"], shaping=shaping)
    first = env.reset(1)
    pose = (tuple(env.minigrid.agent_pos), env.minigrid.agent_dir)
    cases = {
        "I will just walk around.": "Invalid Action.",
        "Action: turn left\nAction: turn right": MULTIPLE_ACTIONS,
        "Thought:\nhmm\n\nAction:\nfly to the moon": "The action is not recognized. Please check valid actions.",
        "Action: drop": "You cannot drop the object, as you are not carrying anything.",
        "Action: go to purple box 9": "The action is not recognized. Please check valid actions.",
        "\x00\xff ][ Action:: ###": "Invalid Action.",
        "": "Invalid Action.",
    }
    for reply, error in cases.items():
        step = env.step(reply)
        assert step.observation.startswith(error), reply
        assert step.observation.endswith(first.split("\n")[-1])  # the action list is repeated
        assert not step.info["valid"] and not step.done and step.score == 0.0
        assert step.reward == pytest.approx(shaping.invalid_penalty)
        assert (tuple(env.minigrid.agent_pos), env.minigrid.agent_dir) == pose


def test_pick_up_spelling_and_check_action() -> None:
    env = _hand_built()
    env.observe()
    step = env.step("Action: check available actions")
    assert step.info["valid"] and step.observation.startswith("You can take the following actions: turn left")
    step = env.step("Action: pick up grey key 1")  # the prompt's spelling of AgentGym's "pickup"
    assert step.info["valid"] and step.info["action"] == "pickup grey key 1"
    assert env.minigrid.carrying is not None and env.minigrid.carrying.type == "key"


def test_same_task_id_gives_the_same_episode() -> None:
    a, b = BabyAI(), BabyAI()
    assert a.reset(17) == b.reset(17)
    assert play_expert(a, 17) == play_expert(b, 17)
    assert BabyAI(seed=1).reset(17) != a.reset(17)  # the seed option shifts the task stream


def test_train_and_eval_splits_are_disjoint() -> None:
    train, evaluation = BabyAI(split="train"), BabyAI(split="eval")
    train_tasks = {train.task(i) for i in range(3000)}
    eval_tasks = {evaluation.task(i) for i in range(3000)}
    assert not train_tasks & eval_tasks
    assert all(seed >= EVAL_SEED_BASE for _, seed in eval_tasks)
    assert all(seed < EVAL_SEED_BASE for _, seed in train_tasks)
    with pytest.raises(ValueError):
        BabyAI(split="test")


def test_agentgym_task_mapping_and_level_names() -> None:
    env = BabyAI(difficulty=2)
    assert len(env.levels) == 40 and env.levels == list(AGENTGYM_LEVELS)
    assert env.task(0) == ("BabyAI-GoToRedBallGrey-v0", 0)
    assert env.task(41) == ("BabyAI-GoToRedBall-v0", 1)
    assert env.task(39) == ("BabyAI-BossLevelNoUnlock-v0", 0)
    assert level_id(4) == level_id("GoToObjS6") == level_id("BabyAI-GoToObjS6-v0") == "BabyAI-GoToObjS6-v1"
    assert set(SUPPORTED_LEVELS) <= set(AGENTGYM_LEVELS) and set(EASY_LEVELS) <= set(SUPPORTED_LEVELS)
    assert BabyAI(levels=["GoToRedBall", 19]).levels == ["BabyAI-GoToRedBall-v0", "BabyAI-PickupLoc-v0"]
    for bad in ("NoSuchLevel", 0, 41):
        with pytest.raises(ValueError):
            level_id(bad)


def test_truncation_at_max_turns_with_timeout_penalty() -> None:
    shaping = Shaping()
    env = BabyAI(levels=["GoToRedBall"], shaping=shaping)
    assert env.max_turns == 20  # AgentGym's BabyAI eval round limit
    env.reset(2)
    steps = [env.step("Action: check available actions") for _ in range(20)]
    assert [s.done for s in steps] == [False] * 19 + [True]
    assert steps[-1].reward == pytest.approx(shaping.timeout_penalty) and steps[-1].score == 0.0
    assert not steps[-1].info["success"]
    with pytest.raises(RuntimeError):
        env.step("Action: turn left")


def test_success_score_and_shaped_rewards() -> None:
    shaping = Shaping()
    env = BabyAI(levels=["GoToObjMazeS7"], shaping=shaping)
    env.reset(4)
    rewards, step = [], None
    while not env.done:
        step = env.step(env.expert_reply())
        rewards.append(step.reward)
    assert step is not None and step.info["success"] and step.done
    u = env.minigrid
    assert step.score == pytest.approx(1 - 0.9 * u.step_count / u.max_steps)  # minigrid's own reward
    assert rewards[-1] == pytest.approx(shaping.completion)
    assert all(r in (0.0, pytest.approx(shaping.progress)) for r in rewards[:-1]) and shaping.progress in rewards


def test_progress_reward_cannot_be_farmed() -> None:
    shaping = Shaping()
    env = BabyAI(levels=["PickupLoc"], shaping=shaping)
    env.reset(0)
    total = sum(env.step(f"Action: turn {side}").reward for side in ("left", "right") * 6)
    assert total <= shaping.progress + 1e-9  # only a new best potential pays


def test_registry_and_interface() -> None:
    env = make("agentgym:babyai", difficulty=0, max_turns=7, seed=3)
    assert isinstance(env, BabyAI) and env.name == "agentgym:babyai" and env.max_turns == 7
    assert "Thought:" in env.instructions and "Action:" in env.instructions
    observation = env.reset(0)
    assert observation.startswith("Your goal: ") and "Available actions: [" in observation
    step = env.step("Action: turn left")
    assert {"action", "valid", "success"} <= step.info.keys()
