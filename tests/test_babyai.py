"""BabyAI = AgentGym's BabyAI server: task mapping, the server's text and actions, the client's reply parsing, its
reward rules, the expert, determinism, splits, truncation.  The transcript replay lives in test_babyai_parity.py."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("minigrid")

from minigrid.core.grid import Grid  # noqa: E402
from minigrid.core.world_object import Ball, Door, Key  # noqa: E402

from affine.envs.agentgym.babyai import (  # noqa: E402
    AGENTGYM_LEVELS,
    EASY_LEVELS,
    EVAL_BASE,
    NUM_TASKS,
    SUPPORTED_LEVELS,
    BabyAI,
    level_id,
    real_task,
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


def test_expert_solves_supported_train_tasks() -> None:
    # train task k = real data_idx k: ids 0..79 hold every supported level twice (~5 s)
    env = BabyAI()
    assert env.levels == list(SUPPORTED_LEVELS)
    results = [play_expert(env, task_id)[0] for task_id in range(80) if real_task(task_id)[0] in SUPPORTED_LEVELS]
    assert len(results) == 2 * len(SUPPORTED_LEVELS)
    assert sum(results) / len(results) >= 0.95


def test_expert_solves_unseen_eval_tasks_and_easy_curriculum() -> None:
    env = BabyAI(split="eval")
    results = [play_expert(env, task_id)[0] for task_id in range(40)]
    assert sum(results) / len(results) >= 0.9
    easy = BabyAI(difficulty=0)
    assert easy.levels == list(EASY_LEVELS)
    assert all(play_expert(easy, task_id)[0] for task_id in range(24))


def test_expert_replies_are_react() -> None:
    env = BabyAI(levels=["GoToRedBall"])
    env.reset(1)
    reply = env.expert_reply()
    assert reply.startswith("Thought:\n") and "\n\nAction:\n" in reply


def test_expert_thought_names_the_exact_macro_it_takes() -> None:
    # The SFT model copied the goal's wording ("go to red ball") instead of the listed action ("go to red ball 1"),
    # which the server rejects; so every object macro the expert takes is quoted, index included, in its thought.
    env = BabyAI(split="eval")
    macros = 0
    for task_id in range(12):
        for reply in play_expert(env, task_id)[1]:
            thought, action = reply.removeprefix("Thought:\n").split("\n\nAction:\n")
            if action.startswith(("go to ", "pickup ")):
                macros += 1
                assert f"'{action}'" in thought, reply
    assert macros >= 12


def _hand_built(carrying: object = None) -> BabyAI:
    """An empty 8x8 room: agent at (1, 3) facing east, a red ball ahead, a grey key ahead-left, a red ball further."""
    env = BabyAI(levels=["GoToRedBallNoDists"])
    env.reset(2)
    u = env.minigrid
    u.grid = Grid(8, 8)
    u.grid.wall_rect(0, 0, 8, 8)
    u.grid.set(4, 3, Ball("red"))
    u.grid.set(3, 2, Key("grey"))
    u.grid.set(5, 4, Ball("red"))
    u.agent_pos, u.agent_dir, u.carrying = (1, 3), 0, carrying
    return env


def test_rendering_of_a_hand_built_state() -> None:
    text = _hand_built().observe()
    view, menu = text.split("\n")
    assert view == (  # two spaces after each object sentence, as the server writes them
        "In front of you in this room, you can see several objects: "
        "There is a red ball 1 right in front of you 3 steps away.  "
        "There is a grey key 1 2 steps in front of you and 1 steps to your left.  "
        "There is a red ball 2 4 steps in front of you and 1 steps to your right.  "
        "The room has walls around you. You are facing a wall 6 steps away. You are not carrying anything."
    )
    assert menu == (
        'Available actions: ["turn left", "turn right", "move forward", "pickup red ball 1", "pickup grey key 1", '
        '"pickup red ball 2", "go to red ball 1", "go to grey key 1", "go to red ball 2", "check available actions"]'
    )


def test_empty_view_and_forward_into_an_object() -> None:
    env = _hand_built()
    u = env.minigrid
    u.agent_pos, u.agent_dir = (3, 3), 0
    text = env.observe()
    assert "There is a red ball 1 right in front of you 1 steps away." in text
    assert '"move forward"' in text  # the server offers it while facing a ball; it then changes nothing
    step = env.step("Action: move forward")
    assert step.info["valid"] and tuple(u.agent_pos) == (3, 3) and step.score == 0
    u.grid = Grid(8, 8)
    u.grid.wall_rect(0, 0, 8, 8)
    u.agent_pos, u.agent_dir = (1, 3), 2
    assert env.observe().startswith(
        "In front of you in this room, you can see several objects: The room has walls around you. "
        "You are facing a wall 1 steps away."
    )
    assert '"move forward"' not in env.observe()


def _boxed_in_key() -> BabyAI:
    """The hand-built room with the grey key at (3, 2) walled in by balls: no pose can face it."""
    env = _hand_built()
    u = env.minigrid
    for cell in ((2, 2), (4, 2), (3, 1), (3, 3)):
        u.grid.set(*cell, Ball("green"))
    u.grid.set(4, 3, None)
    return env


def test_unreachable_objects_and_numbering() -> None:
    env = _boxed_in_key()
    env.observe()
    step = env.step("Action: go to grey key 1")
    assert step.observation.startswith("You cannot go to grey key 1, as there is no path leading to it.\n")
    step = env.step("Action: pickup grey key 1")
    assert step.observation.startswith("You cannot pickup grey key 1, as there is no path leading to it.\n")
    env = _boxed_in_key()
    u = env.minigrid
    u.grid.set(6, 5, Key("grey"))
    text = env.observe()
    assert "There is a grey key 2 5 steps in front of you and 2 steps to your right." in text
    # the server numbers action targets among reachable objects only: "grey key 1" in the menu is the second key
    assert '"go to grey key 1"' in text and '"go to grey key 2"' not in text
    step = env.step("Action: go to grey key 1")
    assert step.info["valid"] and tuple(int(v) for v in u.front_pos) == (6, 5)


def test_rendering_carrying_and_doors() -> None:
    env = _hand_built(carrying=Key("blue"))
    u = env.minigrid
    u.grid.set(7, 3, Door("yellow", is_open=False))
    u.agent_pos = (6, 3)
    text = env.observe()
    assert "There is a yellow closed door 1 right in front of you 1 steps away.  " in text
    assert "You are carrying a blue key." in text and "You are facing a wall" not in text
    assert '"toggle and go through yellow closed door 1"' in text and '"toggle"' in text
    assert '"drop"' in text  # the server only refuses a drop onto a wall, box, ball, key or lava
    assert "pickup" not in text.split("Available actions")[1]  # hands are full
    step = env.step("Thought:\nOpen it.\n\nAction:\ntoggle")
    assert (
        step.info["valid"] and "There is a yellow open door 1 right in front of you 1 steps away." in step.observation
    )
    assert '"go through yellow open door 1"' in step.observation


def test_locked_door_errors() -> None:
    env = _hand_built()
    u = env.minigrid
    u.grid.set(7, 3, Door("purple", is_locked=True))
    u.agent_pos = (6, 3)
    env.observe()
    step = env.step("Action: toggle and go through purple locked door 1")
    assert step.observation.startswith(
        "You cannot toggle and go through purple locked door 1, as you are not carrying a key."
    )
    u.carrying = Key("red")
    env.observe()
    step = env.step("Action: toggle and go through purple locked door 1")
    assert "as the color of the key you are carrying does not match the color of door." in step.observation
    u.carrying = Key("purple")
    env.observe()
    step = env.step("Action: toggle and go through purple locked door 1")
    assert step.info["valid"] and tuple(u.agent_pos) == (7, 3) and u.grid.get(7, 3).is_open


def test_goal_door_pays_on_the_toggle_not_after_walking_through() -> None:
    # task 12 (OpenRedDoor, seed 0): the real server reports 0 for 'toggle and go through' (its last step, the
    # forward, pays nothing) and plays on; 'go to' the door then 'toggle' is what it counts as solved
    env = BabyAI(difficulty=2)
    env.reset(12)
    step = env.step("Action: toggle and go through red closed door 1")
    assert step.score == 0 and not step.done and not step.info["success"]
    env.reset(12)
    assert env.step("Action: go to red closed door 1").score == 0
    step = env.step("Action: toggle")
    assert step.done and step.info["success"] and step.score > 0.5 and step.reward == Shaping().completion
    assert step.observation.split("\nAvailable actions")[0].endswith(
        ". You are not carrying anything.\n The task is completed."
    )


def test_bad_replies_are_answered_as_client_and_server_do() -> None:
    shaping = Shaping()
    env = BabyAI(levels=["GoToRedBall"], shaping=shaping)
    first = env.reset(1)
    menu = "\nAvailable actions: " + first.split("\nAvailable actions: ")[1]
    pose = (tuple(env.minigrid.agent_pos), env.minigrid.agent_dir)
    cases = {
        "I will just walk around.": "No change in state." + menu,  # the client sends the empty action
        "": "No change in state." + menu,
        "\x00\xff ][ Action:: ###": "No change in state." + menu,
        "Action: turn left\nAction: turn right": MULTIPLE_ACTIONS,
        "Thought:\nhmm\n\nAction:\nfly to the moon": "The action is not recognized. Please check valid actions." + menu,
        "Action: pick up red ball 1": "The action is not recognized. Please check valid actions." + menu,
        "Action: drop": "You cannot drop the object, as you are not carrying anything." + menu,
        "Action: go to purple box 9": "The action is not recognized. Please check valid actions." + menu,
    }
    for reply, answer in cases.items():
        step = env.step(reply)
        assert step.observation == answer, reply
        assert not step.info["valid"] and not step.done and step.score == 0.0
        assert step.reward == pytest.approx(shaping.invalid_penalty)
        assert (tuple(env.minigrid.agent_pos), env.minigrid.agent_dir) == pose
    step = env.step("Action: CHECK available actions")
    assert step.info["valid"] and step.observation.startswith("You can take the following actions: turn left, turn")


def test_same_task_id_gives_the_same_episode() -> None:
    a, b = BabyAI(), BabyAI()
    assert a.reset(17) == b.reset(17)
    assert play_expert(a, 17) == play_expert(b, 17)
    assert BabyAI(seed=1).reset(17) == a.reset(57)  # the seed option shifts by whole seeds (40 ids)


def test_task_ids_are_the_servers_data_idx() -> None:
    env = BabyAI(difficulty=2)
    assert len(env.levels) == 40 and env.levels == list(AGENTGYM_LEVELS)
    assert env.task(0) == ("BabyAI-GoToRedBallGrey-v0", 0) and env.task(41) == ("BabyAI-GoToRedBall-v0", 1)
    assert env.task(39) == ("BabyAI-BossLevelNoUnlock-v0", 0) and env.task(3) == ("BabyAI-GoToObjS6-v0", 0)
    assert all(env.data_idx(k) == k for k in range(0, 4000, 7))
    selected = BabyAI()  # difficulty picks the ids, never remaps them: unsupported ids move to the next one
    for k in range(400):
        idx = selected.data_idx(k)
        assert idx >= k and real_task(idx)[0] in SUPPORTED_LEVELS
        assert (idx == k) == (real_task(k)[0] in SUPPORTED_LEVELS) == selected.used(k)
    assert BabyAI(levels=["BossLevel"]).data_idx(39) == 78
    assert level_id(4) == level_id("GoToObjS6") == level_id("BabyAI-GoToObjS6-v0") == "BabyAI-GoToObjS6-v0"
    assert set(EASY_LEVELS) <= set(SUPPORTED_LEVELS) <= set(AGENTGYM_LEVELS)
    for bad in ("NoSuchLevel", 0, 41):
        with pytest.raises(ValueError):
            level_id(bad)
    with pytest.raises(ValueError, match="AgentGym's 40"):
        BabyAI(levels=["GoToObjS4"])
    for bad_id in (-1, NUM_TASKS):
        with pytest.raises(ValueError, match="task ids"):
            env.reset(bad_id)


def test_train_and_eval_splits_are_disjoint() -> None:
    train, evaluation = BabyAI(split="train", difficulty=2), BabyAI(split="eval", difficulty=2)
    assert evaluation.data_idx(0) == EVAL_BASE and evaluation.task(0) == ("BabyAI-GoToRedBallGrey-v0", 1_000_000)
    assert train.data_idx(NUM_TASKS - 1) < EVAL_BASE and BabyAI(seed=3).data_idx(NUM_TASKS - 1) < EVAL_BASE
    assert BabyAI(split="eval", seed=3).data_idx(NUM_TASKS - 1) >= EVAL_BASE
    assert not {train.task(i) for i in range(2000)} & {evaluation.task(i) for i in range(2000)}
    with pytest.raises(ValueError):
        BabyAI(split="test")


def test_truncation_at_max_turns_with_timeout_penalty() -> None:
    shaping = Shaping()
    env = BabyAI(levels=["GoToRedBall"], shaping=shaping)
    assert env.max_turns == 20  # AgentGym's BabyAI eval round limit
    env.reset(1)
    steps = [env.step("Action: check available actions") for _ in range(20)]
    assert [s.done for s in steps] == [False] * 19 + [True]
    assert steps[-1].reward == pytest.approx(shaping.timeout_penalty) and steps[-1].score == 0.0
    assert not steps[-1].info["success"]
    with pytest.raises(RuntimeError):
        env.step("Action: turn left")


def test_success_score_and_shaped_rewards() -> None:
    shaping = Shaping()
    env = BabyAI(levels=["GoToObjMazeS7"], shaping=shaping)
    env.reset(5)
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
    env.reset(18)
    total = sum(env.step(f"Action: turn {side}").reward for side in ("left", "right") * 6)
    assert total <= shaping.progress + 1e-9  # only a new best potential pays


@pytest.mark.parametrize(
    ("level", "task_id"), [("PickupLoc", 18), ("GoToObjMazeS7", 5), ("GoToLocalS8N7", 2), ("GoToRedBall", 0)]
)
def test_turning_in_place_earns_no_progress(level: str, task_id: int) -> None:
    """Facing is free under the listed "go to" actions, so a turn is never progress (RL learned to spin for it)."""
    env = BabyAI(levels=[level], shaping=Shaping())
    env.reset(task_id)
    steps = [env.step(f"Action: turn {side}") for side in ("left",) * 4 + ("right",) * 4]
    assert all(s.info["valid"] for s in steps) and [s.reward for s in steps] == [0.0] * 8


def test_registry_and_interface() -> None:
    env = make("agentgym:babyai", difficulty=0, max_turns=7, seed=3)
    assert isinstance(env, BabyAI) and env.name == "agentgym:babyai" and env.max_turns == 7
    assert "Thought:" in env.instructions and "Action:" in env.instructions
    assert "pickup <color> <type> <n>" in env.instructions and "then toggle" in env.instructions
    observation = env.reset(0)
    assert observation.startswith("Your goal: ") and "\nAvailable actions: [" in observation
    step = env.step("Action: turn left")
    assert {"action", "valid", "success", "data_idx"} <= step.info.keys()
    assert np.isfinite(step.reward)
