"""The rollout engine: token masks, reward placement, batched episodes of different lengths, truncation, policies."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from affine.chat import render_prompt
from affine.envs.base import Step
from affine.generation import generate_ids
from affine.rollout import expert_policy, play


class Echo:
    """Single-turn toy task: say the task id."""

    name = "toy:echo"

    def sample(self, seed: int) -> dict:
        return {"env": self.name, "task_id": seed, "prompt": f"Say {seed}."}

    def score(self, challenge: dict, reply: str) -> float:
        return 1.0 if str(challenge["task_id"]) in reply else 0.0

    def solution(self, challenge: dict) -> str:
        return str(challenge["task_id"])


class Countdown:
    """Multi-turn toy env: done after ``task_id`` replies; 0.1 per step, 1.0 on the last."""

    name = "toy:countdown"
    max_turns = 10
    instructions = "Reply with one action per turn."

    def reset(self, task_id: int) -> str:
        self.left = task_id
        return f"{task_id} steps to go."

    def step(self, reply: str) -> Step:
        self.left -= 1
        done = self.left <= 0
        return Step(f"{self.left} to go.", reward=1.0 if done else 0.1, done=done, score=1.0 if done else 0.0)

    def expert_reply(self) -> str:
        return "Action: go"


class ScriptedLM(nn.Module):
    """Stands in for a model: always replies with ``reply_ids`` (cut at max_new_tokens); records batch sizes."""

    def __init__(self, reply_ids: list[int]) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))
        self.reply_ids = reply_ids
        self.batch_sizes: list[int] = []

    def generate(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, max_new_tokens: int, **_) -> torch.Tensor:
        self.batch_sizes.append(input_ids.shape[0])
        # left padding: every row's real tokens end at the last column
        assert bool(attention_mask[:, -1].all())
        assert bool((attention_mask.diff(dim=1) >= 0).all())
        new = torch.tensor(self.reply_ids[:max_new_tokens]).expand(input_ids.shape[0], -1)
        return torch.cat([input_ids, new], dim=1)


def encode(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def segments(mask: torch.Tensor) -> list[tuple[int, int]]:
    """``[start, end)`` of each run of ones."""
    runs, start = [], None
    for i, m in enumerate(mask.tolist() + [False]):
        if m and start is None:
            start = i
        elif not m and start is not None:
            runs.append((start, i))
            start = None
    return runs


@pytest.fixture
def reply_ids(tokenizer) -> list[int]:
    return encode(tokenizer, "Action: go") + [tokenizer.eos_token_id]


def test_batched_episodes_of_different_lengths(tokenizer, reply_ids) -> None:
    lm = ScriptedLM(reply_ids)
    plan = [(Countdown(), 3), (Echo(), 7), (Countdown(), 1), (Countdown(), 2)]
    running: list[int] = []
    episodes = play(lm, tokenizer, plan, max_new_tokens=16, temperature=0.0, max_turns=10, on_turn=running.append)
    # generation only for live episodes: 4, then the two countdowns still running, then the last one
    assert lm.batch_sizes == [4, 2, 1]
    assert running == [2, 1, 0]  # what a progress bar shows after each turn
    assert [e.turns for e in episodes] == [3, 1, 1, 2]
    assert [e.env for e in episodes] == ["toy:countdown", "toy:echo", "toy:countdown", "toy:countdown"]
    assert episodes[0].rewards == pytest.approx([0.1, 0.1, 1.0])
    assert episodes[1].rewards == [0.0] and not episodes[1].success  # "Action: go" does not say 7
    assert all(e.terminal for e in episodes)
    assert [e.success for e in episodes] == [True, False, True, True]


def test_action_mask_covers_exactly_the_generated_tokens(tokenizer, reply_ids) -> None:
    episode = play(
        ScriptedLM(reply_ids), tokenizer, [(Countdown(), 3)], max_new_tokens=16, temperature=0.0, max_turns=10
    )[0]
    runs = segments(episode.action_mask)
    assert len(runs) == episode.turns == 3
    for start, end in runs:
        assert episode.token_ids[start:end].tolist() == reply_ids  # the reply and its <|im_end|>, nothing else
    # everything else is the chat template's own rendering of the conversation: the ids equal the template's
    rendered = encode(tokenizer, tokenizer.apply_chat_template(episode.messages, tokenize=False))
    ids = episode.token_ids.tolist()
    assert rendered[: len(ids)] == ids and tokenizer.decode(rendered[len(ids) :]) == "\n"
    assert episode.messages[:2] == [
        {"role": "user", "content": Countdown.instructions},
        {"role": "assistant", "content": "OK"},
    ]
    assert episode.action_mask.sum().item() == episode.new_tokens == 3 * len(reply_ids)


def test_rewards_land_on_the_last_token_of_each_action(tokenizer, reply_ids) -> None:
    episode = play(
        ScriptedLM(reply_ids), tokenizer, [(Countdown(), 3)], max_new_tokens=16, temperature=0.0, max_turns=10
    )[0]
    last_tokens = [end - 1 for _, end in segments(episode.action_mask)]
    assert torch.nonzero(episode.turn_ends).flatten().tolist() == last_tokens
    assert torch.nonzero(episode.token_rewards).flatten().tolist() == last_tokens
    assert episode.token_rewards[last_tokens].tolist() == pytest.approx([0.1, 0.1, 1.0])
    assert episode.token_rewards.sum().item() == pytest.approx(episode.shaped_return)


def test_reply_cut_by_max_new_tokens_gets_an_untrained_end_token(tokenizer, reply_ids) -> None:
    episode = play(
        ScriptedLM(reply_ids), tokenizer, [(Countdown(), 2)], max_new_tokens=2, temperature=0.0, max_turns=10
    )[0]
    runs = segments(episode.action_mask)
    assert [end - start for start, end in runs] == [2, 2]
    for _, end in runs:
        assert episode.token_ids[end].item() == tokenizer.eos_token_id and not episode.action_mask[end]
        assert episode.turn_ends[end - 1] and episode.token_rewards[end - 1] != 0


def test_truncated_episode_ends_on_the_observation_for_bootstrapping(tokenizer, reply_ids) -> None:
    episode = play(
        ScriptedLM(reply_ids), tokenizer, [(Countdown(), 5)], max_new_tokens=16, temperature=0.0, max_turns=2
    )[0]
    assert not episode.terminal and episode.turns == 2 and not episode.success
    assert episode.messages[-1] == {"role": "user", "content": "3 to go."}
    # the row ends with the observation and the next assistant header: the state the critic bootstraps from
    assert episode.token_ids.tolist() == encode(tokenizer, render_prompt(tokenizer, episode.messages))
    assert not episode.action_mask[-1]


def test_episode_that_outgrows_the_context_ends_truncated(tokenizer, reply_ids) -> None:
    env = Countdown()
    prompt = encode(tokenizer, render_prompt(tokenizer, [
        {"role": "user", "content": env.instructions}, {"role": "assistant", "content": "OK"},
        {"role": "user", "content": "5 steps to go."}]))  # fmt: skip
    room = len(prompt) + 16  # exactly one reply fits
    lm = ScriptedLM(reply_ids)
    episode = play(lm, tokenizer, [(env, 5)], max_new_tokens=16, temperature=0.0, max_turns=9, max_context=room)[0]
    assert episode.turns == 1 and not episode.terminal and lm.batch_sizes == [1]
    assert episode.messages[-1]["role"] == "user"
    none = play(
        lm, tokenizer, [(Countdown(), 5)], max_new_tokens=16, temperature=0.0, max_turns=9, max_context=room - 1
    )
    assert none[0].turns == 0 and not none[0].action_mask.any()


def test_single_turn_task_is_a_one_step_episode(tokenizer) -> None:
    lm = ScriptedLM(encode(tokenizer, "42") + [tokenizer.eos_token_id])
    episode = play(lm, tokenizer, [(Echo(), 42)], max_new_tokens=8, temperature=0.0, max_turns=5)[0]
    assert episode.messages == [{"role": "user", "content": "Say 42."}, {"role": "assistant", "content": "42"}]
    assert episode.rewards == [1.0] and episode.score == 1.0 and episode.success and episode.terminal
    assert episode.challenge == Echo().sample(42)
    prompt = encode(tokenizer, render_prompt(tokenizer, episode.messages[:1]))
    assert episode.token_ids[: len(prompt)].tolist() == prompt and not episode.action_mask[: len(prompt)].any()


def test_reward_fn_reshapes_training_reward_but_not_the_score(tokenizer, reply_ids) -> None:
    seen = []

    def double(env_name, messages, step_reward, info):
        seen.append((env_name, messages[-1]["content"], info["score"]))
        return 2 * step_reward

    episode = play(
        ScriptedLM(reply_ids),
        tokenizer,
        [(Countdown(), 2)],
        max_new_tokens=16,
        temperature=0.0,
        max_turns=9,
        reward_fn=double,
    )[0]
    assert episode.rewards == pytest.approx([0.2, 2.0]) and episode.score == 1.0
    assert seen == [("toy:countdown", "Action: go", 0.0), ("toy:countdown", "Action: go", 1.0)]
    assert episode.token_rewards.sum().item() == pytest.approx(2.2)


def test_policy_replaces_the_model(tokenizer) -> None:
    episodes = play(None, None, [(Echo(), 5), (Countdown(), 2)], max_new_tokens=8, temperature=0.0, max_turns=9,
                    policy=expert_policy)  # fmt: skip
    assert [e.success for e in episodes] == [True, True]
    assert episodes[0].messages[-1]["content"] == "5" and episodes[1].turns == 2
    assert episodes[0].token_ids is None and episodes[1].new_tokens == 0


def test_shared_multi_turn_env_is_refused(tokenizer, reply_ids) -> None:
    env = Countdown()
    with pytest.raises(ValueError, match="its own env"):
        play(ScriptedLM(reply_ids), tokenizer, [(env, 1), (env, 2)], max_new_tokens=4, temperature=0.0, max_turns=3)
    echo = Echo()  # a single-turn task is stateless: sharing it is fine
    assert len(play(None, None, [(echo, 1), (echo, 2)], max_new_tokens=4, temperature=0.0, max_turns=1,
                    policy=expert_policy)) == 2  # fmt: skip


def test_sampled_rollout_with_a_real_model_keeps_every_invariant(tokenizer, tiny_model) -> None:
    torch.manual_seed(0)
    plan = [(Countdown(), 2), (Echo(), 3), (Countdown(), 3), (Countdown(), 1)]
    episodes = play(tiny_model, tokenizer, plan, max_new_tokens=6, temperature=1.0, max_turns=3, batch_size=3)
    for episode in episodes:
        runs = segments(episode.action_mask)
        replies = [m["content"] for m in episode.messages if m["role"] == "assistant"][-episode.turns :]
        assert len(runs) == episode.turns == len(replies)
        for (start, end), reply in zip(runs, replies, strict=True):
            generated = episode.token_ids[start:end].tolist()
            assert 1 <= len(generated) <= 6
            assert tokenizer.eos_token_id not in generated[:-1]
            assert tokenizer.decode(generated, skip_special_tokens=True) == reply
            assert episode.turn_ends[end - 1]
        assert int(episode.turn_ends.sum()) == episode.turns


def test_generate_ids_keeps_input_order_and_stops_at_eos(tokenizer, tiny_model) -> None:
    prompts = [encode(tokenizer, "hi"), encode(tokenizer, "a much longer prompt than the first one"), [5]]
    torch.manual_seed(0)
    out = generate_ids(tiny_model, tokenizer, prompts, max_new_tokens=4, temperature=0.0, batch_size=2)
    for prompt, new in zip(prompts, out, strict=True):
        single = generate_ids(tiny_model, tokenizer, [prompt], max_new_tokens=4, temperature=0.0, batch_size=1)[0]
        assert new == single  # greedy: padding and batching change nothing
        assert 1 <= len(new) <= 4 and tokenizer.eos_token_id not in new[:-1]


class Holder(Countdown):
    """A Countdown that holds an outside resource (as SciWorld's JVM or a server instance) until ``close``."""

    def __init__(self) -> None:
        self.closes = 0

    def close(self) -> None:
        self.closes += 1


def test_episodes_cut_off_close_their_env_and_finished_ones_are_left_alone(tokenizer, reply_ids) -> None:
    cut, ended, outgrown = Holder(), Holder(), Holder()
    episodes = play(
        ScriptedLM(reply_ids), tokenizer, [(cut, 5), (ended, 1)], max_new_tokens=16, temperature=0.0, max_turns=2
    )
    assert [e.terminal for e in episodes] == [False, True]
    assert (cut.closes, ended.closes) == (1, 0)  # the env ended its own episode; the cut one would linger
    play(ScriptedLM(reply_ids), tokenizer, [(outgrown, 5)], max_new_tokens=16, temperature=0.0, max_turns=9,
         max_context=8)  # fmt: skip
    assert outgrown.closes == 1  # cut at the context length before its first reply
