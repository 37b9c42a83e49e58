"""affine.tools.episodes on episodes played by the real engines (BabyAI minigrid, TextCraft), and on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from affine.config import EnvsParams
from affine.envs.options import build_env
from affine.rollout import play
from affine.tools.episodes import NO_ACTION, action_of, main, read_rows, summarize


def _stubborn(action: str):
    return lambda env, messages, challenge: f"Thought: I will do it.\nAction: {action}"


def _rows(env_name: str, policy, tasks: list[int], max_turns: int) -> list[dict]:
    """Episodes played as evaluate plays them, written as evaluate writes them."""
    envs = [(build_env(env_name, EnvsParams(), split="eval"), k) for k in tasks]
    episodes = play(None, None, envs, max_new_tokens=8, temperature=0.0, max_turns=max_turns, policy=policy)
    return [{"env": env_name, "task_id": e.task_id, "episode": e.messages, "turns": e.turns, "success": e.success,
             "score": e.score} for e in episodes]  # fmt: skip


def _expert(env, messages, challenge) -> str:
    return env.expert_reply()


def test_loops_of_rejected_actions_are_counted_on_real_engines(tmp_path: Path) -> None:
    rows = _rows("agentgym:babyai", _expert, [0, 1], 20)
    rows += _rows("agentgym:babyai", _stubborn("go to purple unicorn"), [2, 3], 5)
    rows += _rows("agentgym:textcraft", _stubborn("look around"), [0], 4)
    rows.append({"env": "affine:sat", "task_id": 0, "prompt": "p", "reply": "r", "score": 1.0})
    path = tmp_path / "rl.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")

    got = summarize(read_rows([path]), loop=3)
    babyai, textcraft, sat = got["agentgym:babyai"], got["agentgym:textcraft"], got["affine:sat"]
    assert (babyai.episodes, babyai.successes, babyai.failures) == (4, 2, 2)
    assert babyai.looping_failures == 2 and babyai.top_failure_actions == [("go to purple unicorn", 2)]
    # every answer to the unlisted action is BabyAI's rejection; the expert's listed actions are never rejected
    stubborn_answers = sum(len([m for m in r["episode"] if m["role"] == "user"]) - 2 for r in rows[2:4])
    assert babyai.rejected_turns == stubborn_answers >= 8
    assert textcraft.rejected_turns >= 3 and textcraft.looping_failures == 1  # "Could not execute look around"
    assert (sat.episodes, sat.successes, sat.single_turn) == (1, 1, 1)


def test_a_failure_that_varies_its_actions_is_not_a_loop() -> None:
    def wander(env, messages, challenge) -> str:
        return f"Action: {('turn left', 'turn right', 'move forward')[len(messages) % 3]}"

    rows = _rows("agentgym:babyai", wander, [5], 6)
    reading = summarize(rows, loop=3)["agentgym:babyai"]
    assert reading.failures == 1 and reading.looping_failures == 0 and reading.rejected_turns == 0


def test_action_of_reads_the_last_action_line() -> None:
    assert action_of("Thought: x\nAction: go to red ball 1\n") == "go to red ball 1"
    assert action_of("Action: a\nAction: b") == "b"
    assert action_of("Thought: nothing") == NO_ACTION and action_of("Action:   ") == NO_ACTION


def test_bad_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(tmp_path / "absent.jsonl")]) == 2
    assert capsys.readouterr().err.strip().endswith("no such file (evaluate writes data/eval/<model>.jsonl)")
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"env": "x", "score": 0}\n{not json\n', encoding="utf-8")
    assert main([str(broken)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {broken}:2: not JSON") and "\n" not in err
    broken.write_text("[1, 2]\n", encoding="utf-8")
    assert main([str(broken)]) == 2 and "not an evaluate sample" in capsys.readouterr().err
    assert main([str(broken), "--loop", "1"]) == 2


def test_cli_writes_table_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "sft.jsonl"
    rows = _rows("agentgym:babyai", _stubborn("pick up the moon"), [7], 4)
    path.write_text(json.dumps(rows[0]) + "\n", encoding="utf-8")
    out = tmp_path / "reading.json"
    assert main([str(path), "--json", str(out)]) == 0
    table = capsys.readouterr().out
    assert "| agentgym:babyai | 1 | 0 | 4.0 |" in table and "'pick up the moon' x1" in table
    saved = json.loads(out.read_text())["agentgym:babyai"]
    assert (
        saved["failures"] == 1
        and saved["looping_failures"] == 1
        and saved["top_failure_actions"] == [["pick up the moon", 1]]
    )
