"""The AgentGym HTTP client against small stdlib servers that speak AgentGym's protocols, on 127.0.0.1 only."""

from __future__ import annotations

import gc
import socket
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
from agentgym_fake import Route, Walk, serve, walk_route

from affine.envs.agentgym.http import AgentGymResponseError, HTTPEnv, ServerUnavailable
from affine.envs.agentgym.react import MULTIPLE_ACTIONS, react
from affine.envs.base import Shaping


@pytest.fixture
def walk_server() -> Iterator[tuple[str, Any]]:
    route = walk_route()
    for url, server in serve(route):
        server.walk = route
        yield url, server


def test_full_episode_through_the_client(walk_server: tuple[str, Any]) -> None:
    url, server = walk_server
    remote, local = HTTPEnv(env="babyai", server_url=url, backoff_s=0.01), Walk()
    assert remote.name == "agentgym:babyai" and remote.max_turns == 20
    assert remote.reset(5) == local.reset(5)
    step = None
    while not remote.done:
        reply = local.expert_reply()  # the local twin plans; the server executes
        step, twin = remote.step(reply), local.step(reply)
        assert step.observation == twin.observation and step.done == twin.done and step.score == twin.score
        assert step.info["valid"]
    assert step is not None and step.info["success"] and step.score == pytest.approx(0.6) and step.info["turn"] == 4
    assert step.reward == pytest.approx(step.score)  # the score jumps from 0 on the last step
    assert remote.client.retried == 0
    assert remote.reset(6).startswith("Your goal: reach cell 2")  # one server instance serves every reset
    remote.close()
    assert server.walk.created == [0] and server.walk.closed == [0]
    assert remote.client.created == remote.client.closed == 1


def test_server_down_is_one_clear_error_after_retries() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = HTTPEnv(env="textcraft", server_url=f"http://127.0.0.1:{port}", retries=3, timeout_s=2, backoff_s=0.01)
    with pytest.raises(ServerUnavailable) as info:
        env.reset(0)
    assert isinstance(info.value, ConnectionError)
    message = str(info.value)
    assert "\n" not in message and f"127.0.0.1:{port}" in message and "3 attempts" in message
    assert env.client.attempts == 3 and env.client.retried == 2


def test_transient_failures_are_retried(walk_server: tuple[str, Any]) -> None:
    url, server = walk_server
    server.fail_next = 2
    env = HTTPEnv(env="babyai", server_url=url, retries=3, backoff_s=0.01)
    assert env.reset(0).startswith("Your goal: reach cell 2")
    assert env.client.retried == 2 and env.client.attempts == 4  # create: 3 tries; reset: 1


def test_a_timed_out_step_is_not_sent_twice() -> None:
    def slow(call: str, body: dict[str, Any]) -> Any:
        if call == "POST /step":
            time.sleep(0.5)
        return {"id": 0, "observation": "Goal: craft a stick.", "reward": 0, "done": False}

    for url, server in serve(slow):
        env = HTTPEnv(env="textcraft", server_url=url, timeout_s=0.2, retries=3, backoff_s=0.01)
        env.reset(0)
        with pytest.raises(ServerUnavailable, match="after 1 attempts"):
            env.step("Action: get 1 oak log")
        assert [path for _, path in server.requests].count("/step") == 1


def test_error_payloads_raise_value_errors(walk_server: tuple[str, Any]) -> None:
    url, _ = walk_server
    env = HTTPEnv(env="babyai", server_url=url, backoff_s=0.01)
    env.reset(0)
    env.client.env_id = 999
    with pytest.raises(AgentGymResponseError, match="999 is not valid") as info:
        env.step("Action: turn left")
    assert isinstance(info.value, ValueError)


