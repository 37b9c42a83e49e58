"""`affine export`: adapter or merged weights plus a Hub model card with the held-out scores."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from affine.cli import main
from affine.export import ExportError, export_model


def _result(mean: float) -> dict:
    stats = {"n": 64, "mean": mean, "ci80_lower": mean / 2, "ci80_upper": min(1.0, mean * 2), "accuracy": mean}
    return {"envs": {"affine:sat": stats}, "aggregate": {"weighted_mean": mean}}


@pytest.fixture
def adapter(tmp_path: Path, tiny_model_dir: str) -> Path:
    """A LoRA (non-zero B, so merging changes weights) on a copy of the tiny base, which has a prepare-style
    ``source.json`` naming the embedded model."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = tmp_path / "models/base"
    shutil.copytree(tiny_model_dir, base)
    (base / "source.json").write_text(json.dumps({"model": "embedded:smollm2-135m-instruct", "gguf_file": "x"}))
    torch.manual_seed(0)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(base), LoraConfig(r=4, target_modules=["q_proj"], task_type="CAUSAL_LM")
    )
    for name, param in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.5)
    out = tmp_path / "models/rl"
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(base).save_pretrained(out)
    (out / "value_head.pt").write_bytes(b"training only")
    return out


def test_adapter_export_points_at_the_hub_base_and_carries_the_scores(adapter: Path, tmp_path: Path):
    results = {"base": _result(0.0), "rl": _result(0.25)}
    out = export_model(adapter, tmp_path / "export/rl", results)
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert (out / "adapter_model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    assert not (out / "value_head.pt").exists(), "the value head is training state, not part of the model"
    from huggingface_hub import ModelCard

    card = ModelCard.load(out / "README.md")
    assert card.data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct" and card.data.library_name == "peft"
    assert [(r.dataset_type, r.metric_value) for r in card.data.eval_results] == [("affine:sat", 0.25)]
    assert "| SAT (64) | 0.000 [0.000, 0.000] | 0.250 [0.125, 0.500] |" in card.text
    assert "Q4_1" in card.text, "the card says the base was the dequantized GGUF"


def test_merged_export_equals_the_adapter_on_the_base(adapter: Path, tmp_path: Path, monkeypatch):
    from transformers import AutoModelForCausalLM

    from affine.model import load_model

    monkeypatch.chdir(tmp_path)  # the adapter names its base as a path, as models/rl does in the repository
    config = json.loads((adapter / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = "models/base"
    (adapter / "adapter_config.json").write_text(json.dumps(config))
    out = export_model(adapter, tmp_path / "merged", {"rl": _result(0.5)}, merge=True)
    merged = AutoModelForCausalLM.from_pretrained(out)
    with_adapter, tokenizer = load_model(str(adapter), dtype="float32")
    ids = torch.tensor([tokenizer.encode("Solve x1 or x2")])
    with torch.no_grad():
        expected = with_adapter(input_ids=ids).logits
        base_only = AutoModelForCausalLM.from_pretrained(tmp_path / "models/base")(input_ids=ids).logits
        got = merged(input_ids=ids).logits
    assert torch.allclose(got, expected, atol=1e-4)
    assert not torch.allclose(got, base_only, atol=1e-3), "the LoRA changed the model, or the test proves nothing"
    assert "library_name: transformers" in (out / "README.md").read_text()


def test_bad_input_is_one_error_line(adapter: Path, tmp_path: Path, capsys):
    assert main(["export", str(tmp_path / "nothing"), "--out", str(tmp_path / "o")]) == 2
    assert "not a model folder" in capsys.readouterr().err
    assert main(["export", str(adapter), "--out", str(tmp_path / "o"), "--eval", str(tmp_path / "no.json")]) == 2
    assert "no such results file" in capsys.readouterr().err
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(ExportError, match="not an earlier export"):
        export_model(adapter, precious)
    assert (precious / "notes.txt").read_text() == "keep me"


def test_cli_export_writes_the_card(adapter: Path, tmp_path: Path, capsys):
    results = tmp_path / "rl.json"
    results.write_text(json.dumps(_result(0.75)))
    assert main(["export", str(adapter), "--out", str(tmp_path / "e"), "--eval", str(results)]) == 0
    assert "exported" in capsys.readouterr().out
    assert "value: 0.75" in (tmp_path / "e/README.md").read_text()
    assert main(["export", str(adapter), "--out", str(tmp_path / "e")]) == 0, "an earlier export is replaced"


def test_score_table_keeps_the_pipeline_order_whatever_the_file_order():
    from affine.export import score_rows

    rows = score_rows({"rl": _result(0.5), "zz": _result(0.1), "base": _result(0.0)})
    assert rows[0] == "| Env (n) | Base Model | After RL | zz |"
    assert rows[2].startswith("| SAT (64) | 0.000 ") and rows[-1].endswith("| 0.000 | 0.500 | 0.100 |")
