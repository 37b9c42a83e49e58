"""A client for real AgentGym env servers, behind the same ``MultiTurnEnv`` interface as the local envs.

Why: the validators run AgentGym's own FastAPI servers; pointing evaluation (or RL) at them checks that what we learned
on the offline envs transfers to the real ones.  Only the standard library is used (``urllib``) so the client works in
any install.

Protocol (AgentGym ``agentenv-<env>``): ``POST /create`` gives an env id, ``POST /reset`` starts task ``idx``, ``POST
/step`` sends the action string, ``GET /observation?<id field>=`` reads the page (WebShop).  Field names differ per env
(``_PROTOCOLS``).  Errors come back as ``{"error": ...}`` with HTTP 200: they raise ``AgentGymResponseError`` (a
``ValueError``).  Transport failures (refused, timeout, HTTP 5xx) are retried with exponential backoff, except a
timed-out ``/step``, which the server may already have applied; when every try fails, ``ServerUnavailable`` (a
``ConnectionError``) says so in one line.

The action is parsed client-side as AgentGym's clients do (``parse_last`` for WebShop/ALFWorld/SciWorld,
``parse_single`` for BabyAI/TextCraft); an unparseable reply never reaches the server.  ``Step.score`` is the server's
score (the last step's reward; SciWorld's 0..100 points); ``Step.reward`` is the score delta (SciWorld divided by 100)
plus ``Shaping`` penalties for an invalid action and for running out of turns.
"""

from __future__ import annotations

import importlib
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from affine.envs.agentgym.react import parse_last, parse_single
from affine.envs.base import Shaping, Step


class ServerUnavailable(ConnectionError):
    """The env server could not be reached after every retry."""


class AgentGymResponseError(ValueError):
    """The server answered ``{"error": ...}`` (unknown id, finished episode, bad task index, ...)."""


@dataclass(frozen=True)
class _Protocol:
    """Per-env field names of the AgentGym server (read from AgentGym's clients and servers)."""

    id_field: str  # the env id's key in every request
    reset_field: str  # the task index's key in /reset
    parser: str  # "last" | "single" | "webshop"
    score_field: str  # where the episode score lives in a /step answer
    max_turns: int  # AgentGym's eval round limit
    success: float  # lowest score counted as success (any positive BabyAI score: minigrid pays only on success)
    scale: float  # full score (SciWorld's points) for the reward delta
    invalid: tuple[str, ...]  # observation prefixes that mean the server rejected the action


_BABYAI_ERRORS = (
    "The action is not recognized", "There is a barrier", "There is no door", "No change in state",
    "You cannot go", "You cannot pickup", "You cannot toggle", "You cannot drop",
)  # fmt: skip
_PROTOCOLS: dict[str, _Protocol] = {
    "webshop": _Protocol("env_idx", "session_id", "webshop", "reward", 10, 1.0, 1.0, ("Invalid",)),
    "alfworld": _Protocol("id", "game", "last", "reward", 30, 1.0, 1.0, ("Nothing happened",)),
    "babyai": _Protocol("id", "data_idx", "single", "score", 20, 1e-9, 1.0, _BABYAI_ERRORS),
    "sciworld": _Protocol("id", "data_idx", "last", "score", 30, 100.0, 100.0, ("No known action",)),
    "textcraft": _Protocol("id", "data_idx", "single", "reward", 20, 1.0, 1.0, ("Could not",)),
}

_FALLBACK_INSTRUCTIONS = (
    "You are an agent acting in a text environment. Each turn you get an observation; reply with one action that "
    "moves you toward the goal, using only actions the environment accepts.\n\nYour response should use the following "
    "format:\nThought:\n<your thoughts>\n\nAction:\n<your action>"
)


