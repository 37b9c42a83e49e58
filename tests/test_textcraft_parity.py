"""TextCraft against the real AgentGym server: replay ``../shared/agentgym-real/textcraft-real-transcripts-0-59.jsonl``.

Each transcript row holds what the real server answered for one task id: the first observation, the replies to an
expert's actions (and to one more step after success) and to probe actions on a fresh reset.  Our env must give the
same goal line, the same recipe tree, distractors from the same pool (the identical set where the pool has at most
10 lines; beyond that the real server's choice follows its hash seed), and the identical feedback, reward and done
for every step.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from affine.envs.agentgym.react import react
from affine.envs.agentgym.textcraft import TextCraft

TRANSCRIPTS = Path(__file__).resolve().parents[1] / ".." / "shared" / "agentgym-real"
TEXTCRAFT = TRANSCRIPTS / "textcraft-real-transcripts-0-59.jsonl"

pytestmark = pytest.mark.skipif(not TEXTCRAFT.exists(), reason=f"{TEXTCRAFT} absent (the real-server transcripts)")


def rows() -> list[dict]:
    return [json.loads(line) for line in TEXTCRAFT.read_text().splitlines() if line.strip()]


def lines(observation: str) -> list[str]:
    return observation.split("\n\n")[0].splitlines()[1:]


def reply(action: str) -> str:
    """What a model would write to make AgentGym's client send ``action`` (an empty one: no Action line at all)."""
    return react("I act.", action) if action else "I am not sure what to do."


def replay(env: TextCraft, steps: list[dict]) -> list[tuple]:
    """(ours, real) per step: observation, env reward, env done."""
    out = []
    for s in steps:
        step = env.step(reply(s["action"]))
        ours = (step.observation, step.info["env_reward"], step.info["env_done"])
        out.append((ours, (s["observation"], s["reward"], s["done"])))
    return out


def test_first_observations_match_the_real_server() -> None:
    env = TextCraft(split="train")
    identical_sets = 0
    for row in rows():
        obs = env.reset(row["task_id"])
        real = row["first_observation"]
        assert obs.startswith("Crafting commands:\n") and obs.splitlines()[-1] == real.splitlines()[-1]
        assert obs.splitlines()[-1] == f"Goal: craft {row['goal']}."
        ours, theirs = lines(obs), lines(real)
        task = env.task
        assert len(ours) == len(theirs) == len(set(ours)), row["task_id"]
        assert task.tree_lines <= set(theirs) and task.tree_lines <= set(ours), row["task_id"]
        assert set(theirs) - task.tree_lines <= task.distractor_pool, row["task_id"]
        assert set(ours) - task.tree_lines <= task.distractor_pool
        if len(task.distractor_pool) <= 10:
            assert set(ours) == set(theirs), row["task_id"]
        identical_sets += set(ours) == set(theirs)
    assert identical_sets >= len(rows()) // 2  # the pool is small for most depth-1 goals


def test_every_step_and_probe_matches_the_real_server() -> None:
    env = TextCraft(split="train")
    checked = 0
    for row in rows():
        env.reset(row["task_id"])
        pairs = replay(env, row["steps"])
        assert env.step(react("done", "inventory")).done  # success ended our episode; the server kept answering
        env.reset(row["task_id"])
        pairs += replay(env, row["probes"])
        for ours, real in pairs:
            assert ours == real, (row["task_id"], ours, real)
        checked += len(pairs)
    assert checked >= 60 * 10


def test_expert_steps_score_like_the_server() -> None:
    """The transcripts' expert sequences end with reward 1 and done: our env ends the episode there with score 1."""
    env = TextCraft(split="train")
    for row in rows()[:20]:
        env.reset(row["task_id"])
        success = [s for s in row["steps"] if s["reward"] == 1]
        for s in row["steps"][: row["steps"].index(success[0]) + 1]:
            step = env.step(reply(s["action"]))
        assert step.done and step.score == 1.0 and step.info["success"]
