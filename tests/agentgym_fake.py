"""Test doubles for the AgentGym HTTP client and ``affine parity``: a stdlib server speaking AgentGym's protocol on
127.0.0.1, and a tiny walking env that can play either side (our env, or the env behind the server).

Why a toy env and not one of ours: the client and parity are about the protocol and the comparison, and must not
break when an env module is rewritten; the toy is small enough that every expected text is obvious.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from affine.envs.agentgym.react import MULTIPLE_ACTIONS, client_action, react
from affine.envs.base import Step

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


def serve(route: Route) -> Iterator[tuple[str, Any]]:
    """Run ``route`` behind a threaded HTTP server on a free loopback port; yields ``(url, server)``."""
    server: Any = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.route, server.requests, server.bodies, server.fail_next = route, [], [], 0
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server
    finally:
        server.shutdown()
        server.server_close()


class Walk:
    """Walk forward to a goal cell.  Task ``k``: goal ``2 + k % 3``; AgentGym-like texts and a BabyAI-like score.

    ``twist``: the turn whose feedback this instance words differently (0: the first observation), so a server
    backed by a twisted ``Walk`` disagrees with a plain one exactly there.  ``step`` parses replies the way
    AgentGym's client does, so a plain ``Walk`` and the client in front of a plain server agree on everything.
    """

    name = "agentgym:babyai"
    instructions = "Walk forward until you reach the goal. Reply with Thought: and Action: (move forward, turn left)."

    def __init__(self, twist: int | None = None, max_turns: int = 20, far: int = 0) -> None:
        self.twist, self.max_turns, self.far = twist, max_turns, far  # far: the goal lies this much further
        self.pos = self.goal = self.turns = 0
        self.done = True
        self.closed = False

    def _say(self, text: str) -> str:
        return text + " (reworded)" if self.turns == self.twist else text

    def reset(self, task_id: int) -> str:
        self.pos, self.goal, self.turns, self.done = 0, 2 + task_id % 3 + self.far, 0, False
        return self._say(f"Your goal: reach cell {self.goal}\nYou are at cell 0.")

    def apply(self, action: str) -> tuple[str, float, bool]:
        """The server side: one action string → observation, score, done."""
        self.turns += 1
        if action == "":
            return self._say("No change in state."), 0.0, False
        if action not in ("move forward", "turn left"):
            return self._say("The action is not recognized. Please check valid actions."), 0.0, False
        self.pos += action == "move forward"
        if self.pos == self.goal:
            self.done = True
            return self._say(f"You are at cell {self.pos}.\n The task is completed."), 1 - 0.1 * self.turns, True
        return self._say(f"You are at cell {self.pos}."), 0.0, False

    def step(self, reply: str) -> Step:
        parsed = client_action(reply, "single")
        if parsed.action is None:
            self.turns += 1
            obs, score, done = MULTIPLE_ACTIONS, 0.0, False
        else:
            obs, score, done = self.apply(parsed.action)
        done = done or self.turns >= self.max_turns
        return Step(obs, score, done, score, {"success": score > 0, "valid": parsed.action is not None})

    def expert_reply(self) -> str:
        return react(f"The goal is {self.goal - self.pos} cells ahead.", "move forward")

    def close(self) -> None:
        self.closed = True


def walk_route(twist: int | None = None, far: int = 0) -> Route:
    """AgentGym's BabyAI protocol (``id``, ``data_idx``, ``score``; ``/close``) over one ``Walk`` per created id.

    ``route.created``/``route.closed`` list the ids made and freed, to check that a client frees what it makes.
    """
    envs: dict[int, Walk] = {}
    lock = threading.Lock()
    created: list[int] = []
    closed: list[int] = []

    def route(call: str, body: dict[str, Any]) -> Any:
        with lock:
            if call == "POST /create":
                created.append(len(created))
                envs[created[-1]] = Walk(twist, far=far)
                return {"id": created[-1]}
            env = envs.get(body.get("id", -1))
            if env is None:
                return {"error": f"The id {body.get('id')} is not valid."}
            if call == "POST /close":
                closed.append(body["id"])
                del envs[body["id"]]
                return True
            if call == "POST /reset":
                if body["data_idx"] >= 1000:
                    return {"error": f"data_idx {body['data_idx']} out of range"}
                return {"observation": env.reset(body["data_idx"]), "reward": 0, "score": 0, "done": False}
            if call == "POST /step":
                if env.done:
                    return {"error": f"The task with environment {body['id']} has finished."}
                observation, score, done = env.apply(body["action"])
                return {"observation": observation, "reward": score, "score": score, "done": done}
            return {"error": f"no route {call}"}

    route.created, route.closed = created, closed  # type: ignore[attr-defined]
    return route
