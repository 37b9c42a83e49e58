"""AgentGym's ReAct reply format: how an action is pulled out of free model text.

Two parsing styles exist in AgentGym and a model trained here must meet the one its env uses:

* ``last``   (WebShop, ALFWorld, SciWorld): the text after the *last* ``Action:``, stripped.  WebShop also accepts a
  bare ``search[...]``/``click[...]`` reply without an ``Action:`` header.
* ``single`` (BabyAI, TextCraft): every ``Action: <line>`` is found; more than one is an error the agent is told about;
  the action is then reduced to letters, digits, commas and spaces with runs of spaces collapsed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

INVALID_ACTION = "Invalid Action."
MULTIPLE_ACTIONS = "Error: only one action is allowed per turn. Reply with exactly one 'Action:' line."

_ACTION_LINE = re.compile(r"Action:\s*(.*?)(?=\n|$)")
_NOT_ALLOWED = re.compile(r"[^A-Za-z0-9, ]+")
_SPACES = re.compile(r" +")


@dataclass(frozen=True)
class Parsed:
    """``action`` is None when the reply holds no usable action; ``error`` is then the env feedback to show."""

    action: str | None
    error: str | None = None


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
    action = _SPACES.sub(" ", _NOT_ALLOWED.sub("", found[0])).strip()
    return Parsed(action) if action else Parsed(None, INVALID_ACTION)


def react(thought: str, action: str) -> str:
    """The reply shape experts write and the model learns: ``Thought:\\n…\\n\\nAction:\\n…``."""
    return f"Thought:\n{thought}\n\nAction:\n{action}"


def to_messages(conversations: list[dict]) -> list[dict]:
    """AgentTraj ``conversations`` (``from: human|gpt``) → chat ``messages`` (``role: user|assistant``)."""
    roles = {"human": "user", "gpt": "assistant"}
    return [{"role": roles[turn["from"]], "content": turn["value"]} for turn in conversations]
