"""A client for real AgentGym env servers, behind the same ``MultiTurnEnv`` interface as the local envs.

Why: the validators run AgentGym's own FastAPI servers; pointing evaluation (or RL, or ``affine parity``) at them checks
that what we learned on the offline envs transfers to the real ones.  Only the standard library is used (``urllib``)
so the client works in any install.

Protocol (AgentGym ``agentenv-<env>``): ``POST /create`` gives an env id, ``POST /reset`` starts task ``idx``, ``POST
/step`` sends the action string, ``GET /observation?<id field>=`` reads the page (WebShop), ``POST /close`` frees the
instance (the SciWorld server holds a JVM per instance until then).  Field names differ per env (``_PROTOCOLS``).
Errors come back as ``{"error": ...}`` with HTTP 200: they raise ``AgentGymResponseError`` (a ``ValueError``).
Transport failures (refused, timeout, HTTP 5xx) are retried with exponential backoff, except a timed-out ``/step``,
which the server may already have applied; when every try fails, ``ServerUnavailable`` (a ``ConnectionError``) says
so in one line.

Every instance a client creates is closed: by ``HTTPEnv.close()`` (or ``with HTTPEnv(...)``), else when the
``HTTPEnv`` is garbage-collected or the interpreter exits (``weakref.finalize``).  One instance serves every
``reset`` of its ``HTTPEnv``, as AgentGym's client reuses its own.

Replies are turned into actions as AgentGym's client does (``react.client_action``): a reply with no parseable
action is sent as the empty action and the server's answer is shown (BabyAI ``No change in state.``, SciWorld ``No
known action matches that input.``); several ``Action:`` lines (BabyAI, TextCraft) get the client's own error text,
score 0, and never reach the server.  ``Step.score`` is the server's score (the last step's reward; SciWorld's
0..100 points); ``Step.reward`` is the score delta (SciWorld divided by 100) plus ``Shaping`` penalties for an
invalid or empty action and for running out of turns.  ``max_turns`` defaults to AgentGym's eval round limit per env
(``_PROTOCOLS``); the validator's limit is set through ``envs.agentgym.<env>.max_turns``.
"""

from __future__ import annotations

import importlib
import json
import time
import urllib.error
import urllib.parse
import urllib.request
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from affine.envs.agentgym.react import client_action
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
    parser: str  # "last" | "single" | "webshop": how AgentGym's client reads the action (react.client_action)
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
        self.created = self.closed = 0  # server instances this client made and freed

    def _request(
        self, method: str, path: str, payload: dict[str, Any] | None = None, retries: int | None = None
    ) -> Any:
        url = f"{self.server_url}/{path}"
        data = None if payload is None else json.dumps(payload).encode()
        last, text, tries = "no attempt made", None, 0
        for attempt in range(retries or self.retries):
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
        self.created += 1
        return self.env_id

    def close(self, quiet: bool = False) -> bool:
        """Free the server instance (``POST /close``); a no-op without one.  ``quiet``: one try, errors swallowed
        (used at garbage collection and interpreter exit, where a dead server must not stall or raise)."""
        if self.env_id is None:
            return False
        env_id, self.env_id = self.env_id, None
        try:
            self._request("POST", "close", {self.protocol.id_field: env_id}, retries=1 if quiet else None)
        except (AgentGymResponseError, ServerUnavailable):
            if not quiet:
                raise
            return False
        self.closed += 1
        return True

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


