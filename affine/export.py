"""``affine export``: a trained model as a folder ready to upload to the Hugging Face Hub, with a model card.

Two forms.  **Adapter** (default): the LoRA files and tokenizer, megabytes, with ``base_model_name_or_path`` set to
the base's Hub id so ``PeftModel.from_pretrained`` works off this machine.  **Merged** (``merge=True``): the LoRA
folded into the base weights (peft ``merge_and_unload``), a plain transformers checkpoint.  The card (``README.md``)
is built with ``huggingface_hub``'s ``ModelCardData``: base model, library, and a ``model-index`` of the held-out
scores, so the Hub shows them; its body has the score table (mean, 80 % Jeffreys interval, n) per evaluated model.

The default CPU profile's base is the Q4_1 GGUF of SmolLM2-135M-Instruct dequantized to fp32 (``prepare``), not the
original fp16 weights on the Hub: the card says so, and the merged form is the exact trained model.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from affine.eval.report import COLUMN_TITLES, STAGES, env_title

log = logging.getLogger(__name__)

# Hub id of each embedded base (the same model family; see the module docstring on quantization).
HUB_IDS = {"embedded:smollm2-135m-instruct": "HuggingFaceTB/SmolLM2-135M-Instruct"}
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja")


class ExportError(ValueError):
    """The model folder cannot be exported (not a model, or an output folder that is not ours to replace)."""


def base_spec(model_dir: Path) -> str | None:
    """The ``base.model`` the model was trained from: ``source.json`` of ``models/base`` (written by ``prepare``)."""
    config = model_dir / "adapter_config.json"
    base_dir = Path(json.loads(config.read_text()).get("base_model_name_or_path") or "") if config.is_file() else None
    for folder in (model_dir, base_dir):
        if folder is not None and (folder / "source.json").is_file():
            return json.loads((folder / "source.json").read_text()).get("model")
    if base_dir is not None and not base_dir.is_dir() and str(base_dir) not in ("", "."):
        return str(base_dir)  # already a Hub id
    return None


def hub_id(spec: str | None) -> str | None:
    """A Hub id for ``spec`` (embedded names mapped, Hub ids kept); ``None`` for a local folder or unknown."""
    if spec is None:
        return None
    if spec in HUB_IDS:
        return HUB_IDS[spec]
    return None if spec.startswith("embedded:") or Path(spec).exists() else spec


def score_rows(results: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Markdown table: one row per env, one column per model (``mean [lo, hi]``), n in the env cell."""
    names = sorted(results, key=lambda m: STAGES.index(m) if m in STAGES else len(STAGES))  # base, sft, rl, others
    envs = list(dict.fromkeys(env for r in results.values() for env in r["envs"]))
    lines = [
        "| Env (n) | " + " | ".join(COLUMN_TITLES.get(m, m) for m in names) + " |",
        "|:--|" + "--:|" * len(names),
    ]
    for env in envs:
        n = next(r["envs"][env]["n"] for r in results.values() if env in r["envs"])
        cells = []
        for r in (results[m] for m in names):
            e = r["envs"].get(env)
            cells.append("—" if e is None else f"{e['mean']:.3f} [{e['ci80_lower']:.3f}, {e['ci80_upper']:.3f}]")
        lines.append(f"| {env_title(env)} ({n}) | " + " | ".join(cells) + " |")
    overall = [f"{(results[m].get('aggregate') or {}).get('weighted_mean', float('nan')):.3f}" for m in names]
    lines.append("| **Overall** (sample-weighted) | " + " | ".join(overall) + " |")
    return lines