def test_a_reply_without_action_is_sent_empty_and_the_server_answers(walk_server: tuple[str, Any]) -> None:
    url, server = walk_server
    shaping = Shaping()
    env = HTTPEnv(env="babyai", server_url=url, backoff_s=0.01, shaping=shaping, max_turns=2)
    env.reset(0)
    step = env.step("no action here")  # as AgentGym's client: the empty action goes to the server
    assert server.bodies[-1] == {"id": 0, "action": ""}
    assert step.observation == "No change in state." and not step.info["valid"] and not step.done
    assert step.info["action"] == "" and step.reward == pytest.approx(shaping.invalid_penalty)
    step = env.step("Action: go to the moon 1")  # the server rejects it: invalid, and the turn budget is spent
    assert step.observation.startswith("The action is not recognized") and not step.info["valid"]
    assert step.done and step.reward == pytest.approx(shaping.invalid_penalty + shaping.timeout_penalty)


def test_several_actions_get_agentgyms_error_and_never_reach_the_server(walk_server: tuple[str, Any]) -> None:
    url, server = walk_server
    env = HTTPEnv(env="babyai", server_url=url, backoff_s=0.01)
    env.reset(0)
    before = len(server.requests)
    step = env.step("Action: move forward\nAction: move forward")
    assert len(server.requests) == before
    assert (
        step.observation
        == MULTIPLE_ACTIONS
        == "Error: Only one 'Action' is allowed per response. Please adjust your response."
    )
    assert step.score == 0 and not step.done and not step.info["valid"] and step.info["turn"] == 1


def test_single_style_actions_are_cleaned_as_agentgym_does(walk_server: tuple[str, Any]) -> None:
    url, server = walk_server
    env = HTTPEnv(env="babyai", server_url=url, backoff_s=0.01)
    env.reset(0)
    env.step("Thought:\nahead.\n\nAction:\n  move   forward!!  \nmore text")
    assert server.bodies[-1] == {"id": 0, "action": "move forward"}


@pytest.mark.parametrize(
    ("env", "reply", "sent"),
    [
        ("sciworld", "I will just look.", ""),  # no Action: → the empty action
        ("sciworld", "Thought:\nx\n\nAction: open door\nAction:\n look around \n", "look around"),  # the last
        ("alfworld", "Thought:\nx\n\nAction:\n", ""),
        ("webshop", "search[red shoes]", "search[red shoes]"),  # WebShop: a bare search/click is the action
        ("webshop", "I think so.", ""),
    ],
)
def test_last_style_actions_as_agentgym_sends_them(env: str, reply: str, sent: str) -> None:
    for url, server in serve(_scripted(env)):
        client_env = HTTPEnv(env=env, server_url=url, backoff_s=0.01)
        client_env.reset(0)
        step = client_env.step(reply)
        assert server.bodies[-1]["action"] == sent and step.info["action"] == sent
        if sent == "":
            assert not step.info["valid"]  # an empty action is never a valid move


def test_round_limits_default_to_agentgyms_and_are_a_param() -> None:
    limits = {env: HTTPEnv(env=env, server_url="http://127.0.0.1:9").max_turns for env in
              ("webshop", "alfworld", "textcraft", "sciworld", "babyai")}  # fmt: skip
    assert limits == {"webshop": 10, "alfworld": 30, "textcraft": 20, "sciworld": 30, "babyai": 20}
    assert HTTPEnv(env="babyai", max_turns=30).max_turns == 30  # the validator's limit
    with pytest.raises(ValueError, match="max_turns must be >= 1"):
        HTTPEnv(env="babyai", max_turns=0)


def test_every_created_instance_is_closed(walk_server: tuple[str, Any]) -> None:
    url, server = walk_server
    with HTTPEnv(env="babyai", server_url=url, backoff_s=0.01) as env:
        env.reset(0)
        env.step(react("go", "move forward"))
    assert server.walk.closed == [0]
    dropped = HTTPEnv(env="babyai", server_url=url, backoff_s=0.01)  # never closed by hand: freed when collected
    dropped.reset(1)
    del dropped
    gc.collect()
    assert server.walk.created == [0, 1] and server.walk.closed == [0, 1]
    idle = HTTPEnv(env="babyai", server_url=url)
    idle.close()  # nothing was created: nothing is sent
    assert (
        server.walk.created == [0, 1] and [r for r in server.requests if r[1] == "/close"] == [("POST", "/close")] * 2
    )


