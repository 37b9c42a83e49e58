"""The critic: a 2-layer MLP on the language model's last hidden states, one scalar per token.

Sharing the policy's trunk (instead of a second LM) keeps PPO at one forward pass per minibatch; the head is kept
in fp32 whatever the LM's dtype because returns are small numbers regressed with MSE, where bf16's 8-bit mantissa
visibly quantises the targets.  The output layer starts at zero so the first rollout's values are 0 and the first
advantages are plain (discounted) returns instead of noise from a random head.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


class ValueHead(nn.Module):
    """``hidden (B, T, H)`` → ``values (B, T)``."""

    def __init__(self, hidden_size: int, value_hidden_size: int = 256) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.value_hidden_size = value_hidden_size
        self.net = nn.Sequential(
            nn.Linear(hidden_size, value_hidden_size),
            nn.GELU(),
            nn.Linear(value_hidden_size, 1),
        )
        nn.init.zeros_(self.net[2].weight)
        nn.init.zeros_(self.net[2].bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.net(hidden.float()).squeeze(-1)

    def save(self, path: str | Path) -> None:
        torch.save(
            {"hidden_size": self.hidden_size, "value_hidden_size": self.value_hidden_size, "state": self.state_dict()},
            path,
        )

    @classmethod
    def load(cls, path: str | Path) -> ValueHead:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        head = cls(saved["hidden_size"], saved["value_hidden_size"])
        head.load_state_dict(saved["state"])
        return head
