"""Typed, validated ``params.yaml``: one pydantic model per section.

Every stage calls :func:`load_params` first, so a typo'd key, a wrong type or an out-of-range value stops the stage
before a model is loaded, with the key's dotted path and what is allowed.  Models are strict (``2e-5`` — which
YAML 1.1 reads as a *string* — is rejected with a hint instead of being silently coerced) and forbid unknown keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from affine.envs.templates import PromptTemplate
from affine.errors import StageError

AFFINE_ENVS = ("affine:sat", "affine:abd", "affine:ded")
AGENTGYM_ENVS = (
    "agentgym:webshop",
    "agentgym:alfworld",
    "agentgym:babyai",
    "agentgym:sciworld",
    "agentgym:textcraft",
)
ALL_ENVS = AFFINE_ENVS + AGENTGYM_ENVS
EnvName = Literal[
    "affine:sat",
    "affine:abd",
    "affine:ded",
    "agentgym:webshop",
    "agentgym:alfworld",
    "agentgym:babyai",
    "agentgym:sciworld",
    "agentgym:textcraft",
]


class ParamsError(StageError, ValueError):
    """A bad ``params.yaml``; the message is one line per problem, each starting with the key's dotted path."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class BaseParams(Section):
    seed: int = Field(42, ge=0)
    model: str = Field("embedded:smollm2-135m-instruct", min_length=1)
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    load_in_8bit: bool = False
    load_in_4bit: bool = False
    # who generates for evaluate and RL rollouts: vllm (params.yaml's default: one vllm.LLM per stage, LoRA served on
    # top, see README "Generation engines" and affine.engine) or hf (the loaded model, plain generate; the fallback,
    # and the code default so a params file without the key runs wherever the project installs)
    engine: Literal["hf", "vllm"] = "hf"
    vllm_kv_cache_gib: float = Field(2.0, gt=0)  # vLLM's default (92 % of memory) is refused on a shared machine
    vllm_enforce_eager: bool = True  # skip torch.compile, which costs each stage start ~50 s on the CPU profile
    # torch CPU threads in every stage: auto = OMP_NUM_THREADS if set, else every CPU in the affinity mask (see
    # affine.threads); a machine setting, not a DVC param, though the count changes fp32 rounding in the last bits
    num_threads: Literal["auto"] | int = "auto"

    @field_validator("num_threads", mode="before")
    @classmethod
    def _threads(cls, value: object) -> object:
        if value == "auto" or (type(value) is int and value >= 1):
            return value
        raise ValueError(f"must be 'auto' or a positive integer, got {value!r}")

    @model_validator(mode="after")
    def _one_quantization(self) -> BaseParams:
        if self.load_in_8bit and self.load_in_4bit:
            raise ValueError("load_in_8bit and load_in_4bit are exclusive: set at most one")
        return self


class PromptParams(Section):
    """A task's prompt: ``prompt_file`` (a template, see affine.envs.templates) replaces the shipped default."""

    TASK: ClassVar[str] = ""
    prompt_file: str | None = Field(None, min_length=1)

    @field_validator("prompt_file")
    @classmethod
    def _template(cls, path: str | None) -> str | None:
        if path is not None:
            PromptTemplate(cls.TASK, path)  # unreadable file, unknown or missing fields: one clear line
        return path


class ABDParams(PromptParams):
    TASK: ClassVar[str] = "affine:abd"


class DEDParams(PromptParams):
    TASK: ClassVar[str] = "affine:ded"


class SATParams(PromptParams):
    """Planted k-SAT.  Ranges are inclusive ``[low, high]``; the validator's setting is configs/validator-sat.yaml."""

    TASK: ClassVar[str] = "affine:sat"
    n_vars: list[int] = Field([10, 20], min_length=2, max_length=2)
    k: list[int] = Field([3, 5], min_length=2, max_length=2)
    clause_ratio: float = Field(4.2, gt=0, le=20)

    @model_validator(mode="after")
    def _ranges(self) -> SATParams:
        for key in ("n_vars", "k"):
            low, high = getattr(self, key)
            if not 1 <= low <= high:
                raise ValueError(f"{key} must be [low, high] with 1 <= low <= high, got {[low, high]}")
        if self.k[1] > self.n_vars[0]:
            raise ValueError(f"k (max {self.k[1]}) cannot exceed the smallest n_vars ({self.n_vars[0]})")
        return self


