"""The horizon curriculum (``rl.horizon_schedule``, ScalingInter-RL): validation, the schedule itself, what the loop
plays and logs under it, and a resumed run landing on the same horizon as an uninterrupted one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_rl_learning import bandit_params
from test_rollout import Countdown

from affine.config import HorizonStep, ParamsError, parse_params
from affine.rl import loop
from affine.rl.ppo import train_rl

SCHEDULE = [{"iteration": 0, "max_turns": 1}, {"iteration": 2, "max_turns": 3}]


def steps(*pairs: tuple[int, int]) -> list[HorizonStep]:
    return [HorizonStep(iteration=i, max_turns=t) for i, t in pairs]


def test_horizon_at_follows_the_steps_and_defaults_without_a_schedule() -> None:
    schedule = steps((0, 4), (3, 6), (5, 10))
    assert [loop.horizon_at(schedule, i, 50) for i in range(8)] == [4, 4, 4, 6, 6, 10, 10, 10]
    assert loop.horizon_at([], 7, 50) == 50


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        ([{"iteration": 1, "max_turns": 4}], "must start at iteration 0, not 1"),
        ([{"iteration": 0, "max_turns": 4}, {"iteration": 0, "max_turns": 6}], "iterations must increase: 0 then 0"),
        ([{"iteration": 0, "max_turns": 6}, {"iteration": 2, "max_turns": 4}], "must not shrink: 6 then 4"),
        ([{"iteration": 0, "max_turns": 60}], "max_turns 60 is over max_episode_length 50"),
        ([{"iteration": 0, "max_turns": 0}], "rl.horizon_schedule.0.max_turns: Input should be greater than"),
        ([{"iteration": -1, "max_turns": 3}], "rl.horizon_schedule.0.iteration: Input should be greater than"),
        ([{"iteration": 0, "turns": 3}], "rl.horizon_schedule.0.turns: unknown key"),
        ([[0, 4]], "rl.horizon_schedule.0"),
        ("4", "rl.horizon_schedule"),
    ],
)
def test_bad_schedules_stop_with_one_line(schedule: object, expected: str) -> None:
    with pytest.raises(ParamsError) as info:
        parse_params({"rl": {"max_episode_length": 50, "horizon_schedule": schedule}})
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_a_valid_schedule_parses() -> None:
    rl = parse_params({"rl": {"max_episode_length": 8, "horizon_schedule": SCHEDULE}}).rl
    assert [(s.iteration, s.max_turns) for s in rl.horizon_schedule] == [(0, 1), (2, 3)]
    assert parse_params({}).rl.horizon_schedule == []


def countdown_params(iterations: int, **rl: object) -> object:
    return bandit_params(
        "ppo",
        iterations,
        environments=["toy:countdown"],
        rollout_batch_size=2,
        minibatch_size=2,
        max_new_tokens=2,
        max_episode_length=5,
        horizon_schedule=[HorizonStep(**s) for s in SCHEDULE],
        **rl,
    )


def countdown(name: str, difficulty: int | None) -> Countdown:
    return Countdown()  # random task ids: thousands of steps to go, so the horizon always cuts the episode


def test_the_loop_plays_logs_and_resumes_the_scheduled_horizon(tiny_model_dir: str, tmp_path: Path) -> None:
    one = tmp_path / "a"
    straight = train_rl(countdown_params(3), tiny_model_dir, one, one / "m", env_factory=countdown)
    assert [h["max_turns"] for h in straight] == [1.0, 1.0, 3.0]
    assert [h["turns_mean"] for h in straight] == [1.0, 1.0, 3.0]  # what was played, not only what was logged
    summary = json.loads((one / "m" / "metrics.json").read_text())
    for key in ("max_turns", "approx_kl", "clip_frac", "explained_variance", "tokens_per_s", "kl_ref"):
        assert key in summary, key
    assert summary["success"]["toy_countdown"] == 0.0 and "toy_countdown" in summary["score"]
    assert (one / "m" / "plots" / "metrics" / "max_turns.tsv").read_text().count("\n") == 1 + 3
    # killed after iteration 2: the resumed run plays iteration 3 at the scheduled horizon
    parts = tmp_path / "b"
    train_rl(countdown_params(2), tiny_model_dir, parts, parts / "m", env_factory=countdown)
    state = json.loads((parts / "checkpoints" / "iter-000002" / "state.json").read_text())
    assert state["max_turns"] == 3  # the horizon the next iteration plays, recorded for a reader
    rest = train_rl(countdown_params(3), tiny_model_dir, parts, parts / "m", env_factory=countdown)
    assert [h["iteration"] for h in rest] == [3] and rest[0]["max_turns"] == 3.0
    assert rest[0]["return_mean"] == pytest.approx(straight[2]["return_mean"])
    assert rest[0]["policy_loss"] == pytest.approx(straight[2]["policy_loss"], rel=1e-4, abs=1e-6)
