"""SciWorld on the real ScienceWorld: the AgentGym server's task list, first observation and step rules, the split,
the gold-path expert, one clear line without Java, and no JVM left behind.  Tests that start a JVM (~1-2 s each) are
skipped, saying why, where the ``scienceworld`` package or Java is absent."""

from __future__ import annotations

import importlib.util
import re
import shutil

import pytest

from affine.config import ParamsError, parse_params
from affine.envs.agentgym import sciworld_real
from affine.envs.agentgym.react import react
from affine.envs.agentgym.sciworld import NO_MATCH, SciWorld
from affine.envs.agentgym.sciworld_real import (
    EngineMissing,
    data_idx,
    num_real_tasks,
    resolve,
    task_types,
)
from affine.envs.base import Shaping
from affine.envs.options import build_env

SH = Shaping()
REAL = importlib.util.find_spec("scienceworld") is not None and shutil.which("java") is not None
needs_real = pytest.mark.skipif(not REAL, reason="the real ScienceWorld needs the scienceworld package and Java")
EXCLUDED = {"5-1", "5-2", "9-1", "9-2", "9-3", "10-1", "10-2"}  # what AgentGym's server leaves out


def act(action: str) -> str:
    return react("thinking", action)


def alive(pid: int) -> bool:
    """A process that exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture(scope="module")
def raw():
    """One plain ``ScienceWorldEnv`` (one JVM) shared by the module's engine-level checks."""
    from scienceworld import ScienceWorldEnv

    env = ScienceWorldEnv()
    yield env
    env.close()


# -- task list and split (no JVM) -------------------------------------------------------------------------------------
def test_split_is_disjoint_interleaved_and_maps_to_real_ids() -> None:
    types = task_types()
    assert len(types) == 23 and num_real_tasks() == 4639
    seen = {"train": set(), "eval": set()}
    for split in seen:
        for task_id in range(23 * 40):
            kind, variation = resolve(split, task_id)
            assert (variation >= kind.test_start) == (split == "eval") and 0 <= variation < kind.variations
            idx = data_idx(split, task_id)
            assert 0 <= idx < num_real_tasks() and idx == kind.offset + variation
            seen[split].add(idx)
        assert {resolve(split, t)[0].name for t in range(23)} == {t.name for t in types}
    assert not seen["train"] & seen["eval"] and len(seen["eval"]) > 500
    assert data_idx("train", 0) == 0 and resolve("train", 23) == (types[0], 1)  # boil variation 1 = real id 1
    with pytest.raises(ValueError, match="task_id"):
        resolve("train", -1)


def test_no_java_stops_with_one_line(monkeypatch) -> None:
    monkeypatch.setattr(sciworld_real.shutil, "which", lambda _: None)
    with pytest.raises(EngineMissing, match="Java 17") as info:
        SciWorld()
    assert "\n" not in str(info.value) and isinstance(info.value, FileNotFoundError)


def test_params_pick_the_real_engine_and_reject_a_simulator() -> None:
    with pytest.raises(ParamsError, match="no simulator"):
        parse_params({"envs": {"agentgym": {"sciworld": {"backend": "simulator"}}}})
    with pytest.raises(ParamsError, match="only for sciworld"):
        parse_params({"envs": {"agentgym": {"babyai": {"backend": "scienceworld"}}}})
    with pytest.raises(ValueError, match="split"):
        SciWorld(split="test")
    if REAL:
        params = parse_params({"envs": {"agentgym": {"sciworld": {"max_turns": 12}}}})
        env = build_env("agentgym:sciworld", params.envs, split="eval")
        assert isinstance(env, SciWorld) and env.max_turns == 12 and env.backend == "scienceworld"


# -- the engine against the real server's construction -------------------------------------------------------------
@needs_real
def test_task_table_is_the_real_servers(raw) -> None:
    kept = [(key, name) for key, name in raw.tasks.items() if key not in EXCLUDED]
    assert [(t.id, t.name) for t in task_types()] == kept
    assert [t.variations for t in task_types()] == [raw.get_max_variations(name) for _, name in kept]
    for kind in (task_types()[0], task_types()[9], task_types()[-1]):
        raw.load(kind.name, 0, "")
        assert list(raw.get_variations_test()) == list(range(kind.test_start, kind.variations))
        assert list(raw.get_variations_dev()) == list(range(kind.dev_start, kind.test_start))


