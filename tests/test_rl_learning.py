"""End to end: PPO and GRPO must *learn* a bandit, checkpoints must resume, and the loop's helpers behave.

The bandit: "Answer A or B.", a reply starting with ``A`` pays 1.  A random tiny model says ``A`` about once in 49k
tokens, so no algorithm could learn it from scratch in seconds; we plant ``A`` and ``B`` as its two likeliest first
tokens with *equal* odds (their embeddings share the component along the prompt's final hidden state and differ
along an orthogonal direction).  Starting near 35 % success, only a working policy gradient moves mass from ``B``
to ``A``; flattening the distribution, a sign-flipped advantage or a dead optimizer all fail the thresholds.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import build_tiny_model
from safetensors.torch import load_file

from affine.chat import render_prompt
from affine.config import CurriculumParams, EnvsParams, Params
from affine.model import load_model
from affine.rl import loop
from affine.rl.ppo import ActorCritic, collate, train_rl
from affine.rl.rewards import load_reward_fn, react_format
from affine.rl.value_head import ValueHead
from affine.rollout import play

PROMPT = "Answer A or B."


class Bandit:
    name = "toy:bandit"

    def sample(self, seed: int) -> dict:
        return {"env": self.name, "task_id": seed, "prompt": PROMPT}

    def score(self, challenge: dict, reply: str) -> float:
        return 1.0 if reply.strip().startswith("A") else 0.0

    def solution(self, challenge: dict) -> str:
        return "A"


def bandit_factory(name: str, difficulty: int | None) -> Bandit:
    return Bandit()


@pytest.fixture(scope="module")
def bandit_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer) -> str:
    return save_bandit(build_tiny_model(len(tokenizer)), tokenizer, tmp_path_factory.mktemp("bandit"))


def save_bandit(model: torch.nn.Module, tokenizer, folder: Path) -> str:
    """``model`` with ``A`` and ``B`` planted as its two likeliest first replies (equal odds), saved to ``folder``."""
    ids = torch.tensor([tokenizer(render_prompt(tokenizer, [{"role": "user", "content": PROMPT}]))["input_ids"]])
    a, b = tokenizer.convert_tokens_to_ids("A"), tokenizer.convert_tokens_to_ids("B")
    assert a not in ids[0] and b not in ids[0]
    with torch.no_grad():
        h = model(input_ids=ids, output_hidden_states=True).hidden_states[-1][0, -1]
        u = torch.randn(h.shape, generator=torch.Generator().manual_seed(1))
        u = u - (u @ h) / (h @ h) * h
        u = u / u.norm()
        shared = 11.0 * h / (h @ h)  # logit 11 for both: ~35 % each
        model.get_input_embeddings().weight[a] = shared + u
        model.get_input_embeddings().weight[b] = shared - u
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory: pytest.TempPathFactory, bandit_dir: str) -> str:
    """An "SFT" LoRA adapter on the bandit model: the usual shape of ``policy_dir``."""
    from peft import LoraConfig, get_peft_model

    model, tokenizer = load_model(bandit_dir)
    torch.manual_seed(3)
    model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():  # "SFT" moved it a little away from the base (so base != reference)
        for name, weight in model.named_parameters():
            if "lora_B" in name:
                weight.normal_(0.0, 0.05)
    folder = tmp_path_factory.mktemp("sft_adapter")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def bandit_params(algorithm: str, iterations: int, **rl: object) -> Params:
    base = Params()
    settings = {
        "algorithm": algorithm,
        "environments": ["toy:bandit"],
        "num_rollouts": iterations,
        "rollout_batch_size": 32 if algorithm == "ppo" else 8,
        "group_size": 4,
        "ppo_epochs": 2,
        "minibatch_size": 16,
        "learning_rate": 1e-3,
        "temperature": 1.0,
        "max_new_tokens": 1,
        "max_episode_length": 1,
        "value_hidden_size": 32,
        "entropy_coef": 0.0,
        **rl,
    }
    sft = base.sft.model_copy(update={"lora_r": 8, "lora_alpha": 16, "lora_dropout": 0.0})
    return base.model_copy(update={"rl": base.rl.model_copy(update=settings), "sft": sft})


def success_rate(model_dir: str | Path, episodes: int = 64) -> float:
    model, tokenizer = load_model(str(model_dir))
    torch.manual_seed(123)
    plan = [(Bandit(), i) for i in range(episodes)]
    played = play(model, tokenizer, plan, max_new_tokens=1, temperature=1.0, max_turns=1)
    return sum(e.success for e in played) / episodes


@pytest.mark.parametrize("algorithm", ["ppo", "grpo"])
def test_success_rate_rises(algorithm: str, bandit_dir: str, tmp_path: Path) -> None:
    before = success_rate(bandit_dir)
    history = train_rl(
        bandit_params(algorithm, 4), bandit_dir, tmp_path / "rl", tmp_path / "metrics", env_factory=bandit_factory
    )
    after = success_rate(tmp_path / "rl")  # the saved final adapter, loaded the way evaluation loads it
    assert 0.2 < before < 0.5
    assert after > 0.8, (before, after, [h["success_rate"] for h in history])
    assert [h["iteration"] for h in history] == [1, 2, 3, 4]
    assert history[0]["kl_ref"] == pytest.approx(0.0, abs=1e-6)  # a fresh LoRA starts as the reference
    assert history[-1]["kl_ref"] > 0.01
    assert (algorithm == "ppo") == ("value_loss" in history[0]) == (tmp_path / "rl" / "value_head.pt").is_file()
    summary = json.loads((tmp_path / "metrics" / "metrics.json").read_text())
    for key in ("return_mean", "success_rate", "policy_loss", "entropy", "approx_kl", "kl_ref", "clip_frac",
                "tokens_per_s"):  # fmt: skip
        assert key in summary
    assert summary["score"]["toy_bandit"] == summary["success"]["toy_bandit"] == history[-1]["success_rate"]
    assert summary["step"] == 3


@pytest.mark.parametrize("broken", ["sign_flipped", "lr_zero"])
def test_broken_learning_misses_the_thresholds(
    broken: str, bandit_dir: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Negative controls for ``test_success_rate_rises``: with the policy loss's sign flipped, or a learning rate of
    effectively 0 (params refuse 0 itself), the same 4 PPO iterations must *not* reach its ``after > 0.8``."""
    from affine.rl import ppo

    params = bandit_params("ppo", 4)
    if broken == "sign_flipped":
        real = ppo.policy_loss

        def flipped(*args: object, **kwargs: object) -> tuple[torch.Tensor, torch.Tensor]:
            loss, clip_frac = real(*args, **kwargs)
            return -loss, clip_frac

        monkeypatch.setattr(ppo, "policy_loss", flipped)
    else:
        params = bandit_params("ppo", 4, learning_rate=1e-12)
    before = success_rate(bandit_dir)
    train_rl(params, bandit_dir, tmp_path / "rl", tmp_path / "metrics", env_factory=bandit_factory)
    after = success_rate(tmp_path / "rl")
    assert after <= 0.8, (broken, before, after)
    if broken == "sign_flipped":
        assert after < before  # pushed the wrong way
    else:
        assert after == pytest.approx(before, abs=0.05)  # did not move