class ProgramsParams(Section):
    """Where ABD/DED rows come from: the generated offline corpus or the real rl-python data (task k = row k)."""

    source: Literal["offline", "hub", "files"] = "offline"
    dataset: str = "AffineFoundation/rl-python"
    files: list[str] = []
    buffer_size: int = Field(5, ge=1, description="the offline corpus's buffered draw; real rows go by row index")
    difficulty: int = Field(1, ge=1, le=3)


class AgentGymEnvParams(Section):
    """One AgentGym env.  ``backend: agentgym`` plays it on a real server at ``server_url``; ``max_turns`` None is
    AgentGym's eval round limit (WebShop 10, ALFWorld 30, TextCraft 20, SciWorld 30, BabyAI 20), the validator's is 30;
    ``instructions_file`` replaces the env's first-turn instructions in collect, rl and evaluate alike."""

    # None: the env's own local engine (BabyAI minigrid, TextCraft textcraft, SciWorld ScienceWorld; WebShop and
    # ALFWorld our simulators); naming `simulator` or `scienceworld` must match what the env has.
    backend: Literal["simulator", "agentgym", "scienceworld"] | None = None
    server_url: str = Field("http://127.0.0.1:36001", pattern=r"^https?://\S+$")
    # None: the env's own default (BabyAI 1 = the 32 levels its expert solves, TextCraft 4 = every goal depth)
    difficulty: int | None = Field(None, ge=1, le=5)
    max_turns: int | None = Field(None, ge=1, description="None: AgentGym's per-env eval round limit")
    instructions_file: str | None = Field(None, min_length=1, description="a UTF-8 text file; None: the env's own")


class EnvsParams(Section):
    sat: SATParams = SATParams()
    abd: ABDParams = ABDParams()
    ded: DEDParams = DEDParams()
    programs: ProgramsParams = ProgramsParams()
    agentgym: dict[str, AgentGymEnvParams] = {}
    invalid_penalty: float = Field(-0.05, le=0)
    timeout_penalty: float = Field(-0.2, le=0)

    @model_validator(mode="after")
    def _agentgym_envs(self) -> EnvsParams:
        known = [name.split(":", 1)[1] for name in AGENTGYM_ENVS]
        unknown = sorted(set(self.agentgym) - set(known))
        if unknown:
            raise ValueError(f"agentgym: unknown env {', '.join(unknown)}; known: {', '.join(known)}")
        # SciWorld runs the real ScienceWorld unless `agentgym` is asked for; `scienceworld` exists only for SciWorld.
        for env, p in self.agentgym.items():
            if env == "sciworld" and p.backend == "simulator":
                raise ValueError("agentgym.sciworld.backend: no simulator; use scienceworld (default) or agentgym")
            if env != "sciworld" and p.backend == "scienceworld":
                raise ValueError(f"agentgym.{env}.backend: scienceworld is only for sciworld")
        return self


class CollectAffine(Section):
    num_samples: int = Field(10000, ge=0)
    environments: list[EnvName] = list(AFFINE_ENVS)


class CollectAgentGym(Section):
    num_episodes: int = Field(5000, ge=0)
    max_episode_length: int = Field(50, ge=1)
    environments: list[EnvName] = list(AGENTGYM_ENVS)
    trajectory_files: list[str] = []


class CollectParams(Section):
    affine: CollectAffine = CollectAffine()
    agentgym: CollectAgentGym = CollectAgentGym()


