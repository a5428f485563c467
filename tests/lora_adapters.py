"""A real peft LoRA adapter on the embedded SmolLM2, for the hf and vllm adapter tests.

Nothing is trained: the adapter has random, non-zero weights (``init_lora_weights=False``,
seeded), which changes the model's outputs. :func:`make_lora` saves it with peft's
``save_pretrained``; a second adapter with its ``lora_B`` matrices negated (a different
adapter of the same shape); and the first adapter merged into the base weights
(``merge_and_unload``) as an ordinary model folder: the reference that an engine serving the
unmerged adapter must reproduce.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Lora:
    adapter: str  # peft adapter folder (random, non-zero LoRA weights)
    negated: str  # the same adapter with lora_B negated: a second, different adapter
    merged: str  # base model with `adapter` merged in, as a model folder


def make_lora(root: Path) -> Lora:
    import torch
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import load_file, save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from pytest_aie.engines.embedded import default_model_dir

    base = default_model_dir()
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    torch.manual_seed(1234)
    config = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"],
                        init_lora_weights=False, task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, config)
    peft_model.save_pretrained(root / "adapter")

    shutil.copytree(root / "adapter", root / "negated")
    weights = root / "negated" / "adapter_model.safetensors"
    tensors = load_file(weights)
    assert any("lora_B" in k for k in tensors)
    save_file({k: (-v if "lora_B" in k else v).contiguous() for k, v in tensors.items()}, weights)

    merged = peft_model.merge_and_unload()
    merged.save_pretrained(root / "merged")
    AutoTokenizer.from_pretrained(base).save_pretrained(root / "merged")
    return Lora(str(root / "adapter"), str(root / "negated"), str(root / "merged"))
