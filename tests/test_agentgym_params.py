"""``envs.agentgym.<env>`` params: the real-server backend's round limits and ``instructions_file`` in every stage."""

from __future__ import annotations

import logging
import sys
import types
from pathlib import Path

import pytest
from agentgym_fake import serve, walk_route

from affine.collect import agentgym_examples
from affine.config import ParamsError, parse_params
from affine.envs import options
from affine.envs.agentgym.http import HTTPEnv
from affine.envs.options import build_env
from affine.rl.loop import make_train_env
from affine.rollout import opening


def _envs(agentgym: dict) -> object:
    return parse_params({"envs": {"agentgym": agentgym}}).envs


def test_agentgym_backend_uses_agentgyms_round_limit_unless_set() -> None:
    env = build_env("agentgym:babyai", _envs({"babyai": {"backend": "agentgym"}}), split="eval")
    assert isinstance(env, HTTPEnv) and env.max_turns == 20 and env.client.server_url == "http://127.0.0.1:36001"
    env = build_env("agentgym:webshop", _envs({"webshop": {"backend": "agentgym", "max_turns": 30}}), split="eval")
    assert env.max_turns == 30 and env.split == "eval"  # the validator's 30 rounds


@pytest.mark.parametrize(
    ("agentgym", "message"),
    [
        ({"babyia": {}}, "unknown env babyia"),
        ({"babyai": {"server_url": "localhost:36001"}}, "envs.agentgym.babyai.server_url"),
        ({"babyai": {"max_turns": 0}}, "envs.agentgym.babyai.max_turns"),
        ({"babyai": {"instructions_file": ""}}, "envs.agentgym.babyai.instructions_file"),
        ({"babyai": {"instrucions_file": "x.txt"}}, "unknown key"),
    ],
)
def test_bad_agentgym_params_are_one_line(agentgym: dict, message: str) -> None:
    with pytest.raises(ParamsError, match=message) as info:
        parse_params({"envs": {"agentgym": agentgym}})
    assert "\n" not in str(info.value)


def test_instructions_file_reaches_collect_rl_and_evaluate(tmp_path: Path) -> None:
    text = "Custom instructions.\nAct with `Action: <command>`.\n"
    path = tmp_path / "alfworld.txt"
    path.write_text(text)
    params = parse_params(
        {
            "envs": {"agentgym": {"alfworld": {"instructions_file": str(path)}}},
            "collect": {"agentgym": {"num_episodes": 1, "environments": ["agentgym:alfworld"]}},
        }
    )
    row = next(agentgym_examples("agentgym:alfworld", 1, params))  # SFT data
    assert row["messages"][0] == {"role": "user", "content": text}
    assert make_train_env("agentgym:alfworld", None, params.envs).instructions == text  # RL
    _, messages = opening(build_env("agentgym:alfworld", params.envs, split="eval"), 0)  # evaluation
    assert messages[0] == {"role": "user", "content": text}
    default = build_env("agentgym:alfworld", parse_params({}).envs, split="eval").instructions
    assert default != text  # without the param the env keeps its own text


def test_instructions_file_also_replaces_the_real_servers_prompt(tmp_path: Path) -> None:
    path = tmp_path / "sciworld.md"
    path.write_text("Prompt the evaluator sends.")
    envs = _envs({"sciworld": {"backend": "agentgym", "instructions_file": str(path)}})
    assert build_env("agentgym:sciworld", envs, split="eval").instructions == "Prompt the evaluator sends."


@pytest.mark.parametrize(("content", "message"), [(None, "cannot read"), ("  \n", "is empty"), (b"\xff\xfe", "cannot")])
def test_a_bad_instructions_file_is_one_clear_error(tmp_path: Path, content: str | bytes | None, message: str) -> None:
    path = tmp_path / "instructions.txt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    envs = _envs({"webshop": {"instructions_file": str(path)}})
    with pytest.raises(ValueError, match=message) as info:
        build_env("agentgym:webshop", envs, split="train")
    assert str(info.value).startswith("envs.agentgym.webshop.instructions_file: ") and "\n" not in str(info.value)