class SFTParams(Section):
    use_lora: bool = True
    lora_r: int = Field(64, ge=1)
    lora_alpha: int = Field(128, ge=1)
    lora_dropout: float = Field(0.05, ge=0, lt=1)
    lora_target_modules: list[str] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    num_epochs: float = Field(3.0, gt=0)
    max_steps: int = Field(-1, ge=-1, description="-1: run num_epochs")
    batch_size: int = Field(2, ge=1)
    gradient_accumulation_steps: int = Field(8, ge=1)
    learning_rate: float = Field(2.0e-5, gt=0, lt=1)
    warmup_steps: int = Field(100, ge=0)
    weight_decay: float = Field(0.01, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)
    scheduler_type: Literal["cosine", "linear", "constant"] = "cosine"
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    bf16: bool = True
    fp16: bool = False
    gradient_checkpointing: bool = True
    max_length: int = Field(2048, ge=16)
    packing: bool = False
    val_fraction: float = Field(0.1, gt=0, lt=1)
    eval_steps: int = Field(500, ge=1)
    save_steps: int = Field(1000, ge=1)
    save_total_limit: int = Field(3, ge=1)
    logging_steps: int = Field(10, ge=1)
    merge: bool = False
    use_wandb: bool = False
    wandb_project: str = "affine-training"

    @model_validator(mode="after")
    def _precision(self) -> SFTParams:
        if self.bf16 and self.fp16:
            raise ValueError("bf16 and fp16 are exclusive: set at most one")
        if self.save_steps % self.eval_steps:
            # the best-by-eval-loss checkpoint must be one that was saved
            raise ValueError(f"save_steps ({self.save_steps}) must be a multiple of eval_steps ({self.eval_steps})")
        return self


class CurriculumParams(Section):
    enabled: bool = False
    success_threshold: float = Field(0.6, gt=0, le=1)
    every: int = Field(0, ge=0, description="raise difficulty every N iterations (0: only on the threshold)")
    max_difficulty: int = Field(3, ge=1)


class HorizonStep(Section):
    """One ``rl.horizon_schedule`` step: from 0-based iteration ``iteration`` on, episodes play <= ``max_turns``."""

    iteration: int = Field(ge=0)
    max_turns: int = Field(ge=1)


class RLParams(Section):
    algorithm: Literal["ppo", "grpo"] = "ppo"
    environments: list[EnvName] = list(AGENTGYM_ENVS)
    num_rollouts: int = Field(100, ge=0)
    rollout_batch_size: int = Field(4, ge=1)
    group_size: int = Field(4, ge=2, description="samples per task for grpo")
    ppo_epochs: int = Field(4, ge=1)
    minibatch_size: int = Field(4, ge=1)
    clip_range: float = Field(0.2, gt=0, lt=1)
    vf_coef: float = Field(0.5, ge=0)
    entropy_coef: float = Field(0.01, ge=0)
    kl_coef: float = Field(0.0, ge=0)
    gae_lambda: float = Field(0.95, ge=0, le=1)
    gamma: float = Field(0.99, ge=0, le=1)
    gae_level: Literal["turn", "token"] = Field("turn", description="discount per env turn, or per generated token")
    value_clip_range: float | None = Field(None, gt=0)
    learning_rate: float = Field(1.0e-5, gt=0, lt=1)
    max_grad_norm: float = Field(1.0, gt=0)
    temperature: float = Field(0.7, gt=0)
    max_new_tokens: int = Field(128, ge=1)
    max_episode_length: int = Field(50, ge=1)
    horizon_schedule: list[HorizonStep] = Field(
        [], description="ScalingInter-RL: max turns per episode by iteration ([]: max_episode_length throughout)"
    )
    value_hidden_size: int = Field(256, ge=1)
    bf16: bool = Field(True, description="bf16 autocast in scoring and updates (CUDA, or a CPU with native bf16)")
    gradient_checkpointing: bool = Field(True, description="recompute the trunk's activations in backward")
    reward_fn: str | None = None
    save_every: int = Field(10, ge=1)
    curriculum: CurriculumParams = CurriculumParams()

    @model_validator(mode="after")
    def _horizon(self) -> RLParams:
        steps = self.horizon_schedule
        if not steps:
            return self
        if steps[0].iteration != 0:
            raise ValueError(f"horizon_schedule must start at iteration 0, not {steps[0].iteration}")
        for prev, step in zip(steps, steps[1:], strict=False):
            if step.iteration <= prev.iteration:
                raise ValueError(f"horizon_schedule iterations must increase: {prev.iteration} then {step.iteration}")
            if step.max_turns < prev.max_turns:
                raise ValueError(
                    f"horizon_schedule max_turns must not shrink: {prev.max_turns} then {step.max_turns} "
                    f"(at iteration {step.iteration})"
                )
        if steps[-1].max_turns > self.max_episode_length:
            raise ValueError(
                f"horizon_schedule max_turns {steps[-1].max_turns} is over max_episode_length {self.max_episode_length}"
            )
        return self


