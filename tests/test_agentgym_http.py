"""The AgentGym HTTP client against small stdlib servers that speak AgentGym's protocols, on 127.0.0.1 only."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from affine.envs.agentgym.http import AgentGymResponseError, HTTPEnv, ServerUnavailable
from affine.envs.base import Shaping

Route = Callable[[str, dict[str, Any]], Any]


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:  # keep pytest output clean
        pass

    def _answer(self, method: str) -> None:
        server: Any = self.server
        server.requests.append((method, self.path))
        if server.fail_next > 0:  # a transient failure, as a restarting uvicorn gives
            server.fail_next -= 1
            self.send_error(503)
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}") if length else {}
        server.bodies.append(body)
        payload = json.dumps(server.route(f"{method} {self.path}", body)).encode()
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (the timeout test)
            pass

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        self._answer("POST")

    def do_GET(self) -> None:  # noqa: N802
        self._answer("GET")


def _serve(route: Route) -> Iterator[tuple[str, Any]]:
    server: Any = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.route, server.requests, server.bodies, server.fail_next = route, [], [], 0
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server
    finally:
        server.shutdown()
        server.server_close()


def _babyai_route() -> Route:
    """AgentGym's BabyAI server protocol, backed by our own BabyAI env (one instance per created id)."""
    from affine.envs.agentgym.babyai import BabyAI

    envs: dict[int, BabyAI] = {}
    lock = threading.Lock()

    def route(call: str, body: dict[str, Any]) -> Any:
        with lock:
            if call == "POST /create":
                envs[len(envs)] = BabyAI()
                return {"id": len(envs) - 1}
            env = envs.get(body.get("id", -1))
            if env is None:
                return {"error": f"The id {body.get('id')} is not valid."}
            if call == "POST /reset":
                observation = env.reset(body["data_idx"])
                return {"observation": observation, "reward": 0, "score": 0, "done": False}
            if call == "POST /step":
                if env.done:
                    return {"error": f"The task with environment {body['id']} has finished."}
                step = env.step(f"Action: {body['action']}")
                return {"observation": step.observation, "reward": step.score, "score": step.score, "done": step.done}
            return {"error": f"no route {call}"}

    return route


@pytest.fixture
def babyai_server() -> Iterator[tuple[str, Any]]:
    pytest.importorskip("minigrid")
    yield from _serve(_babyai_route())


def test_full_episode_through_the_client(babyai_server: tuple[str, Any]) -> None:
    from affine.envs.agentgym.babyai import INSTRUCTIONS, BabyAI

    url, _ = babyai_server
    remote, local = HTTPEnv(env="babyai", server_url=url, backoff_s=0.01), BabyAI()
    assert remote.name == "agentgym:babyai" and remote.max_turns == 20 and remote.instructions == INSTRUCTIONS
    assert remote.reset(5) == local.reset(5)
    step = None
    while not remote.done:
        reply = local.expert_reply()  # the local twin plans; the server executes
        step, twin = remote.step(reply), local.step(reply)
        assert step.observation == twin.observation and step.done == twin.done and step.score == twin.score
        assert step.info["valid"]
    assert step is not None and step.info["success"] and 0 < step.score <= 1
    assert step.reward == pytest.approx(step.score)  # the score jumps from 0 on the last step
    assert remote.client.retried == 0


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


def test_transient_failures_are_retried(babyai_server: tuple[str, Any]) -> None:
    url, server = babyai_server
    server.fail_next = 2
    env = HTTPEnv(env="babyai", server_url=url, retries=3, backoff_s=0.01)
    assert env.reset(0).startswith("Your goal: ")
    assert env.client.retried == 2 and env.client.attempts == 4  # create: 3 tries; reset: 1


def test_a_timed_out_step_is_not_sent_twice() -> None:
    def slow(call: str, body: dict[str, Any]) -> Any:
        if call == "POST /step":
            time.sleep(0.5)
        return {"id": 0, "observation": "Goal: craft a stick.", "reward": 0, "done": False}

    for url, server in _serve(slow):
        env = HTTPEnv(env="textcraft", server_url=url, timeout_s=0.2, retries=3, backoff_s=0.01)
        env.reset(0)
        with pytest.raises(ServerUnavailable, match="after 1 attempts"):
            env.step("Action: get 1 oak log")
        assert [path for _, path in server.requests].count("/step") == 1


def test_error_payloads_raise_value_errors(babyai_server: tuple[str, Any]) -> None:
    url, _ = babyai_server
    env = HTTPEnv(env="babyai", server_url=url, backoff_s=0.01)
    env.reset(0)
    env.client.env_id = 999
    with pytest.raises(AgentGymResponseError, match="999 is not valid") as info:
        env.step("Action: turn left")
    assert isinstance(info.value, ValueError)


def test_unparseable_reply_never_reaches_the_server(babyai_server: tuple[str, Any]) -> None:
    url, server = babyai_server
    shaping = Shaping()
    env = HTTPEnv(env="babyai", server_url=url, backoff_s=0.01, shaping=shaping, max_turns=2)
    env.reset(0)
    before = len(server.requests)
    step = env.step("no action here")
    assert len(server.requests) == before
    assert step.observation == "Invalid Action." and not step.info["valid"] and not step.done
    assert step.reward == pytest.approx(shaping.invalid_penalty)
    step = env.step("Action: go to the moon 1")  # the server rejects it: invalid, and the turn budget is spent
    assert step.observation.startswith("The action is not recognized") and not step.info["valid"]
    assert step.done and step.reward == pytest.approx(shaping.invalid_penalty + shaping.timeout_penalty)


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
    for url, server in _serve(_scripted(env)):
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
            assert not step.info["valid"] and step.observation == "Nothing happened.\nAVAILABLE ACTIONS: look"