def test_real_server_ids_follow_the_env_modules_split_map(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Eval ids must reach the server as the held-out real ids the local env uses, never as training ids."""
    held_out = types.SimpleNamespace(server_task_id=lambda split, k: k + 100 if split == "eval" else k)
    route = walk_route()
    for url, server in serve(route):
        envs = _envs({"babyai": {"backend": "agentgym", "server_url": url}})
        monkeypatch.setitem(sys.modules, "affine.envs.agentgym.babyai", held_out)
        with build_env("agentgym:babyai", envs, split="eval") as env:
            env.reset(3)
            assert server.bodies[-1] == {"id": 0, "data_idx": 103} and env.server_task_id == 103
        with build_env("agentgym:babyai", envs, split="train") as env:
            env.reset(3)
            assert server.bodies[-1]["data_idx"] == 3
        monkeypatch.setitem(sys.modules, "affine.envs.agentgym.babyai", types.SimpleNamespace())
        monkeypatch.setattr(options, "make", lambda name, **kw: types.SimpleNamespace())  # a local env without data_idx
        monkeypatch.setattr(options, "_WARNED", set())
        with caplog.at_level(logging.WARNING, logger="affine.envs.options"):
            with build_env("agentgym:babyai", envs, split="eval") as env:
                env.reset(3)
                build_env("agentgym:babyai", envs, split="eval")
        assert [b for b in server.bodies if "data_idx" in b][-1]["data_idx"] == 3
        assert [r.message for r in caplog.records].count(
            "agentgym:babyai: no task id map (server_task_id or data_idx), eval task ids go to the server as given"
        ) == 1


@pytest.mark.parametrize("short", ["babyai", "textcraft", "sciworld"])
def test_real_server_eval_ids_are_the_local_envs_held_out_real_ids(short: str) -> None:
    """The real modules' maps: a real server gets the ``data_idx`` our local env plays for the same id and split."""
    from affine.envs.agentgym.sciworld_real import data_idx as sciworld_idx
    from affine.envs.base import make

    for split in ("train", "eval"):
        task_map = options.server_task_map(short, split)
        assert task_map is not None
        if short == "sciworld":  # a local SciWorld starts a JVM on reset; its module's map is the same function
            expected = [sciworld_idx(split, k) for k in range(5)]
        else:
            expected = [make(f"agentgym:{short}", split=split).data_idx(k) for k in range(5)]
        assert [task_map(k) for k in range(5)] == expected
    # the ids the train split plays (TextCraft: its task_ids, which skip the held-out real ids) never meet eval's
    played = (
        range(200) if short == "sciworld" else getattr(make(f"agentgym:{short}", split="train"), "task_ids", range(200))
    )
    train = {options.server_task_map(short, "train")(k) for k in played}
    assert not train & {options.server_task_map(short, "eval")(k) for k in range(200)}


def test_unset_backend_and_difficulty_are_the_envs_own() -> None:
    """An entry that sets only ``max_turns`` must not change the env: its local engine and default difficulty stay
    (TextCraft keeps every goal depth; a default of 1 would have narrowed it to depth-1 goals, also on a server)."""
    from affine.envs.agentgym.textcraft import MAX_DEPTH

    envs = _envs({"textcraft": {"max_turns": 10}, "babyai": {}})
    assert envs.agentgym["textcraft"].backend is None and envs.agentgym["textcraft"].difficulty is None
    env = build_env("agentgym:textcraft", envs, split="eval")
    assert env.max_turns == 10 and env.depth == MAX_DEPTH
    assert env.task_ids == build_env("agentgym:textcraft", _envs({}), split="eval").task_ids
    served = _envs({"textcraft": {"backend": "agentgym"}})
    assert options.server_task_map("textcraft", "eval", served.agentgym["textcraft"].difficulty)(3) == env.data_idx(3)
    assert build_env("agentgym:babyai", envs, split="train").difficulty == 1
    with pytest.raises(ParamsError, match="no simulator"):
        _envs({"sciworld": {"backend": "simulator"}})
    with pytest.raises(ParamsError, match="scienceworld is only for sciworld"):
        _envs({"babyai": {"backend": "scienceworld"}})