class AgentGymClient:
    """One env instance on an AgentGym server: ``create``/``reset``/``step``/``observation`` with retries."""

    def __init__(
        self, env: str, server_url: str, timeout_s: float = 30.0, retries: int = 3, backoff_s: float = 0.5
    ) -> None:
        if env not in _PROTOCOLS:
            raise ValueError(f"unknown AgentGym env {env!r}; known: {', '.join(_PROTOCOLS)}")
        if retries < 1:
            raise ValueError("retries must be >= 1 (the number of attempts per request)")
        self.env, self.protocol = env, _PROTOCOLS[env]
        self.server_url = server_url.rstrip("/")
        self.timeout_s, self.retries, self.backoff_s = timeout_s, retries, backoff_s
        self.env_id: Any = None
        self.attempts = 0  # every HTTP attempt made, retries included
        self.retried = 0  # attempts beyond the first of each request

    def _request(self, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
        url = f"{self.server_url}/{path}"
        data = None if payload is None else json.dumps(payload).encode()
        last, text, tries = "no attempt made", None, 0
        for attempt in range(self.retries):
            tries += 1
            if attempt:
                self.retried += 1
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            self.attempts += 1
            request = urllib.request.Request(url, data=data, method=method)
            request.add_header("Content-Type", "application/json")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    text = response.read().decode()
                break
            except urllib.error.HTTPError as exc:
                last = f"HTTP {exc.code} from {path}"
                if exc.code < 500:
                    raise AgentGymResponseError(
                        f"AgentGym {self.env} server rejected {method} /{path}: {last}"
                    ) from exc
            except (urllib.error.URLError, OSError) as exc:
                last = str(getattr(exc, "reason", exc))
                if path == "step" and "timed out" in last:
                    break  # the server may have applied the action: sending it again could apply it twice
        if text is None:
            raise ServerUnavailable(
                f"AgentGym {self.env} server at {self.server_url} is unreachable ({last}) after {tries} "
                f"attempts; start it (e.g. `{self.env} --host 0.0.0.0 --port 36001`) or fix server_url"
            )
        try:
            body = json.loads(text or "null")
        except json.JSONDecodeError as exc:
            raise AgentGymResponseError(f"AgentGym {self.env} server sent non-JSON on /{path}: {text[:80]!r}") from exc
        if isinstance(body, dict) and "error" in body:
            raise AgentGymResponseError(f"AgentGym {self.env} server error on /{path}: {body['error']}")
        return body

    def create(self) -> Any:
        """Ask the server for an env instance (WebShop answers a bare int, TextCraft also the first text)."""
        body = self._request("POST", "create", {} if self.env == "textcraft" else None)
        self.env_id = body["id"] if isinstance(body, dict) else body
        return self.env_id

    def _ensure(self) -> None:
        if self.env_id is None:
            self.create()

    def reset(self, task_id: int) -> dict[str, Any]:
        self._ensure()
        payload = {self.protocol.id_field: self.env_id, self.protocol.reset_field: task_id}
        if self.env == "alfworld":
            payload["world_type"] = "Text"
        body = self._request("POST", "reset", payload)
        return body if isinstance(body, dict) else {"raw": body}

    def step(self, action: str) -> dict[str, Any]:
        self._ensure()
        return self._request("POST", "step", {self.protocol.id_field: self.env_id, "action": action})

    def observation(self) -> Any:
        self._ensure()
        query = urllib.parse.urlencode({self.protocol.id_field: self.env_id})
        return self._request("GET", f"observation?{query}")


class HTTPEnv:
    """A remote AgentGym env as a ``MultiTurnEnv`` (no expert: the server exposes no state to plan from)."""

    def __init__(
        self,
        env: str = "babyai",
        server_url: str = "http://127.0.0.1:36001",
        max_turns: int | None = None,
        shaping: Shaping | None = None,
        retries: int = 3,
        timeout_s: float = 30.0,
        backoff_s: float = 0.5,
        split: str = "eval",
        difficulty: int = 1,
        seed: int = 0,
    ) -> None:
        self.client = AgentGymClient(env, server_url, timeout_s=timeout_s, retries=retries, backoff_s=backoff_s)
        self.protocol = self.client.protocol
        self.name = f"agentgym:{env}"
        self.max_turns = max_turns or self.protocol.max_turns
        self.shaping = shaping or Shaping()
        self.split, self.difficulty, self.seed = split, difficulty, seed  # uniform interface; task ids go as given
        self.instructions = self._instructions(env)
        self.done, self.turns, self.score, self._last = True, 0, 0.0, ""

    @staticmethod
    def _instructions(env: str) -> str:
        """The local env's instructions when its module defines them (same prompt as training), else a generic one."""
        try:
            module = importlib.import_module(f"affine.envs.agentgym.{env}")
        except Exception:  # noqa: BLE001 (a missing or broken local env must not stop the remote one)
            return _FALLBACK_INSTRUCTIONS
        text = getattr(module, "INSTRUCTIONS", None)
        return text if isinstance(text, str) else _FALLBACK_INSTRUCTIONS

    def reset(self, task_id: int) -> str:
        body = self.client.reset(task_id)
        if self.env_name == "webshop":
            page = self.client.observation()
            obs = page if isinstance(page, str) else json.dumps(page)
        elif self.env_name == "sciworld":
            obs = f"{body.get('task_description', '')}\n{body.get('observation', '')}".strip()
        elif self.env_name == "alfworld":
            obs = f"{body.get('observation', '')}\nAVAILABLE ACTIONS: {','.join(body.get('available_actions', []))}"
        else:
            obs = str(body.get("observation", ""))
        self.task_id, self.turns, self.score, self.done, self._last = task_id, 0, 0.0, False, obs
        return obs

    @property
    def env_name(self) -> str:
        return self.client.env

    def _parse(self, reply: str) -> tuple[str | None, str | None]:
        kind = self.protocol.parser
        parsed = parse_single(reply) if kind == "single" else parse_last(reply, webshop=kind == "webshop")
        return parsed.action, parsed.error

    def step(self, reply: str) -> Step:
        if self.done:
            raise RuntimeError("call reset() before step(); the episode is over")
        self.turns += 1
        action, error = self._parse(reply)
        previous = self.score
        valid, server_done = action is not None, False
        if action is None:  # AgentGym's clients answer this locally; WebShop repeats the page
            obs = f"{error}\n\n{self._last}" if self.env_name == "webshop" else str(error)
        else:
            body = self.client.step(action)
            obs = str(body.get("state" if self.env_name == "webshop" else "observation", ""))
            if self.env_name == "alfworld":
                obs += f"\nAVAILABLE ACTIONS: {','.join(body.get('available_actions', []))}"
            self.score = float(body.get(self.protocol.score_field, body.get("reward", 0.0)) or 0.0)
            valid = not obs.startswith(self.protocol.invalid)
            server_done = bool(body.get("done", False))
        self._last = obs
        success = self.score >= self.protocol.success
        timeout = not success and not server_done and self.turns >= self.max_turns
        self.done = server_done or success or timeout
        reward = (self.score - previous) / self.protocol.scale
        reward += 0.0 if valid else self.shaping.invalid_penalty
        reward += self.shaping.timeout_penalty if timeout else 0.0
        info = {"action": action or "", "valid": valid, "success": success, "turn": self.turns}
        return Step(obs, reward, self.done, self.score, info)

    def expert_reply(self) -> str:
        raise NotImplementedError(
            f"HTTPEnv({self.env_name!r}) has no expert: the remote server exposes no state to plan from; collect "
            f"demonstrations with the local env, e.g. affine.envs.base.make('agentgym:{self.env_name}')"
        )