class EvaluateParams(Section):
    environments: list[EnvName] = list(ALL_ENVS)
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        "auto", description="inference dtype; bfloat16 halves CPU prefill time where the CPU has avx512_bf16"
    )
    samples_per_env: int = Field(100, ge=1)
    batch_size: int = Field(16, ge=1)
    max_new_tokens: int | None = Field(512, ge=1, description="None: no cap, up to the model's context (the validator)")
    temperature: float = Field(0.0, ge=0)
    # vLLM's KV cache for the evaluate stages (None: base.vllm_kv_cache_gib): every held-out episode of an env plays
    # at once, so their whole conversations must stay cached between turns or vLLM evicts and re-prefills them
    vllm_kv_cache_gib: float | None = Field(None, gt=0)
    # CPU only: vLLM's EngineCore and worker inside the stage's process instead of two spawned ones (affine.engine)
    vllm_in_process: bool = True
    baseline: str | None = None


class SandboxParams(Section):
    """How model-written programs run (see affine.sandbox): checked by a probe run when a stage starts."""

    isolation: Literal["namespaces", "none"] = "namespaces"  # "none": Affine's bare rlimits, only if asked by name
    python: str = Field("auto", min_length=1)  # auto: the validator's 3.12 where installed, else the host's
    packages: list[str] = []  # importable third-party packages (the validator's image: [numpy]); none by default
    site_packages: str | None = None  # where those come from (default: that interpreter's own site-packages)
    cgroup_parent: str | None = None  # a delegated cgroup v2 directory for runs (default: v1 hierarchies or v2 root)

    @field_validator("packages")
    @classmethod
    def _names(cls, names: list[str]) -> list[str]:
        bad = [n for n in names if not n.isidentifier()]
        if bad:
            raise ValueError(f"not importable package names: {bad}")
        return names


class Params(Section):
    base: BaseParams = BaseParams()
    envs: EnvsParams = EnvsParams()
    collect: CollectParams = CollectParams()
    sft: SFTParams = SFTParams()
    rl: RLParams = RLParams()
    evaluate: EvaluateParams = EvaluateParams()
    sandbox: SandboxParams = SandboxParams()


def _describe(error: dict[str, Any]) -> str:
    path = ".".join(str(part) for part in error["loc"]) or "<root>"
    value = error.get("input")
    message = error["msg"]
    if error["type"] == "extra_forbidden":
        message = "unknown key (check its spelling and section)"
    hint = ""
    if isinstance(value, str) and error["type"] in {"float_type", "int_type"}:
        try:
            float(value)
            hint = " (YAML 1.1 reads numbers like 2e-5 as strings: write 2.0e-5)"
        except ValueError:
            pass
    shown = "" if error["type"] in {"extra_forbidden", "value_error"} else f", got {value!r}"
    return f"{path}: {message}{shown}{hint}"


def parse_params(raw: dict[str, Any] | None) -> Params:
    if raw is not None and not isinstance(raw, dict):
        raise ParamsError(f"params must be a mapping of sections, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw or {})
    except ValidationError as exc:
        raise ParamsError("invalid params: " + "; ".join(_describe(e) for e in exc.errors())) from None


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    if not path.is_file():
        raise ParamsError(f"{path}: params file not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML: {exc}") from None
    return parse_params(raw)