def _close_quietly(client: AgentGymClient) -> None:
    client.close(quiet=True)


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
        instructions: str | None = None,
    ) -> None:
        if max_turns is not None and max_turns < 1:
            raise ValueError(f"max_turns must be >= 1 (or None for AgentGym's round limit), got {max_turns}")
        self.client = AgentGymClient(env, server_url, timeout_s=timeout_s, retries=retries, backoff_s=backoff_s)
        self.protocol = self.client.protocol
        self.name = f"agentgym:{env}"
        self.max_turns = max_turns or self.protocol.max_turns
        self.shaping = shaping or Shaping()
        self.split, self.difficulty, self.seed = split, difficulty, seed  # uniform interface (ids: task_map)
        self.instructions = instructions if instructions is not None else self._instructions(env)
        self.done, self.turns, self.score = True, 0, 0.0
        self.task_map: Callable[[int], int] | None = None  # our task id -> the server's (None: the same id)
        self.server_task_id = -1
        self._finalizer = weakref.finalize(self, _close_quietly, self.client)

    @staticmethod
    def _instructions(env: str) -> str:
        """The local env's instructions when its module defines them (same prompt as training), else a generic one."""
        try:
            module = importlib.import_module(f"affine.envs.agentgym.{env}")
        except Exception:  # noqa: BLE001 (a missing or broken local env must not stop the remote one)
            return _FALLBACK_INSTRUCTIONS
        text = getattr(module, "INSTRUCTIONS", None)
        return text if isinstance(text, str) else _FALLBACK_INSTRUCTIONS

    def close(self) -> None:
        """Free the server instance now (a later ``reset`` creates a new one)."""
        self.client.close()
        self.done = True

    def __enter__(self) -> HTTPEnv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close(quiet=exc[0] is not None)  # do not hide the original error behind a failed close

    def reset(self, task_id: int) -> str:
        """Start our task ``task_id`` on the server: its own id there is ``task_map(task_id)`` when a map is set
        (``build_env`` sets the local env module's ``server_task_id`` for the split, so eval ids stay held out)."""
        self.server_task_id = self.task_map(task_id) if self.task_map is not None else task_id
        body = self.client.reset(self.server_task_id)
        if self.env_name == "webshop":
            page = self.client.observation()
            obs = page if isinstance(page, str) else json.dumps(page)
        elif self.env_name == "sciworld":
            obs = f"{body.get('task_description', '')}\n{body.get('observation', '')}"
        elif self.env_name == "alfworld":
            obs = f"{body.get('observation', '')}\nAVAILABLE ACTIONS: {','.join(body.get('available_actions', []))}"
        else:
            obs = str(body.get("observation", ""))
        self.task_id, self.turns, self.score, self.done = task_id, 0, 0.0, False
        return obs

    @property
    def env_name(self) -> str:
        return self.client.env

    def step(self, reply: str) -> Step:
        if self.done:
            raise RuntimeError("call reset() before step(); the episode is over")
        self.turns += 1
        parsed = client_action(reply, self.protocol.parser)
        previous, server_done = self.score, False
        if parsed.action is None:  # several actions: AgentGym's client answers itself, with reward 0
            obs, self.score, valid = str(parsed.error), 0.0, False
        else:
            body = self.client.step(parsed.action)
            obs = str(body.get("state" if self.env_name == "webshop" else "observation", ""))
            self.score = float(body.get(self.protocol.score_field, body.get("reward", 0.0)) or 0.0)
            valid = bool(parsed.action) and not obs.startswith(self.protocol.invalid)
            server_done = bool(body.get("done", False))
        success = self.score >= self.protocol.success
        timeout = not success and not server_done and self.turns >= self.max_turns
        self.done = server_done or success or timeout
        reward = (self.score - previous) / self.protocol.scale
        reward += 0.0 if valid else self.shaping.invalid_penalty
        reward += self.shaping.timeout_penalty if timeout else 0.0
        info = {"action": parsed.action or "", "valid": valid, "success": success, "turn": self.turns}
        return Step(obs, reward, self.done, self.score, info)

    def expert_reply(self) -> str:
        raise NotImplementedError(
            f"HTTPEnv({self.env_name!r}) has no expert: the remote server exposes no state to plan from; collect "
            f"demonstrations with the local env, e.g. affine.envs.base.make('agentgym:{self.env_name}')"
        )
