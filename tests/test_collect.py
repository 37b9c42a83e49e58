"""The collect stage: every example is correct by the env's own scorer, formats are right, eval tasks never leak."""

import json

import pytest

from affine.collect import collect, even_split, expert_episode, trajectory_examples
from affine.config import ALL_ENVS, parse_params
from affine.envs.agentgym.react import parse_last, parse_single, to_messages
from affine.envs.options import build_env


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    out = tmp_path_factory.mktemp("collect") / "examples.jsonl"
    params = parse_params(
        {
            "envs": {"sat": {"n_vars": [4, 5], "k": [3, 3], "clause_ratio": 2.0}},
            "collect": {"affine": {"num_samples": 9}, "agentgym": {"num_episodes": 10}},
        }
    )
    counts = collect(params, out)
    assert counts == {name: (3 if name.startswith("affine") else 2) for name in ALL_ENVS}
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_even_split():
    assert even_split(10, ["a", "b", "c"]) == {"a": 4, "b": 3, "c": 3}
    assert even_split(5, []) == {}


def test_single_turn_examples_score_one(rows):
    params = parse_params({"envs": {"sat": {"n_vars": [4, 5], "k": [3, 3], "clause_ratio": 2.0}}})
    for row in rows:
        if not row["env"].startswith("affine:"):
            continue
        env = build_env(row["env"], params.envs, split="train")
        seed = int(row["task_id"].split("-")[2]) if row["env"] == "affine:sat" else None
        assert [m["role"] for m in row["messages"]] == ["user", "assistant"]
        if seed is not None:
            challenge = env.sample(seed)
            assert challenge["prompt"] == row["messages"][0]["content"]
            assert env.score(challenge, row["messages"][1]["content"]) == 1.0


def test_expert_episodes_alternate_and_every_reply_is_one_valid_action(rows):
    episodes = [r for r in rows if r["env"].startswith("agentgym:")]
    assert len(episodes) == 10
    for row in episodes:
        roles = [m["role"] for m in row["messages"]]
        assert roles[0] == "user" and roles[-1] == "assistant"
        assert all(a != b for a, b in zip(roles, roles[1:], strict=False))
        assert row["messages"][1] == {"role": "assistant", "content": "OK", "loss": False}  # context, not a target
        single = row["env"] in ("agentgym:babyai", "agentgym:textcraft")
        for message in row["messages"][3::2]:
            parsed = parse_single(message["content"]) if single else parse_last(message["content"])
            assert parsed.action, message["content"]


def test_eval_tasks_never_appear_in_training_data(rows):
    """A held-out single-turn prompt, or a held-out expert episode (every observation), is never a training one.

    Multi-turn tasks are compared as whole episodes: two SciWorld tasks may share a first observation (the starting
    room) yet differ in what the agent later finds, which is what makes them different tasks.
    """
    params = parse_params({"envs": {"sat": {"n_vars": [4, 5], "k": [3, 3], "clause_ratio": 2.0}}})

    def transcript(messages):
        return tuple(m["content"] for m in messages if m["role"] == "user")

    train = {transcript(r["messages"]) for r in rows}
    for name in ALL_ENVS:
        env = build_env(name, params.envs, split="eval")
        # SciWorld starts a JVM per episode (seconds each); its split is disjoint by construction (test_sciworld)
        for task in range(4 if name == "agentgym:sciworld" else 20):
            if hasattr(env, "sample"):
                held_out = (env.sample(task)["prompt"],)
            else:
                held_out = transcript(to_messages(expert_episode(env, task, 50)[0]))
            assert held_out not in train, (name, task)


def test_agenttraj_files_are_read_and_bad_ones_rejected(tmp_path):
    good = tmp_path / "traj.json"
    conversation = [{"from": "human", "value": "do it"}, {"from": "gpt", "value": "Action:\nlook", "loss": True}]
    good.write_text(json.dumps([{"item_id": "alfworld_12", "conversations": conversation}]))
    (row,) = trajectory_examples(good)
    assert row["env"] == "agentgym:alfworld"
    assert row["messages"] == [{"role": "user", "content": "do it"}, {"role": "assistant", "content": "Action:\nlook"}]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"not": "a list"}))
    with pytest.raises(ValueError, match="JSON list"):
        list(trajectory_examples(bad))


def test_expert_episode_ids_are_the_real_servers_data_idx(rows):
    """AgentTraj item ids name the server's task: for SciWorld the real index is not our task id (0, 30, 60, ...)."""
    from affine.collect import real_ids
    from affine.envs.agentgym.sciworld_real import data_idx

    params = parse_params({})
    for name in ("agentgym:babyai", "agentgym:textcraft", "agentgym:sciworld"):
        to_real = real_ids(name, build_env(name, params.envs, split="train") if "sciworld" not in name else None)
        short = name.split(":")[1]
        got = [r["task_id"] for r in rows if r["env"] == name]
        assert got and set(got) <= {f"{short}_{to_real(k)}" for k in range(40)}, (name, got)
    assert real_ids("agentgym:sciworld", None)(1) == data_idx("train", 1) == 30
    assert real_ids("agentgym:webshop", object())(7) == 7  # no map: the id as it is


def test_agenttraj_loss_flag_is_carried_only_when_false():
    """AgentTraj writes ``loss`` on every turn (null for the user's); only an explicit false reaches the message."""
    conversations = [
        {"from": "human", "value": "instructions", "loss": None},
        {"from": "gpt", "value": "OK", "loss": False},
        {"from": "human", "value": "obs"},
        {"from": "gpt", "value": "Action: look", "loss": True},
    ]
    assert to_messages(conversations) == [
        {"role": "user", "content": "instructions"},
        {"role": "assistant", "content": "OK", "loss": False},
        {"role": "user", "content": "obs"},
        {"role": "assistant", "content": "Action: look"},
    ]
