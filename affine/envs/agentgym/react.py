"""AgentGym's ReAct reply format: how an action is pulled out of free model text.

Two parsing styles exist in AgentGym and a model trained here must meet the one its env uses:

* ``last``   (WebShop, ALFWorld, SciWorld): the text after the *last* ``Action:``, stripped.  WebShop also accepts a
  bare ``search[...]``/``click[...]`` reply without an ``Action:`` header.
* ``single`` (BabyAI, TextCraft): every ``Action: <line>`` is found; more than one is an error the agent is told about;
  the action is then reduced to letters, digits, commas and spaces with runs of spaces collapsed.

``parse_last``/``parse_single`` serve the local envs, which answer an unusable reply themselves (``Invalid Action.``).
``client_action`` is what AgentGym's own client sends to a real server: there nothing is rejected locally except a
reply with several ``Action:`` lines; a reply without an action goes out as the empty string and the server answers it.
``MULTIPLE_ACTIONS`` is the text AgentGym's client shows for that case, kept verbatim because it is what a model
evaluated against the real servers reads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

INVALID_ACTION = "Invalid Action."
MULTIPLE_ACTIONS = "Error: Only one 'Action' is allowed per response. Please adjust your response."
# The assistant turn that follows AgentGym's instructions in every conversation (its AgentTraj data and its client):
# context, never a training target (collect marks it ``loss: false``).
ACKNOWLEDGEMENT = "OK"

_ACTION_LINE = re.compile(r"Action:\s*(.*?)(?=\n|$)")
_NOT_ALLOWED = re.compile(r"[^A-Za-z0-9, ]+")
_SPACES = re.compile(r" +")


@dataclass(frozen=True)
class Parsed:
    """``action`` is None when the reply holds no usable action; ``error`` is then the env feedback to show."""

    action: str | None
    error: str | None = None


def _clean(action: str) -> str:
    return _SPACES.sub(" ", _NOT_ALLOWED.sub("", action)).strip()


def parse_last(text: str, webshop: bool = False) -> Parsed:
    if "Action:" in text:
        action = text.rsplit("Action:", 1)[1].strip()
        return Parsed(action) if action else Parsed(None, INVALID_ACTION)
    if webshop and ("search[" in text or "click[" in text):
        return Parsed(text.strip())
    return Parsed(None, INVALID_ACTION)


def parse_single(text: str) -> Parsed:
    found = _ACTION_LINE.findall(text)
    if not found:
        return Parsed(None, INVALID_ACTION)
    if len(found) > 1:
        return Parsed(None, MULTIPLE_ACTIONS)
    action = _clean(found[0])
    return Parsed(action) if action else Parsed(None, INVALID_ACTION)


def client_action(text: str, style: str) -> Parsed:
    """The action AgentGym's client would send for ``text`` (``style``: ``last``, ``webshop`` or ``single``).

    ``action`` is ``""`` when the reply holds none (the server then answers, e.g. BabyAI's ``No change in state.``);
    it is None only for the ``single`` style's several-actions error, which the client answers without the server.
    """
    if style == "single":
        found = _ACTION_LINE.findall(text)
        if len(found) > 1:
            return Parsed(None, MULTIPLE_ACTIONS)
        return Parsed(_clean(found[0]) if found else "")
    if style not in ("last", "webshop"):
        raise ValueError(f"unknown action style {style!r}: expected 'last', 'webshop' or 'single'")
    if "Action:" in text:
        return Parsed(text.rsplit("Action:", 1)[1].strip())
    if style == "webshop" and ("search[" in text or "click[" in text):
        return Parsed(text.strip())
    return Parsed("")


def react(thought: str, action: str) -> str:
    """The reply shape experts write and the model learns: ``Thought:\\n…\\n\\nAction:\\n…``."""
    return f"Thought:\n{thought}\n\nAction:\n{action}"


def to_messages(conversations: list[dict]) -> list[dict]:
    """AgentTraj ``conversations`` (``from: human|gpt``) → chat ``messages`` (``role: user|assistant``).

    A turn's ``"loss": false`` is kept on its message (SFT then does not train on it: :mod:`affine.chat`); AgentTraj
    writes ``loss`` on every turn (null on the user's), so only an explicit false is carried."""
    roles = {"human": "user", "gpt": "assistant"}
    messages = []
    for turn in conversations:
        message = {"role": roles[turn["from"]], "content": turn["value"]}
        if turn.get("loss") is False:
            message["loss"] = False
        messages.append(message)
    return messages