def test_resume_continues_where_the_kill_left_off(adapter_dir: str, tmp_path: Path) -> None:
    straight, parts = tmp_path / "straight", tmp_path / "parts"
    run = {"env_factory": bandit_factory}
    full = train_rl(bandit_params("ppo", 3, rollout_batch_size=16), adapter_dir, straight, straight / "m", **run)
    first = train_rl(bandit_params("ppo", 2, rollout_batch_size=16), adapter_dir, parts, parts / "m", **run)
    rest = train_rl(bandit_params("ppo", 3, rollout_batch_size=16), adapter_dir, parts, parts / "m", **run)
    assert [h["iteration"] for h in first] == [1, 2] and [h["iteration"] for h in rest] == [3]
    # the SFT adapter continues, and its frozen copy (not the base model) is the reference: no KL before the first
    # update, some after
    assert full[0]["kl_ref"] == pytest.approx(0.0, abs=1e-6) and full[2]["kl_ref"] > 1e-3
    assert rest[0]["success_rate"] == pytest.approx(full[2]["success_rate"])
    assert rest[0]["policy_loss"] == pytest.approx(full[2]["policy_loss"], rel=1e-4, abs=1e-6)
    a = load_file(str(straight / "adapter_model.safetensors"))
    b = load_file(str(parts / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    adapter = json.loads((parts / "adapter_config.json").read_text())
    assert adapter["base_model_name_or_path"] and adapter["target_modules"] == sorted(adapter["target_modules"])
    assert sorted(p.name for p in (parts / "checkpoints").iterdir()) == ["iter-000002", "iter-000003"]
    rows = (parts / "m" / "plots" / "metrics" / "success_rate.tsv").read_text().strip().splitlines()
    assert len(rows) == 1 + 3  # header + one row per iteration across both processes
    # resume=False starts over
    again = train_rl(bandit_params("ppo", 1, rollout_batch_size=16), adapter_dir, parts, parts / "m", False, **run)
    assert [h["iteration"] for h in again] == [1]
    assert sorted(p.name for p in (parts / "checkpoints").iterdir()) == ["iter-000001"]


def test_actor_critic_shapes(tokenizer, tiny_model) -> None:
    from affine.rollout import Episode

    def episode(ids: list[int], mask: list[int]) -> Episode:
        n = len(ids)
        return Episode("toy", 0, [], [1.0], 1.0, True, 1, True, None, torch.tensor(ids), torch.tensor(mask).bool(),
                       torch.zeros(n), torch.zeros(n).bool())  # fmt: skip

    batch = collate([episode([5, 6, 7, 8, 9], [0, 0, 1, 1, 0]), episode([5, 6, 7], [0, 1, 1])], pad_id=2)
    head = ValueHead(tiny_model.config.hidden_size, 16)
    model = ActorCritic(tiny_model, head)
    logprobs, entropy, values, last = model(batch["ids"], batch["attention"], batch["mask"], 1.0)
    assert logprobs.shape == values.shape == (2, 5) and last.shape == (2,) and entropy.dim() == 0
    assert (logprobs[batch["mask"]] < 0).all() and (logprobs[~batch["mask"]] == 0).all()
    assert torch.equal(values, torch.zeros(2, 5))  # zero-initialised output layer
    # log-probs read at position t-1 equal the model's own logits
    full = torch.log_softmax(tiny_model(input_ids=batch["ids"]).logits, -1)
    assert torch.allclose(logprobs[0, 2], full[0, 1, 7], atol=1e-5)
    assert torch.allclose(logprobs[1, 2], full[1, 1, 7], atol=1e-5)
    hidden = torch.randn(3, 4, tiny_model.config.hidden_size)
    assert head(hidden).shape == (3, 4)


def test_value_head_round_trip(tmp_path: Path) -> None:
    head = ValueHead(8, 4)
    torch.nn.init.normal_(head.net[2].weight)
    head.save(tmp_path / "v.pt")
    again = ValueHead.load(tmp_path / "v.pt")
    x = torch.randn(2, 3, 8)
    assert torch.equal(head(x), again(x)) and again.value_hidden_size == 4


def test_curriculum_raises_on_threshold_and_schedule_capped() -> None:
    names = ["a:x", "a:y"]
    by_success = loop.Curriculum(CurriculumParams(enabled=True, success_threshold=0.5, max_difficulty=2), names)
    by_success.update(1, {"success/a_x": 0.6, "success/a_y": 0.4})
    assert by_success.levels == {"a:x": 2, "a:y": 1}
    by_success.update(2, {"success/a_x": 0.9, "success/a_y": 0.4})
    assert by_success.levels == {"a:x": 2, "a:y": 1}  # capped
    scheduled = loop.Curriculum(CurriculumParams(enabled=True, every=2, max_difficulty=3), names)
    for done in range(1, 8):
        scheduled.update(done, {})
    assert scheduled.levels == {"a:x": 3, "a:y": 3}
    assert loop.Curriculum(CurriculumParams(), names).levels == {}


def test_curriculum_difficulty_reaches_the_env_params() -> None:
    envs = EnvsParams()
    assert loop.with_difficulty(envs, "affine:sat", 3) == envs  # SAT has no difficulty knob
    assert loop.with_difficulty(envs, "affine:abd", 2).programs.difficulty == 2
    assert loop.with_difficulty(envs, "affine:ded", 9).programs.difficulty == 3  # capped at what params allow
    raised = loop.with_difficulty(envs, "agentgym:babyai", 4)
    assert raised.agentgym["babyai"].difficulty == 4 and raised.agentgym["babyai"].backend is None
    assert loop.with_difficulty(raised, "agentgym:babyai", 7).agentgym["babyai"].difficulty == 5
    assert envs.agentgym == {}  # params are never mutated


def test_env_pool_shares_single_turn_tasks_and_rebuilds_on_difficulty_change() -> None:
    from test_rollout import Countdown

    built = []

    def factory(name: str, difficulty: int | None) -> object:
        built.append((name, difficulty))
        return Bandit() if name == "toy:bandit" else Countdown()

    pool = loop.EnvPool(factory)
    bandits = pool.envs("toy:bandit", 3)
    assert len(bandits) == 3 and bandits[0] is bandits[2]  # stateless: one object serves every episode
    counters = pool.envs("toy:countdown", 3)
    assert len({id(e) for e in counters}) == 3  # stateful: one object per concurrent episode
    assert pool.envs("toy:countdown", 2) == counters[:2] and len(built) == 4
    pool.set_levels({"toy:countdown": 2})
    assert pool.envs("toy:countdown", 1)[0] is not counters[0] and built[-1] == ("toy:countdown", 2)
    assert pool.envs("toy:bandit", 1)[0] is bandits[0]


@pytest.mark.parametrize("algorithm", ["ppo", "grpo"])
def test_multi_turn_training_with_truncation_curriculum_and_reward_fn(
    algorithm: str, tiny_model_dir: str, tmp_path: Path
) -> None:
    from test_rollout import Countdown

    levels = []

    def factory(name: str, difficulty: int | None) -> Countdown:
        levels.append(difficulty)
        return Countdown()  # random task ids: thousands of steps to go, so every episode is cut by max turns

    params = bandit_params(
        algorithm,
        2,
        environments=["toy:countdown"],
        rollout_batch_size=2,
        group_size=2,
        minibatch_size=2,
        max_new_tokens=3,
        max_episode_length=2,
        reward_fn="affine.rl.rewards:react_format",
        curriculum=CurriculumParams(enabled=True, every=1),
    )
    history = train_rl(params, tiny_model_dir, tmp_path / "rl", tmp_path / "m", env_factory=factory)
    assert [h["difficulty/toy_countdown"] for h in history] == [1.0, 2.0]
    assert sorted(set(levels)) == [1, 2]
    assert all(h["turns_mean"] == 2.0 and h["success_rate"] == 0.0 for h in history)
    assert all(h["return_mean"] == pytest.approx(0.2) for h in history)  # 0.1 progress per turn, no format bonus
    for h in history:
        assert all(v == v for k, v in h.items() if k != "explained_variance")  # no NaN
    assert (tmp_path / "rl" / "adapter_model.safetensors").is_file()


def test_reward_fn_by_dotted_path() -> None:
    fn = load_reward_fn("affine.rl.rewards:react_format")
    assert fn is react_format and load_reward_fn(None) is None
    reply = [{"role": "assistant", "content": "Thought:\nlook\n\nAction:\ngo north"}]
    assert fn("agentgym:babyai", reply, 0.1, {}) == pytest.approx(0.15)
    assert fn("agentgym:babyai", [{"role": "assistant", "content": "go north"}], 0.1, {}) == pytest.approx(0.1)
    assert fn("affine:sat", reply, 1.0, {}) == 1.0
    for bad in ("affine.rl.rewards", "affine.rl.rewards:nope", "no.such.module:fn", "affine.rl.rewards:FORMAT_BONUS"):
        with pytest.raises(ValueError):
            load_reward_fn(bad)


def test_an_iteration_plays_all_its_episodes_across_envs_in_one_batch(
    tiny_model_dir: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rollout engine batches the live episodes it is given, so the loop must give it a whole iteration at once:
    one ``play`` per iteration with every env's episodes, not one per env or per episode."""
    from test_rollout import Countdown

    from affine.rl import ppo

    calls: list[list[str]] = []
    real = ppo.timed_play

    def recording(model: object, tokenizer: object, plan: list, **kwargs: object) -> object:
        calls.append([env.name for env, _ in plan])
        return real(model, tokenizer, plan, **kwargs)

    monkeypatch.setattr(ppo, "timed_play", recording)

    def factory(name: str, difficulty: int | None) -> object:
        return Bandit() if name == "toy:bandit" else Countdown()

    params = bandit_params(
        "ppo", 2, environments=["toy:bandit", "toy:countdown"], rollout_batch_size=3, max_new_tokens=2
    )
    train_rl(params, tiny_model_dir, tmp_path / "rl", tmp_path / "m", env_factory=factory)
    assert calls == [["toy:bandit"] * 3 + ["toy:countdown"] * 3] * 2