def test_closing_when_the_server_is_gone_does_not_stall_or_raise() -> None:
    route = walk_route()
    for url, _ in serve(route):
        env = HTTPEnv(env="babyai", server_url=url, backoff_s=5.0, retries=3, timeout_s=1)
        env.reset(0)
    start = time.perf_counter()
    del env  # the server has stopped: one quiet try, no backoff
    gc.collect()
    assert time.perf_counter() - start < 3


def test_reset_of_a_bad_task_id_is_a_value_error(walk_server: tuple[str, Any]) -> None:
    url, _ = walk_server
    env = HTTPEnv(env="babyai", server_url=url, backoff_s=0.01)
    with pytest.raises(AgentGymResponseError, match="out of range"):
        env.reset(5000)


def test_no_expert() -> None:
    env = HTTPEnv(env="webshop", server_url="http://127.0.0.1:9")
    with pytest.raises(NotImplementedError, match="no expert"):
        env.expert_reply()
    with pytest.raises(ValueError, match="unknown AgentGym env"):
        HTTPEnv(env="minecraft")


def _scripted(env: str) -> Route:
    """Canned answers with each server's own field names."""

    def route(call: str, body: dict[str, Any]) -> Any:
        method, path = call.split(" ", 1)
        if path == "/create":
            return 7 if env == "webshop" else {"id": 7, "observation": "Crafting commands: ..."}
        if path == "/reset":
            return {
                "webshop": [None, None],
                "sciworld": {"task_description": "Your task is to boil water.", "observation": "In the kitchen."},
                "alfworld": {"observation": "You are in a room.", "available_actions": ["look", "go to desk 1"]},
            }[env]
        if method == "GET" and path.startswith("/observation"):
            query = urllib.parse.parse_qs(urllib.parse.urlparse(path).query)
            return f"WebShop [SEP] Search (env {query['env_idx'][0]})"
        return {
            "webshop": {"state": "Thank you for shopping", "reward": 0.75, "done": True, "info": None},
            "sciworld": {"observation": "The water boils.", "reward": 100, "score": 100, "done": True},
            "alfworld": {"observation": "Nothing happened.", "reward": 0, "done": False, "available_actions": ["look"]},
        }[env]  # fmt: skip

    return route


@pytest.mark.parametrize("env", ["webshop", "sciworld", "alfworld"])
def test_per_env_field_names(env: str) -> None:
    for url, server in serve(_scripted(env)):
        client_env = HTTPEnv(env=env, server_url=url, backoff_s=0.01)
        first = client_env.reset(3)
        step = client_env.step("Thought:\nok\n\nAction:\nclick[Buy Now]")
        create, reset, *_ = server.bodies
        id_field = "env_idx" if env == "webshop" else "id"
        task_field = {"webshop": "session_id", "sciworld": "data_idx", "alfworld": "game"}[env]
        assert reset == {id_field: 7, task_field: 3, **({"world_type": "Text"} if env == "alfworld" else {})}
        assert server.bodies[-1] == {id_field: 7, "action": "click[Buy Now]"}
        if env == "webshop":
            assert first == "WebShop [SEP] Search (env 7)" and step.score == 0.75 and step.done
            assert not step.info["success"] and step.reward == pytest.approx(0.75)
        elif env == "sciworld":
            assert first == "Your task is to boil water.\nIn the kitchen."
            assert step.score == 100 and step.info["success"] and step.reward == pytest.approx(1.0)
        else:
            assert first.endswith("AVAILABLE ACTIONS: look,go to desk 1")
            assert not step.info["valid"] and step.observation == "Nothing happened."  # the list is first-turn only