@needs_real
def test_instructions_teach_only_actions_the_engine_parses(raw) -> None:
    line = next(text for text in SciWorld.instructions.split("\n") if text.startswith("open OBJ"))
    forms = [re.sub(r" \(.*\)$", "", form.strip()) for form in line.split("|")]
    assert len(forms) == 26 and "use OBJ on OBJ" in forms and "put down OBJ" in forms
    raw.load("boil", 0, "")
    raw.step("look around")  # the hallway: a picture, air, closed doors
    for form in forms:
        action = form.replace("OBJ", "picture", 1).replace("OBJ", "air").replace("LOC", "kitchen")
        assert raw.step(action)[0] != NO_MATCH, action
    assert raw.step("use picture")[0] == NO_MATCH  # why "use OBJ" alone is not taught


@needs_real
def test_first_observation_and_steps_are_the_servers() -> None:
    """What the AgentGym server would send (wrapper ``load``/``step``) equals what our env shows."""
    from scienceworld import ScienceWorldEnv

    env, raw = SciWorld(split="eval"), ScienceWorldEnv()  # a fresh JVM on both sides, as on the server's first reset
    try:
        kind, variation = resolve("eval", 11)
        first = env.reset(11)
        raw.load(kind.name, variation)
        look, _, _, _ = raw.step("look around")
        assert first == raw.get_task_description() + "\n" + look
        assert kind.name == "find-living-thing" and first.startswith("Your task is to find a(n) living thing")
        for action in ["look at door to kitchen", "open door to kitchen", "go to kitchen", "fly to the moon", "0"]:
            ours = env.step(act(action))
            theirs, _, done, info = raw.step(action)
            assert (ours.observation, ours.score, ours.done) == (theirs, info["score"], done)
    finally:
        env.close()
        raw.close()


# -- episodes ---------------------------------------------------------------------------------------------------------
@needs_real
def test_expert_solves_and_every_jvm_is_closed() -> None:
    env = SciWorld(split="train")
    pids = []
    for task_id in (11,):  # find-living-thing: a short gold path
        env.reset(task_id)
        pids.append(env.engine.pid)
        assert env.expert_covers()
        while not (step := env.step(env.expert_reply())).done:
            assert alive(pids[-1])
        assert step.score == 100 and step.info["success"] and step.info["turn"] <= 30
        assert step.info["data_idx"] == data_idx("train", task_id)
        assert env.engine.closed and not alive(pids[-1])
    assert env.step(act("look around")).done  # after the end: no JVM, no crash


@needs_real
def test_malformed_replies_wrong_focus_and_penalties() -> None:
    env = SciWorld(split="train")
    env.reset(11)
    for reply in ["hello, no action here", "Action:", act("fly to the moon")]:
        step = env.step(reply)  # AgentGym's client sends "" when there is no action; the engine rejects it
        assert step.observation == NO_MATCH and not step.info["valid"]
        assert step.reward == pytest.approx(SH.invalid_penalty) and step.score == 0
    step = env.step(act("focus on air"))  # air is no living thing: the task fails
    assert step.done and step.score < 0 and not step.info["success"]
    assert step.reward == pytest.approx(-SH.completion)
    assert env.engine.closed


@needs_real
def test_truncation_closes_the_jvm_and_expert_rejoins_after_a_detour() -> None:
    env = SciWorld(split="eval", max_turns=3)
    first = env.reset(7)
    unfinished = env.engine.pid
    assert env.reset(7) == first  # a fresh JVM draws the same world again; the unfinished episode's JVM is gone
    pid = env.engine.pid
    assert pid != unfinished and not alive(unfinished)
    env.step(act("look around"))  # a detour first: the expert replays it before generating the gold path
    reply = env.expert_reply()
    assert "Action:\n" in reply and env.history == ["look around"]
    env.step(reply)
    step = env.step(act("inventory"))
    assert step.done and step.info["truncated"] and not step.info["success"]
    assert step.reward == pytest.approx(SH.timeout_penalty)
    assert not alive(pid)
    with pytest.raises(RuntimeError):
        env.expert_covers()


def test_before_reset() -> None:
    if not REAL:
        pytest.skip("the real ScienceWorld needs the scienceworld package and Java")
    env = SciWorld()
    assert env.step(act("look around")).done
    with pytest.raises(RuntimeError):
        env.expert_reply()
    assert env.engine is None