def model_card(
    name: str, base: str | None, merged: bool, results: Mapping[str, Mapping[str, Any]], exported: str | None
) -> str:
    """The card's text: YAML metadata (``huggingface_hub.ModelCardData``) and a short factual body."""
    from huggingface_hub import EvalResult, ModelCardData

    own = results.get(exported) if exported else None
    evals = [
        EvalResult(
            task_type="text-generation",
            dataset_type=env,
            dataset_name=f"Affine {env_title(env)} (held-out eval split)",
            metric_type="mean_score",
            metric_value=round(float(stats["mean"]), 4),
        )
        for env, stats in (own or {}).get("envs", {}).items()
    ]
    data = ModelCardData(
        base_model=hub_id(base),
        library_name="transformers" if merged else "peft",
        pipeline_tag="text-generation",
        tags=["affine", "bittensor", "lora", "sft", "rl"],
        model_name=name,
        eval_results=evals or None,
    )
    form = "Merged weights (the LoRA folded into the base)" if merged else "A LoRA adapter (peft)"
    lines = [f"# {name}", "", f"{form}, trained with affine-train (LoRA SFT, then PPO/GRPO) for the"]
    lines += ["Affine evaluation environments (Bittensor subnet 120).", ""]
    lines += [f"- Base: `{base}`" + (f" (Hub: `{hub_id(base)}`)" if hub_id(base) and hub_id(base) != base else "")]
    if base in HUB_IDS:
        lines += [
            "- Trained on the Q4_1 GGUF of that model dequantized to fp32, not on the Hub's original weights: the "
            "adapter on the original weights is close but not identical; the merged export is exact."
        ]
    if not merged:
        lines += ["", "```python", "from peft import AutoPeftModelForCausalLM", "", "model = AutoPeftModelForCausalLM."]
        lines[-1] += 'from_pretrained("<this repo>")'
        lines += ["```"]
    if results:
        lines += ["", "## Held-out scores", "", "Mean normalised score [80 % Jeffreys interval], as the validator"]
        lines += ["scores miners (`metrics/eval/*.json`):", "", *score_rows(results)]
    return f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines) + "\n"


def _fresh(out_dir: Path) -> None:
    """Replace ``out_dir`` only if it is empty or an earlier export (has our card), never another folder."""
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / "README.md").is_file():
        raise ExportError(f"{out_dir} exists and is not an earlier export: choose an empty or new folder")
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)


def export_model(
    model_dir: str | Path,
    out_dir: str | Path,
    results: Mapping[str, Mapping[str, Any]] | None = None,
    merge: bool = False,
    name: str | None = None,
) -> Path:
    """Write the export of ``model_dir`` (an adapter folder, or a full model when not ``merge``) to ``out_dir``.

    ``results`` maps model name (``base``/``sft``/``rl``) to its ``metrics/eval`` result; the one whose name is
    ``model_dir``'s folder name is the exported model's own (its scores go into ``model-index``).
    """
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    is_adapter = (model_dir / "adapter_config.json").is_file()
    if not is_adapter and not (model_dir / "config.json").is_file():
        raise ExportError(f"{model_dir}: not a model folder (no adapter_config.json or config.json)")
    base = base_spec(model_dir)
    name = name or f"affine-{model_dir.name}"
    _fresh(out_dir)
    if merge and is_adapter:
        from affine.model import load_model

        model, tokenizer = load_model(str(model_dir), dtype="float32")
        model.merge_and_unload().save_pretrained(str(out_dir), safe_serialization=True)
        tokenizer.save_pretrained(str(out_dir))
    else:
        files = ADAPTER_FILES if is_adapter else [p.name for p in model_dir.iterdir() if p.is_file()]
        for f in (*files, *TOKENIZER_FILES):
            if (model_dir / f).is_file() and f not in ("value_head.pt", "source.json"):
                shutil.copy2(model_dir / f, out_dir / f)
        if is_adapter and hub_id(base):
            config = json.loads((out_dir / "adapter_config.json").read_text())
            config["base_model_name_or_path"] = hub_id(base)
            (out_dir / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    exported = model_dir.name if results and model_dir.name in results else None
    card = model_card(name, base, merge or not is_adapter, results or {}, exported)
    (out_dir / "README.md").write_text(card, encoding="utf-8")
    log.info("exported %s to %s (%s)", model_dir, out_dir, "merged" if merge else "as is")
    return out_dir
